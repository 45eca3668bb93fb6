"""Every method in one harness: the State-Aware Adapter, its ablations and the baselines (LoRA, a half-depth
ControlNet copy, full fine-tuning), each trained by LiteVSRModule on the same frozen backbone and batch.

1. Trainable parameters at the real shapes of every known backbone (meta device, nothing downloaded).
2. Step time and gradient + optimizer memory on cached latents, one process per method (peak RSS is its own): a
   backbone with Wan2.1-1.3B's proportions at width 512 (`--size mid`, as benchmarks/train_step.py), fp32, no
   gradient checkpointing. `--size tiny` is the CI-sized run.
3. Quality after an equal budget: not measured here yet (see README, "Baselines"); the JSON says so.

    python benchmarks/compare_adapters.py [--size mid|tiny] [--steps 3] [--methods state_aware,lora,...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from common import report
from train_step import CACHED_LATENTS, CACHED_TRANSFORMER, state_bytes

#: name -> (adapter class name in litevsr.adapters, arguments). The State-Aware rows use the default adapter.
METHODS = {
    "state_aware": ("StateAwareAdapter", {}),
    "no_refinement": ("StateAwareAdapter", {"refinement_depth": 0}),
    "no_time_modulation": ("StateAwareAdapter", {"time_conditioning": "gate"}),
    "sigma_independent": ("StateAwareAdapter", {"time_conditioning": "none"}),
    "x0_hat_state": ("StateAwareAdapter", {"state_input": "x0_hat"}),
    "inject_every_6": ("StateAwareAdapter", {"inject_every": 6}),
    "lora": ("LoRAAdapter", {"rank": 96}),  # about the State-Aware Adapter's count at Wan2.1-1.3B
    "controlnet": ("ControlNetAdapter", {}),  # half the depth
    "full": ("FullFinetuneAdapter", {}),
}
SIZES = {
    "mid": {"transformer": CACHED_TRANSFORMER, "latents": CACHED_LATENTS, "time_dim": 96},
    "tiny": {"transformer": {**CACHED_TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 16,
                             "ffn_dim": 64, "num_layers": 6, "text_dim": 16, "freq_dim": 32},
             "latents": (16, 2, 4, 4), "time_dim": 16},
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def make_adapter(method: str, size: dict | None = None):
    import litevsr.adapters as adapters

    name, kwargs = METHODS[method]
    if name == "StateAwareAdapter" and size is not None:  # noise embedding scaled with the width, as at 1.3B
        kwargs = {"time_dim": size["time_dim"], **kwargs}
    if name == "LoRAAdapter" and size is not None and size is SIZES["tiny"]:
        kwargs = {**kwargs, "rank": 4}
    return getattr(adapters, name)(**kwargs)


def real_shape_params(methods: list[str]) -> list[dict]:
    from litevsr.backbones.wan import KNOWN_CONFIGS, WanBackbone
    from litevsr.module import LiteVSRModule

    rows = []
    for backbone_name in KNOWN_CONFIGS:
        for method in methods:
            counts = LiteVSRModule(WanBackbone(backbone_name, empty_weights=True), make_adapter(method)).parameter_counts()
            rows.append({"backbone": backbone_name, "method": method, "trainable_params": counts["trainable"],
                         "share_of_transformer": counts["share"]})
    return rows


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM: ru_maxrss would carry the parent's over a fork)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def run_steps(method: str, size_name: str, steps: int) -> dict:
    import tempfile

    from litevsr.backbones.twins import twin_config
    from litevsr.backbones.wan import WanBackbone, build_wan, save_wan
    from litevsr.module import LiteVSRModule

    size = SIZES[size_name]
    config = {"transformer": size["transformer"], "vae": twin_config("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["vae"]}
    with tempfile.TemporaryDirectory() as folder:
        save_wan(*build_wan(config), folder, torch.randn(1, 16, size["transformer"]["text_dim"]))
        backbone = WanBackbone(folder)
    torch.manual_seed(0)
    module = LiteVSRModule(backbone, make_adapter(method, size))
    module.log = lambda *a, **k: None  # no trainer attached
    optimizer = module.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    x0, cond = (torch.randn(2, *size["latents"], generator=g) for _ in range(2))
    batch = {"hq_latents": x0, "cond_latents": cond, "vae_fingerprint": [backbone.vae_fingerprint] * 2}

    def step() -> int:
        module.training_step(batch, 1).backward()
        optimizer.step()
        held = state_bytes(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return held

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        held = step()
    counts = module.parameter_counts()
    return {"name": method, "trainable_params": counts["trainable"], "share": counts["share"],
            "step_seconds": (time.perf_counter() - start) / steps, "grad_and_optimizer_MiB": held / 2**20,
            "peak_memory_mib": peak_rss_mib()}


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([r["name"] for r in rows], [r["step_seconds"] for r in rows], color="#4477aa")
    ax.set_xlabel("seconds per training step (same backbone, batch and precision)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="mid")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method, after one warm-up")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="compare_adapters", help="results name: benchmarks/results/<name>.json")
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(run_steps(opts.one, opts.size, opts.steps)))
        return
    methods = [m for m in opts.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    real = real_shape_params(methods)
    rows = []
    for method in methods:
        out = subprocess.run([sys.executable, __file__, "--one", method, "--size", opts.size, "--steps",
                              str(opts.steps)], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{method}: {rows[-1]['step_seconds']:.3f} s/step", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["name"] == "state_aware"), rows[0])
    for row in rows:
        row["step_vs_state_aware"] = row["step_seconds"] / base["step_seconds"]
        row.update(psnr_y=None, psnr_y_std=None, ssim_y=None)  # quality after an equal budget: not measured yet
    os.makedirs(RESULTS, exist_ok=True)
    plot(rows, os.path.join(RESULTS, f"{opts.name}_step_time.png"))
    report(opts.name, rows, ["name", "trainable_params", "share", "step_seconds", "step_vs_state_aware",
                             "grad_and_optimizer_MiB", "peak_memory_mib"],
           {"methods": rows, "real_shapes": real, "size": opts.size, "steps_timed": opts.steps,
            "precision": "fp32", "gradient_checkpointing": False, "batch": f"2 latent clips {SIZES[opts.size]['latents']}",
            "bicubic_psnr_y": None, "no_adapter_psnr_y": None,
            "quality": "not measured: an equal-budget training of every method on the embedded generator takes "
                       "hours on this CPU"})
    print()
    report(f"{opts.name}_real_shapes", real, ["backbone", "method", "trainable_params", "share_of_transformer"])


if __name__ == "__main__":
    main()
