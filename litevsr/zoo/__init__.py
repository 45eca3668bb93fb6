"""What litevsr ships and makes, above the frozen backbones and the adapters: the embedded generator ("tiny") and
its default adapter, tiny random-weight twins of published checkpoints ("twin:<hub id>"), and the PCA VAE.

Importing this package registers the names "tiny" and "twin:<hub id>" with `litevsr.backbones` (the pipeline, the
training module and the CLI import it), so recipes and `--backbone` can use them.
"""

from __future__ import annotations

from pathlib import Path

from litevsr.backbones import detect_family
from litevsr.backbones.base import VideoBackbone, register_source
from litevsr.zoo.pca_vae import skip_noop_layers
from litevsr.zoo.twins import TWIN_PREFIX, cached_twin

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The embedded generator's folder (diffusers layout), trained by tools/pretrain_generator.py.
TINY_PATH = ASSETS / "tiny-wan"

# The embedded generator's architecture: the real Wan classes at CPU size. Its VAE folds 2x2 pixels into channels
# (Wan2.2's patch_size=2) and does not downsample further: 12 -> 6 channels at half resolution, no temporal
# compression, so reconstructions stay far above bicubic x4. The transformer's 4x4 patches
# keep the token grid at 1/8 of the pixels, as with the real Wan2.1, and a token's 96 latent values stay below its
# hidden width of 128, so (as in Wan2.1: 64 values, width 1536) the output head can reach every latent direction.
TINY_CONFIG = {
    "transformer": dict(
        patch_size=(1, 4, 4),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=6,
        out_channels=6,
        text_dim=32,
        freq_dim=64,
        ffn_dim=512,
        num_layers=6,
        rope_max_seq_len=256,
    ),
    "vae": dict(
        base_dim=16,
        z_dim=6,
        dim_mult=[1],
        num_res_blocks=1,
        temperal_downsample=[],
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=1,
        scale_factor_spatial=2,
        latents_mean=[0.0] * 6,
        latents_std=[1.0] * 6,
    ),
}


#: The default adapter: x4 on the shipped generator, trained by recipes/general_x4.yaml on natural, animation and
#: screen footage with plain bicubic and real-world LQ. recipes/demo.yaml starts from it.
GENERAL_ADAPTER = ASSETS / "general-adapter"
#: Shipped adapters by name, wherever a path to an adapter folder is asked for.
SHIPPED_ADAPTERS = {"general": GENERAL_ADAPTER}
DEFAULT_ADAPTER = "general"


def adapter_path(name: str) -> str:
    """A shipped adapter's folder for its name; any other name or path as given."""
    return str(SHIPPED_ADAPTERS.get(name, name))


# The embedded VAE is a PCA held in a full Wan VAE: its no-op layers are skipped at load (trained VAEs have none).
register_source("tiny", lambda name: str(TINY_PATH), prepare_vae=skip_noop_layers)
register_source(TWIN_PREFIX, lambda name: cached_twin(name.removeprefix(TWIN_PREFIX)))


def load_backbone(pretrained: str, **kwargs) -> VideoBackbone:
    """The backbone `pretrained` names (a folder, a hub id, "tiny" or "twin:<hub id>"), of the family it detects."""
    return detect_family(pretrained)(pretrained, **kwargs)
