"""Peak memory and step time of the backbone's memory and speed switches, each in its own process.

Training rows: one adapter step on cached latents (no VAE), the default State-Aware Adapter on a backbone with
Wan2.1-1.3B's proportions at width 512 (benchmarks/train_step.py's cached configuration), batch 2, fp32 adapter.
VAE rows: encoding a batch of 2 clips (9 x 128 x 128) with Wan2.1's VAE at its real width (random weights).
Peak memory is the process's peak RSS on the CPU (max allocated on CUDA), loading included; the transformer's
weights are also given as stored after the switch. The CPU cannot show what offloading saves (its "device" is the
CPU), so that row is marked as needing a GPU.

    python benchmarks/switches.py [--steps 2] [--device cpu|cuda] [--only storage_fp8,...]
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
from train_step import CACHED_LATENTS, CACHED_TRANSFORMER

#: name -> (kind, backbone arguments, module arguments, what it needs)
SWITCHES = {
    "baseline (fp32)": ("train", {}, {}, "any"),
    "bf16 storage": ("train", {"dtype": "bfloat16"}, {}, "any"),
    "fp8 layerwise storage": ("train", {"switches": {"storage_dtype": "float8_e4m3fn"}}, {}, "any"),
    "gradient checkpointing": ("train", {}, {"gradient_checkpointing": True}, "any"),
    "torch.compile": ("train", {"switches": {"compile": True}}, {}, "a C++ compiler on the CPU"),
    "group offload": ("train", {"switches": {"group_offload": "DEVICE"}}, {}, "a GPU to save memory"),
    "vae (plain)": ("vae", {}, {}, "any"),
    "vae slicing": ("vae", {"switches": {"vae_slicing": True}}, {}, "any"),
    "vae tiling": ("vae", {"switches": {"vae_tiling": True}}, {}, "any"),
}


def run_one(name: str, steps: int, device: str) -> dict:
    import tempfile

    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones import Switches, WanBackbone
    from litevsr.backbones.wan import WAN
    from litevsr.module import LiteVSRModule
    from litevsr.zoo.twins import twin_config

    kind, backbone_args, module_args, _ = SWITCHES[name]
    backbone_args = json.loads(json.dumps(backbone_args).replace("DEVICE", device))
    switches = Switches(**backbone_args.pop("switches", {}))
    vae = (
        WAN.known_configs["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["vae"]
        if kind == "vae"
        else twin_config("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["vae"]
    )
    with tempfile.TemporaryDirectory() as folder:
        WAN.save(
            *WAN.build({"transformer": CACHED_TRANSFORMER, "vae": vae}),
            folder,
            torch.randn(1, 16, CACHED_TRANSFORMER["text_dim"]),
        )
        backbone = WanBackbone(folder, switches=switches, **backbone_args)
    if not switches.group_offload:
        backbone = backbone.to(device)
    g = torch.Generator().manual_seed(0)
    if kind == "vae":
        video = (torch.rand(2, 3, 9, 128, 128, generator=g) * 2 - 1).to(device)
        with torch.no_grad():
            backbone.encode(video)  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                backbone.encode(video)
        seconds = (time.perf_counter() - start) / steps
    else:
        torch.manual_seed(0)
        module = LiteVSRModule(backbone, partial(StateAwareAdapter, time_dim=96), **module_args).to(device)
        module.log = lambda *a, **k: None  # no trainer attached
        optimizer = torch.optim.AdamW(module.adapter.parameters(), lr=1e-4)
        x0, cond = (torch.randn(2, *CACHED_LATENTS, generator=g).to(device) for _ in range(2))
        batch = {"hq_latents": x0, "cond_latents": cond, "vae_fingerprint": [backbone.vae_fingerprint] * 2}
        seconds, _ = time_training_steps(lambda: module.training_step(batch, 1), optimizer, steps)
    peak = peak_memory_mib(device)
    weights = sum(p.numel() * p.element_size() for p in backbone.transformer.parameters()) / 2**20
    return {
        "switch": name,
        "kind": kind,
        "step_seconds": seconds,
        "peak_memory_mib": peak,
        "transformer_weights_mib": weights,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps (or encodes) per switch, after a warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default=",".join(SWITCHES))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(run_one(opts.one, opts.steps, opts.device)))
        return
    rows = []
    for name in opts.only.split(","):
        done = subprocess.run(
            [sys.executable, __file__, "--one", name, "--steps", str(opts.steps), "--device", opts.device],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
            rows.append(
                {
                    "switch": name,
                    "kind": SWITCHES[name][0],
                    "step_seconds": None,
                    "peak_memory_mib": None,
                    "transformer_weights_mib": None,
                    "note": f"failed here: {reason}",
                }
            )
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[-1]["needs"] = SWITCHES[name][3]
        print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    for kind, base in (("train", "baseline (fp32)"), ("vae", "vae (plain)")):
        ref = next((r for r in rows if r["switch"] == base and r["step_seconds"]), None)
        for row in rows:
            if ref and row["kind"] == kind and row["step_seconds"]:
                row["time_vs_base"] = row["step_seconds"] / ref["step_seconds"]
                row["memory_vs_base"] = row["peak_memory_mib"] / ref["peak_memory_mib"]
    for row in rows:
        row.setdefault("time_vs_base", None)
        row.setdefault("memory_vs_base", None)
        row.setdefault("note", "")
    report(
        "switches",
        rows,
        [
            "switch",
            "kind",
            "step_seconds",
            "time_vs_base",
            "peak_memory_mib",
            "memory_vs_base",
            "transformer_weights_mib",
            "needs",
            "note",
        ],
        {
            "device": opts.device,
            "steps": opts.steps,
            "threads": torch.get_num_threads(),
            "train_config": "Wan2.1-1.3B proportions at width 512, 30 blocks, cached latents (16, 5, 16, 16) x 2",
            "vae_config": "Wan2.1 VAE at real width, 2 clips of 9 x 128 x 128",
        },
    )


if __name__ == "__main__":
    main()
