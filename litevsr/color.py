"""Colour correction of super-resolved video towards a reference: the bicubic upsampling of the LQ input.

A diffusion sampler can drift in colour and brightness while it draws detail; these corrections take the colour
from the reference and keep the detail of the output. Videos are (B, 3, T, H, W) in [-1, 1]; statistics are per
frame.

    wavelet  the output's high-frequency bands plus the reference's low-frequency band (a 5-level a-trous blur
             decomposition, so the bands add up to the frame exactly)
    adain    each channel's mean and standard deviation matched to the reference's
    lab      the same matching in CIELAB (D65)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from litevsr.errors import LiteVSRError

COLOR_FIXES = ("none", "wavelet", "adain", "lab")
WAVELET_LEVELS = 5


def check_color_fix(method: str) -> str:
    if method not in COLOR_FIXES:
        raise LiteVSRError(f"color_fix must be one of {', '.join(COLOR_FIXES)}, got {method!r}")
    return method


def _frames(video: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    return video.transpose(1, 2).flatten(0, 1)


def _video(frames: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    b, c, t = like.shape[:3]
    return frames.unflatten(0, (b, t)).transpose(1, 2)


def match_moments(frames: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per image and channel, shift and scale `frames` (N, C, H, W) to the reference's mean and std."""
    mean, std = frames.mean((-2, -1), keepdim=True), frames.std((-2, -1), keepdim=True)
    ref_mean, ref_std = reference.mean((-2, -1), keepdim=True), reference.std((-2, -1), keepdim=True)
    return (frames - mean) / (std + eps) * ref_std + ref_mean


def low_pass(frames: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """The coarsest band of an a-trous decomposition: a [1, 2, 1] / 4 blur at dilations 1, 2, 4, ..."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=frames.device, dtype=frames.dtype) / 4
    kernel = (kernel[:, None] * kernel[None]).expand(frames.shape[1], 1, 3, 3)
    for level in range(levels):
        d = 2**level
        pad = min(d, frames.shape[-2] - 1, frames.shape[-1] - 1)  # reflection needs pad < size
        padded = F.pad(frames, (d, d, d, d), mode="reflect" if pad == d else "replicate")
        frames = F.conv2d(padded, kernel, dilation=d, groups=frames.shape[1])
    return frames


def _srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> CIELAB (D65)."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(1e-12) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def _lab_to_srgb(lab: torch.Tensor) -> torch.Tensor:
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * _WHITE.to(lab).view(1, 3, 1, 1)
    linear = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), xyz).clamp(0, 1)
    return torch.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear)


_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=torch.float64,
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


def color_fix(video: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    """`video` with its colour corrected towards `reference` (same shape) by `method` (see the module doc)."""
    check_color_fix(method)
    if method == "none":
        return video
    frames, ref = _frames(video.float()), _frames(reference.float())
    if method == "wavelet":
        fixed = frames - low_pass(frames) + low_pass(ref)
    elif method == "adain":
        fixed = match_moments(frames, ref)
    else:
        lab = match_moments(_srgb_to_lab((frames + 1) / 2), _srgb_to_lab((ref + 1) / 2))
        fixed = _lab_to_srgb(lab) * 2 - 1
    return _video(fixed, video).clamp(-1, 1).to(video.dtype)
