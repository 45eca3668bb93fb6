"""`litevsr` / `python -m litevsr`: LightningCLI with litevsr's defaults, and one-line errors."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import pickle
import re
import sys

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from litevsr import LiteVSRError
from litevsr.callbacks import AdapterExport, ResumableCheckpoint, ValidationSummary
import lightning as L
from litevsr.module import LiteVSRModule


def _config_error(message: str) -> str:
    """jsonargparse's nested union errors run to dozens of lines; keep the line that names the problem."""
    for pattern in (r"Option '[^']+' is not accepted", r"does not accept option '[^']+'",
                    r"Key '[^']+' .*", r"Expected .*"):
        found = re.search(pattern, message)
        if found:
            option = re.search(r"'([^']+)'", found.group(0))
            return f"unknown option {option.group(0)}" if "accept" in found.group(0) and option else found.group(0)
    return message.strip().splitlines()[0]


class LiteVSRCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # Parse with stderr captured so that a config error becomes one line instead of a usage dump.
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                super().parse_arguments(parser, args)
        except SystemExit as exit_:
            if not exit_.code:
                raise
            message = captured.getvalue().rpartition("error: ")[2] or captured.getvalue()
            print(f"litevsr: error: {_config_error(message)} (see --help or --print_config)", file=sys.stderr)
            sys.exit(2)
        sys.stderr.write(captured.getvalue())

    def _parse_ckpt_path(self) -> None:
        """Lightning would overwrite the model options given in the recipe and on the command line with the
        hyperparameters saved in the checkpoint (`validate --ckpt_path X --model.val_steps 4` would validate with
        the old val_steps). Here the recipe and the command line define the model; a checkpoint holds its weights."""

    def before_instantiate_classes(self) -> None:
        """Checkpoints load as weights only; `fit --ckpt_path last` resumes the newest run of this recipe, logging
        into the same folder."""
        options = self.config.get(self.subcommand) if self.subcommand else None
        if options is not None and options.get("weights_only") is None:
            options.weights_only = True  # a .ckpt is data: never unpickle objects from it
        if self.subcommand != "fit" or self.config.fit.get("ckpt_path") != "last":
            return
        logger = self.config.fit.trainer.logger
        init = getattr(logger, "init_args", None)
        if init is None or not hasattr(init, "save_dir"):
            return  # not a TensorBoardLogger-like folder layout: leave "last" to Lightning
        pattern = os.path.join(init.save_dir, init.name or "", "version_*", "checkpoints", "last.ckpt")
        found = sorted(glob.glob(pattern), key=os.path.getmtime)
        if not found:
            raise LiteVSRError(f"--ckpt_path last: no checkpoint matches {pattern}")
        self.config.fit.ckpt_path = found[-1]
        init.version = os.path.basename(os.path.dirname(os.path.dirname(found[-1])))

    def add_arguments_to_parser(self, parser):
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        # Lightning writes last.ckpt only next to a top-k save: keeping the latest one (top 1, no metric) makes
        # every validation leave a resumable last.ckpt, not only the end of training.
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 1})
        parser.add_lightning_class_args(AdapterExport, "export")
        parser.add_lightning_class_args(ValidationSummary, "summary")


TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "litevsr"}},
    "plugins": [{"class_path": "litevsr.callbacks.AtomicCheckpointIO"}],
}


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    # DataLoader workers re-raise as "Caught X in DataLoader worker process N. Original Traceback ...".
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def _sampling_arguments(parser) -> None:
    parser.add_argument("--adapter", default=None,
                        help="an exported adapter folder, or several separated by commas (default: the shipped 'general' adapter)")
    parser.add_argument("--backbone", default=None, help="backbone folder or hub id (default: the adapters' own)")
    parser.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the adapter's)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the adapter's, usually 1)")
    parser.add_argument("--window", type=int, default=None,
                        help="frames per temporal window (default: from the backbone's frame rule, 17 for Wan)")
    parser.add_argument("--overlap", type=int, default=None,
                        help="frames neighbouring windows share and blend (default: the frame rule's step, 4 for Wan)")
    parser.add_argument("--tile", type=int, default=None, help="spatial tile in output pixels (default: chosen from "
                        "the frame size, the backbone and the device, so time grows linearly with area; 0: whole frames)")
    parser.add_argument("--tile-overlap", type=int, default=None,
                        help="overlap of spatial tiles in output pixels (default: an eighth of the tile)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--color-fix", default=None, choices=["none", "wavelet", "adain", "lab"],
                        help="correct the output's colour towards the bicubic upsampling of the input (default: none)")
    parser.add_argument("--device", default="auto", help="auto (a visible GPU, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", help="transformer precision: auto (bfloat16 on a GPU, float32 on "
                        "the CPU), float32, bfloat16 or float16; Wan's VAE always runs in float32")


