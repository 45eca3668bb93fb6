"""What a plain CNN of the default adapter's size reaches on the held-out set, trained on the same data for the
same CPU time: a reference for the held-out gain over bicubic (README, "Quality on footage it never saw").

No generator, no VAE: an EDSR-style per-frame network (3x3 convolutions, residual blocks, pixel shuffle, a bicubic
skip) trained on the pixel MSE with recipes/general_x4.yaml's training clips and LQ mix (half plain bicubic, half
RealWorldDegradation), then scored on benchmarks/heldout.py's clips with the same PSNR-Y.

    python benchmarks/cnn_reference.py [--minutes 90] [--steps 6000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, report
from torch import nn
from tqdm import tqdm

from litevsr.data.datamodule import VideoShardDataModule
from litevsr.data.degradations import MixedDegradation, RealWorldDegradation, SimpleDegradation
from litevsr.evaluate import ClipScores, bicubic_frames, find_pairs
from litevsr.frames import frames_to_video, video_to_frames
from litevsr.inference import open_source

LQ_KINDS = ("lq_bicubic", "lq_realworld")


class PlainCNN(nn.Module):
    def __init__(self, channels: int, blocks: int, scale: int):
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
        self.scale = scale
        self.head = conv(3, channels)
        self.blocks = nn.ModuleList(
            nn.Sequential(conv(channels, channels), nn.ReLU(), conv(channels, channels)) for _ in range(blocks)
        )
        self.tail = nn.Sequential(conv(channels, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        x = self.head(lq)
        for block in self.blocks:
            x = x + block(x)
        up = F.interpolate(lq, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.tail(x)


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B * T, 3, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)


def train(net: PlainCNN, steps: int, minutes: float, seed: int) -> dict:
    torch.manual_seed(seed)
    data = VideoShardDataModule(
        train_shards=str(ROOT / "data" / "pretrain" / "generator"),
        scale=net.scale,
        clip_frames=9,
        crop_size=64,
        batch_size=4,
        samples_per_epoch=10**6,
        degradation=MixedDegradation(
            [SimpleDegradation(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0)), RealWorldDegradation()]
        ),
    )
    data.setup("fit")
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start, losses, step = time.monotonic(), [], 0
    bar = tqdm(total=steps, desc="training the plain CNN", unit="step")
    for batch in data.train_dataloader():
        if step == steps or time.monotonic() - start > minutes * 60:
            break
        loss = F.mse_loss(net(frames_of(batch["lq"])), frames_of(batch["hq"]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    bar.close()
    return {"steps": step, "seconds": time.monotonic() - start, "final_loss": float(np.mean(losses[-100:]))}


def cnn_frames(net: PlainCNN, frames) -> Iterator[np.ndarray]:
    for frame in frames:
        sr = net(frames_of(frames_to_video(frame[None])[None]))
        yield video_to_frames(sr.clamp(-1, 1).transpose(0, 1))[0]


@torch.no_grad()
def score(net: PlainCNN, root: str) -> list[dict]:
    methods = {"bicubic": lambda frames: bicubic_frames(frames, net.scale), "plain_cnn": lambda f: cnn_frames(net, f)}
    rows = []
    for kind in LQ_KINDS:
        for clip, gt, lq in find_pairs(os.path.join(root, "gt"), os.path.join(root, kind)):
            row = {"lq": kind.removeprefix("lq_"), "clip": clip}
            for method, run in methods.items():
                scores = ClipScores(net.scale, {})
                (_, lq_frames), (_, gt_frames) = open_source(lq), open_source(gt)
                for sr, ref in zip(run(lq_frames), gt_frames, strict=True):
                    scores.add(sr, ref)
                row[method] = scores.means()["psnr_y"]
            rows.append({**row, "gain_db": row["plain_cnn"] - row["bicubic"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(ROOT, "data", "heldout"))
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6000, help="length of the cosine schedule")
    parser.add_argument("--minutes", type=float, default=90.0, help="stop training after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="cnn_reference")
    opts = parser.parse_args()
    scale = json.load(open(os.path.join(opts.root, "manifest.json")))["scale"]
    net = PlainCNN(opts.channels, opts.blocks, scale)
    parameters = sum(p.numel() for p in net.parameters())
    training = train(net, opts.steps, opts.minutes, opts.seed)
    rows = score(net.eval(), opts.root)
    summary = {
        "parameters": parameters,
        **training,
        "mean_gain_db": float(np.mean([r["gain_db"] for r in rows])),
        "worst_gain_db": float(np.min([r["gain_db"] for r in rows])),
        **{
            f"mean_gain_{lq}_db": float(np.mean([r["gain_db"] for r in rows if r["lq"] == lq]))
            for lq in ("bicubic", "realworld")
        },
    }
    report(
        opts.name,
        rows,
        ["lq", "clip", "bicubic", "plain_cnn", "gain_db"],
        {"summary": summary, "command": " ".join(sys.argv)},
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
