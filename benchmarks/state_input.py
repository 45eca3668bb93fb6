"""What should the refinement stream read: the noisy state x_sigma, or the frozen backbone's clean estimate x0_hat?

Trains the demo recipe's adapter from scratch once per choice, for the same number of steps on the same data,
then scores each on the held-out validation clips sampled with 1 and with 4 steps. Runs on one thread so that it
can sit in the background.

    python benchmarks/state_input.py [--steps 300]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

from common import ROOT, report
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def last_scalars(run: str) -> dict[str, float]:
    """The last value of every val/ scalar, and the seconds from the first to the last logged training loss."""
    events = EventAccumulator(run).Reload()
    scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"] if tag.startswith("val/")}
    if "train/loss" in events.Tags()["scalars"]:
        losses = events.Scalars("train/loss")
        scalars["train_s"] = losses[-1].wall_time - losses[0].wall_time
    return scalars


def litevsr(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "litevsr", *args], cwd=ROOT, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "state_input"))
    parser.add_argument("--reuse-fits", action="store_true", help="score the newest fits again without training")
    opts = parser.parse_args()
    out = os.path.abspath(opts.out)  # the fits run in ROOT
    rows = []
    for state in ("x_sigma", "x0_hat"):
        if not opts.reuse_fits:
            litevsr(
                "fit",
                "--config",
                "recipes/demo.yaml",
                "--model.init_adapter",
                "null",
                "--model.adapter.init_args.state_input",
                state,
                "--trainer.max_steps",
                str(opts.steps),
                "--trainer.val_check_interval",
                str(opts.steps),
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.logger.init_args.save_dir",
                out,
                "--trainer.logger.init_args.name",
                state,
            )
        runs = glob.glob(os.path.join(out, state, "version_*", "checkpoints", "last.ckpt"))
        run = os.path.dirname(os.path.dirname(max(runs, key=os.path.getmtime)))
        one = last_scalars(run)
        litevsr(
            "validate",
            "--config",
            os.path.join(run, "config.yaml"),
            "--ckpt_path",
            os.path.join(run, "checkpoints", "last.ckpt"),
            "--model.sampling.steps",
            "4",
            "--model.val_references",
            "false",
            "--trainer.enable_progress_bar",
            "false",
        )
        four = last_scalars(sorted(glob.glob(os.path.join(out, state, "version_*")), key=os.path.getmtime)[-1])
        rows.append(
            {
                "state_input": state,
                "train steps": opts.steps,
                "training s (1 thread)": round(one["train_s"]),
                "PSNR-Y 1 step": one["val/psnr_y"],
                "SSIM-Y 1 step": one["val/ssim_y"],
                "PSNR-Y 4 steps": four["val/psnr_y"],
                "SSIM-Y 4 steps": four["val/ssim_y"],
                "PSNR-Y bicubic": one["val/psnr_y_bicubic"],
                "PSNR-Y no adapter": one["val/psnr_y_no_adapter"],
            }
        )
    report(
        "state_input",
        rows,
        list(rows[0]),
        {
            "recipe": "recipes/demo.yaml from scratch (no init_adapter)",
            "validation": "centre crops of carphone_pristine.mp4 (held out)",
        },
    )


if __name__ == "__main__":
    main()
