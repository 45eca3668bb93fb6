"""LiteVSR's State-Aware Adapter.

Two token streams on the backbone's own patch grid:
  structure  <- the VAE latent of the bicubic-upsampled LQ video (what the scene is)
  refinement <- the current denoising state: x_sigma, or the clean estimate x0_hat (what is drawn so far)
Refinement tokens cross-attend to structure tokens; every block is modulated by the noise level, and a
learned time-dependent gate mixes the streams (structure early in denoising, texture late). The result is
added to every k-th backbone block through zero-initialised projections, so training starts from the
bare backbone exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.utils.checkpoint import checkpoint

from litevsr.adapters.base import Adapter, register_adapter
from litevsr.errors import LiteVSRError
from litevsr.injections import Injections


class TimestepEmbedder(nn.Module):
    """sigma in [0, 1] -> sinusoidal features of sigma * 1000 -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freqs = Timesteps(freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = TimestepEmbedding(freq_dim, dim)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.freqs(sigma.float() * 1000).to(self.mlp.linear_1.weight.dtype))


class PatchEmbedder(nn.Module):
    """Latents (B, C, F, H, W) -> tokens (B, N, width) in the backbone's (f, h, w) token order.

    A depthwise 3D convolution after the patch projection gives the tokens their position, at any size.
    """

    def __init__(self, in_channels: int, width: int, patch_size: tuple[int, int, int]):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.position = nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.proj(latents)
        x = x + self.position(x)
        return x.flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """A residual of 3x3 convolutions on each latent frame, at the latent's full resolution: the local, nonlinear
    detail that a linear patch projection cannot see across token edges. Its last layer starts at zero, so a stem
    added to a trained adapter changes nothing until it is trained."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        conv = lambda i, o: nn.Conv3d(i, o, kernel_size=(1, 3, 3), padding=(0, 1, 1))  # noqa: E731
        self.layers = nn.Sequential(conv(channels, hidden), nn.GELU(), conv(hidden, hidden), nn.GELU())
        self.out = conv(hidden, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return latents + self.out(self.layers(latents))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
        self.norm_q, self.norm_k = nn.RMSNorm(width // heads), nn.RMSNorm(width // heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        def heads(t):
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        q, k, v = self.norm_q(heads(self.q(x))), self.norm_k(heads(self.k(context))), heads(self.v(context))
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


class AdapterBlock(nn.Module):
    """A DiT block whose sublayers are shifted, scaled and gated by the noise-level embedding.

    With `cross_attention`, tokens also attend to a context stream (refinement -> structure).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, time_dim: int, cross_attention: bool):
        super().__init__()
        self.sublayers = 3 if cross_attention else 2
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(self.sublayers))
        self.self_attn = Attention(width, heads)
        self.cross_attn = Attention(width, heads) if cross_attention else None
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 3 * self.sublayers * width))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        mods = self.modulation(temb).unsqueeze(1).chunk(3 * self.sublayers, dim=-1)
        layers = [lambda h: self.self_attn(h, h)]
        if self.cross_attn is not None:
            layers.append(lambda h: self.cross_attn(h, context))
        layers.append(self.mlp)
        for i, (norm, layer) in enumerate(zip(self.norms, layers)):
            shift, scale, gate = mods[3 * i : 3 * i + 3]
            x = x + gate * layer(norm(x) * (1 + scale) + shift)
        return x


TIME_CONDITIONING = ("full", "gate", "none")


