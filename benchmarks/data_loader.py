"""Data-loader throughput: training clips per second out of VideoShardDataModule, decoding included.

Shards are built first (make_shards' library path) from synthetic lavfi videos: 17-frame clips at 160x160,
lossless FFV1, with 2 stored LQ variants. Then, for 0 / 1 / 2 loader workers, and LQ made on the fly
(SimpleDegradation, RealWorldDegradation) or read from the shards (use_stored_lq), it times `--batches`
training batches after a warm-up that starts the workers and drains their prefetched batches.

    python benchmarks/data_loader.py [--batches 30] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import av
import numpy as np
from common import report

SOURCES = ["testsrc2", "mandelbrot", "life=mold=10:ratio=0.1", "cellauto=rule=110"]


def lavfi_video(spec: str, frames: int, size: int) -> np.ndarray:
    name, _, extra = spec.partition("=")
    with av.open(f"{name}=size={size}x{size}:rate=25" + (f":{extra}" if extra else ""), format="lavfi") as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                return np.stack(out)
    raise RuntimeError(f"lavfi {spec} gave too few frames")


def build_shards(folder: str) -> dict:
    from litevsr.data.prep import PrepOptions, prepare_shards
    from litevsr.data.video import encode_video

    videos = os.path.join(folder, "videos")
    os.makedirs(videos)
    for i, spec in enumerate(SOURCES):
        with open(os.path.join(videos, f"{i}.mkv"), "wb") as f:
            f.write(encode_video(lavfi_video(spec, 68, 160)))
    options = PrepOptions(clip_frames=17, min_motion=0, clips_per_shard=2, lq_variants=2, scale=4)
    return prepare_shards([videos], os.path.join(folder, "shards"), options, progress=False)


def throughput(shards: str, workers: int, lq: str, batches: int, batch_size: int) -> float:
    from litevsr.data.datamodule import VideoShardDataModule
    from litevsr.data.degradations import RealWorldDegradation

    degradation = RealWorldDegradation() if lq == "realworld" else None
    data = VideoShardDataModule(
        shards,
        None,
        scale=4,
        clip_frames=9,
        crop_size=64,
        batch_size=batch_size,
        num_workers=workers,
        samples_per_epoch=10**6,
        degradation=degradation,
        use_stored_lq=lq == "stored",
    )
    data.setup("fit")
    loader = iter(data.train_dataloader())
    for _ in range(2 * max(1, workers) + 1):  # warm-up: start the workers and drain what they prefetched
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    seconds = time.perf_counter() - start
    del loader
    return batches * batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    modes = ["simple", "realworld", "stored"]
    with tempfile.TemporaryDirectory() as folder:
        manifest = build_shards(folder)
        shards = os.path.join(folder, "shards")
        rows = []
        for lq in modes:
            for workers in (0, 1, 2):
                rows.append(
                    {
                        "lq": lq,
                        "workers": workers,
                        "clips_per_s": throughput(shards, workers, lq, args.batches, args.batch_size),
                    }
                )
    for row in rows:  # ratios within this run: the only comparison that survives a noisy machine
        row["vs_0_workers"] = (
            row["clips_per_s"] / next(r for r in rows if r["lq"] == row["lq"] and not r["workers"])["clips_per_s"]
        )
        row["vs_simple"] = (
            row["clips_per_s"]
            / next(r for r in rows if r["lq"] == "simple" and r["workers"] == row["workers"])["clips_per_s"]
        )
    report(
        "data_loader",
        rows,
        ["lq", "workers", "clips_per_s", "vs_0_workers", "vs_simple"],
        {
            "shards": f"{manifest['clips']} clips of 17x160x160 in {manifest['shards']} shards (FFV1, 2 LQ variants)",
            "batch": f"{args.batch_size} clips of 9x64x64 HQ, scale 4",
            "batches_timed": args.batches,
            "note": "decoding, cropping and degrading included; warm-up batches (worker start, prefetch) not timed",
        },
    )


if __name__ == "__main__":
    main()
