"""Rectified-flow (flow-matching) math of training and sampling; not optical flow, which litevsr.metrics estimates
for the warping error. sigma = 1 is pure noise, sigma = 0 is data.

    x_sigma = (1 - sigma) * x0 + sigma * eps        velocity target v = eps - x0
"""

from __future__ import annotations

import torch


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift used by SD3/Wan: shift > 1 spends more time at high noise."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def unshift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    return sigma / (shift - (shift - 1) * sigma)


def sample_sigmas(
    batch: int,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Logit-normal sigmas, then shifted."""
    u = torch.randn(batch, generator=generator, device=device) * std + mean
    return shift_sigma(torch.sigmoid(u), shift)


def interpolate(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = _expand(sigma, x0)
    return (1 - s) * x0 + s * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - x0


def predict_x0(x: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The clean estimate x0_hat = x_sigma - sigma * v_hat."""
    return x - _expand(sigma, x) * velocity


def landing_velocity(x: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """The velocity that takes x (at `sigma`) to x0 in one Euler step. For x = eps at sigma = 1 it is eps - x0."""
    return (x - x0) / sigma


def start_latents(cond: torch.Tensor, noise: torch.Tensor, sigma_start: float) -> torch.Tensor:
    """The sampler's starting point: pure noise at sigma_start = 1, else the noised LQ latent (SDEdit)."""
    return interpolate(cond, noise, torch.full((cond.shape[0],), sigma_start, device=cond.device))
