"""A near-transparent `AutoencoderKLWan` set to a PCA of pixel blocks instead of trained.

Video is stored as 4:2:0, so the 12 values of a 2x2 RGB block carry about 6 numbers of information (4 luma,
2 chroma): the top 6 principal components of patchified pixels reconstruct footage at 60-80+ dB. This sets
the weights of a Wan VAE with patch_size 2 and z_dim 6 so that it computes that linear map, in the real
diffusers class (so it loads, tiles and caches like any Wan VAE):

- every residual block and the mid-block attention add zero (their last projection is zero): identity;
- the one nonlinear step left in each half, RMS_norm -> SiLU before conv_out, is made linear by carrying each
  component twice, as B + e*z and B - e*z, next to constant channels B. The channel norm then depends on z only
  at second order (relative e^2|z|^2 / B^2), SiLU works around a large gain G where it is nearly a line, and
  conv_out reads the difference of each pair, which cancels the constant and every even-order error.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanAttentionBlock,
    WanCausalConv3d,
    WanResidualBlock,
    patchify,
)

PAIR_OFFSET, PAIR_SCALE, NORM_GAIN = 1.0, 0.01, 6.0  # B, e, G above: z ~ 1 keeps the errors near 1e-5
LOGVAR = -20.0  # the posterior is (almost) a point: litevsr encodes with its mode


def block_pca(video: torch.Tensor, components: int, patch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C*p*p,) and the top principal directions (C*p*p, components) of patchified (B, C, T, H, W) video."""
    blocks = patchify(video, patch).transpose(1, -1).reshape(-1, video.shape[1] * patch * patch).double()
    mean = blocks.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((blocks - mean).T))
    return mean.float(), vectors[:, values.argsort(descending=True)[:components]].float()


def _silu_slope(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s * (1 + x * (1 - s))


def _current_frame_pixel(conv: torch.nn.Conv3d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Set a causal 3D conv to a per-pixel linear map of the current frame (the last temporal tap, spatial centre)."""
    conv.weight.zero_()
    t, h, w = conv.kernel_size
    conv.weight[:, :, t - 1, h // 2, w // 2] = weight
    conv.bias.copy_(bias)


def _paired_input(conv: torch.nn.Conv3d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Channels 2k, 2k+1 = B +- e * (weight @ x + bias)_k; the rest B."""
    k = weight.shape[0]
    w, b = torch.zeros(conv.out_channels, conv.in_channels), torch.full((conv.out_channels,), PAIR_OFFSET)
    w[0 : 2 * k : 2], w[1 : 2 * k : 2] = PAIR_SCALE * weight, -PAIR_SCALE * weight
    b[0 : 2 * k : 2] += PAIR_SCALE * bias
    b[1 : 2 * k : 2] -= PAIR_SCALE * bias
    _current_frame_pixel(conv, w, b)


def _paired_readout(conv: torch.nn.Conv3d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Output rows = weight @ z + bias, where z_k is recovered from SiLU(G(1 +- e z_k / B)) of pair k."""
    k, gain = weight.shape[1], 2 * NORM_GAIN * PAIR_SCALE / PAIR_OFFSET * _silu_slope(NORM_GAIN)
    w, b = torch.zeros(conv.out_channels, conv.in_channels), torch.zeros(conv.out_channels)
    w[: weight.shape[0], 0 : 2 * k : 2], w[: weight.shape[0], 1 : 2 * k : 2] = weight / gain, -weight / gain
    b[: weight.shape[0]] = bias
    _current_frame_pixel(conv, w, b)


@torch.no_grad()
def set_pca_vae(vae: AutoencoderKLWan, mean: torch.Tensor, directions: torch.Tensor) -> AutoencoderKLWan:
    """Make `vae` encode each 2x2 block to its PCA coefficients (latent = directions^T (x - mean)) and decode back."""
    cfg = vae.config
    z, width = cfg.z_dim, cfg.base_dim * cfg.dim_mult[0]
    if cfg.patch_size != 2 or len(cfg.dim_mult) != 1 or cfg.temperal_downsample or directions.shape[1] != z:
        raise ValueError(
            "a PCA VAE needs patch_size 2, one stage (dim_mult of length 1), no temporal downsampling "
            "and z_dim principal directions"
        )
    if width < 2 * z or cfg.decoder_base_dim not in (None, cfg.base_dim):
        raise ValueError(f"a PCA VAE needs base_dim >= 2 * z_dim ({2 * z}) in encoder and decoder")
    for module in vae.modules():
        if isinstance(module, WanResidualBlock):
            module.conv2.weight.zero_()
            module.conv2.bias.zero_()
        elif isinstance(module, WanAttentionBlock):
            module.proj.weight.zero_()
            module.proj.bias.zero_()
    for half in (vae.encoder, vae.decoder):
        half.norm_out.gamma.fill_(NORM_GAIN)
    identity = torch.eye(z)
    _paired_input(vae.encoder.conv_in, directions.T, -directions.T @ mean)
    _paired_readout(vae.encoder.conv_out, identity, torch.zeros(z))
    vae.encoder.conv_out.bias[z:] = LOGVAR
    for conv in (vae.quant_conv, vae.post_quant_conv):
        _current_frame_pixel(conv, torch.eye(conv.out_channels), torch.zeros(conv.out_channels))
    _paired_input(vae.decoder.conv_in, identity, torch.zeros(z))
    _paired_readout(vae.decoder.conv_out, directions, mean)
    return vae


# --- at load: the layers a PCA VAE leaves without effect, skipped -----------------------------------------------
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

    The embedded PCA VAE (`set_pca_vae`) is a per-pixel linear map held in a full Wan VAE: its
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
