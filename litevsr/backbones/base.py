"""The frozen half of litevsr: a diffusers video transformer plus its VAE behind one interface."""

from __future__ import annotations

import functools
import hashlib

import torch
from torch import nn

from litevsr import LiteVSRError


class VideoBackbone(nn.Module):
    """A frozen video DiT + VAE. Subclasses set `transformer`, `vae`, `blocks` and the geometry fields.

    Adapters write into the backbone through `injections`: a dict {block_index: (B, N, D)} added to
    that block's output, {"input": (B, N, D)} added to the first block's input, and {"from_input": fn} whose
    fn(first block's arguments) gives more block residuals (see `Adapter`). Hooks on the blocks read
    them from `self._injections`, which is kept until the next forward so that gradient-checkpoint
    recomputation sees the same values.
    """

    hidden_dim: int
    num_blocks: int
    patch_size: tuple[int, int, int]
    latent_channels: int
    vae_stride: tuple[int, int, int]
    frame_step: int  # videos need 1 + k * frame_step frames
    vae_is_pointwise: bool = False  # each latent pixel reads one patch of one frame: the VAE needs no tiles
    name: str

    def _freeze(self) -> None:
        self.transformer_parameters = sum(p.numel() for p in self.transformer.parameters())
        self.requires_grad_(False)
        self.eval()
        self._injections: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            block.register_forward_hook(self._make_injection_hook(index))
        self.blocks[0].register_forward_pre_hook(self._before_first_block)

    def _before_first_block(self, module, args):
        tokens, from_input = self._injections.get("input"), self._injections.get("from_input")
        if tokens is not None:
            args = (args[0] + tokens.to(args[0].dtype), *args[1:])
        if from_input is not None:  # the same values when gradient checkpointing recomputes this block
            self._injections.update(from_input(args))
        return args

    def _make_injection_hook(self, index: int):
        def add_injection(module, args, output):
            injection = self._injections.get(index)
            return output if injection is None else output + injection.to(output.dtype)

        return add_injection

    def train(self, mode: bool = True) -> "VideoBackbone":
        # Frozen means frozen: dropout and friends stay in eval mode whatever the trainer asks.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @functools.cached_property
    def vae_fingerprint(self) -> str:
        """A hash of the VAE's weights and latent normalisation: cached latents are valid for this value only."""
        digest = hashlib.sha256()
        tensors = sorted(self.vae.state_dict().items()) + [("latents_mean", self.latents_mean),
                                                           ("latents_std", self.latents_std)]
        for name, tensor in tensors:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    # --- geometry -----------------------------------------------------------------------------
    @property
    def spatial_multiple(self) -> int:
        """HQ height/width must be a multiple of this (VAE stride x patch size)."""
        return self.vae_stride[1] * self.patch_size[1]

    def valid_num_frames(self, num_frames: int) -> bool:
        return num_frames >= 1 and (num_frames - 1) % self.frame_step == 0

    def check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise LiteVSRError(f"expected a video of shape (B, 3, T, H, W), got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if not self.valid_num_frames(t):
            raise LiteVSRError(f"{self.name} needs 1 + {self.frame_step}k frames, got {t}")
        m = self.spatial_multiple
        if h % m or w % m:
            raise LiteVSRError(f"{self.name} needs height and width that are multiples of {m}, got {h}x{w}")

    # --- the frozen computations ---------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The transformer's flow velocity for noisy `latents` at noise level `sigma` (B,)."""
        raise NotImplementedError

    def macs_per_token(self, tokens: int) -> float:
        """Multiply-adds per token of one transformer pass over `tokens` tokens (the tile cost model)."""
        raise NotImplementedError

    def forward(self, latents, sigma, injections: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        self._injections = dict(injections or {})
        bad = [i for i in self._injections if i not in ("input", "from_input") and not 0 <= i < self.num_blocks]
        if bad:
            raise LiteVSRError(f"injection targets {bad} are outside the backbone's {self.num_blocks} blocks")
        return self.velocity(latents, sigma)
