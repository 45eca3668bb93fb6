"""Upscale real videos in bounded memory.

Frames stream in from any file FFmpeg decodes (or a folder of images) and are cut into overlapping temporal
windows. Each window is sampled and decoded; neighbouring windows are blended over their overlap, so there are no
seams in time. Spatially, the transformer runs on overlapping latent tiles and
the VAE tiles its convolutions (`tile`). Frames stream out to an H.264 mp4 or PNG files, written under a
temporary name and renamed at the end, so a failure never leaves a partial output.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from litevsr import LiteVSRError, flow
from litevsr.atomic import atomic_path
from litevsr.color import check_color_fix, color_fix
from litevsr.data.video import X264_REPEATABLE, iter_frames, video_info
from litevsr.frames import frames_to_video, resize_video, stream_frames
from litevsr.model import LiteVSR, check_tile_overlap

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}


def _pad_video(video: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Reflect-pad (B, C, T, H, W) up to the given size (replicate where reflection is too short)."""
    t, h, w = video.shape[2:]
    pads = [0, width - w, 0, height - h, 0, frames - t]
    mode = "reflect" if all(p < s for p, s in zip(pads[1::2], (w, h, t))) else "replicate"
    return F.pad(video, pads, mode=mode)


#: The sampler's values where neither the caller nor an adapter gives one.
SAMPLING_DEFAULTS = {"steps": 1, "sigma_start": 1.0, "shift": 1.0, "seed": 0, "color_fix": "none", "start_noise": 1.0}


