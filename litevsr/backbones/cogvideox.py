"""CogVideoX (diffusers `CogVideoXTransformer3DModel` + `AutoencoderKLCogVideoX`) as a frozen backbone.

CogVideoX was trained as a v-predicting DDPM, while litevsr trains and samples a rectified flow
x_sigma = (1 - sigma) x0 + sigma eps with velocity eps - x0. The two describe the same noisy states up to a scale:
at the DDPM timestep whose signal-to-noise ratio equals the flow's, x_t = x_sigma / n with n = sqrt((1 - sigma)^2
+ sigma^2), a = sqrt(alpha_bar) = (1 - sigma) / n and b = sqrt(1 - alpha_bar) = sigma / n. So `velocity` scales the
state, asks the frozen transformer for v at that (fractional) timestep, and converts its clean and noise estimates,
x0 = a x_t - b v and eps = b x_t + a v, into eps - x0. The backbone then sees exactly the states it was trained on,
and the adapter's objective, sampler and one-step start are the same as on Wan.
"""

from __future__ import annotations

import functools

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from litevsr.backbones.base import VideoBackbone
from litevsr.backbones.spec import FamilySpec, Geometry
from litevsr.errors import LiteVSRError

_TRANSFORMER_2B = dict(
    num_attention_heads=30,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    time_embed_dim=512,
    text_embed_dim=4096,
    num_layers=30,
    sample_width=90,
    sample_height=60,
    sample_frames=49,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    use_rotary_positional_embeddings=False,
    use_learned_positional_embeddings=False,
)
_VAE_2B = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=16,
    block_out_channels=[128, 256, 256, 512],
    layers_per_block=3,
    down_block_types=["CogVideoXDownBlock3D"] * 4,
    up_block_types=["CogVideoXUpBlock3D"] * 4,
    norm_num_groups=32,
    norm_eps=1e-6,
    temporal_compression_ratio=4,
    sample_height=480,
    sample_width=720,
    scaling_factor=1.15258426,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    clip_sample=False,
    set_alpha_to_one=True,
)

# Published configs (hub folders `transformer/`, `vae/`, `scheduler/`), for meta-device builds and twins.
_CONFIGS = {
    "THUDM/CogVideoX-2b": {
        "transformer": _TRANSFORMER_2B,
        "vae": _VAE_2B,
        "scheduler": {**_SCHEDULER, "snr_shift_scale": 3.0},
    },
    "THUDM/CogVideoX-5b": {
        "transformer": {
            **_TRANSFORMER_2B,
            "num_attention_heads": 48,
            "num_layers": 42,
            "use_rotary_positional_embeddings": True,
        },
        "vae": {**_VAE_2B, "scaling_factor": 0.7},
        "scheduler": {**_SCHEDULER, "snr_shift_scale": 1.0},
    },
}


def _geometry(tcfg, vcfg) -> Geometry:
    spatial = 2 ** (len(vcfg["block_out_channels"]) - 1)
    return Geometry(
        hidden_dim=tcfg["num_attention_heads"] * tcfg["attention_head_dim"],
        num_blocks=tcfg["num_layers"],
        patch_size=(1, tcfg["patch_size"], tcfg["patch_size"]),
        latent_channels=tcfg["in_channels"],
        vae_stride=(vcfg["temporal_compression_ratio"], spatial, spatial),
        # The decoder doubles the latent frames twice and keeps a first frame apart only when their count is odd:
        # latent frames 1 + 2k decode to 1 + 8k frames, anything else to the wrong count.
        frame_step=2 * vcfg["temporal_compression_ratio"],
    )


