"""Inference on the shipped tiny generator + demo adapter: speed per step count, memory against video length,
and the cost of spatial tiling. Each memory point runs in its own process (peak RSS belongs to it alone).
`--large` instead times default options (automatic tiles) on 17-frame clips at 1280x960 output and one larger.

    python benchmarks/inference.py [--size 44x36] [--large]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from common import report


def _pipeline():
    from litevsr.pipeline import LiteVSRPipeline

    return LiteVSRPipeline.from_pretrained("general")


def _frames(count: int, width: int, height: int):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for i in range(count):  # a slowly panning texture, generated on the fly (nothing held in memory)
        yield np.roll(base, i, axis=1)


def speed(pipe, steps: int, width: int, height: int, frames: int = 17, tile: int | None = None) -> float:
    from litevsr.frames import stream_frames

    sampling = pipe.sampling(steps=steps, tile=tile, tile_overlap=32 if tile else None)
    if steps > 1:
        sampling.sigma_start = max(sampling.sigma_start, 0.5)  # several steps start from a noisier state
    start = time.perf_counter()
    count = sum(1 for _ in stream_frames(pipe.stream(_frames(frames, width, height), 4, sampling)))
    return count / (time.perf_counter() - start)


def peak_rss_mib(frames: int, width: int, height: int) -> float:
    """Upscale `frames` frames in a fresh process and return its peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss", str(frames), "--size", f"{width}x{height}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_MiB"]


def large(pipe, frames: int = 17) -> None:
    """Default options (automatic tiles and windows) on `frames`-frame clips: frames/s and s per output megapixel."""
    from litevsr.pipeline import temporal_windows

    rows = []
    for width, height in ((320, 240), (480, 360)):
        sampling = pipe.resolve_tiles(pipe.sampling(), (height * 4, width * 4), temporal_windows(pipe.backbone)[0])
        fps = speed(pipe, 1, width, height, frames=frames)
        rows.append(
            {
                "output": f"{width * 4}x{height * 4}",
                "frames": frames,
                "tile": sampling.tile,
                "tile_overlap": sampling.tile_overlap,
                "frames_per_s": fps,
                "s_per_output_megapixel": 1 / (fps * width * height * 16 / 1e6),
            }
        )
        print(rows[-1], flush=True)
    report(
        "inference_large",
        rows,
        list(rows[0]),
        {
            "scale": 4,
            "steps": 1,
            "threads": torch.get_num_threads(),
            "options": "defaults (automatic tiles, window 17, overlap 4)",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="44x36", help="LQ width x height (default: carphone / 4)")
    parser.add_argument("--rss", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--large", action="store_true", help="default options at 1280x960 output and larger")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    pipe = _pipeline()
    if args.large:
        return large(pipe)
    if args.rss:
        from litevsr.frames import stream_frames

        for _ in stream_frames(pipe.stream(_frames(args.rss, width, height), 4)):
            pass
        print(json.dumps({"peak_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    rows = []
    speed(pipe, 1, width, height, frames=5)  # warm-up
    for steps in (1, 2, 4, 8, 25, 50):
        rows.append({"measure": f"{steps} step(s)", "value": speed(pipe, steps, width, height), "unit": "frames/s"})
        print(rows[-1], flush=True)
    rss = {n: peak_rss_mib(n, width, height) for n in (32, 128, 256)}
    rows += [{"measure": f"peak RSS, {n} frames", "value": v, "unit": "MiB"} for n, v in rss.items()]
    rows.append({"measure": "peak RSS ratio 256 / 32 frames", "value": rss[256] / rss[32], "unit": "x (target <= 1.2)"})
    big = (width * 2, height * 2)  # a frame large enough to need several tiles of 128 output pixels
    untiled, tiled = speed(pipe, 1, *big, tile=0), speed(pipe, 1, *big, tile=128)
    rows += [
        {"measure": f"untiled {big[0] * 4}x{big[1] * 4} output", "value": untiled, "unit": "frames/s"},
        {"measure": "tiled (128 px tiles, 32 px overlap)", "value": tiled, "unit": "frames/s"},
        {"measure": "tiling overhead (tiled time / untiled time)", "value": untiled / tiled, "unit": "x"},
    ]
    report(
        "inference",
        rows,
        ["measure", "value", "unit"],
        {"lq_size": [width, height], "scale": 4, "window": 17, "overlap": 4, "threads": torch.get_num_threads()},
    )


if __name__ == "__main__":
    main()
