"""`LiteVSRPipeline`: the one sampling path, in diffusers' pipeline shape.

Validation, prediction, `litevsr upscale`, `litevsr evaluate` and the benchmarks all sample through it:

    pipe = LiteVSRPipeline.from_pretrained("general")        # an adapter folder, a shipped name or a hub id
    pipe.to("cuda")
    sr = pipe(frames_u8, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames

A clip is cut into overlapping temporal windows, each sampled and decoded on its own and blended with its neighbour
in pixel space; spatially the transformer runs on overlapping latent tiles (`resolve_tiles`). The sampler is the
pipeline's diffusers scheduler (litevsr.schedulers); the start sigma and the start noise stay with the pipeline.

Noise has one rule: window or sample `key` draws its start noise on the CPU from (seed, key), then moves it to the
device. `upscale` keys windows by their index ("0", "1", ...); validation keys samples by their shard key, so the
batch, the rank and the device change nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import diffusers
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

import litevsr.flow as flow
from litevsr.adapters.base import Adapter, adapter_class, load_adapter, read_adapter_config, save_adapter
from litevsr.atomic import atomic_path
from litevsr.backbones import backbone_class
from litevsr.backbones.base import VideoBackbone
from litevsr.color import check_color_fix, color_fix
from litevsr.errors import LiteVSRError
from litevsr.frames import frames_to_video, resize_video
from litevsr.model import LiteVSR, check_tile_overlap, tiled
from litevsr.schedulers import load_scheduler, make_scheduler, scheduler_class, scheduler_name, set_schedule
from litevsr.seeds import keyed_seed
from litevsr.version import __version__
from litevsr.zoo import DEFAULT_ADAPTER, adapter_path

#: The sampler's values where neither the caller nor an adapter gives one.
SAMPLING_DEFAULTS = {
    "steps": 1,
    "sigma_start": 1.0,
    "shift": 1.0,
    "scheduler": "euler",
    "seed": 0,
    "color_fix": "none",
    "start_noise": 1.0,
}
#: What lives in the scheduler's config rather than in the pipeline's.
SCHEDULER_FIELDS = ("shift", "scheduler")


@dataclass
class Sampling:
    """How a clip is sampled: the settings an adapter was trained for travel with it (see save_pretrained).

    A field left out (None) takes the pipeline's recorded value in `LiteVSRPipeline.sampling`, else its default;
    `given` holds the fields the caller set, so that `--sampling.start_noise 1.0` replaces an adapter's 0 even
    though 1 is the default.

    Args:
        steps: Sampler steps (default 1).
        sigma_start: Start from the LQ latent noised to this sigma; 1 (the default) is pure noise.
        shift: Time shift of the sigma schedule; > 1 spends more steps at high noise (default 1).
        scheduler: The sampler: euler (the default) or heun (litevsr.schedulers).
        seed: Seed of the start noise (default 0).
        tile: Spatial tile in output pixels; None: chosen by `resolve_tiles` from the frame size, the backbone and
            the device, so time grows linearly with area; 0: whole frames.
        tile_overlap: Overlap of spatial tiles in output pixels; None: a sixth of the tile.
        color_fix: Correct the output's colour towards the bicubic upsampling of the input: none (the default),
            wavelet, adain or lab (see litevsr.color).
        start_noise: Scale of the start state's noise (default 1); 0 starts from (1 - sigma_start) * LQ latent,
            deterministically, so no fresh noise per frame can flicker.
    """

    steps: int | None = None
    sigma_start: float | None = None
    shift: float | None = None
    scheduler: str | None = None
    seed: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    color_fix: str | None = None
    start_noise: float | None = None
    given: frozenset[str] = dataclasses.field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self):
        self.given = frozenset(k for k in self.__dataclass_fields__ if k != "given" and getattr(self, k) is not None)
        for name, value in SAMPLING_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_color_fix(self.color_fix)
        scheduler_class(self.scheduler)
        if self.steps < 1:
            raise LiteVSRError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 < self.sigma_start <= 1.0:
            raise LiteVSRError(f"sigma_start must be in (0, 1], got {self.sigma_start}")
        if self.tile is not None and self.tile < 0:
            raise LiteVSRError(f"the tile must be >= 0 output pixels (0: whole frames), got {self.tile}")
        if self.tile and self.tile_overlap is not None:
            check_tile_overlap(self.tile, self.tile_overlap, "output pixels")

    def settings(self) -> dict:
        """The values, as a checkpoint's hyperparameters hold them."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "given"}

    @classmethod
    def of(cls, recorded: dict, overrides: Sampling | None = None, **values) -> Sampling:
        """The `recorded` values (an adapter's), with the fields `overrides` was given and the non-None `values`
        in their place."""
        fields = set(cls.__dataclass_fields__) - {"given"}
        known = {k: v for k, v in recorded.items() if k in fields}
        given = {k: getattr(overrides, k) for k in overrides.given} if overrides is not None else {}
        return cls(**{**known, **given, **{k: v for k, v in values.items() if v is not None}})

    def scheduler_matches(self, scheduler) -> bool:
        return scheduler_name(scheduler) == self.scheduler and scheduler.config.shift == self.shift


