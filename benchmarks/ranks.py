"""Every stage split over processes, on this CPU: shard preparation with latents, validation and batch upscaling.

Each stage runs as the user runs it, a fresh command timed from start to exit (start-up and model loading count):
- 1 process x 1 thread (OMP_NUM_THREADS=1), the baseline;
- 1 process x 2 threads;
- 2 processes x 1 thread, started together by `torchrun --nproc_per_node 2` (for `litevsr validate` with
  `--trainer.devices 2 --trainer.strategy ddp`, which Lightning takes from torchrun's environment).
A figure is the median of --runs runs; the speed-ups are ratios of medians within this run.

The work, made here from PyAV's synthetic sources (testsrc2, mandelbrot, life, cellauto), so that nothing is read;
each stage gets a job worth splitting (its 1-thread run is mostly work, not start-up), times --work:
- prep: 36 videos of 81 frames at 320x256 into 9-frame clips with one real-world LQ variant and the embedded
  generator's latents;
- validate: the shipped default adapter on the 38 clips that one process prepares from 18 videos of 27 frames at
  160x128, batches of 1;
- upscale: 32 videos of 9 frames at 64x48, x4 with default options.
Every command pays its start-up (imports, model loading; for 2 processes also torchrun's launcher and rendezvous)
once, so the speed-ups grow with the job: --work 0.1 shows a small job's. Consecutive videos come in pairs of one
source, so that the 2 ranks' shares (every other video) hold the same mix: cycling the sources one by one gave
rank 1 both of the sources that are costly to decode and encode (mandelbrot and cellauto, 5-8x testsrc2's bytes).

The stage `ceiling` is what this machine allows at all: the default pipeline on a fixed 9x64x48 clip, 2R calls in
one process against R calls in each of 2 processes at once (and 2R calls on 2 threads), timed from the first call
to the last, so no start-up counts: what the cores give when nothing else is paid.

    python benchmarks/ranks.py [--runs 3] [--stages prep,validate,upscale,ceiling] [--work 1]

writes benchmarks/results/ranks.json (ranks_work<N>.json, or --name) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import av
import numpy as np
import yaml
from common import ROOT, report

from litevsr.data.video import encode_video

SOURCES = ("testsrc2", "mandelbrot", "life", "cellauto")
#: (videos, frames, width, height) of each stage's input at --work 1
VIDEOS = {"prep": (36, 81, 320, 256), "validate": (18, 27, 160, 128), "upscale": (32, 9, 64, 48)}
MODES = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def synthetic_video(source: str, frames: int, width: int, height: int) -> bytes:
    with av.open(f"{source}=size={width}x{height}:rate=25", format="lavfi") as container:
        decoded = container.decode(video=0)
        video = np.stack([next(decoded).to_ndarray(format="rgb24") for _ in range(frames)])
    return encode_video(video)


def write_videos(folder: str, count: int, frames: int, width: int, height: int) -> None:
    os.makedirs(folder)
    for i in range(count):
        video = synthetic_video(SOURCES[i // 2 % len(SOURCES)], frames, width, height)
        with open(os.path.join(folder, f"v{i:03d}.mkv"), "wb") as f:
            f.write(video)


def torchrun(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]


def prep_command(processes: int, videos: str, out: str) -> list[str]:
    script = str(ROOT / "data_prep" / "make_shards.py")
    options = ["--clip-frames", "9", "--lq-variants", "1", "--degradation-preset", "realesrgan", "--latents", "tiny"]
    return [*torchrun(processes), script, videos, out, *options, "--min-motion", "0", "--license", "CC0"]


def upscale_command(processes: int, videos: str, out: str) -> list[str]:
    return [*torchrun(processes), "-m", "litevsr", "upscale", videos, out]


def validation_recipe(work: str, shards: str) -> str:
    """The demo recipe's model (the shipped adapter) validating every clip of `shards`, without a logger."""
    with open(ROOT / "recipes" / "demo.yaml") as f:
        recipe = yaml.safe_load(f)
    recipe["trainer"].update(logger=False, enable_progress_bar=False, limit_val_batches=1.0)
    recipe["trainer"]["default_root_dir"] = os.path.join(work, "runs")
    recipe["data"]["init_args"].update(
        train_shards=shards,
        val_shards=shards,
        build_demo_if_missing=False,
        val_batch_size=1,
        val_crop_size=128,
        num_workers=0,
    )
    path = os.path.join(work, "validate.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(recipe, f)
    return path


def validate_command(processes: int, recipe: str) -> list[str]:
    devices = ["--trainer.devices", str(processes)] + (["--trainer.strategy", "ddp"] if processes > 1 else [])
    return [*torchrun(processes), "-m", "litevsr", "validate", "--config", recipe, *devices]


CEILING = """
import sys, time, torch
from litevsr import LiteVSRPipeline
pipe = LiteVSRPipeline.from_pretrained("general")
pipe.set_progress_bar_config(disable=True)
clip = torch.rand(9, 48, 64, 3, generator=torch.Generator().manual_seed(0))
pipe(clip)  # warm-up
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    pipe(clip)
print(time.perf_counter() - start)
"""


def ceiling(processes: int, threads: int, calls: int) -> float:
    """Seconds for `calls` pipeline calls shared by `processes` processes running at once (the slowest one's)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    share = str(calls // processes)
    runs = [
        subprocess.Popen([sys.executable, "-c", CEILING, share], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outputs = [run.communicate()[0] for run in runs]
    if any(run.returncode for run in runs):
        raise SystemExit("the ceiling's pipeline calls failed")
    return max(float(out.split()[-1]) for out in outputs)


def timed(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", default="prep,validate,upscale")
    parser.add_argument("--work", type=float, default=1, help="multiplies the number of videos")
    parser.add_argument("--name", help="the results file's name (default: ranks, or ranks_work<N>)")
    opts = parser.parse_args()
    stages = opts.stages.split(",")
    work = tempfile.mkdtemp(prefix="litevsr-ranks-")
    meta = {"command": " ".join(sys.argv), "work": opts.work}
    try:
        for stage in set(stages) & set(VIDEOS):
            count, *shape = VIDEOS[stage]
            write_videos(os.path.join(work, f"{stage}_in"), max(1, round(count * opts.work)), *shape)
        if "validate" in stages:
            shards = os.path.join(work, "shards")  # what validation reads: one process's shards
            timed(prep_command(1, os.path.join(work, "validate_in"), shards), 2)
            recipe = validation_recipe(work, shards)
            with open(os.path.join(shards, "manifest.json")) as f:
                meta["validation clips"] = json.load(f)["clips"]

        def command(stage: str, processes: int, run: str) -> list[str]:
            out = os.path.join(work, f"{stage}_{run}")  # a fresh output: a rerun would skip finished work
            if stage == "prep":
                return prep_command(processes, os.path.join(work, "prep_in"), out)
            if stage == "upscale":
                return upscale_command(processes, os.path.join(work, "upscale_in"), out)
            return validate_command(processes, recipe)

        rows = []
        for stage in stages:
            seconds = {mode: [] for mode in MODES}
            for run in range(opts.runs):  # modes interleaved, so a slow spell of the machine hits them alike
                for mode, (processes, threads) in MODES.items():
                    if stage == "ceiling":
                        seconds[mode].append(ceiling(processes, threads, max(2, round(8 * opts.work))))
                    else:
                        line = command(stage, processes, f"{run}_{processes}x{threads}")
                        seconds[mode].append(timed(line, threads))
            median = {mode: statistics.median(s) for mode, s in seconds.items()}
            base = median["1 process x 1 thread"]
            for mode in MODES:
                rows.append(
                    {
                        "stage": stage,
                        "mode": mode,
                        "seconds": median[mode],
                        "speed_up": base / median[mode],
                        "seconds_runs": seconds[mode],
                    }
                )
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    name = opts.name or ("ranks" if opts.work == 1 else f"ranks_work{opts.work:g}")
    report(name, rows, ["stage", "mode", "seconds", "speed_up"], meta)


if __name__ == "__main__":
    main()
