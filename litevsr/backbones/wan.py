"""Wan2.1 / Wan2.2 (diffusers `WanTransformer3DModel` + `AutoencoderKLWan`) as a frozen backbone."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.models.autoencoders.autoencoder_kl_wan import AvgDown3D, DupUp3D, WanAttentionBlock

from litevsr.backbones.base import VideoBackbone
from litevsr.backbones.spec import FamilySpec, Geometry

# Configs of published checkpoints, so that `empty_weights=True` can build them on the meta device
# without a download (parameter counts, shapes, injection targets).
_CONFIGS = {
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
_CONFIGS["Wan-AI/Wan2.1-T2V-14B-Diffusers"] = {
    "transformer": {
        **_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
        "num_attention_heads": 40,
        "ffn_dim": 13824,
        "num_layers": 40,
    },
    "vae": _CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["vae"],
}
# Wan2.2's VAE folds 2x2 pixels into 12 channels, then downsamples 8x: 16x spatial, 4x temporal, 48 channels.
# latents_mean/std are placeholders of the right length: a meta-device build needs shapes, not statistics.
_CONFIGS["Wan-AI/Wan2.2-TI2V-5B-Diffusers"] = {
    "transformer": {
        **_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
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


def _geometry(tcfg, vcfg) -> Geometry:
    patch = tuple(tcfg["patch_size"])
    stride = (vcfg["scale_factor_temporal"], vcfg["scale_factor_spatial"], vcfg["scale_factor_spatial"])
    return Geometry(
        hidden_dim=tcfg["num_attention_heads"] * tcfg["attention_head_dim"],
        num_blocks=tcfg["num_layers"],
        patch_size=patch,
        latent_channels=tcfg["in_channels"],
        vae_stride=stride,
        # AutoencoderKLWan encodes the first frame, then chunks of 4, whatever its temporal stride.
        frame_step=max(4, stride[0] * patch[0]),
    )


_TWIN_VAE_BASE_DIM = 8

WAN = FamilySpec(
    name="wan",
    transformer_class=WanTransformer3DModel,
    vae_class=AutoencoderKLWan,
    pipeline="WanPipeline",
    blocks="blocks",
    known_configs=_CONFIGS,
    twin_shrink={
        "transformer": dict(
            num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32, num_layers=4
        ),
        "vae": dict(base_dim=_TWIN_VAE_BASE_DIM, num_res_blocks=1),
    },
    # keep the decoder wider than the encoder, as Wan2.2's is
    twin_shrink_where_set={"vae": dict(decoder_base_dim=2 * _TWIN_VAE_BASE_DIM)},
    lora_targets=("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"),
    prompt_shape=lambda tcfg: (8, tcfg["text_dim"]),  # any length: Wan's cross-attention reads the text as given
    geometry=_geometry,
)


class WanBackbone(VideoBackbone):
    spec = WAN

    def __init__(self, pretrained: str = "tiny", **kwargs):
        """A frozen Wan2.1 / Wan2.2 transformer + VAE (the other arguments: see `VideoBackbone`).

        Args:
            pretrained: A local diffusers folder, a hub id such as
                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", or "twin:<hub id>" (its tiny random-weight twin).
        """
        super().__init__(pretrained, **kwargs)
        self.vae_is_pointwise = is_pointwise(self.vae)

    def _latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.vae.config.latents_mean), torch.tensor(self.vae.config.latents_std)

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