COGVIDEOX = FamilySpec(
    name="cogvideox",
    transformer_class=CogVideoXTransformer3DModel,
    vae_class=AutoencoderKLCogVideoX,
    pipeline="CogVideoXPipeline",
    blocks="transformer_blocks",
    known_configs=_CONFIGS,
    twin_shrink={
        "transformer": dict(
            num_attention_heads=2, attention_head_dim=16, time_embed_dim=32, text_embed_dim=32, num_layers=4
        ),
        "vae": dict(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4),
    },
    lora_targets=("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    prompt_shape=lambda tcfg: (tcfg["max_text_seq_length"], tcfg["text_embed_dim"]),
    geometry=_geometry,
    fixed_text_length=True,
    extra_classes={"scheduler": CogVideoXDDIMScheduler},
)


class CogVideoXBackbone(VideoBackbone):
    spec = COGVIDEOX

    def __init__(self, pretrained: str = "THUDM/CogVideoX-2b", scheduler_subfolder: str = "scheduler", **kwargs):
        """A frozen CogVideoX 1.0 transformer + VAE, driven as a rectified flow (see the module docstring; the other
        arguments: see `VideoBackbone`). Its prompt embedding is T5's, exactly 226 tokens ((1, 226, 4096)).

        Args:
            pretrained: A local diffusers folder, a hub id such as "THUDM/CogVideoX-2b", or "twin:<hub id>".
            scheduler_subfolder: Subfolder holding the DDPM scheduler whose noise schedule the transformer learned.
        """
        super().__init__(pretrained, **kwargs)
        if self.transformer.config.patch_size_t is not None:
            raise LiteVSRError(
                f"{pretrained}: CogVideoX 1.5's temporal patches are not supported yet; use a "
                "CogVideoX 1.0 checkpoint (CogVideoX-2b or -5b)"
            )
        scheduler = CogVideoXDDIMScheduler.from_config(
            _CONFIGS[self.source]["scheduler"]
            if self.empty_weights and self.source in _CONFIGS
            else self._scheduler_config(self.source, scheduler_subfolder, self.revision)
        )
        if scheduler.config.prediction_type != "v_prediction":
            raise LiteVSRError(
                f"{pretrained}: expected a v-prediction scheduler, got {scheduler.config.prediction_type}"
            )
        # log-SNR of each DDPM timestep, decreasing in t (the last is -inf with the zero-terminal-SNR rescale)
        alpha_bar = scheduler.alphas_cumprod.double()
        self.register_buffer(
            "log_snr", (alpha_bar.log() - (1 - alpha_bar).log()).float().clamp(min=-60), persistent=False
        )

    def _latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        # CogVideoX scales latents by one factor and does not shift them.
        return torch.zeros(self.latent_channels), torch.full(
            (self.latent_channels,), 1 / self.vae.config.scaling_factor
        )

    def _scheduler_config(self, source: str, subfolder: str, revision: str | None) -> dict:
        try:
            return CogVideoXDDIMScheduler.load_config(source, subfolder=subfolder, revision=revision)
        except (OSError, ValueError) as err:
            raise LiteVSRError(
                f"could not read the CogVideoX scheduler config from {source!r} ({subfolder}/): "
                f"{str(err).strip().splitlines()[0]}"
            ) from err

    @property
    def patch_embedding(self) -> torch.nn.Module:
        return self.transformer.patch_embed.proj

    def tile_vae(self, tile: int, overlap: int) -> None:
        # AutoencoderKLCogVideoX takes the overlap as a fraction of the tile
        self.vae.enable_tiling(
            tile_sample_min_height=tile,
            tile_sample_min_width=tile,
            tile_overlap_factor_height=overlap / tile,
            tile_overlap_factor_width=overlap / tile,
        )

    def ddpm_timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional DDPM timestep whose log-SNR equals the flow's at `sigma` (linear in log-SNR between
        the scheduler's timesteps)."""
        sigma = sigma.float().clamp(1e-6, 1 - 1e-6)
        target = 2 * (torch.log1p(-sigma) - torch.log(sigma))
        table = self.log_snr
        hi = torch.searchsorted(-table, -target).clamp(1, len(table) - 1)
        lo = hi - 1
        w = ((table[lo] - target) / (table[lo] - table[hi])).clamp(0, 1)
        return lo.float() + w

    @functools.lru_cache(maxsize=8)  # noqa: B019  every step and tile of one size reuses it; backbones live long
    def _rotary(self, frames: int, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """CogVideoX-5b's 3D rotary embedding for a latent grid, cropped as its pipeline does for this size."""
        cfg = self.transformer.config
        if not cfg.use_rotary_positional_embeddings:
            return None
        p = cfg.patch_size
        grid = (height // p, width // p)
        crops = get_resize_crop_region_for_grid(grid, cfg.sample_width // p, cfg.sample_height // p)
        return get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=grid, temporal_size=frames, device=device
        )

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch, _, frames, height, width = latents.shape
        dtype = self.transformer.dtype
        s = sigma.float().view(-1, 1, 1, 1, 1)
        n = ((1 - s) ** 2 + s**2).sqrt()
        a, b = (1 - s) / n, s / n
        x_t = latents.float() / n
        v = (
            self.transformer(
                x_t.transpose(1, 2).to(dtype),
                self.prompt_embeds.expand(batch, -1, -1).to(dtype),
                self.ddpm_timestep(sigma),
                image_rotary_emb=self._rotary(frames, height, width, latents.device),
                return_dict=False,
            )[0]
            .transpose(1, 2)
            .float()
        )
        return (b - a) * x_t + (a + b) * v  # eps_hat - x0_hat

    def macs_per_token(self, tokens: int) -> float:
        """Per block: q, k, v and out projections and the 4x FFN, fixed per token, plus joint attention over the
        video tokens and the fixed text."""
        d = self.hidden_dim
        text = self.transformer.config.max_text_seq_length
        return self.num_blocks * (12 * d * d + 2 * d * (tokens + text))
