"""Degradations as pure functions on video tensors (B, 3, T, H, W) in [-1, 1], seeded by a generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _frames(video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    b, c, t = video.shape[:3]
    return video.transpose(1, 2).reshape(b * t, c, *video.shape[-2:]), (b, t)


def _video(frames: torch.Tensor, bt: tuple[int, int]) -> torch.Tensor:
    b, t = bt
    return frames.reshape(b, t, *frames.shape[1:]).transpose(1, 2)


def resize_video(video: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize every frame to `size` (H, W). Antialiased when shrinking, as image libraries do."""
    frames, bt = _frames(video)
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False, "antialias": True}
    return _video(F.interpolate(frames, size=tuple(size), mode=mode, **kwargs), bt)


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """An isotropic 2D Gaussian kernel (size x size) that sums to 1."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float()


def blur(video: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every frame and channel with `kernel` (k x k), reflect-padded."""
    frames, bt = _frames(video)
    c, k = frames.shape[1], kernel.shape[-1]
    padded = F.pad(frames, [k // 2] * 4, mode="reflect")
    weight = kernel.to(frames).expand(c, 1, k, k)
    return _video(F.conv2d(padded, weight, groups=c), bt)


def gaussian_noise(video: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, sigma) noise; sigma is in 8-bit units (0-255), as in Real-ESRGAN."""
    noise = torch.randn(video.shape, generator=generator) * (2 * sigma / 255)
    return video + noise.to(video)


def simple_degradation(hq: torch.Tensor, scale: int, generator: torch.Generator,
                       blur_sigma: tuple[float, float] = (0.2, 1.5),
                       noise_sigma: tuple[float, float] = (0.0, 5.0)) -> torch.Tensor:
    """Blur + bicubic down by `scale` + Gaussian noise, quantised to 8 bit. One draw per clip."""
    uniform = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=generator))  # noqa: E731
    sigma = uniform(*blur_sigma)
    size = 2 * math.ceil(3 * sigma) + 1
    lq = blur(hq, gaussian_kernel(size, sigma))
    lq = resize_video(lq, (hq.shape[-2] // scale, hq.shape[-1] // scale))
    lq = gaussian_noise(lq, uniform(*noise_sigma), generator)
    return quantize(lq)


def quantize(video: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] and round to the 8-bit grid."""
    return torch.round((video.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