# --- tiles and windows ---------------------------------------------------------------------------------------------
#: Tokens one transformer call may hold when tiles are chosen automatically: a Wan2.1 480x832, 81-frame clip, what
#: the real model generates in one call, scaled down on a GPU with less than 40 GiB free.
TOKEN_BUDGET = 32760

#: The smallest automatic tile side, in tokens. A token's output depends on how much context its call sees, and
#: the blend over overlaps averages several contexts. On the held-out fur clip (256 px), 7-token tiles lost 1.6 dB
#: PSNR-Y to whole frames and 24-token tiles with a sixth of overlap gain 0.45 dB on them (benchmarks/results/
#: tiles_investigation.json, heldout.json).
MIN_TILE_TOKENS = 24


def _default_overlap(tile: int, unit: int) -> int:
    """A sixth of the tile, in whole tokens (at least two): each seam is blended over several tokens' worth."""
    return max(2 * unit, tile // 6 // unit * unit)


def _cheapest_tile_side(backbone, latent_frames: int, min_side: int, max_side: int) -> int:
    """The tile side (tokens) in [min_side, max_side] with the fewest modelled multiply-adds per output token.
    Smaller tiles spend more on their overlaps, larger ones more on attention per token; on a CPU, compute is
    the time."""
    unit = backbone.spatial_multiple

    def cost(side: int) -> float:
        kept = side - _default_overlap(side * unit, unit) // unit
        return (side / kept) ** 2 * backbone.macs_per_token(latent_frames * side * side)

    return min(range(min_side, max(min_side, max_side) + 1), key=cost)


def resolve_tiles(sampling: Sampling, backbone, size: tuple[int, int], frames: int) -> Sampling:
    """`sampling` with a concrete tile and overlap for output frames of `size` (H, W) in windows of `frames`.

    Automatic tiles are squares of a fixed token count, so time grows linearly with area and length. They are
    at least MIN_TILE_TOKENS a side, for quality; above that, on a GPU, the largest within TOKEN_BUDGET (large
    calls keep it busy), on a CPU the cheapest by the backbone's cost model. Frames that fit in one tile are not
    tiled."""
    unit = backbone.spatial_multiple  # output pixels per token side
    tile = sampling.tile
    if tile is None:
        device = backbone.device
        budget = TOKEN_BUDGET
        if device.type == "cuda":
            budget = int(budget * min(1.0, torch.cuda.mem_get_info(device)[0] / 40 * 2**-30))
        latent_frames = 1 + (frames - 1) // backbone.vae_stride[0]
        side = max(MIN_TILE_TOKENS, math.isqrt(budget // latent_frames))
        if device.type != "cuda":
            side = _cheapest_tile_side(backbone, latent_frames, MIN_TILE_TOKENS, side)
        tile = side * unit
        tile = 0 if tile >= max(size) else tile
    overlap = sampling.tile_overlap
    if overlap is None:
        overlap = _default_overlap(tile, unit) if tile else 0
    return dataclasses.replace(sampling, tile=tile, tile_overlap=overlap)


def temporal_windows(backbone, window: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """(window, overlap) in frames: defaults from the backbone's frame rule (1 + 4 x frame_step frames per window;
    one latent frame's worth shared: 4 frames under Wan2.1's 4x temporal VAE, 1 under the embedded VAE, which
    does not compress time), and a one-line error for values that break it."""
    step = backbone.frame_step
    window = 1 + 4 * step if window is None else window
    overlap = backbone.vae_stride[0] if overlap is None else overlap
    if window < 1 or (window - 1) % step:
        raise LiteVSRError(f"the window must be 1 + a multiple of {step} frames for {backbone.name}, got {window}")
    if not 0 <= overlap < window:
        raise LiteVSRError(f"the window overlap must be in [0, window), got window {window} and overlap {overlap}")
    return window, overlap


def _windows(frames: Iterator[np.ndarray], window: int, overlap: int) -> Iterator[np.ndarray]:
    """Windows of `window` frames, each sharing `overlap` frames with the previous."""
    buffer, start = [], 0
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == window:
            yield np.stack(buffer)
            buffer, start = buffer[window - overlap :], start + window - overlap
    if len(buffer) > overlap or (start == 0 and buffer):
        yield np.stack(buffer)


def _pad_video(video: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Reflect-pad (B, C, T, H, W) up to the given size (replicate where reflection is too short)."""
    t, h, w = video.shape[2:]
    pads = [0, width - w, 0, height - h, 0, frames - t]
    mode = "reflect" if all(p < s for p, s in zip(pads[1::2], (w, h, t))) else "replicate"
    return F.pad(video, pads, mode=mode)


def start_noise(shape: tuple[int, ...], seed: int, keys: list[str]) -> torch.Tensor:
    """(len(keys), *shape) standard normal noise; sample b is drawn on the CPU from (seed, keys[b])."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(keyed_seed(seed, k))) for k in keys])


@contextmanager
def _vae_tiling(backbone: VideoBackbone, sampling: Sampling):
    """Tile the VAE's convolutions like the transformer while sampling.tile is set (a pointwise VAE's memory is
    linear in the area already, and tiles would only add overhead)."""
    if sampling.tile and not backbone.vae_is_pointwise:
        stride = backbone.vae_stride[1]  # whole latent pixels, as the transformer's tiles hold whole tokens
        backbone.tile_vae(max(stride, sampling.tile // stride * stride), sampling.tile_overlap // stride * stride)
    try:
        yield
    finally:
        backbone.vae.disable_tiling()


# --- the pipeline --------------------------------------------------------------------------------------------------
@dataclass
class LiteVSRPipelineOutput(BaseOutput):
    """`frames`: np (B, T, H, W, 3) or pt (B, T, 3, H, W) floats in [0, 1], or pil: B lists of T images."""

    frames: np.ndarray | torch.Tensor | list


HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
PIPELINE_INDEX = "model_index.json"


class LiteVSRPipeline(DiffusionPipeline):
    """A frozen video DiT + VAE (`backbone`), the adapter that steers it, and the flow-matching scheduler.

    `save_pretrained` writes an adapter folder (config.json + safetensors, naming its backbone by id or path, not
    holding it) with the scheduler's config and model_index.json beside it; `from_pretrained` reads it, and any
    adapter folder `litevsr` exports, without importing a name read from the files.
    """

    def __init__(
        self,
        backbone: VideoBackbone,
        adapter: Adapter | None,
        scheduler,
        scale: int = 4,
        sampling: dict | None = None,
    ):
        super().__init__()
        self.register_modules(backbone=backbone, adapter=adapter, scheduler=scheduler)
        recorded = {k: v for k, v in (sampling or {}).items() if k in Sampling.__dataclass_fields__}
        recorded = {k: v for k, v in recorded.items() if k not in SCHEDULER_FIELDS}
        self.register_to_config(scale=scale, sampling=recorded)
        self.velocity_field = LiteVSR(backbone, adapter)  # shares the modules: not a component of its own

    # --- loading and saving -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str,
        backbone: VideoBackbone | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        scheduler=None,
        **backbone_kwargs,
    ) -> LiteVSRPipeline:
        """Load an exported adapter (a folder, a shipped name such as "general", or a hub id) with its backbone.

        Args:
            pretrained_model_name_or_path: The adapter.
            backbone: A loaded `VideoBackbone` (shared by several pipelines), a folder or hub id, or None: the one
                the adapter records.
            torch_dtype: The transformer's dtype (the VAE stays float32); default float32.
            scheduler: A scheduler in place of the recorded one.
            backbone_kwargs: Passed to the backbone's class when it is loaded here (e.g. switches=Switches(...)).
        """
        folder = adapter_folder(pretrained_model_name_or_path)
        record = read_adapter_config(folder)
        if not isinstance(backbone, VideoBackbone):
            dtype = torch_dtype if isinstance(torch_dtype, str) else str(torch_dtype or torch.float32).split(".")[-1]
            backbone = backbone_class(record["family"])(backbone or record["backbone"], dtype=dtype, **backbone_kwargs)
        elif backbone.family != record["family"]:
            raise LiteVSRError(f"{folder} was trained on a {record['family']} backbone, not {backbone.family}")
        sampling = recorded_sampling(folder)
        if scheduler is None:
            saved = os.path.join(folder, "scheduler")
            scheduler = (
                load_scheduler(saved)
                if os.path.isdir(saved)
                else make_scheduler(sampling.get("scheduler", "euler"), sampling.get("shift", 1.0))
            )
        adapter = load_adapter(folder, backbone).to(backbone.device)
        return cls(backbone, adapter, scheduler, scale=record.get("scale") or 4, sampling=sampling)

    def save_pretrained(self, save_directory: str, **kwargs) -> None:
        """Write the adapter (naming the backbone, `backbone.name`), the scheduler and model_index.json into a new
        folder, atomically."""
        folder = os.path.abspath(save_directory)
        with atomic_path(folder) as tmp:
            save_adapter(
                self.adapter,
                tmp,
                self.backbone.name,
                self.config.scale,
                dict(self.config.sampling),
                family=self.backbone.family,
            )
            self.scheduler.save_pretrained(os.path.join(tmp, "scheduler"))
            index = {
                "_class_name": type(self).__name__,
                "_diffusers_version": diffusers.__version__,
                "_litevsr_version": __version__,
                "backbone": ["litevsr", type(self.backbone).__name__],
                "adapter": ["litevsr", type(self.adapter).__name__],
                "scheduler": ["diffusers", type(self.scheduler).__name__],
                "scale": self.config.scale,
                "sampling": dict(self.config.sampling),
            }
            with open(os.path.join(tmp, PIPELINE_INDEX), "w") as f:
                json.dump(index, f, indent=2)

    def without_adapter(self, backbone: VideoBackbone | None = None) -> LiteVSRPipeline:
        """The bare generator with this pipeline's sampler: the floor an adapter is measured against (on
        `backbone`, or on this one where the adapter left it as it was)."""
        if backbone is None and self.adapter is not None and self.adapter.edits_backbone:
            raise LiteVSRError(f"a {type(self.adapter).__name__} edited this backbone: give a bare one")
        return type(self)(
            backbone or self.backbone, None, self.scheduler, self.config.scale, dict(self.config.sampling)
        )

    # --- sampling -------------------------------------------------------------------------------------------------
    def sampling(self, overrides: Sampling | None = None, **values) -> Sampling:
        """The recorded sampler (the scheduler's shift included), with the fields `overrides` was given and the
        non-None `values` in their place."""
        recorded = {**self.config.sampling, "scheduler": scheduler_name(self.scheduler)}
        return Sampling.of({**recorded, "shift": self.scheduler.config.shift}, overrides, **values)

    def resolve_tiles(self, sampling: Sampling, size: tuple[int, int], frames: int) -> Sampling:
        return resolve_tiles(sampling, self.backbone, size, frames)

    @torch.no_grad()
    def sample_latents(
        self, cond: torch.Tensor, sampling: Sampling, keys: list[str], use_adapter: bool = True
    ) -> torch.Tensor:
        """Clean latents for the LQ latents `cond` (B, C, F, H, W): from the start state (noise, or the LQ latent
        noised to sampling.sigma_start) through the scheduler's steps, each velocity blended over the tiles of a
        resolved `sampling`."""
        if len(keys) != cond.shape[0]:
            raise LiteVSRError(f"{len(keys)} noise keys for a batch of {cond.shape[0]}")
        scheduler = self.scheduler
        if not sampling.scheduler_matches(scheduler):
            scheduler = make_scheduler(sampling.scheduler, sampling.shift)
        noise = start_noise(tuple(cond.shape[1:]), sampling.seed, keys).to(cond.device)
        x = flow.start_latents(cond, sampling.start_noise * noise, sampling.sigma_start)
        set_schedule(scheduler, sampling.steps, sampling.sigma_start, device=cond.device)
        stride = self.backbone.vae_stride[1]
        tile, overlap = (sampling.tile // stride, sampling.tile_overlap // stride) if sampling.tile else (None, 0)
        field = self.velocity_field
        for t in scheduler.timesteps:
            sigma = (t / scheduler.config.num_train_timesteps).expand(x.shape[0])

            def velocity(window, x=x, sigma=sigma):
                if use_adapter and self.adapter is not None:
                    state = field.refinement_state(x[window], sigma)
                    return field.velocity(x[window], sigma, cond[window], state)
                return self.backbone(x[window], sigma)

            v = tiled(velocity, x.shape[-2:], self.backbone.patch_size[1:], tile, overlap)
            x = scheduler.step(v, t, x, return_dict=False)[0]
        return x

    @torch.no_grad()
    def super_resolve(
        self,
        lq: torch.Tensor,
        scale: int,
        sampling: Sampling | None = None,
        keys: list[str] | None = None,
        use_adapter: bool = True,
    ) -> torch.Tensor:
        """One window: any (B, 3, T, h, w) LQ video in [-1, 1] -> exactly (B, 3, T, h*scale, w*scale) in [-1, 1],
        padded to the backbone's geometry and cropped back, colour-fixed as `sampling` says. `keys` seed each
        sample's noise (default "0", the first window's)."""
        if not torch.isfinite(lq).all():
            raise LiteVSRError("the input video contains NaN or infinite values")
        backbone = self.backbone
        t, h, w = lq.shape[2:]
        sampling = resolve_tiles(sampling or self.sampling(), backbone, (h * scale, w * scale), t)
        step, multiple = backbone.frame_step, backbone.spatial_multiple
        unit = multiple // np.gcd(multiple, scale)  # LQ size such that LQ * scale is a multiple of `multiple`
        padded = _pad_video(lq, t + (-(t - 1)) % step, -(-h // unit) * unit, -(-w // unit) * unit)
        with _vae_tiling(backbone, sampling):
            cond = self.velocity_field.condition(padded, (padded.shape[-2] * scale, padded.shape[-1] * scale))
            latents = self.sample_latents(cond, sampling, keys or ["0"] * lq.shape[0], use_adapter)
            sr = backbone.decode(latents)[:, :, :t, : h * scale, : w * scale]
        if sampling.color_fix == "none":
            return sr
        return color_fix(sr, resize_video(lq, (h * scale, w * scale)).clamp(-1, 1), sampling.color_fix)

    def stream(
        self,
        frames: Iterator[np.ndarray],
        scale: int | None = None,
        sampling: Sampling | None = None,
        window: int | None = None,
        overlap: int | None = None,
        total: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Stream SR video chunks (3, n, H, W) in [-1, 1] for a stream of uint8 LQ frames; memory holds one window.

        Window k (noise key "k") is sampled and decoded on its own; over the `overlap` frames it shares with window
        k+1 the two are blended in pixel space, window k+1 weighted (i + 1) / (overlap + 1) at shared frame i.
        Blending decoded frames is right for any VAE layout: with a causal 1 + 4k VAE the two windows' latents over
        the overlap do not hold the same frames."""
        scale = scale or self.config.scale
        sampling = sampling or self.sampling()
        window, overlap = temporal_windows(self.backbone, window, overlap)
        tail = None  # the previous window's last `overlap` decoded frames, waiting for the blend
        count = None if total is None else max(1, -(-(total - overlap) // (window - overlap)))
        bar = self.progress_bar(iterable=_windows(frames, window, overlap))  # diffusers' bar, set_progress_bar_config's
        bar.total, bar.unit = count, "window"
        bar.set_description(f"upscaling x{scale}")
        for index, chunk in enumerate(bar):
            lq = frames_to_video(chunk)[None].to(self.backbone.device)
            if index == 0:  # tiles follow the frame size, known from the first frames on
                sampling = resolve_tiles(sampling, self.backbone, (lq.shape[-2] * scale, lq.shape[-1] * scale), window)
            sr = self.super_resolve(lq, scale, sampling, [str(index)])[0]
            if tail is not None:
                ramp = (torch.arange(1, overlap + 1, device=sr.device) / (overlap + 1)).view(1, -1, 1, 1)
                sr = torch.cat([tail * (1 - ramp) + sr[:, :overlap] * ramp, sr[:, overlap:]], dim=1)
            keep = max(0, sr.shape[1] - overlap)
            if keep > 0:
                yield sr[:, :keep]
            tail = sr[:, keep:]
        if tail is None:
            raise LiteVSRError("the input contains no frames")
        if tail.shape[1]:
            yield tail

    def __call__(
        self,
        video,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        tile: int | None = None,
        color_fix: str | None = None,
        output_type: str = "np",
        scale: int | None = None,
        sampling: Sampling | None = None,
    ) -> LiteVSRPipelineOutput:
        """Upscale `video`: frames (T, H, W, 3) or videos (B, T, H, W, 3), uint8 or floats in [0, 1], as an array
        or a tensor, or a list of PIL images. Arguments left out take the recorded sampler; `generator` gives the
        seed (its initial seed), the noise itself follows the pipeline's rule (see the module docstring).

        Args:
            num_inference_steps: Sampler steps.
            generator: Seeds the start noise.
            tile: Spatial tile in output pixels (0: whole frames; default: automatic).
            color_fix: none, wavelet, adain or lab.
            output_type: "np", "pt" or "pil".
            scale: Upscaling factor (default: the adapter's).
            sampling: Further sampler fields (see `Sampling`).
        """
        if output_type not in ("np", "pt", "pil"):
            raise LiteVSRError(f"output_type must be np, pt or pil, got {output_type!r}")
        seed = None if generator is None else generator.initial_seed()
        sampling = self.sampling(sampling, steps=num_inference_steps, seed=seed, tile=tile, color_fix=color_fix)
        outputs = []
        for frames in _videos_u8(video):
            sr = torch.cat(list(self.stream(iter(frames), scale, sampling, total=len(frames))), dim=1)
            outputs.append(((sr.float().clamp(-1, 1) + 1) / 2).permute(1, 0, 2, 3).cpu())  # (T, 3, H, W)
        frames = torch.stack(outputs)
        if output_type == "pt":
            return LiteVSRPipelineOutput(frames=frames)
        frames = frames.permute(0, 1, 3, 4, 2).numpy()
        if output_type == "pil":
            frames = [[Image.fromarray((f * 255).round().astype(np.uint8)) for f in clip] for clip in frames]
        return LiteVSRPipelineOutput(frames=frames)


def _videos_u8(video) -> list[np.ndarray]:
    """A pipeline input as uint8 videos (T, H, W, 3), with a one-line error for anything else."""
    if isinstance(video, list) and video and all(isinstance(f, Image.Image) for f in video):
        video = np.stack([np.asarray(f.convert("RGB")) for f in video])
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if not isinstance(video, np.ndarray) or video.ndim not in (4, 5) or video.shape[-1] != 3:
        shape = getattr(video, "shape", type(video).__name__)
        raise LiteVSRError(f"expected frames (T, H, W, 3) or videos (B, T, H, W, 3), got {shape}")
    if 0 in video.shape:
        raise LiteVSRError(f"the video is empty: shape {video.shape}")
    if video.dtype != np.uint8:
        if not np.isfinite(video).all() or video.min() < 0 or video.max() > 1:
            raise LiteVSRError("float frames must be finite and in [0, 1]")
        video = (video.astype(np.float32) * 255).round().astype(np.uint8)
    return list(video) if video.ndim == 5 else [video]


def adapter_folder(name: str) -> str:
    """The local folder of an adapter: a shipped adapter's ("general"), `name` itself, or a hub id's snapshot
    (adapters are small: config and weights only)."""
    path = adapter_path(name)
    if os.path.exists(path) or not HUB_ID.match(path):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return snapshot_download(path, allow_patterns=["*.json", "*.safetensors"])
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HFValidationError, OSError) as err:
        raise LiteVSRError(
            f"adapter not found: {path} is no folder, and the hub has no such repository ({err})"
        ) from err


def load_pipelines(
    adapters: str | None = None, backbone: str | None = None, device="cpu", dtype: str = "float32"
) -> list[tuple[str, LiteVSRPipeline]]:
    """Several adapters (comma-separated folders or shipped names; default: the default shipped one) on one
    backbone: [(folder name, pipeline)]. The backbone loads once, its transformer in `dtype`, and everything moves
    to `device`; methods that edit their backbone get one of their own."""
    paths = [adapter_folder(p) for p in (adapters or DEFAULT_ADAPTER).split(",") if p]
    configs = [read_adapter_config(p) for p in paths]
    backbones = {c["backbone"] for c in configs}
    if backbone is None and len(backbones) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbones {sorted(backbones)}; pass --backbone")
    families = {c["family"] for c in configs}
    if len(families) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbone families {sorted(families)}")
    names = [os.path.basename(os.path.normpath(p)) for p in paths]  # they name the outputs: out.<name>.mp4
    if len(set(names)) < len(names):
        raise LiteVSRError(f"the adapter folders {paths} share names; give each a distinct folder name")
    family = backbone_class(families.pop())

    def build():
        return family(backbone or configs[0]["backbone"], dtype=dtype).to(device)

    shared, pipes = None, []
    for path, config in zip(paths, configs):
        if adapter_class(config["class_name"]).edits_backbone:  # LoRA, full fine-tuning: a backbone of its own
            loaded = build()
        else:
            loaded = shared = shared or build()
        pipes.append(LiteVSRPipeline.from_pretrained(path, backbone=loaded).to(device))
    return list(zip(names, pipes))


def recorded_sampling(folder: str) -> dict:
    """The sampler an adapter folder records: its config's values, with the scheduler and shift of the scheduler/
    config beside it where it has one (a saved pipeline)."""
    sampling = dict(read_adapter_config(folder).get("sampling") or {})
    if os.path.isdir(os.path.join(folder, "scheduler")):
        scheduler = load_scheduler(os.path.join(folder, "scheduler"))
        sampling.update(scheduler=scheduler_name(scheduler), shift=scheduler.config.shift)
    return sampling
