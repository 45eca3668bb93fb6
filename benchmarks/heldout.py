"""Quality on footage the project never trained on: the held-out set of benchmarks/heldout_data.py, at x4.

For every clip and both LQ kinds (plain bicubic downscaling, RealWorldDegradation), PSNR-Y / SSIM-Y (crop border
= scale) and the temporal warping error of: bicubic, the frozen generator without adapter, each adapter as
`litevsr upscale` runs it by default (automatic tiles) and beside it on whole frames (`--sampling.tile 0`), and the
VAE's reconstruction of the GT (the ceiling of anything decoded through it).

    python benchmarks/heldout_data.py          # builds data/heldout once (needs the package registry)
    python benchmarks/heldout.py [--adapter general] [--max-frames 17]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import torch
from common import RESULTS, ROOT, report

from litevsr.backbones import WanBackbone
from litevsr.evaluate import ClipScores, evaluate, find_pairs
from litevsr.frames import frames_to_video, video_to_frames
from litevsr.inference import open_source
from litevsr.pipeline import load_pipelines

LQ_KINDS = {"bicubic": "lq_bicubic", "realworld": "lq_realworld"}
WHOLE = " (whole frames)"


@torch.no_grad()
def vae_ceiling(backbone, gt: str, scale: int, max_frames: int | None) -> dict:
    _, frames = open_source(gt, max_frames=max_frames)
    frames = np.stack(list(frames))
    video = frames_to_video(frames)[None]
    t = (len(frames) - 1) // backbone.frame_step * backbone.frame_step + 1  # the VAE's 1 + 4k frames
    recon = video_to_frames(backbone.decode(backbone.encode(video[:, :, :t]))[0])
    scores = ClipScores(scale, {})
    for sr, ref in zip(recon, frames[:t]):
        scores.add(sr, ref)
    return scores.means()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(ROOT, "data", "heldout"))
    parser.add_argument(
        "--adapter",
        default=None,
        help="adapter folders or shipped names, comma-separated (default: the default shipped adapter)",
    )
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--color-fix", default=None, help="override the adapters' colour fix (see litevsr.color)")
    parser.add_argument("--name", default="heldout", help="results name: benchmarks/results/<name>.json")
    opts = parser.parse_args()
    manifest = json.load(open(os.path.join(opts.root, "manifest.json")))
    scale = manifest["scale"]
    models = load_pipelines(opts.adapter)
    bare = [pipe for _, pipe in models if not pipe.adapter.edits_backbone]
    no_adapter = (
        bare[0].without_adapter() if bare else models[0][1].without_adapter(WanBackbone(models[0][1].backbone.name))
    )
    methods = [(name, pipe, pipe.sampling(color_fix=opts.color_fix)) for name, pipe in models]
    # each adapter through the default path (automatic tiles), and beside it on whole frames (--sampling.tile 0)
    methods += [(f"{name}{WHOLE}", pipe, dataclasses.replace(s, tile=0)) for name, pipe, s in methods]
    methods.insert(0, ("no adapter", no_adapter, methods[0][2]))
    rows = []
    for kind, folder in LQ_KINDS.items():
        for row in evaluate(
            methods,
            os.path.join(opts.root, "gt"),
            os.path.join(opts.root, folder),
            scale,
            os.path.join(RESULTS, opts.name, kind),
            max_frames=opts.max_frames,
        ):
            rows.append({"lq": kind, **row})
    for clip, gt, _ in find_pairs(os.path.join(opts.root, "gt"), os.path.join(opts.root, "lq_bicubic")):
        rows.append(
            {
                "lq": "-",
                "clip": clip,
                "method": "VAE ceiling",
                **vae_ceiling(no_adapter.backbone, gt, scale, opts.max_frames),
            }
        )
    for row in rows:
        row["kind"] = manifest["clips"][row["clip"]]["kind"]
    adapters = [m for name, _ in models for m in (name, f"{name}{WHOLE}")]
    summary = {}
    for method in ["bicubic", "no adapter", *adapters]:
        mine = [r for r in rows if r["method"] == method]
        bicubic = {(r["lq"], r["clip"]): r for r in rows if r["method"] == "bicubic"}
        gains = [r["psnr_y"] - bicubic[r["lq"], r["clip"]]["psnr_y"] for r in mine]
        summary[method] = {
            "psnr_y": float(np.mean([r["psnr_y"] for r in mine])),
            "ssim_y": float(np.mean([r["ssim_y"] for r in mine])),
            "gain_over_bicubic_db": float(np.mean(gains)),
            "worst_gain_db": float(np.min(gains)),
            "warp_error": float(np.mean([r["warp_error"] for r in mine])),
            "warp_error_ratio_to_bicubic": float(
                np.mean([r["warp_error"] for r in mine])
                / np.mean([bicubic[r["lq"], r["clip"]]["warp_error"] for r in mine])
            ),
        }
    gaps = []
    for name, _ in models:  # the default path against whole frames, clip by clip
        whole = {(r["lq"], r["clip"]): r["psnr_y"] for r in rows if r["method"] == f"{name}{WHOLE}"}
        gap = [r["psnr_y"] - whole[r["lq"], r["clip"]] for r in rows if r["method"] == name]
        summary[name]["vs_whole_frames_db"] = {"mean": float(np.mean(gap)), "worst": float(np.min(gap))}
        gaps.append(f"{name}, automatic tiles against whole frames: mean {np.mean(gap):+.3f} dB, worst {min(gap):+.3f}")
    columns = ["lq", "kind", "clip", "method", "psnr_y", "ssim_y", "warp_error"]
    report(opts.name, rows, columns, {"summary": summary, "manifest": manifest, "command": " ".join(sys.argv)})
    tables = "\n\n".join([clip_table(rows, adapters), summary_table(summary), "\n".join(gaps)])
    with open(os.path.join(RESULTS, f"{opts.name}.md"), "w") as f:
        f.write(tables + "\n")
    print("\n" + tables)


def clip_table(rows: list[dict], adapters: list[str]) -> str:
    """One line per (LQ, clip): PSNR-Y / SSIM-Y of each method, and the VAE's reconstruction of the GT."""
    methods = ["bicubic", "no adapter", *adapters]
    cell = {(r["lq"], r["clip"], r["method"]): r for r in rows}
    vae = {r["clip"]: r for r in rows if r["method"] == "VAE ceiling"}
    lines = ["| LQ | clip | kind | " + " | ".join(methods) + " | VAE ceiling |", "|---" * (len(methods) + 4) + "|"]
    for lq in LQ_KINDS:
        for clip in sorted(vae):
            values = [cell[lq, clip, m] for m in methods] + [vae[clip]]
            lines.append(
                f"| {lq} | {clip} | {vae[clip]['kind']} | "
                + " | ".join(f"{v['psnr_y']:.2f} / {v['ssim_y']:.4f}" for v in values)
                + " |"
            )
    return "\n".join(lines)


def summary_table(summary: dict) -> str:
    lines = [
        "| method | mean PSNR-Y | mean SSIM-Y | gain over bicubic: mean / worst clip "
        "| mean warping error, / bicubic's |",
        "|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['psnr_y']:.2f} dB | {s['ssim_y']:.4f} | {s['gain_over_bicubic_db']:+.2f} / "
            f"{s['worst_gain_db']:+.2f} dB | {s['warp_error']:.2e}, {s['warp_error_ratio_to_bicubic']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
