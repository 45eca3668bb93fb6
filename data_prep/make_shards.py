"""Cut folders of videos into clips and write WebDataset shards (lossless HQ clips + JSON metadata).

    python data_prep/make_shards.py my_videos/ data/mine --clip-frames 17 --license "CC-BY 4.0" --workers 8

Any format FFmpeg decodes; folders are searched recursively. Clips never span a scene cut, near-static clips
are dropped, and each video's clips go to shards of about --shard-size-mb. Interrupted? Run the same command
again: finished videos are skipped, unfinished ones redone, and no shard is ever duplicated. With
--val-fraction, whole videos go to OUT/val (by a hash of their path), the rest to OUT/train.
See data_prep/README.md for the details and litevsr/data/clipping.py for the scene-cut and motion tests.

Several GPUs or nodes: start it with torchrun (e.g. torchrun --nproc_per_node 8 data_prep/make_shards.py ...
--latents MODEL --device cuda); rank r takes every W-th unfinished unit of work, `--device cuda` is its GPU
cuda:LOCAL_RANK, and rank 0 writes the manifest at the end. OUT must be on a file system every node shares.
"""

from __future__ import annotations

import argparse
import os
import sys

from litevsr import LiteVSRError
from litevsr.data.prep import LATENT_DTYPES, PrepOptions, RankFailed, prepare_shards
from litevsr.distributed import quick_exit, world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="make_shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", help="video files or folders (searched recursively)")
    p.add_argument("out", help="output folder: shards, manifest.json, and .make_shards/ (resume state)")
    clips = p.add_argument_group("clips")
    clips.add_argument("--clip-frames", type=int, default=17, help="frames per clip (default 17)")
    clips.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: --clip-frames)")
    clips.add_argument(
        "--max-side", type=int, default=512, help="downscale so the longer side is at most this (default 512)"
    )
    clips.add_argument(
        "--min-size",
        type=int,
        default=64,
        help="skip videos whose shorter side, after --max-side, is below this (default 64)",
    )
    clips.add_argument(
        "--crop",
        type=int,
        default=None,
        metavar="SIZE",
        help="store a SIZE x SIZE crop of each clip instead of the whole frame",
    )
    clips.add_argument(
        "--crop-mode",
        choices=["random", "center"],
        default="random",
        help="where the crop sits: random (seeded by the clip key) or center (default random)",
    )
    clips.add_argument(
        "--cut-threshold",
        type=float,
        default=30.0,
        help="scene cut: mean abs difference of 64x64 gray thumbnails, 8-bit levels (default 30)",
    )
    clips.add_argument(
        "--min-motion",
        type=float,
        default=0.5,
        help="drop clips whose mean frame-to-frame thumbnail difference is below this (default 0.5; 0 keeps all)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--shard-size-mb", type=float, default=256.0, help="target shard size (default 256)")
    out.add_argument(
        "--clips-per-shard", type=int, default=1000, help="at most this many clips per shard (default 1000)"
    )
    out.add_argument(
        "--videos-per-task",
        type=int,
        default=1,
        help="videos per unit of work; each unit writes its own shards, so raise it for many short "
        "videos to get shards near the target size (default 1)",
    )
    out.add_argument("--prefix", default="clips", help="shard file prefix (default clips)")
    out.add_argument("--license", default="unknown", help="licence recorded with every clip and source")
    out.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="fraction of videos (chosen by a hash of their path) written to OUT/val; the rest to "
        "OUT/train (default 0: all in OUT)",
    )
    extra = p.add_argument_group("stored extras")
    extra.add_argument(
        "--lq-variants",
        type=int,
        default=0,
        metavar="K",
        help="store K pre-degraded LQ clips per clip (lq0.mkv ...), lossless, seeded by the clip key",
    )
    extra.add_argument("--scale", type=int, default=4, help="downscaling factor of the LQ variants (default 4)")
    extra.add_argument(
        "--degradation-preset",
        default=None,
        metavar="NAME",
        help="degrade with RealWorldDegradation(NAME), NAME a preset of litevsr.data.degradations.PRESETS: "
        "realesrgan, anime, old_film or phone_lowbitrate (default: SimpleDegradation)",
    )
    extra.add_argument(
        "--latents",
        default=None,
        metavar="tiny|FOLDER|HUB_ID|twin:HUB_ID",
        help="store latents from this backbone of any family (latents.safetensors): the whole stored "
        "clip's and each LQ variant's condition, for training with use_cached_latents",
    )
    extra.add_argument("--latents-dtype", choices=sorted(LATENT_DTYPES), default="float16")
    extra.add_argument(
        "--device",
        default="cpu",
        help="device for --latents encoding (default cpu); under torchrun, cuda is each rank's cuda:LOCAL_RANK",
    )
    p.add_argument("--seed", type=int, default=0, help="seed combined with clip keys for crops and LQ variants")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel processes, one video task each (default 1); under torchrun, per rank",
    )
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> PrepOptions:
    fields = PrepOptions.__dataclass_fields__
    return PrepOptions(**{k: v for k, v in vars(args).items() if k in fields})


def main(argv: list[str] | None = None) -> None:
    quick_exit()
    args = parse_args(argv)
    try:
        manifest = prepare_shards(args.inputs, args.out, options_from(args), workers=args.workers, device=args.device)
    except LiteVSRError as err:
        if not isinstance(err, RankFailed):  # that rank prints its own error
            print(f"make_shards: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if world()[0] == 0:
            print("make_shards: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    if world()[0] != 0:  # rank 0 reports
        return
    splits = manifest.get("splits") or {"": manifest}
    for m in splits.values():
        folder = os.path.join(args.out, m.get("folder", ""))
        print(f"wrote {m['clips']} clips in {m['shards']} shard(s) to {os.path.normpath(folder)} (manifest.json)")
        if not m["clips"]:
            print(f"make_shards: warning: no clips in {os.path.normpath(folder)}", file=sys.stderr)


if __name__ == "__main__":
    main()
