"""Evaluate on paired benchmark folders, computed as the literature computes it.

Layouts: GT/<clip>/<frame>.png with LQ/<clip>/<frame>.png (REDS4, Vid4, UDM10, SPMCS), or folders of video files
paired by name, or one GT video with one LQ video. Per clip and method (each adapter, and bicubic):
PSNR/SSIM on Y (BT.601) with crop border = scale, RGB PSNR, the temporal warping error (flow estimated on GT),
and LPIPS/DISTS when their backbone weights are available locally.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from litevsr.data.video import is_video_file
from litevsr.errors import LiteVSRError
from litevsr.frames import frames_to_video, resize_video, stream_frames, video_to_frames
from litevsr.inference import FRAME_EXTENSIONS, open_source
from litevsr.metrics import frame_metrics, perceptual_metric, warping_error
from litevsr.pipeline import LiteVSRPipeline, Sampling


def find_pairs(gt: str, lq: str) -> list[tuple[str, str, str]]:
    """[(clip name, GT source, LQ source)] for the supported layouts; a missing LQ partner is an error."""
    if os.path.isfile(gt) and os.path.isfile(lq):
        return [(os.path.splitext(os.path.basename(gt))[0], gt, lq)]
    for path in (gt, lq):
        if not os.path.isdir(path):
            raise LiteVSRError(f"not a folder or video file: {path}")
    pairs = []
    for entry in sorted(os.listdir(gt)):
        gt_path = os.path.join(gt, entry)
        if os.path.isdir(gt_path):
            lq_path = os.path.join(lq, entry)
        elif is_video_file(gt_path):
            stem = os.path.splitext(entry)[0]
            partners = [f for f in os.listdir(lq) if os.path.splitext(f)[0] == stem]
            lq_path = os.path.join(lq, partners[0]) if partners else os.path.join(lq, entry)
        else:
            continue
        if not os.path.exists(lq_path):
            raise LiteVSRError(f"clip {entry!r} is in {gt} but has no partner in {lq}")
        pairs.append((os.path.splitext(entry)[0] if os.path.isfile(gt_path) else entry, gt_path, lq_path))
    if not pairs:
        raise LiteVSRError(f"no clips in {gt}: expected GT/<clip>/<frame>{FRAME_EXTENSIONS[0]} folders or video files")
    return pairs


def bicubic_frames(frames: Iterator[np.ndarray], scale: int) -> Iterator[np.ndarray]:
    """The bicubic baseline every benchmark compares against: each uint8 frame upscaled by `resize_video`."""
    for frame in frames:
        lq = frames_to_video(frame[None])[None]
        yield video_to_frames(resize_video(lq, (lq.shape[-2] * scale, lq.shape[-1] * scale)).clamp(-1, 1)[0])[0]


class ClipScores:
    """Streams (SR, GT) frame pairs into per-clip means: memory holds one previous frame pair."""

    def __init__(self, scale: int, perceptual: dict):
        self.scale, self.perceptual = scale, perceptual
        self.sums: dict[str, float] = {}
        self.frames, self.pairs, self.previous = 0, 0, None

    def add(self, sr: np.ndarray, gt: np.ndarray) -> None:
        if sr.shape != gt.shape:
            raise LiteVSRError(
                f"SR frame is {sr.shape[1]}x{sr.shape[0]} but GT is {gt.shape[1]}x{gt.shape[0]}: is the scale right?"
            )
        sr_v, gt_v = frames_to_video(sr[None])[None], frames_to_video(gt[None])[None]
        values = {k: float(v[0]) for k, v in frame_metrics(sr_v, gt_v, crop_border=self.scale).items()}
        for name, metric in self.perceptual.items():
            values[name] = float(metric(sr_v, gt_v))
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.frames += 1
        if self.previous is not None:
            self.sums["warp_error"] = self.sums.get("warp_error", 0.0) + warping_error(*self.previous, sr, gt)
            self.pairs += 1
        self.previous = (sr, gt)

    def means(self) -> dict[str, float]:
        out = {k: v / self.frames for k, v in self.sums.items() if k != "warp_error"}
        return {
            "frames": self.frames,
            **out,
            "warp_error": self.sums["warp_error"] / self.pairs if self.pairs else float("nan"),
        }


def evaluate(
    models: list[tuple[str, LiteVSRPipeline, Sampling]],
    gt: str,
    lq: str,
    scale: int,
    out_dir: str,
    perceptual: tuple[str, ...] = (),
    max_frames: int | None = None,
    window: int | None = None,
    overlap: int | None = None,
) -> list[dict]:
    """Score every method on every clip; write per_clip.csv and summary.md to `out_dir`; return the rows."""
    pairs = find_pairs(gt, lq)
    metrics = {name: perceptual_metric(name) for name in perceptual}
    rows = []

    def upscaler(pipe, sampling):
        return lambda frames: stream_frames(pipe.stream(frames, scale, sampling, window, overlap))

    for clip, gt_src, lq_src in tqdm(pairs, unit="clip", desc="evaluating"):
        methods = [("bicubic", lambda frames: bicubic_frames(frames, scale))]
        methods += [(name, upscaler(pipe, sampling)) for name, pipe, sampling in models]
        for method, run in methods:
            scores = ClipScores(scale, metrics)
            _, lq_frames = open_source(lq_src, max_frames=max_frames)
            _, gt_frames = open_source(gt_src, max_frames=max_frames)
            for sr, ref in zip(run(lq_frames), gt_frames, strict=True):
                scores.add(sr, ref)
            rows.append({"clip": clip, "method": method, **scores.means()})
    write_results(rows, out_dir)
    return rows


def summary_table(rows: list[dict]) -> str:
    """Markdown: one row per method, frame-weighted means over clips (as benchmark papers average frames)."""
    columns = [c for c in rows[0] if c not in ("clip", "method", "frames")]
    lines = ["| method | clips | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        frames = sum(r["frames"] for r in mine)
        means = [sum(r[c] * r["frames"] for r in mine) / frames for c in columns]
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(f"{m:.4g}" for m in means) + " |")
    return "\n".join(lines)


def write_results(rows: list[dict], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "per_clip.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(summary_table(rows) + "\n")
