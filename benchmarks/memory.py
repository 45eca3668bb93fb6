"""Training memory per backbone size, the State-Aware Adapter against a full fine-tune, computed from meta-device
shapes and checked against measurements on tiny configs.

Parameters, gradients and AdamW states come from the real parameter counts (meta device, nothing downloaded):
the adapter trains in fp32 over a frozen bf16 transformer; a full fine-tune keeps fp32 master weights (16 bytes per
parameter with gradients and AdamW's two moments). The VAE (fp32) is counted with the parameters.

Activations are what autograd saves in one training step, measured on tiny Wan transformers with Wan2.1-1.3B's
FFN / hidden width ratio by counting the bytes of saved tensors, then expressed as bytes per block, token and hidden
unit. The check: the coefficient measured at one width and token count predicts the measurement at twice the width
and four times the tokens. Real activations are that coefficient x blocks x tokens x hidden width, halved for bf16
compute, for one clip of 17 x 480 x 832 (batch 1); with gradient checkpointing, the saved block inputs plus one
block recomputed. Wan backbones only: the other families' blocks differ.

    python benchmarks/memory.py
"""

from __future__ import annotations

import tempfile
from functools import partial

import torch
from common import report

GIB = 2**30
CLIP = (17, 480, 832)  # frames, height, width of the training clip the table assumes
BACKBONES = {
    "Wan2.1-T2V-1.3B": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "CogVideoX-2b": "THUDM/CogVideoX-2b",
    "LTX-Video (2B)": "Lightricks/LTX-Video",
    "Wan2.2-TI2V-5B": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "CogVideoX-5b": "THUDM/CogVideoX-5b",
    "Wan2.1-T2V-14B": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
}


def tiny_transformer(width: int) -> dict:
    """Wan2.1-1.3B's transformer at `width`: its FFN / width ratio, 2 heads, 3 blocks."""
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=width // 2,
        in_channels=16,
        out_channels=16,
        text_dim=64,
        freq_dim=64,
        ffn_dim=round(width * 8960 / 1536),
        num_layers=3,
        rope_max_seq_len=64,
    )


def saved_bytes(width: int, latent_hw: int, method: str, checkpointing: bool) -> int:
    """Bytes of the tensors autograd saves (parameters excluded, each storage once) in one training step."""
    from litevsr.adapters import FullFinetuneAdapter, StateAwareAdapter
    from litevsr.backbones.wan import WAN, WanBackbone
    from litevsr.module import LiteVSRModule
    from litevsr.zoo.twins import twin_config

    config = {"transformer": tiny_transformer(width), "vae": twin_config("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["vae"]}
    with tempfile.TemporaryDirectory() as folder:
        WAN.save(*WAN.build(config), folder, torch.randn(1, 8, 64))
        backbone = WanBackbone(folder)
    adapter = partial(StateAwareAdapter, time_dim=64) if method == "adapter" else FullFinetuneAdapter
    module = LiteVSRModule(backbone, adapter, gradient_checkpointing=checkpointing)
    module.log = lambda *a, **k: None
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen, total = set(), [0]

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return t

    g = torch.Generator().manual_seed(0)
    x0, cond = (torch.randn(1, 16, 3, latent_hw, latent_hw, generator=g) for _ in range(2))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module.training_step({"hq_latents": x0, "cond_latents": cond, "vae_fingerprint": [backbone.vae_fingerprint]}, 0)
    return total[0]


def coefficient(width: int, latent_hw: int, method: str, checkpointing: bool) -> float:
    """Saved bytes per block, token and hidden unit (fp32) at this tiny size."""
    tokens = 3 * (latent_hw // 2) ** 2
    return saved_bytes(width, latent_hw, method, checkpointing) / (3 * tokens * width)


def main() -> None:
    from litevsr.adapters import FullFinetuneAdapter, StateAwareAdapter
    from litevsr.backbones import KNOWN_BACKBONES
    from litevsr.module import LiteVSRModule

    checks, coefficients = [], {}
    for method in ("adapter", "full"):
        for checkpointing in (False, True):
            k = coefficient(64, 8, method, checkpointing)
            predicted = k * 3 * (3 * 8**2) * 128  # twice the width, twice the tokens per frame side
            measured = saved_bytes(128, 16, method, checkpointing)
            coefficients[method, checkpointing] = k
            checks.append(
                {
                    "method": method,
                    "checkpointing": checkpointing,
                    "bytes_per_block_token_unit": k,
                    "predicted_MiB": predicted / 2**20,
                    "measured_MiB": measured / 2**20,
                    "error": predicted / measured - 1,
                }
            )
    report(
        "memory_check",
        checks,
        ["method", "checkpointing", "bytes_per_block_token_unit", "predicted_MiB", "measured_MiB", "error"],
        {"tiny": "Wan2.1-1.3B proportions, 3 blocks, widths 64 -> 128, latents 3 x 8 x 8 -> 3 x 16 x 16"},
    )
    print()

    rows = []
    for label, name in BACKBONES.items():
        cls = KNOWN_BACKBONES[name]
        for method in ("adapter", "full"):
            backbone = cls(name, empty_weights=True)
            adapter = StateAwareAdapter if method == "adapter" else FullFinetuneAdapter
            counts = LiteVSRModule(backbone, adapter).parameter_counts()
            transformer, vae = counts["transformer"], sum(p.numel() for p in backbone.vae.parameters())
            trained = counts["trainable"]
            weights = (2 * transformer + 4 * trained if method == "adapter" else 4 * trained) + 4 * vae
            frames = 1 + (CLIP[0] - 1) // backbone.vae_stride[0]
            tokens = frames * (CLIP[1] // backbone.spatial_multiple) * (CLIP[2] // backbone.spatial_multiple)
            row = {
                "backbone": label,
                "method": method,
                "trainable_M": trained / 1e6,
                "tokens": tokens,
                "weights_GiB": weights / GIB,
                "gradients_GiB": 4 * trained / GIB,
                "adamw_GiB": 8 * trained / GIB,
            }
            if cls.spec.name == "wan":
                unit = backbone.num_blocks * tokens * backbone.hidden_dim / 2  # bf16: half the fp32 bytes
                plain = coefficients[method, False] * unit
                kept = coefficients[method, True] * unit + plain / backbone.num_blocks  # + one block recomputed
                row.update(activations_GiB=plain / GIB, activations_checkpointed_GiB=kept / GIB)
                base = row["weights_GiB"] + row["gradients_GiB"] + row["adamw_GiB"]
                row.update(total_GiB=base + plain / GIB, total_checkpointed_GiB=base + kept / GIB)
            else:
                row.update(
                    activations_GiB=None, activations_checkpointed_GiB=None, total_GiB=None, total_checkpointed_GiB=None
                )
            rows.append(row)
    report(
        "memory",
        rows,
        [
            "backbone",
            "method",
            "trainable_M",
            "tokens",
            "weights_GiB",
            "gradients_GiB",
            "adamw_GiB",
            "activations_GiB",
            "activations_checkpointed_GiB",
            "total_GiB",
            "total_checkpointed_GiB",
        ],
        {
            "clip": f"{CLIP[0]} x {CLIP[1]} x {CLIP[2]}, batch 1",
            "precision": "bf16 compute; frozen transformer "
            "bf16; trained weights fp32 with fp32 gradients and AdamW moments",
            "coefficients": {f"{m}, checkpointing={c}": k for (m, c), k in coefficients.items()},
        },
    )


if __name__ == "__main__":
    main()