@dataclass
class Sampling:
    """How a clip is sampled: the settings an adapter was trained for travel with it (see save_adapter).

    A field left out (None) takes the adapter's recorded value in `of_adapter`, else its default; `given` holds the
    fields the caller set, so that `--sampling.start_noise 1.0` replaces an adapter's 0 even though 1 is the default.

    Args:
        steps: Euler steps (default 1).
        sigma_start: Start from the LQ latent noised to this sigma; 1 (the default) is pure noise.
        shift: Time shift of the sigma schedule; > 1 spends more steps at high noise (default 1).
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
        flow.check_schedule(self.steps, self.sigma_start)
        if self.tile is not None and self.tile < 0:
            raise LiteVSRError(f"the tile must be >= 0 output pixels (0: whole frames), got {self.tile}")
        if self.tile and self.tile_overlap is not None:
            check_tile_overlap(self.tile, self.tile_overlap, "output pixels")

    def settings(self) -> dict:
        """The values, as an adapter records them and a checkpoint's hyperparameters hold them."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "given"}

    @classmethod
    def of_adapter(cls, config: dict, overrides: Sampling | None = None, **values) -> Sampling:
        """The sampler `config` (an exported adapter's) records, with the fields `overrides` was given and the
        non-None `values` in their place."""
        fields = set(cls.__dataclass_fields__) - {"given"}
        known = {k: v for k, v in (config.get("sampling") or {}).items() if k in fields}
        given = {k: getattr(overrides, k) for k in overrides.given} if overrides is not None else {}
        return cls(**{**known, **given, **{k: v for k, v in values.items() if v is not None}})


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, str]:
    """(device, transformer dtype name): "auto" is a visible GPU with bfloat16, else the CPU with float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise LiteVSRError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LiteVSRError(f"--device {device}: no GPU is visible to torch")
    if dtype == "auto":
        dtype = "bfloat16" if resolved.type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise LiteVSRError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return resolved, dtype


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


def latent_tiles(model: LiteVSR, sampling: Sampling) -> dict:
    """LiteVSR.sample's tile arguments (latent pixels) for a resolved `sampling` (output pixels)."""
    stride = model.backbone.vae_stride[1]
    if not sampling.tile:
        return {}
    return {"tile": sampling.tile // stride, "tile_overlap": sampling.tile_overlap // stride}


@torch.no_grad()
def clip_latents(model: LiteVSR, lq: torch.Tensor, scale: int, sampling: Sampling, index: int = 0) -> torch.Tensor:
    """Sampled HQ latents of an LQ clip (B, 3, T, h, w), padded to the backbone's geometry."""
    if not torch.isfinite(lq).all():
        raise LiteVSRError("the input video contains NaN or infinite values")
    backbone = model.backbone
    t, h, w = lq.shape[2:]
    step, multiple = backbone.frame_step, backbone.spatial_multiple
    unit = multiple // np.gcd(multiple, scale)  # LQ size such that LQ * scale is a multiple of `multiple`
    padded = _pad_video(lq, t + (-(t - 1)) % step, -(-h // unit) * unit, -(-w // unit) * unit)
    cond = model.condition(padded, (padded.shape[-2] * scale, padded.shape[-1] * scale))
    generator = torch.Generator().manual_seed(sampling.seed + index)
    noise = torch.randn(cond.shape, generator=generator)
    return model.sample(
        cond,
        sampling.steps,
        sampling.shift,
        sampling.sigma_start,
        noise=noise,
        start_noise=sampling.start_noise,
        **latent_tiles(model, sampling),
    )


def decode_clip(
    model: LiteVSR, latents: torch.Tensor, lq: torch.Tensor, scale: int, sampling: Sampling
) -> torch.Tensor:
    """Decode latents, crop to exactly (T, h*scale, w*scale) for the LQ clip (B, 3, T, h, w), and correct the colour
    towards its bicubic upsampling (`sampling.color_fix`)."""
    t, h, w = lq.shape[2:]
    sr = model.backbone.decode(latents)[:, :, :t, : h * scale, : w * scale]
    if sampling.color_fix == "none":
        return sr
    return color_fix(sr, resize_video(lq, (h * scale, w * scale)).clamp(-1, 1), sampling.color_fix)


def upscale_clip(model: LiteVSR, lq: torch.Tensor, scale: int, sampling: Sampling | None = None) -> torch.Tensor:
    """Any (B, 3, T, h, w) LQ video in [-1, 1] -> exactly (B, 3, T, h*scale, w*scale), in one window."""
    size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
    sampling = resolve_tiles(sampling or Sampling(), model.backbone, size, lq.shape[2])
    with vae_tiling(model, sampling):
        return decode_clip(model, clip_latents(model, lq, scale, sampling), lq, scale, sampling)


@contextmanager
def vae_tiling(model: LiteVSR, sampling: Sampling):
    """Tile the VAE's convolutions like the transformer while sampling.tile is set (a pointwise VAE's memory is
    linear in the area already, and tiles would only add overhead)."""
    if sampling.tile and not model.backbone.vae_is_pointwise:
        stride = model.backbone.vae_stride[1]  # whole latent pixels, as the transformer's tiles hold whole tokens
        model.backbone.tile_vae(max(stride, sampling.tile // stride * stride), sampling.tile_overlap // stride * stride)
    try:
        yield
    finally:
        model.backbone.vae.disable_tiling()


def _windows(frames: Iterator[np.ndarray], window: int, overlap: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start frame, frames) of windows of `window` frames, each sharing `overlap` frames with the previous."""
    buffer, start = [], 0
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == window:
            yield start, np.stack(buffer)
            buffer, start = buffer[window - overlap :], start + window - overlap
    if len(buffer) > overlap or (start == 0 and buffer):
        yield start, np.stack(buffer)


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


def upscale_windows(
    model: LiteVSR,
    frames: Iterator[np.ndarray],
    scale: int,
    sampling: Sampling,
    window: int | None = None,
    overlap: int | None = None,
    total: int | None = None,
) -> Iterator[torch.Tensor]:
    """Stream SR video chunks (3, n, H, W) in [-1, 1] for a stream of LQ frames; memory holds one window.

    Window k (seed `sampling.seed + k`) is sampled and decoded on its own; over the `overlap` frames it shares
    with window k+1 the two are blended in pixel space, window k+1 weighted (i + 1) / (overlap + 1) at shared
    frame i. Blending decoded frames is right for any VAE layout: with a causal 1 + 4k VAE the two windows'
    latents over the overlap do not hold the same frames."""
    window, overlap = temporal_windows(model.backbone, window, overlap)
    device = model.backbone.device
    tail = None  # the previous window's last `overlap` decoded frames, waiting for the blend
    count = None if total is None else max(1, -(-(total - overlap) // (window - overlap)))
    for index, (_, chunk) in enumerate(
        tqdm(_windows(frames, window, overlap), total=count, unit="window", desc=f"upscaling x{scale}")
    ):
        lq = frames_to_video(chunk)[None].to(device)
        if index == 0:  # tiles follow the frame size, known from the first frames on
            sampling = resolve_tiles(sampling, model.backbone, (lq.shape[-2] * scale, lq.shape[-1] * scale), window)
        with vae_tiling(model, sampling):
            sr = decode_clip(model, clip_latents(model, lq, scale, sampling, index), lq, scale, sampling)[0]
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


# --- sources and sinks -------------------------------------------------------------------------------------------
def open_source(src: str, fps: float | None = None, max_frames: int | None = None) -> tuple[dict, Iterator[np.ndarray]]:
    """(info, frame iterator) for a video file or a folder of images. Frames are upright RGB uint8."""
    if os.path.isdir(src):
        files = sorted(f for f in glob.glob(os.path.join(src, "*")) if f.lower().endswith(FRAME_EXTENSIONS))
        if not files:
            raise LiteVSRError(f"no image frames ({', '.join(FRAME_EXTENSIONS)}) in folder {src}")
        width, height = Image.open(files[0]).size
        info = {"fps": fps or 25.0, "frames": len(files), "width": width, "height": height, "audio": None}
        frames = (_read_image(f, (width, height)) for f in files)
    elif os.path.isfile(src):
        info = video_info(src)
        info["fps"] = fps or info["fps"]
        frames = iter_frames(src)
    else:
        raise LiteVSRError(f"input not found: {src}")
    if max_frames is not None:
        info["frames"] = min(info["frames"] or max_frames, max_frames)
        frames = (frame for frame, _ in zip(frames, range(max_frames)))
    return info, frames


def _read_image(path: str, size: tuple[int, int]) -> np.ndarray:
    try:
        image = Image.open(path).convert("RGB")
    except OSError as err:
        raise LiteVSRError(f"cannot read frame {path}: {err}") from err
    if image.size != size:
        raise LiteVSRError(f"frame {path} is {image.size[0]}x{image.size[1]}, the first frame is {size[0]}x{size[1]}")
    return np.array(image)


def _write_mp4(frames: Iterator[np.ndarray], path: str, width: int, height: int, fps: float, crf: int) -> int:
    written = 0
    with av.open(path, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        # 4:2:0 needs even sizes; odd sizes keep full chroma so that the output is exactly scale x the input
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.options = {"crf": str(crf), **X264_REPEATABLE}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            written += 1
        out.mux(stream.encode())
    return written


def _add_audio(video_path: str, src: str, out_path: str) -> None:
    """Remux `video_path` with the first audio stream of `src` (copied, or re-encoded to AAC if mp4 can't hold it)."""
    with av.open(video_path) as video, av.open(src) as source, av.open(out_path, mode="w", format="mp4") as out:
        audio_in = source.streams.audio[0]
        video_out = out.add_stream_from_template(video.streams.video[0])
        copy = audio_in.codec_context.name in MP4_AUDIO_CODECS
        audio_out = out.add_stream_from_template(audio_in) if copy else out.add_stream("aac", rate=audio_in.rate)
        for packet in video.demux(video.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video_out
                out.mux(packet)
        if copy:
            for packet in source.demux(audio_in):
                if packet.dts is not None:
                    packet.stream = audio_out
                    out.mux(packet)
        else:
            for frame in source.decode(audio_in):
                frame.pts = None
                out.mux(audio_out.encode(frame))
            out.mux(audio_out.encode())


def _write_pngs(frames: Iterator[np.ndarray], folder: str) -> int:
    os.makedirs(folder)
    written = 0
    for written, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(os.path.join(folder, f"{written:06d}.png"))
    return written


def upscale_file(
    model: LiteVSR,
    src: str,
    dst: str,
    scale: int = 4,
    sampling: Sampling | None = None,
    window: int | None = None,
    overlap: int | None = None,
    crf: int = 18,
    fps: float | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Upscale a video file or frame folder into an mp4 (H.264, audio copied) or, if `dst` has no .mp4
    suffix, a folder of PNG frames. Nothing is written at `dst` unless the whole video succeeds."""
    sampling = sampling or Sampling()
    if os.path.abspath(src) == os.path.abspath(dst):
        raise LiteVSRError("the output path must differ from the input path")
    if os.path.exists(dst) and not overwrite:
        raise LiteVSRError(f"output {dst} already exists; pass --overwrite true (overwrite=True) to replace it")
    parent = os.path.dirname(os.path.abspath(dst))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise LiteVSRError(f"the output's folder {parent} is a file")
    os.makedirs(parent, exist_ok=True)  # before the work, which a missing folder would otherwise waste
    info, frames = open_source(src, fps, max_frames)
    sr = stream_frames(upscale_windows(model, frames, scale, sampling, window, overlap, total=info["frames"] or None))
    width, height = info["width"] * scale, info["height"] * scale
    to_mp4 = dst.lower().endswith(".mp4")
    with atomic_path(dst, suffix=".mp4" if to_mp4 else "") as tmp:
        if to_mp4:
            written = _write_mp4(sr, tmp, width, height, info["fps"], crf)
            if info.get("audio"):
                with atomic_path(tmp, suffix=".mp4") as with_audio:
                    _add_audio(tmp, src, with_audio)
        else:
            written = _write_pngs(sr, tmp)
    return {"frames": written, "width": width, "height": height, "fps": info["fps"], "output": dst}
