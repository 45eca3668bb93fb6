"""Tiny random-weight twins of published Wan checkpoints.

A twin keeps what decides whether code is right: the VAE's compression (spatial, temporal, causal 1 + 4k
layout, Wan2.2's pixel folding), the latent channels, the transformer's patch, block type and frame rule, and
the hub repository's layout (model_index.json, subfolders, sharded safetensors with an index). It shrinks what
only decides cost: widths and depths. Tests run every path on twins; users smoke-test a recipe on one before
renting GPUs (`litevsr twin NAME DIR`).
"""

from __future__ import annotations

import json
import os

import torch

import diffusers
from litevsr import LiteVSRError
from litevsr.backbones.wan import KNOWN_CONFIGS, WanBackbone, build_wan, save_wan

# Widths and depths only; every other field comes from the real config.
TWIN_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32,
                        num_layers=4)
TWIN_VAE = dict(base_dim=8, num_res_blocks=1)
# About as many transformer weight files as the real repositories have: the 1.3B's is one file, the larger ones
# are sharded with an index.
TRANSFORMER_SHARDS = {"Wan-AI/Wan2.1-T2V-1.3B-Diffusers": 1, "Wan-AI/Wan2.1-T2V-14B-Diffusers": 12,
                      "Wan-AI/Wan2.2-TI2V-5B-Diffusers": 3}
#: Std of the twin adapter's output projections: large enough that the adapter visibly changes the output.
TWIN_ADAPTER_OUTPUT_STD = 0.05


def twin_config(name: str) -> dict:
    """The {"transformer", "vae"} config of `name`'s twin."""
    if name not in KNOWN_CONFIGS:
        raise LiteVSRError(f"no twin for {name!r}; known backbones: {', '.join(sorted(KNOWN_CONFIGS))}")
    real = KNOWN_CONFIGS[name]
    vae = {**real["vae"], **TWIN_VAE}
    if "decoder_base_dim" in real["vae"]:  # keep the decoder wider than the encoder, as Wan2.2's is
        vae["decoder_base_dim"] = 2 * TWIN_VAE["base_dim"]
    return {"transformer": {**real["transformer"], **TWIN_TRANSFORMER}, "vae": vae}


def write_twin(name: str, folder: str, seed: int = 0, scale: int = 4) -> dict[str, str]:
    """Write `name`'s twin (diffusers layout) and an active random adapter for it into `folder` (new or empty).

    Returns {"backbone": folder, "adapter": the adapter's folder}."""
    from litevsr.adapters import StateAwareAdapter, save_adapter

    config = twin_config(name)
    if os.path.exists(folder) and os.listdir(folder):
        raise LiteVSRError(f"{folder} exists and is not empty; give the twin a new folder")
    transformer, vae = build_wan(config, seed=seed)
    prompt = torch.randn(1, 8, config["transformer"]["text_dim"], generator=torch.Generator().manual_seed(seed))
    bytes_ = sum(p.numel() * p.element_size() for p in transformer.parameters())
    save_wan(transformer, vae, folder, prompt, max_shard_size=int(1.1 * bytes_ / TRANSFORMER_SHARDS[name]))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
                   "_litevsr_twin_of": name, "transformer": ["diffusers", "WanTransformer3DModel"],
                   "vae": ["diffusers", "AutoencoderKLWan"], "scheduler": [None, None],
                   "text_encoder": [None, None], "tokenizer": [None, None]}, f, indent=2)

    backbone = WanBackbone(folder)
    torch.manual_seed(seed)
    adapter = StateAwareAdapter(output_init_std=TWIN_ADAPTER_OUTPUT_STD)
    adapter.bind(backbone)
    path = os.path.join(folder, "adapter")
    save_adapter(adapter, path, os.path.abspath(folder), scale=scale,
                 sampling={"steps": 1, "sigma_start": 1.0, "shift": 1.0})
    return {"backbone": folder, "adapter": path}
