"""How far can an adapter take a generator in one step? An oracle measurement of the output head.

An adapter only adds to the transformer's hidden states, so every velocity it can obtain is the final layer's
affine image of the hidden width: proj_out(h) for some h. Where that image is smaller than a token's latent
patch (hidden < out_channels x patch volume), some latent directions can never be corrected. This script takes the
exact landing velocity of each validation clip (from the sampler's start state to the HQ latent), projects it onto
the image of proj_out, decodes the result and scores it: the best PSNR any adapter could reach on this generator.

    python benchmarks/output_head_ceiling.py [--generator folder ...] [--sigma-start 0.1 1.0]
"""

from __future__ import annotations

import argparse
import os

import torch
from common import ROOT, report


def patch_tokens(z: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, N, pt*ph*pw*C) in the order of diffusers' Wan proj_out (channels innermost)."""
    b, c, f, h, w = z.shape
    pt, ph, pw = patch
    z = z.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 3, 5, 7, 1)
    return z.reshape(b, -1, pt * ph * pw * c)


def untoken(t: torch.Tensor, shape: torch.Size, patch: tuple[int, int, int]) -> torch.Tensor:
    b, c, f, h, w = shape
    pt, ph, pw = patch
    t = t.reshape(b, f // pt, h // ph, w // pw, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return t.reshape(shape)


@torch.no_grad()
def ceiling(generator: str, sigmas: list[float], shards: str) -> list[dict]:
    from litevsr import flow
    from litevsr.backbones.wan import WanBackbone
    from litevsr.data.datamodule import VideoShardDataModule
    from litevsr.frames import resize_video
    from litevsr.metrics import frame_metrics
    from litevsr.model import LiteVSR

    backbone = WanBackbone(generator)
    bare = LiteVSR(backbone, None)
    head = backbone.transformer.proj_out
    weight, bias = head.weight.double(), head.bias.double()
    projector = (weight @ torch.linalg.pinv(weight)).float()  # orthogonal projector onto the head's column space
    patch = tuple(backbone.transformer.config.patch_size)
    data = VideoShardDataModule(shards, shards, clip_frames=9, crop_size=64, val_crop_size=128, batch_size=4)
    data.setup("validate")
    scores: dict[str, list[torch.Tensor]] = {}

    def add(name, video, hq):
        scores.setdefault(name, []).append(frame_metrics(video, hq, 4)["psnr_y"])

    for batch in data.val_dataloader():
        hq, lq = batch["hq"], batch["lq"]
        bicubic = resize_video(lq, hq.shape[-2:]).clamp(-1, 1)
        x0, cond = backbone.encode(hq), bare.condition(lq, hq.shape[-2:])  # the sampler's own conditioning
        add("bicubic", bicubic, hq)
        add("vae", backbone.decode(x0), hq)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        for sigma in sigmas:
            x = flow.start_latents(cond, noise, sigma)
            v = patch_tokens(flow.landing_velocity(x, x0, sigma), patch)
            reachable = (v - bias.float()) @ projector + bias.float()
            add(f"oracle@{sigma:g}", backbone.decode(x - sigma * untoken(reachable, x0.shape, patch)), hq)
    means = {name: torch.cat(values).mean().item() for name, values in scores.items()}
    return [
        {
            "generator": generator,
            "hidden": weight.shape[1],
            "patch_outputs": weight.shape[0],
            "head_rank": int(torch.linalg.matrix_rank(weight)),
            "result": name,
            "psnr_y": value,
        }
        for name, value in means.items()
    ]


def main():
    from litevsr.zoo import TINY_PATH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", nargs="+", default=[str(TINY_PATH)])
    parser.add_argument("--sigma-start", nargs="+", type=float, default=[0.1, 1.0])
    parser.add_argument(
        "--shards",
        default=os.path.join(ROOT, "data", "demo", "val"),
        help="validation shards (recipes/demo.yaml builds them)",
    )
    args = parser.parse_args()
    rows = [row for generator in args.generator for row in ceiling(generator, args.sigma_start, args.shards)]
    report(
        "output_head_ceiling",
        rows,
        ["generator", "hidden", "patch_outputs", "head_rank", "result", "psnr_y"],
        {"shards": args.shards, "scale": 4},
    )


if __name__ == "__main__":
    main()
