"""Wan2.1 / Wan2.2 (diffusers `WanTransformer3DModel` + `AutoencoderKLWan`) as a frozen backbone."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file
from lightning.pytorch.utilities import rank_zero_info

from litevsr import LiteVSRError
from litevsr.backbones.base import VideoBackbone

TINY_PATH = Path(__file__).resolve().parent.parent / "assets" / "tiny-wan"

# Configs of published checkpoints, so that `empty_weights=True` can build them on the meta device
# without a download (parameter counts, shapes, injection targets).
KNOWN_CONFIGS = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {
        "transformer": dict(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
        ),
        "vae": dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                    temperal_downsample=[False, True, True]),
    },
}
KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-14B-Diffusers"] = {
    "transformer": {**KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
                    "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
    "vae": KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["vae"],
}
# Wan2.2's VAE folds 2x2 pixels into 12 channels, then downsamples 8x: 16x spatial, 4x temporal, 48 channels.
# latents_mean/std are placeholders of the right length: a meta-device build needs shapes, not statistics.
KNOWN_CONFIGS["Wan-AI/Wan2.2-TI2V-5B-Diffusers"] = {
    "transformer": {**KNOWN_CONFIGS["Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]["transformer"],
                    "num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48,
                    "out_channels": 48},
    "vae": dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                latents_mean=[0.0] * 48, latents_std=[1.0] * 48),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class WanBackbone(VideoBackbone):
    def __init__(
        self,
        pretrained: str = "tiny",
        transformer_subfolder: str = "transformer",
        vae_subfolder: str = "vae",
        revision: str | None = None,
        dtype: str = "float32",
        prompt_embeds: str | None = None,
        empty_weights: bool = False,
    ):
        """A frozen Wan transformer + VAE.

        Args:
            pretrained: "tiny" (the generator shipped with litevsr), a local diffusers folder, or a hub id
                such as "Wan-AI/Wan2.1-T2V-1.3B-Diffusers".
            transformer_subfolder: Subfolder of `pretrained` holding the transformer.
            vae_subfolder: Subfolder of `pretrained` holding the VAE.
            revision: Hub revision (branch, tag or commit).
            dtype: Weight dtype of the transformer: float32, bfloat16 or float16. The VAE stays float32.
            prompt_embeds: Safetensors file with the fixed prompt's text embedding ("prompt_embeds",
                (1, L, text_dim)). Default: `<pretrained>/prompt_embeds.safetensors` if it exists, else zeros.
            empty_weights: Build the architecture on the meta device without weights (shape and size checks).
        """
        super().__init__()
        if dtype not in DTYPES:
            raise LiteVSRError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.name = pretrained
        source = str(TINY_PATH) if pretrained == "tiny" else os.path.expanduser(pretrained)
        if empty_weights:
            self.transformer, self.vae = _build_empty(source, transformer_subfolder, vae_subfolder)
        else:
            self.transformer, self.vae = _load(source, transformer_subfolder, vae_subfolder, revision, DTYPES[dtype])

        tcfg, vcfg = self.transformer.config, self.vae.config
        self.blocks = self.transformer.blocks
        self.hidden_dim = tcfg.num_attention_heads * tcfg.attention_head_dim
        self.num_blocks = len(self.blocks)
        self.patch_size = tuple(tcfg.patch_size)
        self.latent_channels = tcfg.in_channels
        self.vae_stride = (vcfg.scale_factor_temporal, vcfg.scale_factor_spatial, vcfg.scale_factor_spatial)
        # AutoencoderKLWan encodes the first frame, then chunks of 4, whatever its temporal stride.
        self.frame_step = max(4, self.vae_stride[0] * self.patch_size[0])
        device = "meta" if empty_weights else "cpu"
        self.register_buffer("latents_mean", torch.tensor(vcfg.latents_mean, device=device).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std", torch.tensor(vcfg.latents_std, device=device).view(1, -1, 1, 1, 1), persistent=False)
        embeds = torch.zeros(1, 1, tcfg.text_dim, device="meta") if empty_weights else \
            _prompt_embeds(prompt_embeds, source, tcfg.text_dim)
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self._freeze()

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> latents normalised with the VAE's latents_mean/std."""
        self.check_video(video)
        latents = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode()
        return (latents.float() - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.float() * self.latents_std + self.latents_mean
        return self.vae.decode(latents.to(self.vae.dtype)).sample.float().clamp(-1, 1)

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch = latents.shape[0]
        dtype = self.transformer.dtype
        prompt = self.prompt_embeds.expand(batch, -1, -1).to(dtype)
        # Wan's scheduler uses timesteps = sigma * 1000; float timesteps are accepted.
        out = self.transformer(latents.to(dtype), sigma.float() * 1000, prompt, return_dict=False)[0]
        return out.float()


def _load(source, transformer_subfolder, vae_subfolder, revision, dtype):
    if source.startswith(("/", ".", "~")) and not os.path.isdir(source):
        raise LiteVSRError(f"backbone path not found: {source}")
    try:
        transformer = WanTransformer3DModel.from_pretrained(
            source, subfolder=transformer_subfolder, revision=revision, torch_dtype=dtype)
        vae = AutoencoderKLWan.from_pretrained(source, subfolder=vae_subfolder, revision=revision)
    except (OSError, ValueError, EnvironmentError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = "folder" if os.path.isdir(source) else "hub id (is the hub reachable?)"
        raise LiteVSRError(f"could not load a Wan backbone from {where} {source!r}: {first_line}") from err
    return transformer, skip_noop_attention(vae)


def skip_noop_attention(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Replace the VAE's mid-block attention blocks whose output projection is exactly zero by identities.

    Such a block adds nothing (as in litevsr.backbones.pca_vae), yet attends over every latent pixel of a frame:
    the same output without it, and the embedded VAE runs 2.3x faster at 256x256."""
    for mid in (vae.encoder.mid_block, vae.decoder.mid_block):
        for i, attention in enumerate(mid.attentions):
            if not (attention.proj.weight.any() or attention.proj.bias.any()):
                mid.attentions[i] = torch.nn.Identity()
    return vae


def _build_empty(source, transformer_subfolder, vae_subfolder):
    if os.path.isdir(source):
        tcfg = WanTransformer3DModel.load_config(source, subfolder=transformer_subfolder)
        vcfg = AutoencoderKLWan.load_config(source, subfolder=vae_subfolder)
    elif source in KNOWN_CONFIGS:
        tcfg, vcfg = KNOWN_CONFIGS[source]["transformer"], KNOWN_CONFIGS[source]["vae"]
    else:
        raise LiteVSRError(f"empty_weights needs a local folder or one of {sorted(KNOWN_CONFIGS)}, got {source!r}")
    with torch.device("meta"):
        return WanTransformer3DModel.from_config(tcfg), AutoencoderKLWan.from_config(vcfg)


def _prompt_embeds(path: str | None, source: str, text_dim: int) -> torch.Tensor:
    default = os.path.join(source, "prompt_embeds.safetensors")
    if path is None and os.path.isfile(default):
        path = default
    if path is None:
        rank_zero_info("litevsr: no prompt embedding given; using a zero embedding")
        return torch.zeros(1, 1, text_dim)
    if not os.path.isfile(path):
        raise LiteVSRError(f"prompt embedding file not found: {path}")
    embeds = load_file(path)["prompt_embeds"]
    embeds = embeds[None] if embeds.ndim == 2 else embeds
    if embeds.shape[-1] != text_dim:
        raise LiteVSRError(f"prompt embedding in {path} has width {embeds.shape[-1]}, the transformer expects {text_dim}")
    return embeds.float()


# The embedded generator's architecture: the real Wan classes at CPU size. Its VAE folds 2x2 pixels into channels
# (Wan2.2's patch_size=2) and does not downsample further: 12 -> 6 channels at half resolution, no temporal
# compression, so reconstructions stay far above bicubic x4 (DESIGN.md section 9). The transformer's 4x4 patches
# keep the token grid at 1/8 of the pixels, as with the real Wan2.1, and a token's 96 latent values stay below its
# hidden width of 128, so (as in Wan2.1: 64 values, width 1536) the output head can reach every latent direction.
TINY_CONFIG = {
    "transformer": dict(
        patch_size=(1, 4, 4), num_attention_heads=4, attention_head_dim=32, in_channels=6, out_channels=6,
        text_dim=32, freq_dim=64, ffn_dim=512, num_layers=6, rope_max_seq_len=256,
    ),
    "vae": dict(base_dim=16, z_dim=6, dim_mult=[1], num_res_blocks=1, temperal_downsample=[], in_channels=12,
                out_channels=12, patch_size=2, scale_factor_temporal=1, scale_factor_spatial=2,
                latents_mean=[0.0] * 6, latents_std=[1.0] * 6),
}


def build_wan(config: dict, seed: int = 0) -> tuple[WanTransformer3DModel, AutoencoderKLWan]:
    """Freshly initialised Wan transformer + VAE from a {"transformer": ..., "vae": ...} config."""
    torch.manual_seed(seed)
    return WanTransformer3DModel(**config["transformer"]), AutoencoderKLWan(**config["vae"])


def save_wan(transformer, vae, folder: str, prompt_embeds: torch.Tensor | None = None,
             max_shard_size: int | str = "10GB") -> None:
    """Save in the diffusers layout that `WanBackbone(pretrained=folder)` loads; the transformer is split into
    shards with an index where it exceeds `max_shard_size` (bytes), as large hub checkpoints are."""
    transformer.save_pretrained(os.path.join(folder, "transformer"), max_shard_size=max_shard_size)
    vae.save_pretrained(os.path.join(folder, "vae"))
    if prompt_embeds is not None:
        from safetensors.torch import save_file

        save_file({"prompt_embeds": prompt_embeds.contiguous()}, os.path.join(folder, "prompt_embeds.safetensors"))


#: The default adapter: x4 on the shipped generator, trained by recipes/general_x4.yaml on natural, animation and
#: screen footage with plain bicubic and real-world LQ. recipes/demo.yaml starts from it.
GENERAL_ADAPTER = TINY_PATH.parent / "general-adapter"
#: Shipped adapters by name, wherever a path to an adapter folder is asked for.
SHIPPED_ADAPTERS = {"general": GENERAL_ADAPTER}
DEFAULT_ADAPTER = "general"
