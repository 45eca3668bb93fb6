"""LTX-Video 0.9.x (diffusers `LTXVideoTransformer3DModel` + `AutoencoderKLLTXVideo`) as a frozen backbone.

LTX-Video is a rectified flow like Wan (velocity eps - x0, timestep sigma * 1000), so the objective carries over
unchanged. Its VAE compresses 32x in space and 8x in time into 128 channels, and its transformer reads packed
tokens (B, F * H * W, C) with patch size 1, in the same (f, h, w) order as the adapters' tokens.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

from litevsr.backbones.base import VideoBackbone

#: the frame rate LTX-Video's rotary positions are scaled for (its pipeline's default)
FRAME_RATE = 25

# LTX-Video 0.9.0 as diffusers ships it: the classes' defaults are its configs.
KNOWN_CONFIGS = {"Lightricks/LTX-Video": {"transformer": {}, "vae": {}}}


class LTXVideoBackbone(VideoBackbone):
    family = "ltx"
    KNOWN_CONFIGS = KNOWN_CONFIGS
    TWIN_SHRINK = {
        "transformer": dict(
            num_attention_heads=2, attention_head_dim=16, cross_attention_dim=32, caption_channels=32, num_layers=4
        ),
        "vae": dict(
            block_out_channels=(8, 8, 16, 16),
            decoder_block_out_channels=(8, 8, 16, 16),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
        ),
    }
    PIPELINE = "LTXPipeline"
    LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
    TRANSFORMER_CLASS, VAE_CLASS = LTXVideoTransformer3DModel, AutoencoderKLLTXVideo

    def __init__(self, pretrained: str = "Lightricks/LTX-Video", **kwargs):
        """A frozen LTX-Video transformer + VAE (the other arguments: see `VideoBackbone`). Its prompt embedding is
        T5's real tokens only ((1, L, 4096)): all of them are attended to.

        Args:
            pretrained: A local diffusers folder, a hub id such as "Lightricks/LTX-Video", or "twin:<hub id>".
        """
        super().__init__(pretrained, **kwargs)
        tcfg, vcfg = self.transformer.config, self.vae.config
        self.blocks = self.transformer.transformer_blocks
        self.hidden_dim = tcfg.num_attention_heads * tcfg.attention_head_dim
        self.num_blocks = len(self.blocks)
        self.patch_size = (tcfg.patch_size_t, tcfg.patch_size, tcfg.patch_size)
        self.latent_channels = tcfg.in_channels
        self.vae_stride = (
            self.vae.temporal_compression_ratio,
            self.vae.spatial_compression_ratio,
            self.vae.spatial_compression_ratio,
        )
        self.frame_step = self.vae.temporal_compression_ratio  # a causal 1 + 8k layout
        # LTX normalises latents per channel and then scales them: (z - mean) * scaling_factor / std.
        self.register_buffer("latents_mean", self.vae.latents_mean.view(1, -1, 1, 1, 1).float(), persistent=False)
        self.register_buffer(
            "latents_std", (self.vae.latents_std / vcfg.scaling_factor).view(1, -1, 1, 1, 1).float(), persistent=False
        )
        self._freeze()

    @classmethod
    def prompt_shape(cls, transformer_config) -> tuple[int, int]:
        return 8, transformer_config.get("caption_channels", 4096)

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