def load_models(adapter_arg: str | None, backbone_arg: str | None, device: str = "auto", dtype: str = "auto"):
    """One backbone, several adapters on it: [(name, LiteVSR, adapter config)]. The backbone loads once, with its
    transformer in `dtype`, and everything moves to `device` (see `resolve_device`)."""
    from litevsr.adapters.base import adapter_class, load_adapter, read_adapter_config
    from litevsr.backbones import backbone_class
    from litevsr.backbones.wan import DEFAULT_ADAPTER, SHIPPED_ADAPTERS
    from litevsr.inference import resolve_device
    from litevsr.model import LiteVSR

    device, dtype = resolve_device(device, dtype)
    paths = [str(SHIPPED_ADAPTERS.get(p, p)) for p in (adapter_arg or DEFAULT_ADAPTER).split(",") if p]
    configs = [read_adapter_config(p) for p in paths]
    backbones = {c["backbone"] for c in configs}
    if backbone_arg is None and len(backbones) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbones {sorted(backbones)}; pass --backbone")
    families = {c["family"] for c in configs}
    if len(families) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbone families {sorted(families)}")
    cls = backbone_class(families.pop())
    names = [os.path.basename(os.path.normpath(p)) for p in paths]  # they name the outputs: out.<name>.mp4
    if len(set(names)) < len(names):
        raise LiteVSRError(f"the adapter folders {paths} share names; give each a distinct folder name")
    def build():
        return cls(backbone_arg or configs[0]["backbone"], dtype=dtype).to(device)

    shared = build()  # methods that edit their backbone (LoRA, full fine-tuning) get one of their own
    backbones = [build() if adapter_class(c["class_name"]).edits_backbone else shared for c in configs]
    return [(name, LiteVSR(backbone, load_adapter(p, backbone).to(device)), c)
            for name, p, c, backbone in zip(names, paths, configs, backbones)]


def _sampling(opts, config: dict):
    from litevsr.inference import Sampling

    return Sampling.of_adapter(config, steps=opts.steps, seed=opts.seed, tile=opts.tile, tile_overlap=opts.tile_overlap,
                               color_fix=opts.color_fix)


def upscale_command(args: list[str]) -> None:
    """litevsr upscale INPUT OUTPUT [--adapter a.safetensors[,b.safetensors]] [--steps N] [--max-frames N] ..."""
    import argparse

    from tqdm import tqdm

    from litevsr.data.video import is_video_file
    from litevsr.inference import upscale_file

    parser = argparse.ArgumentParser(prog="litevsr upscale", description="Upscale a video file, a folder of frames, "
                                     "or every video in a folder.")
    parser.add_argument("input", help="any video FFmpeg decodes; a folder holding video files (told apart by their "
                        "extensions: .mp4, .mkv, .mov, .avi, .webm, ...), each upscaled on its own; or a folder of "
                        "image frames only, upscaled as one video")
    parser.add_argument("output", help="an .mp4 file (H.264, audio copied) or a folder for PNG frames; for a folder "
                        "of videos, the folder that receives OUTPUT/<name>.mp4 (finished ones are skipped on a rerun)")
    _sampling_arguments(parser)
    parser.add_argument("--max-frames", type=int, default=None, help="upscale only the first N frames")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the input's; 25 for folders)")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality: lower is better (default 18)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    opts = parser.parse_args(args)
    models = load_models(opts.adapter, opts.backbone, opts.device, opts.dtype)
    videos = sorted(os.path.join(opts.input, f) for f in os.listdir(opts.input)
                    if is_video_file(os.path.join(opts.input, f))) if os.path.isdir(opts.input) else []
    if not videos:
        for output, (model, config) in _outputs(opts.output, models):
            result = upscale_file(model, opts.input, output, **_upscale_options(opts, config))
            print(f"wrote {result['output']}: {result['frames']} frames at {result['width']}x{result['height']}, "
                  f"{result['fps']:g} fps")
        return
    if os.path.isfile(opts.output):
        raise LiteVSRError(f"{opts.input} holds videos, so the output must be a folder, but {opts.output} is a file")
    done, skipped, failed = 0, 0, []
    for video in tqdm(videos, unit="video", desc="videos"):
        stem = os.path.splitext(os.path.basename(video))[0]
        for output, (model, config) in _outputs(os.path.join(opts.output, stem + ".mp4"), models):
            if os.path.exists(output) and not opts.overwrite:  # outputs appear only when complete
                skipped += 1
                continue
            os.makedirs(opts.output, exist_ok=True)
            try:
                upscale_file(model, video, output, **_upscale_options(opts, config))
                done += 1
            except LiteVSRError as err:
                failed.append(f"{os.path.basename(video)} ({_one_line(err)})")
    print(f"litevsr upscale: {done} done, {skipped} skipped (already there), {len(failed)} failed"
          + (": " + "; ".join(failed) if failed else ""))
    if failed:
        sys.exit(1)


def _outputs(output: str, models: list) -> list[tuple[str, tuple]]:
    """(output path, (model, config)) per adapter: out.mp4, or out.<adapter>.mp4 for several adapters."""
    if len(models) == 1:
        return [(output, models[0][1:])]
    stem, ext = os.path.splitext(output)
    return [(f"{stem}.{name}{ext}", (model, config)) for name, model, config in models]


