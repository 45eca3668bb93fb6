"""Training throughput and peak memory of one adapter step on a frozen Wan backbone.

Pixel batches (the VAE encodes both clips every step): two sizes x {fp32, bf16-mixed} x {gradient checkpointing
off, on}. Cached latents (no VAE): the default State-Aware Adapter, the same adapter injecting from the middle
block on, and a full fine-tune of the transformer, on one backbone with the 1.3B's proportions at width 512
(adapter share 9 %), same batch and precision, no checkpointing. Each configuration runs in its own process so that
peak memory (max RSS on CPU, max allocated on CUDA) belongs to it alone.

    python benchmarks/train_step.py [--steps 5] [--device cpu|cuda] [--only pixels|cached]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial

import torch
from common import peak_memory_mib, report, time_training_steps

from litevsr.backbones.wan import WAN

SIZES = {  # backbone config overrides, adapter width, clip shape (T, H, W) in pixels
    "small": dict(heads=4, head_dim=32, layers=6, adapter=64, clip=(9, 64, 64)),
    "medium": dict(heads=8, head_dim=64, layers=8, adapter=512, clip=(9, 128, 128)),
}


def run_one(size: str, precision: str, checkpointing: bool, steps: int, device: str) -> dict:
    import tempfile

    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones.wan import WanBackbone
    from litevsr.module import LiteVSRModule
    from litevsr.zoo import TINY_CONFIG

    spec = SIZES[size]
    config = {
        "transformer": {
            **TINY_CONFIG["transformer"],
            "num_attention_heads": spec["heads"],
            "attention_head_dim": spec["head_dim"],
            "num_layers": spec["layers"],
            "ffn_dim": 4 * spec["heads"] * spec["head_dim"],
        },
        "vae": TINY_CONFIG["vae"],
    }
    with tempfile.TemporaryDirectory() as folder:
        WAN.save(*WAN.build(config), folder)
        backbone = WanBackbone(folder)
    adapter = partial(StateAwareAdapter, width=spec["adapter"], time_dim=min(256, spec["adapter"]), inject_every=2)
    module = LiteVSRModule(backbone, adapter, gradient_checkpointing=checkpointing).to(device)
    optimizer = torch.optim.AdamW(module.adapter.parameters(), lr=1e-4)
    t, h, w = spec["clip"]
    batch = {
        "hq": torch.rand(2, 3, t, h, w, device=device) * 2 - 1,
        "lq": torch.rand(2, 3, t, h // 4, w // 4, device=device) * 2 - 1,
    }
    module.log = lambda *a, **k: None  # no trainer attached
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32

    def step():
        with torch.autocast(device, dtype=dtype, enabled=precision == "bf16-mixed"):
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = peak_memory_mib(device)
    return {
        "size": size,
        "precision": precision,
        "checkpointing": checkpointing,
        "adapter_params_M": sum(p.numel() for p in module.adapter.parameters()) / 1e6,
        "it_per_s": 1 / seconds,
        "peak_MiB": peak,
    }


# The Wan2.1-1.3B's proportions (30 blocks, FFN 5.8x the width, 1 x 2 x 2 patches, 16 latent channels) at width
# 512; latents of a 17 x 128 x 128 clip under Wan2.1's VAE (4x in time, 8x in space). The adapter is the default
# (width = the backbone's, 2 + 2 blocks, every third block) but for its noise embedding, scaled with the width as
# at 1.3B (256 / 1536), so that its share (9.1 %) is the 1.3B's (9.2 %).
CACHED_TRANSFORMER = {
    **WAN.known_configs["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
    "num_attention_heads": 8,
    "attention_head_dim": 64,
    "text_dim": 1280,
    "ffn_dim": 3072,
}
CACHED_LATENTS = (16, 5, 16, 16)
CACHED_VARIANTS = {
    "adapter": {"time_dim": 96},
    "adapter, injecting from block 15": {"time_dim": 96, "inject_blocks": list(range(15, 30, 3))},
    "full fine-tune": None,
}


def run_cached(variant: str, steps: int, device: str) -> dict:
    """One training step on cached latents: the adapter through LiteVSRModule, or the whole transformer."""
    import tempfile

    import torch.nn.functional as F

    from litevsr import flow
    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones.wan import WanBackbone
    from litevsr.module import LiteVSRModule
    from litevsr.zoo.twins import twin_config

    config = {"transformer": CACHED_TRANSFORMER, "vae": twin_config("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["vae"]}
    with tempfile.TemporaryDirectory() as folder:
        WAN.save(*WAN.build(config), folder, torch.randn(1, 16, CACHED_TRANSFORMER["text_dim"]))
        backbone = WanBackbone(folder).to(device)
    g = torch.Generator().manual_seed(0)
    x0, cond = (torch.randn(2, *CACHED_LATENTS, generator=g).to(device) for _ in range(2))
    transformer_params = sum(p.numel() for p in backbone.transformer.parameters())
    if CACHED_VARIANTS[variant] is None:
        backbone.transformer.requires_grad_(True)
        optimizer = torch.optim.AdamW(backbone.transformer.parameters(), lr=1e-5)
        trained = transformer_params

        def loss_fn():
            sigma = flow.sample_sigmas(2, device=device)
            eps = torch.randn_like(x0)
            return F.mse_loss(backbone(flow.interpolate(x0, eps, sigma), sigma), flow.velocity_target(x0, eps))
    else:
        module = LiteVSRModule(backbone, partial(StateAwareAdapter, **CACHED_VARIANTS[variant])).to(device)
        module.log = lambda *a, **k: None  # no trainer attached
        optimizer = torch.optim.AdamW(module.adapter.parameters(), lr=1e-4)
        trained = sum(p.numel() for p in module.adapter.parameters())
        batch = {"hq_latents": x0, "cond_latents": cond, "vae_fingerprint": [backbone.vae_fingerprint] * 2}

        def loss_fn():
            return module.training_step(batch, 1)

    seconds, held = time_training_steps(loss_fn, optimizer, steps)
    peak = peak_memory_mib(device)
    return {
        "variant": variant,
        "trained_params_M": trained / 1e6,
        "share": trained / transformer_params,
        "s_per_step": seconds,
        "grad_and_optimizer_MiB": held / 2**20,
        "peak_MiB": peak,
    }


def cached_rows(steps: int, device: str) -> dict:
    rows = [one_process(["--cached", variant], steps, device) for variant in CACHED_VARIANTS]
    full = rows[-1]
    for row in rows:
        row["step_vs_full"] = row["s_per_step"] / full["s_per_step"]
        row["memory_vs_full"] = row["grad_and_optimizer_MiB"] / full["grad_and_optimizer_MiB"]
    report(
        f"train_step_cached_{device}",
        rows,
        [
            "variant",
            "trained_params_M",
            "share",
            "s_per_step",
            "grad_and_optimizer_MiB",
            "peak_MiB",
            "step_vs_full",
            "memory_vs_full",
        ],
        {
            "batch": "2 latent clips " + "x".join(map(str, CACHED_LATENTS)),
            "precision": "fp32",
            "checkpointing": False,
            "steps_timed": steps,
            "device": device,
            "transformer": CACHED_TRANSFORMER,
            "adapter_vs_full_step_ratio": rows[0]["step_vs_full"],
            "adapter_vs_full_memory_ratio": rows[0]["memory_vs_full"],
        },
    )
    return rows


def one_process(args: list[str], steps: int, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--steps", str(steps), "--device", device, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=["pixels", "cached"], default=None)
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "PRECISION", "CHECKPOINTING"), help=argparse.SUPPRESS)
    parser.add_argument("--cached", choices=list(CACHED_VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        size, precision, ckpt = args.one
        print(json.dumps(run_one(size, precision, ckpt == "1", args.steps, args.device)))
        return
    if args.cached:
        print(json.dumps(run_cached(args.cached, args.steps, args.device)))
        return
    if args.only != "pixels":
        cached_rows(args.steps, args.device)
    if args.only == "cached":
        return
    rows = [
        one_process(["--one", size, precision, ckpt], args.steps, args.device)
        for size in SIZES
        for precision in ("32-true", "bf16-mixed")
        for ckpt in ("0", "1")
    ]
    for row in rows:  # ratios within this run: the only comparison that survives a noisy machine
        base = next(
            r for r in rows if r["size"] == row["size"] and r["precision"] == "32-true" and not r["checkpointing"]
        )
        row["speed_vs_fp32"] = row["it_per_s"] / base["it_per_s"]
        row["memory_vs_fp32"] = row["peak_MiB"] / base["peak_MiB"]
    report(
        f"train_step_{args.device}",
        rows,
        [
            "size",
            "precision",
            "checkpointing",
            "adapter_params_M",
            "it_per_s",
            "peak_MiB",
            "speed_vs_fp32",
            "memory_vs_fp32",
        ],
        {"batch": "2 clips", "steps_timed": args.steps, "device": args.device},
    )


if __name__ == "__main__":
    main()
