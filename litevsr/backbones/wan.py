"""Wan2.1 / Wan2.2 (diffusers `WanTransformer3DModel` + `AutoencoderKLWan`) as a frozen backbone."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    AvgDown3D,
    DupUp3D,
    WanAttentionBlock,
    WanCausalConv3d,
    WanResidualBlock,
)

from litevsr.backbones.base import VideoBackbone

TINY_PATH = Path(__file__).resolve().parent.parent / "assets" / "tiny-wan"

# Configs of published checkpoints, so that `empty_weights=True` can build them on the meta device
# without a download (parameter counts, shapes, injection targets).
KNOWN_CONFIGS = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {
        "transformer": dict(
            patch_size=(1, 2, 2),
            num_attention_heads=12,
            attention_head_dim=128,
            in_channels=16,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=8960,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            rope_max_seq_len=1024,
        ),
        "vae": dict(
            base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
        ),
    },
}
KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-14B-Diffusers"] = {
    "transformer": {
        **KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
        "num_attention_heads": 40,
        "ffn_dim": 13824,
        "num_layers": 40,
    },
    "vae": KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["vae"],
}
# Wan2.2's VAE folds 2x2 pixels into 12 channels, then downsamples 8x: 16x spatial, 4x temporal, 48 channels.
# latents_mean/std are placeholders of the right length: a meta-device build needs shapes, not statistics.
KNOWN_CONFIGS["Wan-AI/Wan2.2-TI2V-5B-Diffusers"] = {
    "transformer": {
        **KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
        "num_attention_heads": 24,
        "ffn_dim": 14336,
        "num_layers": 30,
        "in_channels": 48,
        "out_channels": 48,
    },
    "vae": dict(
        base_dim=160,
        decoder_base_dim=256,
        z_dim=48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
    ),
}


class WanBackbone(VideoBackbone):
    family = "wan"
    KNOWN_CONFIGS = KNOWN_CONFIGS
    TWIN_SHRINK = {
        "transformer": dict(
            num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32, num_layers=4
        ),
        "vae": dict(base_dim=8, num_res_blocks=1),
    }
    PIPELINE = "WanPipeline"
    LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
    TRANSFORMER_CLASS, VAE_CLASS = WanTransformer3DModel, AutoencoderKLWan
    ALIASES = {"tiny": str(TINY_PATH)}

    def __init__(self, pretrained: str = "tiny", **kwargs):
        """A frozen Wan2.1 / Wan2.2 transformer + VAE (the other arguments: see `VideoBackbone`).

        Args:
            pretrained: "tiny" (the generator shipped with litevsr), a local diffusers folder, a hub id such as
                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", or "twin:<hub id>" (its tiny random-weight twin).
        """
        super().__init__(pretrained, **kwargs)
        if not self.empty_weights:
            self.vae = skip_noop_layers(self.vae)

        tcfg, vcfg = self.transformer.config, self.vae.config
        self.blocks = self.transformer.blocks
        self.hidden_dim = tcfg.num_attention_heads * tcfg.attention_head_dim
        self.num_blocks = len(self.blocks)
        self.patch_size = tuple(tcfg.patch_size)
        self.latent_channels = tcfg.in_channels
        self.vae_stride = (vcfg.scale_factor_temporal, vcfg.scale_factor_spatial, vcfg.scale_factor_spatial)
        # AutoencoderKLWan encodes the first frame, then chunks of 4, whatever its temporal stride.
        self.frame_step = max(4, self.vae_stride[0] * self.patch_size[0])
        self.vae_is_pointwise = is_pointwise(self.vae)
        device = "meta" if self.empty_weights else "cpu"
        self.register_buffer(
            "latents_mean", torch.tensor(vcfg.latents_mean, device=device).view(1, -1, 1, 1, 1), persistent=False
        )
        self.register_buffer(
            "latents_std", torch.tensor(vcfg.latents_std, device=device).view(1, -1, 1, 1, 1), persistent=False
        )
        self._freeze()

    @classmethod
    def twin_config(cls, name: str) -> dict:
        config = super().twin_config(name)
        if (
            "decoder_base_dim" in cls.KNOWN_CONFIGS[name]["vae"]
        ):  # keep the decoder wider than the encoder, as Wan2.2's is
            config["vae"]["decoder_base_dim"] = 2 * cls.TWIN_SHRINK["vae"]["base_dim"]
        return config

    @classmethod
    def prompt_shape(cls, transformer_config) -> tuple[int, int]:
        return 8, transformer_config["text_dim"]  # any length: Wan's cross-attention reads the text as given

    @property
    def patch_embedding(self) -> torch.nn.Module:
        return self.transformer.patch_embedding

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch = latents.shape[0]
        dtype = self.transformer.dtype
        prompt = self.prompt_embeds.expand(batch, -1, -1).to(dtype)
        # Wan's scheduler uses timesteps = sigma * 1000; float timesteps are accepted.
        out = self.transformer(latents.to(dtype), sigma.float() * 1000, prompt, return_dict=False)[0]
        return out.float()

    def macs_per_token(self, tokens: int) -> float:
        """Per block: projections (self-attention q, k, v, out; cross-attention q, out) and the FFN, fixed per
        token, plus self-attention scores and values over all `tokens` (the one short text context is left out)."""
        d = self.hidden_dim
        return self.num_blocks * (6 * d * d + 2 * d * self.transformer.config.ffn_dim + 2 * d * tokens)


class _PassThrough(torch.nn.Module):
    """Stands in for a VAE layer that adds exactly zero: takes the same arguments (feature caches), returns x."""

    def forward(self, x, *args, **kwargs):
        return x


def _adds_nothing(module: torch.nn.Module) -> bool:
    """A residual block with an identity shortcut whose last conv is zero, or an attention block whose output
    projection is zero: either returns its input unchanged."""
    if isinstance(module, WanResidualBlock):
        last, shortcut_is_identity = module.conv2, isinstance(module.conv_shortcut, torch.nn.Identity)
    elif isinstance(module, WanAttentionBlock):
        last, shortcut_is_identity = module.proj, True
    else:
        return False
    return shortcut_is_identity and not (last.weight.any() or last.bias.any())


def _current_pixel_only(conv: WanCausalConv3d) -> torch.nn.Module:
    """A causal conv whose only non-zero tap is the current frame's centre pixel, as a 1x1x1 conv (same output,
    no neighbours read); any other conv unchanged."""
    t, h, w = conv.kernel_size
    aligned = (
        conv.stride == (1, 1, 1)
        and conv.dilation == (1, 1, 1)
        and conv.groups == 1
        and conv._padding == (w // 2, w // 2, h // 2, h // 2, t - 1, 0)
    )
    if (t, h, w) == (1, 1, 1) or not aligned:
        return conv
    centre = conv.weight[:, :, t - 1, h // 2, w // 2]
    others = conv.weight.clone()
    others[:, :, t - 1, h // 2, w // 2] = 0
    if others.any():
        return conv
    pointwise = WanCausalConv3d(conv.in_channels, conv.out_channels, 1).to(conv.weight)
    with torch.no_grad():
        pointwise.weight.copy_(centre[:, :, None, None, None])
        pointwise.bias.copy_(conv.bias)
    return pointwise


def skip_noop_layers(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Drop the VAE's layers that add exactly zero, and shrink convs that read only the current pixel to 1x1x1.

    The embedded PCA VAE (litevsr.backbones.pca_vae) is a per-pixel linear map held in a full Wan VAE: its
    residual blocks and attention add zero and its convs have one tap, yet as loaded it runs 3x3x3 convs at full
    resolution frame by frame. The output is the same; trained VAEs have no such layers and are left as they are."""
    for parent in list(vae.modules()):
        for name, child in list(parent.named_children()):
            if _adds_nothing(child):
                setattr(parent, name, _PassThrough())
            elif isinstance(child, WanCausalConv3d):
                setattr(parent, name, _current_pixel_only(child))
    # The feature caches are sized by counting the causal convs once, at construction.
    vae._cached_conv_counts = {
        half: sum(isinstance(m, WanCausalConv3d) for m in getattr(vae, half).modules())
        for half in ("encoder", "decoder")
    }
    return vae


def is_pointwise(vae: torch.nn.Module) -> bool:
    """Whether every output pixel (of the patchified frame) depends on the same input pixel only: no conv with
    a spatial or temporal extent, no attention and no resampling. Such a VAE needs no tiles."""
    for module in vae.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd) and (
            any(k != 1 for k in module.kernel_size) or any(s != 1 for s in module.stride)
        ):
            return False
        if isinstance(module, (WanAttentionBlock, torch.nn.Upsample, AvgDown3D, DupUp3D)):
            return False
    return True


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
GENERAL_ADAPTER = TINY_PATH.parent / "general-adapter"
#: Shipped adapters by name, wherever a path to an adapter folder is asked for.
SHIPPED_ADAPTERS = {"general": GENERAL_ADAPTER}
DEFAULT_ADAPTER = "general"
