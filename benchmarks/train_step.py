"""Training throughput and peak memory of one adapter step on a frozen Wan backbone.

Two sizes x {fp32, bf16-mixed} x {gradient checkpointing off, on}. Each configuration runs in its own
process so that peak memory (max RSS on CPU, max allocated on CUDA) belongs to it alone.

    python benchmarks/train_step.py [--steps 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

SIZES = {  # backbone config overrides, adapter width, clip shape (T, H, W) in pixels
    "small": dict(heads=4, head_dim=32, layers=6, adapter=64, clip=(9, 64, 64)),
    "medium": dict(heads=8, head_dim=64, layers=8, adapter=512, clip=(9, 128, 128)),
}


def run_one(size: str, precision: str, checkpointing: bool, steps: int, device: str) -> dict:
    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones.wan import TINY_CONFIG, WanBackbone, build_wan, save_wan
    from litevsr.module import LiteVSRModule
    import tempfile

    spec = SIZES[size]
    config = {"transformer": {**TINY_CONFIG["transformer"], "num_attention_heads": spec["heads"],
                              "attention_head_dim": spec["head_dim"], "num_layers": spec["layers"],
                              "ffn_dim": 4 * spec["heads"] * spec["head_dim"]},
              "vae": TINY_CONFIG["vae"]}
    with tempfile.TemporaryDirectory() as folder:
        save_wan(*build_wan(config), folder)
        backbone = WanBackbone(folder)
    adapter = StateAwareAdapter(width=spec["adapter"], time_dim=min(256, spec["adapter"]), inject_every=2)
    module = LiteVSRModule(backbone, adapter, gradient_checkpointing=checkpointing).to(device)
    optimizer = torch.optim.AdamW(module.adapter.parameters(), lr=1e-4)
    t, h, w = spec["clip"]
    batch = {"hq": torch.rand(2, 3, t, h, w, device=device) * 2 - 1,
             "lq": torch.rand(2, 3, t, h // 4, w // 4, device=device) * 2 - 1}
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
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return {"size": size, "precision": precision, "checkpointing": checkpointing,
            "adapter_params_M": sum(p.numel() for p in module.adapter.parameters()) / 1e6,
            "it_per_s": 1 / seconds, "peak_MiB": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "PRECISION", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        size, precision, ckpt = args.one
        print(json.dumps(run_one(size, precision, ckpt == "1", args.steps, args.device)))
        return
    rows = []
    for size in SIZES:
        for precision in ("32-true", "bf16-mixed"):
            for ckpt in ("0", "1"):
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--device", args.device,
                                      "--one", size, precision, ckpt], capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:  # ratios within this run: the only comparison that survives a noisy machine
        base = next(r for r in rows if r["size"] == row["size"] and r["precision"] == "32-true" and not r["checkpointing"])
        row["speed_vs_fp32"] = row["it_per_s"] / base["it_per_s"]
        row["memory_vs_fp32"] = row["peak_MiB"] / base["peak_MiB"]
    from common import report

    report(f"train_step_{args.device}", rows, ["size", "precision", "checkpointing", "adapter_params_M", "it_per_s",
                                               "peak_MiB", "speed_vs_fp32", "memory_vs_fp32"],
           {"batch": "2 clips", "steps_timed": args.steps, "device": args.device})


if __name__ == "__main__":
    main()
