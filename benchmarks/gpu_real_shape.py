"""GPU-only claims at the real Wan2.1-T2V-1.3B shape: training-step speed and memory, and 1-step inference FPS.

No weights are downloaded: a randomly initialised 1.3B transformer (bf16) and Wan2.1 VAE are saved to a temporary
folder and loaded back through `WanBackbone`'s from_pretrained path. Speed and memory do not depend on the values.

    python benchmarks/gpu_real_shape.py [--frames 17 --height 480 --width 832]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from functools import partial

import torch
from common import report

REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def build_backbone(folder: str, config: dict, device: str):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from litevsr.backbones.wan import WAN, WanBackbone

    with torch.device(device):
        transformer = WanTransformer3DModel.from_config(config["transformer"]).to(torch.bfloat16)
        vae = AutoencoderKLWan.from_config(config["vae"])
    WAN.save(transformer, vae, folder, torch.randn(1, 64, config["transformer"]["text_dim"]))
    del transformer, vae
    start = time.perf_counter()
    backbone = WanBackbone(folder, dtype="bfloat16").to(device)
    return backbone, time.perf_counter() - start


def timed(fn, repeats: int, device: str) -> tuple[float, float]:
    """(seconds per call, peak GiB; NaN off CUDA) after one warm-up call."""
    cuda = device == "cuda"
    fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny config on the CPU: checks the script runs")
    args = parser.parse_args()
    from litevsr.adapters import StateAwareAdapter, save_adapter
    from litevsr.backbones.wan import WAN
    from litevsr.data.video import encode_video
    from litevsr.frames import video_to_frames
    from litevsr.inference import upscale_file
    from litevsr.module import LiteVSRModule
    from litevsr.pipeline import LiteVSRPipeline
    from litevsr.zoo import TINY_CONFIG

    device = "cpu" if args.smoke else "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    folder = tempfile.mkdtemp()
    backbone, load_s = build_backbone(folder, TINY_CONFIG if args.smoke else WAN.known_configs[REPO], device)
    t, h, w = args.frames, args.height, args.width
    hq = torch.rand(1, 3, t, h, w, device=device) * 2 - 1
    lq = torch.rand(1, 3, t, h // 4, w // 4, device=device) * 2 - 1
    rows = []

    def add(name: str, seconds: float, peak: float, **extra) -> None:
        rows.append({"measure": name, "seconds": seconds, "peak_GiB": peak, **extra})
        print(rows[-1], flush=True)

    with torch.no_grad():
        add("vae encode (HQ clip)", *timed(lambda: backbone.encode(hq), args.repeats, device))
        latents = backbone.encode(hq)
        add("vae decode", *timed(lambda: backbone.decode(latents), args.repeats, device))

    adapter = partial(StateAwareAdapter, structure_depth=2, refinement_depth=2, inject_every=3)  # recipes/anime.yaml
    for checkpointing in (False, True):
        module = LiteVSRModule(backbone, adapter, gradient_checkpointing=checkpointing).to(device)
        module.log = lambda *a, **k: None  # no trainer attached
        optimizer = torch.optim.AdamW(module.adapter.parameters(), lr=1e-5)

        def step(module=module, optimizer=optimizer):  # bound now: timed() calls it within this iteration
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = module.training_step({"hq": hq, "lq": lq}, 0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        add(
            f"adapter train step, bf16, checkpointing={checkpointing}",
            *timed(step, args.repeats, device),
            trainable_M=sum(p.numel() for p in module.adapter.parameters()) / 1e6,
        )
        del optimizer
        if checkpointing:
            backbone.transformer.disable_gradient_checkpointing()
            module.adapter.gradient_checkpointing = False

    # Upscaling as `litevsr upscale` runs it: the pipeline (device, bfloat16 transformer) and upscale_file on an LQ
    # video file, with its default windows and automatic tiles.
    save_adapter(
        module.adapter, f"{folder}/adapter", folder, scale=4, sampling={"steps": 1, "sigma_start": 0.5, "shift": 1.0}
    )
    module = backbone = None  # free the training copy before measuring upscaling
    pipe = LiteVSRPipeline.from_pretrained(f"{folder}/adapter", backbone=folder, torch_dtype=torch.bfloat16).to(device)
    with open(f"{folder}/lq.mkv", "wb") as f:
        f.write(encode_video(video_to_frames(lq[0].cpu())))
    for steps in (1, 4):
        sampling = pipe.sampling(steps=steps)
        seconds, peak = timed(
            lambda sampling=sampling: upscale_file(
                pipe, f"{folder}/lq.mkv", f"{folder}/sr.mp4", 4, sampling, overwrite=True
            ),
            args.repeats,
            device,
        )
        add(f"litevsr upscale x4, {steps} step(s), defaults, bf16", seconds, peak, frames_per_s=t / seconds)
    backbone = pipe.backbone

    # Full fine-tuning of the same transformer (bf16 weights, AdamW, gradient checkpointing) for comparison.
    transformer = backbone.transformer.requires_grad_(True).train()
    transformer.enable_gradient_checkpointing()
    full_optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-5)
    x = backbone.encode(hq).to(torch.bfloat16)
    sigma = torch.full((1,), 0.5, device=device)

    def full_step():
        loss = backbone(x, sigma).float().square().mean()
        loss.backward()
        full_optimizer.step()
        full_optimizer.zero_grad(set_to_none=True)

    try:
        add(
            "full fine-tune step (no adapter), bf16, checkpointing=True",
            *timed(full_step, args.repeats, device),
            trainable_M=sum(p.numel() for p in transformer.parameters()) / 1e6,
        )
    except torch.OutOfMemoryError:
        add("full fine-tune step: out of memory", float("nan"), float("nan"))
    report(
        "gpu_real_shape_smoke" if args.smoke else "gpu_real_shape",
        rows,
        ["measure", "seconds", "peak_GiB"],
        {
            "shape": {"frames": t, "height": h, "width": w, "batch": 1},
            "backbone": "tiny" if args.smoke else REPO + " (random weights)",
            "load_from_folder_s": load_s,
        },
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