def _upscale_options(opts, config: dict) -> dict:
    return dict(scale=opts.scale or config.get("scale") or 4, sampling=_sampling(opts, config), window=opts.window,
                overlap=opts.overlap, crf=opts.crf, fps=opts.fps, max_frames=opts.max_frames, overwrite=opts.overwrite)


def test_command(args: list[str]) -> None:
    """litevsr test --gt GT --lq LQ [--adapter a.safetensors[,b...]] [--lpips] [--dists] [--out DIR]"""
    import argparse

    from litevsr.evaluate import evaluate, summary_table

    parser = argparse.ArgumentParser(prog="litevsr test", description="Evaluate adapters and bicubic on paired clips "
                                     "(GT/<clip>/<frame>.png + LQ/<clip>/<frame>.png, or video files paired by name).")
    parser.add_argument("--gt", required=True, help="GT folder (or one GT video)")
    parser.add_argument("--lq", required=True, help="LQ folder (or one LQ video)")
    _sampling_arguments(parser)
    parser.add_argument("--out", default="results/eval", help="where per_clip.csv and summary.md go")
    parser.add_argument("--lpips", action="store_true", help="also LPIPS (needs AlexNet weights in the torch hub cache)")
    parser.add_argument("--dists", action="store_true", help="also DISTS (needs VGG16 weights in the torch hub cache)")
    parser.add_argument("--max-frames", type=int, default=None, help="score only the first N frames of each clip")
    opts = parser.parse_args(args)
    models = load_models(opts.adapter, opts.backbone, opts.device, opts.dtype)
    scale = opts.scale or models[0][2].get("scale") or 4
    perceptual = tuple(name for name in ("lpips", "dists") if getattr(opts, name))
    rows = evaluate([(name, model, _sampling(opts, config)) for name, model, config in models], opts.gt, opts.lq,
                    scale, opts.out, perceptual, opts.max_frames, opts.window, opts.overlap)
    print(summary_table(rows))
    print(f"\nper-clip results: {os.path.join(opts.out, 'per_clip.csv')}; table: {os.path.join(opts.out, 'summary.md')}")


def convert_adapter_command(args: list[str]) -> None:
    """litevsr convert-adapter OLD.safetensors NEW_FOLDER [--backbone B]"""
    import argparse

    from litevsr.adapters.base import convert_old_adapter, read_old_adapter_metadata
    from litevsr.backbones.wan import WanBackbone

    parser = argparse.ArgumentParser(prog="litevsr convert-adapter", description="Convert an adapter file in "
                                     "litevsr's old single-file format into an adapter folder (config.json + "
                                     "safetensors). Only adapter classes litevsr knows are accepted.")
    parser.add_argument("old", help="the old .safetensors adapter file")
    parser.add_argument("output", help="the new adapter folder")
    parser.add_argument("--backbone", default=None, help="backbone folder or hub id (default: the one it records)")
    opts = parser.parse_args(args)
    if os.path.exists(opts.output):
        raise LiteVSRError(f"{opts.output} already exists; give the converted adapter a new folder")
    old = read_old_adapter_metadata(opts.old)
    convert_old_adapter(opts.old, opts.output, WanBackbone(opts.backbone or old["backbone"]))
    print(f"wrote {opts.output}")


def twin_command(args: list[str]) -> None:
    """litevsr twin NAME OUT: a tiny random-weight backbone with NAME's structure, and an active adapter for it."""
    import argparse

    from litevsr.backbones import KNOWN_BACKBONES
    from litevsr.backbones.twins import write_twin

    parser = argparse.ArgumentParser(prog="litevsr twin", description="Write a tiny random-weight twin of a known "
                                     "backbone (same VAE compression, latent channels, patch, blocks and repository "
                                     "layout) and a random adapter for it: smoke-test recipes and upscaling on a CPU.")
    parser.add_argument("name", help=f"one of: {', '.join(sorted(KNOWN_BACKBONES))}")
    parser.add_argument("output", help="a new (or empty) folder")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(args)
    paths = write_twin(opts.name, opts.output, seed=opts.seed)
    print(f"wrote the twin of {opts.name} to {paths['backbone']} and its adapter to {paths['adapter']}")


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    try:
        if args[:1] == ["twin"]:
            return twin_command(args[1:])
        if args[:1] == ["convert-adapter"]:
            return convert_adapter_command(args[1:])
        if args[:1] == ["upscale"]:
            return upscale_command(args[1:])
        if args[:1] == ["test"]:  # evaluation on paired folders replaces LightningCLI's test
            return test_command(args[1:])
        LiteVSRCLI(
            LiteVSRModule,
            L.LightningDataModule,  # any datamodule by class_path: shards for fit, VideoFiles for predict
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met an object in a checkpoint
        print(f"litevsr: error: refused to load a checkpoint that holds Python objects, not just tensors: "
              f"{_one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:  # LiteVSRError, or jsonargparse wrapping one raised while building a class
        cause = err
        while cause is not None and not isinstance(cause, LiteVSRError):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"litevsr: error: {_one_line(cause)}", file=sys.stderr)
        sys.exit(2)
