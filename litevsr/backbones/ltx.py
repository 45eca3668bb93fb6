"""LTX-Video 0.9.x (diffusers `LTXVideoTransformer3DModel` + `AutoencoderKLLTXVideo`) as a frozen backbone.

LTX-Video is a rectified flow like Wan (velocity eps - x0, timestep sigma * 1000), so the objective carries over
unchanged. Its VAE compresses 32x in space and 8x in time into 128 channels, and its transformer reads packed
tokens (B, F * H * W, C) with patch size 1, in the same (f, h, w) order as the adapters' tokens.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

from litevsr.backbones.base import VideoBackbone
from litevsr.backbones.spec import FamilySpec, Geometry

#: the frame rate LTX-Video's rotary positions are scaled for (its pipeline's default)
FRAME_RATE = 25


def _geometry(tcfg, vcfg) -> Geometry:
    # AutoencoderKLLTXVideo's compression ratios, as it derives them from its config
    doublings = 2 ** sum(vcfg["spatio_temporal_scaling"])
    spatial = vcfg["spatial_compression_ratio"] or vcfg["patch_size"] * doublings
    temporal = vcfg["temporal_compression_ratio"] or vcfg["patch_size_t"] * doublings
    return Geometry(
        hidden_dim=tcfg["num_attention_heads"] * tcfg["attention_head_dim"],
        num_blocks=tcfg["num_layers"],
        patch_size=(tcfg["patch_size_t"], tcfg["patch_size"], tcfg["patch_size"]),
        latent_channels=tcfg["in_channels"],
        vae_stride=(temporal, spatial, spatial),
        frame_step=temporal,  # a causal 1 + 8k layout
    )


LTX = FamilySpec(
    name="ltx",
    transformer_class=LTXVideoTransformer3DModel,
    vae_class=AutoencoderKLLTXVideo,
    pipeline="LTXPipeline",
    blocks="transformer_blocks",
    # LTX-Video 0.9.0 as diffusers ships it: the classes' defaults are its configs.
    known_configs={"Lightricks/LTX-Video": {"transformer": {}, "vae": {}}},
    twin_shrink={
        "transformer": dict(
            num_attention_heads=2, attention_head_dim=16, cross_attention_dim=32, caption_channels=32, num_layers=4
        ),
        "vae": dict(
            block_out_channels=(8, 8, 16, 16),
            decoder_block_out_channels=(8, 8, 16, 16),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
        ),
    },
    lora_targets=("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    prompt_shape=lambda tcfg: (8, tcfg.get("caption_channels", 4096)),
    geometry=_geometry,
)


class LTXVideoBackbone(VideoBackbone):
    spec = LTX

    def __init__(self, pretrained: str = "Lightricks/LTX-Video", **kwargs):
        """A frozen LTX-Video transformer + VAE (the other arguments: see `VideoBackbone`). Its prompt embedding is
        T5's real tokens only ((1, L, 4096)): all of them are attended to.

        Args:
            pretrained: A local diffusers folder, a hub id such as "Lightricks/LTX-Video", or "twin:<hub id>".
        """
        super().__init__(pretrained, **kwargs)

    def _latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        # LTX normalises latents per channel and then scales them: (z - mean) * scaling_factor / std.
        return self.vae.latents_mean, self.vae.latents_std / self.vae.config.scaling_factor

    @property
    def patch_embedding(self) -> torch.nn.Module:
        return self.transformer.proj_in

    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        # VAEs from 0.9.1 on condition their decoder on a timestep; 0 (no decode noise) as in LTX's pipeline
        timestep = (
            torch.zeros(latents.shape[0], device=latents.device) if self.vae.config.timestep_conditioning else None
        )
        return self.vae.decode(latents, timestep).sample

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = latents.shape
        dtype = self.transformer.dtype
        prompt = self.prompt_embeds.expand(batch, -1, -1).to(dtype)
        packed = latents.flatten(2).transpose(1, 2).to(dtype)  # (B, F * H * W, C), patch size 1
        scale = (self.vae_stride[0] / FRAME_RATE, self.vae_stride[1], self.vae_stride[2])
        out = self.transformer(
            packed,
            prompt,
            sigma.float() * 1000,
            torch.ones(prompt.shape[:2], device=latents.device, dtype=dtype),
            num_frames=frames,
            height=height,
            width=width,
            rope_interpolation_scale=scale,
            return_dict=False,
        )[0]
        return out.float().transpose(1, 2).reshape(batch, channels, frames, height, width)

    def macs_per_token(self, tokens: int) -> float:
        """Per block: self-attention q, k, v, out; cross-attention q, out; the 4x FFN, fixed per token; plus
        self-attention over all `tokens` (the short text context is left out)."""
        d = self.hidden_dim
        return self.num_blocks * (14 * d * d + 2 * d * tokens)
