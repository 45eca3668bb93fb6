"""Memory and speed switches of a frozen backbone, and how they are applied to its transformer and VAE."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from litevsr.errors import LiteVSRError


@dataclasses.dataclass
class Switches:
    """Memory and speed switches of a frozen backbone (in a recipe: `model.backbone.init_args.switches`).

    Args:
        storage_dtype: Store the transformer's layer weights in this dtype ("float8_e4m3fn" or "float8_e5m2") and
            cast each layer to the backbone's `dtype` only while it runs (diffusers' layerwise casting): about half
            the weight memory of bfloat16, at some precision.
        group_offload: Keep the transformer's blocks on the CPU and move one block at a time to this device
            ("cuda") as it runs (diffusers' group offloading), for inference on a card that cannot hold them all.
        vae_slicing: Encode and decode one video of a batch at a time.
        vae_tiling: Encode and decode in spatial tiles (diffusers' defaults; `litevsr upscale` tiles on its own).
        compile: torch.compile each transformer block (diffusers' compile_repeated_blocks): faster steps after a
            compilation on the first call (a C++ compiler is needed on the CPU).
    """

    storage_dtype: str | None = None
    group_offload: str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    compile: bool = False


STORAGE_DTYPES = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


def apply_switches(switches: Switches, transformer: nn.Module, vae: nn.Module) -> None:
    """Turn on `switches` on a frozen transformer and VAE (diffusers' own mechanisms)."""
    if switches.storage_dtype is not None:
        if switches.storage_dtype not in STORAGE_DTYPES:
            raise LiteVSRError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {switches.storage_dtype!r}")
        transformer.enable_layerwise_casting(
            storage_dtype=STORAGE_DTYPES[switches.storage_dtype], compute_dtype=transformer.dtype
        )
    if switches.group_offload is not None:
        transformer.enable_group_offload(
            onload_device=torch.device(switches.group_offload), offload_type="block_level", num_blocks_per_group=1
        )
    if switches.vae_slicing:
        vae.enable_slicing()
    if switches.vae_tiling:
        vae.enable_tiling()
    if switches.compile:
        transformer.compile_repeated_blocks()
