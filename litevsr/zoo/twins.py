"""Tiny random-weight twins of published checkpoints, in every known family.

A twin keeps what decides whether code is right: the VAE's compression (spatial, temporal, causal 1 + 4k
layout, Wan2.2's pixel folding), the latent channels, the transformer's patch, block type, text length and frame
rule, and the hub repository's layout (model_index.json, subfolders, sharded safetensors with an index). It shrinks
what only decides cost: widths and depths (each family's `spec.twin_shrink`). Tests run every path on twins; users
smoke-test a recipe on one before renting GPUs (`litevsr twin NAME DIR`, or `pretrained: twin:NAME` in a recipe).
"""

from __future__ import annotations

import os

import torch

from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.adapters.base import backbone_dims
from litevsr.atomic import atomic_path
from litevsr.backbones import KNOWN_BACKBONES
from litevsr.errors import LiteVSRError

#: "twin:<hub id>" names a published checkpoint's twin wherever a backbone is asked for
TWIN_PREFIX = "twin:"

# About as many transformer weight files as the real repositories have: small ones are one file, larger ones are
# sharded with an index.
TRANSFORMER_SHARDS = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": 1,
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": 12,
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": 3,
    "THUDM/CogVideoX-2b": 2,
    "THUDM/CogVideoX-5b": 2,
    "Lightricks/LTX-Video": 2,
}
#: Std of the twin adapter's output projections: large enough that the adapter visibly changes the output.
TWIN_ADAPTER_OUTPUT_STD = 0.05


def _family(name: str):
    if name not in KNOWN_BACKBONES:
        raise LiteVSRError(f"no twin for {name!r}; known backbones: {', '.join(sorted(KNOWN_BACKBONES))}")
    return KNOWN_BACKBONES[name]


def twin_config(name: str) -> dict:
    """The {"transformer", "vae", ...} config of `name`'s twin."""
    return _family(name).spec.twin_config(name)


def write_twin(
    name: str, folder: str, seed: int = 0, scale: int = 4, backbone_name: str | None = None
) -> dict[str, str]:
    """Write `name`'s twin (diffusers layout) and an active random adapter for it into `folder` (new or empty). The
    adapter names its backbone `backbone_name` (default: the folder's absolute path).

    Returns {"backbone": folder, "adapter": the adapter's folder}."""
    cls = _family(name)
    spec = cls.spec
    config = spec.twin_config(name)
    if os.path.exists(folder) and os.listdir(folder):
        raise LiteVSRError(f"{folder} exists and is not empty; give the twin a new folder")
    transformer, vae = spec.build(config, seed=seed)
    prompt = torch.randn(1, *spec.prompt_shape(config["transformer"]), generator=torch.Generator().manual_seed(seed))
    bytes_ = sum(p.numel() * p.element_size() for p in transformer.parameters())
    spec.save(
        transformer,
        vae,
        folder,
        prompt,
        max_shard_size=int(1.1 * bytes_ / TRANSFORMER_SHARDS[name]),
        components=spec.extra_components(config),
        index_fields={"_litevsr_twin_of": name},
    )

    backbone = cls(folder)
    torch.manual_seed(seed)
    adapter = StateAwareAdapter(backbone_dims=backbone_dims(backbone), output_init_std=TWIN_ADAPTER_OUTPUT_STD)
    path = os.path.join(folder, "adapter")
    save_adapter(
        adapter,
        path,
        backbone_name or os.path.abspath(folder),
        scale=scale,
        sampling={"steps": 1, "sigma_start": 1.0, "shift": 1.0},
        family=spec.name,
    )
    return {"backbone": folder, "adapter": path}


def cached_twin(name: str) -> str:
    """The folder of `name`'s twin (seed 0) under $LITEVSR_CACHE (default ~/.cache/litevsr), written on first use."""
    cache = os.environ.get("LITEVSR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "litevsr")
    folder = os.path.join(cache, "twins", name.replace("/", "--"))
    if not os.path.isdir(folder):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        with atomic_path(folder) as tmp:
            write_twin(name, tmp, backbone_name=f"{TWIN_PREFIX}{name}")
    return folder