@register_adapter
class StateAwareAdapter(Adapter):
    @register_to_config
    def __init__(
        self,
        *,
        backbone_dims: dict,
        width: int | None = None,
        structure_depth: int = 2,
        refinement_depth: int = 2,
        head_dim: int = 64,
        mlp_ratio: float = 2.0,
        time_dim: int = 256,
        inject_every: int = 3,
        inject_blocks: list[int] | None = None,
        state_input: str = "x_sigma",
        time_conditioning: str = "full",
        output_init_std: float = 0.0,
        structure_stem: int = 0,
    ):
        """The State-Aware Adapter.

        Args:
            backbone_dims: The backbone's dimensions (`litevsr.adapters.base.backbone_dims`), given by the training
                module (a recipe names the class and its other arguments) or read from an export.
            width: Token width of both streams. Default: the backbone's hidden size.
            structure_depth: Blocks in the structural stream (reads the LQ latent).
            refinement_depth: Blocks in the refinement stream (reads the denoising state, cross-attends to structure).
                0 drops the stream: the adapter reads the LQ latent only (an ablation).
            head_dim: Attention head size; heads = width // head_dim (at least one).
            mlp_ratio: MLP hidden size as a multiple of width.
            time_dim: Width of the noise-level embedding that modulates every block.
            inject_every: Inject into every k-th backbone block (0, k, 2k, ...).
            inject_blocks: Explicit backbone block indices to inject into; overrides inject_every.
            state_input: What the refinement stream reads: "x_sigma" (no extra cost) or "x0_hat"
                (x_sigma - sigma * v_hat; one extra no-grad backbone pass in training).
            time_conditioning: What the noise level steers: "full" (every block's modulation and the stream gate),
                "gate" (the stream gate only: no time modulation of the blocks) or "none" (nothing: one fixed
                injection pattern for every sigma). The last two are ablations.
            output_init_std: Std of the output projections at initialisation. 0 (training) starts from the bare
                backbone exactly; > 0 gives an adapter that visibly acts from the start (twins, tests).
            structure_stem: Channels of a convolutional stem (`ConvStem`) on the LQ latent before the structural
                stream's patch projection; 0: none. It adds 9c(c + 2 * latent channels) weights for c channels.
        """
        super().__init__()
        if state_input not in ("x_sigma", "x0_hat"):
            raise LiteVSRError(f"state_input must be 'x_sigma' or 'x0_hat', got {state_input!r}")
        if time_conditioning not in TIME_CONDITIONING:
            raise LiteVSRError(f"time_conditioning must be one of {TIME_CONDITIONING}, got {time_conditioning!r}")
        if inject_every < 1:
            raise LiteVSRError(f"inject_every must be >= 1, got {inject_every}")
        self.state_input = state_input
        self.gradient_checkpointing = False
        cfg, dims = self.config, backbone_dims
        width = cfg.width or dims["hidden_dim"]
        heads = max(1, width // cfg.head_dim)
        if width % heads:
            raise LiteVSRError(f"adapter width {width} is not divisible into {heads} heads")
        targets = cfg.inject_blocks if cfg.inject_blocks is not None else range(0, dims["num_blocks"], cfg.inject_every)
        self.targets = sorted(set(int(i) for i in targets))
        if not self.targets or not all(0 <= i < dims["num_blocks"] for i in self.targets):
            raise LiteVSRError(
                f"inject_blocks must be a non-empty subset of 0..{dims['num_blocks'] - 1}, got {self.targets}"
            )
        channels, patch = dims["latent_channels"], tuple(dims["patch_size"])
        self.time_embedder = TimestepEmbedder(cfg.time_dim)
        self.structure_embedder = PatchEmbedder(channels, width, patch)
        self.stem = ConvStem(channels, cfg.structure_stem) if cfg.structure_stem else nn.Identity()
        block = lambda cross: AdapterBlock(width, heads, cfg.mlp_ratio, cfg.time_dim, cross)  # noqa: E731
        self.structure_blocks = nn.ModuleList(block(False) for _ in range(cfg.structure_depth))
        if cfg.refinement_depth:
            self.state_embedder = PatchEmbedder(channels, width, patch)
            self.refinement_blocks = nn.ModuleList(block(True) for _ in range(cfg.refinement_depth))
            self.stream_gate = nn.Sequential(nn.SiLU(), nn.Linear(cfg.time_dim, width))
        self.out_norm = nn.LayerNorm(width)
        self.injectors = nn.ModuleDict({str(i): nn.Linear(width, dims["hidden_dim"]) for i in self.targets})
        for proj in self.injectors.values():
            if cfg.output_init_std > 0:
                nn.init.normal_(proj.weight, std=cfg.output_init_std)
            else:
                nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _run(self, block, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, cond: torch.Tensor, state: torch.Tensor, sigma: torch.Tensor) -> Injections:
        mode = self.config.time_conditioning
        temb = self.time_embedder(sigma)
        constant = torch.zeros_like(temb)  # what a sigma-blind part reads: its learned biases only
        block_temb, gate_temb = (temb if mode == "full" else constant), (constant if mode == "none" else temb)
        structure = self.structure_embedder(self.stem(cond))
        for block in self.structure_blocks:
            structure = self._run(block, structure, block_temb)
        if not self.config.refinement_depth:
            fused = self.out_norm(structure)
        else:
            refined = self.state_embedder(state)
            for block in self.refinement_blocks:
                refined = self._run(block, refined, block_temb, structure)
            gate = torch.sigmoid(self.stream_gate(gate_temb)).unsqueeze(1)
            fused = self.out_norm(gate * structure + (1 - gate) * refined)
        return Injections({i: self.injectors[str(i)](fused) for i in self.targets})
