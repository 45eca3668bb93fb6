"""LiteVSR = frozen backbone + adapter: the velocity field, the sampler and `upscale`, free of Lightning."""

from __future__ import annotations

import torch
from torch import nn

from litevsr import flow
from litevsr.adapters.base import Adapter
from litevsr.backbones.base import VideoBackbone
from litevsr.data.degradations import resize_video


class LiteVSR(nn.Module):
    def __init__(self, backbone: VideoBackbone, adapter: Adapter | None):
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        if adapter is not None and not adapter.bound:
            adapter.bind(backbone)

    def condition(self, lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Latent of the LQ video upsampled (bicubic) to the HQ `size`: the structural stream's input."""
        return self.backbone.encode(resize_video(lq, size).clamp(-1, 1))

    def refinement_state(self, x: torch.Tensor, sigma: torch.Tensor, velocity: torch.Tensor | None = None) -> torch.Tensor:
        """What the refinement stream reads. For x0_hat, `velocity` is the previous step's prediction,
        or (first step, training) a no-grad pass of the bare backbone."""
        if self.adapter is None or self.adapter.state_input == "x_sigma":
            return x
        if velocity is None:
            with torch.no_grad():
                velocity = self.backbone(x, sigma)
        return flow.predict_x0(x, velocity, sigma)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        injections = None if self.adapter is None else self.adapter(cond, state, sigma)
        return self.backbone(x, sigma, injections)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int = 1, shift: float = 1.0, sigma_start: float = 1.0,
               generator: torch.Generator | None = None, use_adapter: bool = True) -> torch.Tensor:
        """Euler sampling from noise (or a noised LQ latent when sigma_start < 1) to clean latents."""
        noise = torch.randn(cond.shape, generator=generator, device=cond.device if generator is None else generator.device)
        x = flow.start_latents(cond, noise.to(cond.device), sigma_start)
        previous = None

        def velocity_fn(x, sigma):
            nonlocal previous
            if use_adapter and self.adapter is not None:
                previous = self.velocity(x, sigma, cond, self.refinement_state(x, sigma, previous))
            else:
                previous = self.backbone(x, sigma)
            return previous

        return flow.euler_sample(velocity_fn, x, flow.sigma_schedule(steps, shift, sigma_start))

    @torch.no_grad()
    def upscale(self, lq: torch.Tensor, scale: int, **sample_kwargs) -> torch.Tensor:
        """LQ video (B, 3, T, h, w) in [-1, 1] -> (B, 3, T, h*scale, w*scale). The HQ size must suit the backbone."""
        size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
        return self.backbone.decode(self.sample(self.condition(lq, size), **sample_kwargs))
