"""What automatic tiles cost and lose: the quality-speed frontier of the default path's spatial tiles and levers.

For each configuration (tile and overlap in output pixels, transformer dtype, torch.compile of the blocks, frames
per temporal window), with the default shipped adapter and its sampler:
- dB lost: mean PSNR-Y against whole-frame sampling (`--sampling.tile 0`) over the held-out clips with fine
  texture (fur, feathers, foliage) at both LQ kinds, x4;
- speed: frames/s upscaling 17 frames of 160x120 to 640x480 (benchmarks/peers.py's speed clip, shrunk), the
  median of --runs runs in one process after a warm-up window, so torch.compile's first call is left out. Tiles
  make time linear in area: 1280x960 takes four times as long.
On the 256 px clips the last tile of a row is pinned to the frame's edge, so 192 px tiles overlap by 128 px whatever
the overlap asked: there the overlap changes only the speed.

    python benchmarks/tiles.py [--runs 3] [--clips natural_fox_fur,natural_feathers_forest] [--only A,B] [--name N]

writes benchmarks/results/<N>.json (default tiles.json) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from common import ROOT, report
from heldout import LQ_KINDS
from peers import speed_frames

from litevsr.evaluate import ClipScores
from litevsr.frames import shrink_frames, stream_frames
from litevsr.inference import open_source
from litevsr.pipeline import LiteVSRPipeline, Sampling

# name: what differs from the default path (tile and overlap in output pixels, the transformer's dtype, torch.compile
# of its blocks, frames per temporal window); what a configuration leaves out is the default
CONFIGS = {
    "default (automatic)": {},
    "56/16 px (before)": {"tile": 56, "overlap": 16},
    "96/16 px": {"tile": 96, "overlap": 16},
    "128/24 px": {"tile": 128, "overlap": 24},
    "160/24 px": {"tile": 160, "overlap": 24},
    "192/16 px": {"tile": 192, "overlap": 16},
    "default + bf16 transformer": {"dtype": "bfloat16"},
    "default + torch.compile": {"compile": True},
    "default + 9-frame windows": {"window": 9},
    "default + 5-frame windows": {"window": 5},
}


def psnr_y(pipe, sampling: Sampling, lq: str, gt: str, window: int | None = None) -> float:
    scores = ClipScores(4, {})
    sr = stream_frames(pipe.stream(open_source(lq)[1], 4, sampling, window=window))
    for frame, ref in zip(sr, open_source(gt)[1], strict=True):
        scores.add(frame, ref)
    return scores.means()["psnr_y"]


def upscaled_frames(pipe, sampling: Sampling, frames: np.ndarray, window: int | None = None) -> int:
    return sum(1 for _ in stream_frames(pipe.stream(iter(frames), 4, sampling, window=window)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(ROOT, "data", "heldout"))
    parser.add_argument("--clips", default="natural_fox_fur,natural_feathers_forest")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--name", default="tiles", help="results file name (benchmarks/results/NAME.json)")
    opts = parser.parse_args()
    pairs = [
        (os.path.join(opts.root, folder, f"{clip}.mkv"), os.path.join(opts.root, "gt", f"{clip}.mkv"))
        for clip in opts.clips.split(",")
        for folder in LQ_KINDS.values()
    ]
    frames = speed_frames(opts.root, 17)
    small = shrink_frames(frames, max_side=160)  # 160x120 in, 640x480 out
    reference = LiteVSRPipeline.from_pretrained("general")  # whole frames, float32, uncompiled
    whole = {p: psnr_y(reference, reference.sampling(tile=0), *p) for p in pairs}
    del reference
    rows = []
    for name, config in CONFIGS.items():
        if opts.only and name not in opts.only.split(","):
            continue
        pipe = LiteVSRPipeline.from_pretrained("general", torch_dtype=config.get("dtype", "float32"))
        if config.get("compile"):
            pipe.backbone.transformer.compile_repeated_blocks()
        tile, overlap, window = config.get("tile"), config.get("overlap"), config.get("window")
        sampling = pipe.sampling(tile=tile, tile_overlap=overlap)
        lost = [whole[p] - psnr_y(pipe, sampling, *p, window=window) for p in pairs]
        upscaled_frames(pipe, sampling, small, window)  # warm-up: compilation, allocator
        seconds = []
        for _ in range(opts.runs):
            start = time.perf_counter()
            count = upscaled_frames(pipe, sampling, small, window)
            seconds.append(time.perf_counter() - start)
        rows.append(
            {
                "config": name,
                "tile": tile or "auto",
                "overlap": overlap or "auto",
                "window": window or "auto",
                "dB_lost_mean": float(np.mean(lost)),
                "dB_lost_worst": float(np.max(lost)),
                "frames_per_s_640x480": count / statistics.median(seconds),
                "seconds_runs": seconds,
            }
        )
        print(rows[-1], flush=True)
    columns = ["config", "tile", "overlap", "window", "dB_lost_mean", "dB_lost_worst", "frames_per_s_640x480"]
    notes = {"pairs": pairs, "whole_frame_psnr_y": {f"{lq} | {gt}": v for (lq, gt), v in whole.items()}}
    report(opts.name, rows, columns, {**notes, "threads": torch.get_num_threads(), "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
