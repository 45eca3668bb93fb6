"""Upscale real video files: decode, chunk in time, pad to the backbone's geometry, sample, encode. Streaming."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from litevsr import LiteVSRError
from litevsr.data.pipeline import frames_to_video, video_to_frames
from litevsr.data.video import iter_frames, video_info
from litevsr.model import LiteVSR


def _chunks(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def _pad_video(video: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Reflect-pad (B, C, T, H, W) up to the given size (replicate where reflection is too short)."""
    t, h, w = video.shape[2:]
    pads = [0, width - w, 0, height - h, 0, frames - t]
    mode = "reflect" if all(p < s for p, s in zip(pads[1::2], (w, h, t))) else "replicate"
    return F.pad(video, pads, mode=mode)


@torch.no_grad()
def upscale_clip(model: LiteVSR, lq: torch.Tensor, scale: int, **sample_kwargs) -> torch.Tensor:
    """Any (B, 3, T, h, w) LQ video -> exactly (B, 3, T, h*scale, w*scale): pad, upscale, crop."""
    if not torch.isfinite(lq).all():
        raise LiteVSRError("the input video contains NaN or infinite values")
    backbone = model.backbone
    t, h, w = lq.shape[2:]
    step, multiple = backbone.frame_step, backbone.spatial_multiple
    target_t = t + (-(t - 1)) % step
    unit = multiple // np.gcd(multiple, scale)  # LQ size such that LQ * scale is a multiple of `multiple`
    padded = _pad_video(lq, target_t, -(-h // unit) * unit, -(-w // unit) * unit)
    return model.upscale(padded, scale, **sample_kwargs)[:, :, :t, : h * scale, : w * scale]


def upscale_file(model: LiteVSR, src: str, dst: str, scale: int = 4, steps: int = 1, chunk_frames: int = 17,
                 seed: int = 0, crf: int = 18) -> dict:
    """Upscale `src` into an H.264 mp4 at `dst`. Written to a temporary file first: no partial output."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise LiteVSRError("the output path must differ from the input path")
    info = video_info(src)
    total = -(-info["frames"] // chunk_frames) if info["frames"] else None
    tmp = f"{dst}.tmp{os.getpid()}.mp4"
    written = 0
    try:
        with av.open(tmp, mode="w") as out:
            stream = out.add_stream("libx264", rate=Fraction(info["fps"]).limit_denominator(1001))
            stream.width, stream.height = (info["width"] * scale) // 2 * 2, (info["height"] * scale) // 2 * 2
            stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
            for index, chunk in enumerate(tqdm(_chunks(iter_frames(src), chunk_frames), total=total, unit="chunk",
                                               desc=f"upscaling x{scale}")):
                generator = torch.Generator().manual_seed(seed + index)
                sr = upscale_clip(model, frames_to_video(chunk)[None].to(model.backbone.device), scale,
                                  steps=steps, generator=generator)
                for frame in video_to_frames(sr[0]):
                    frame = np.ascontiguousarray(frame[: stream.height, : stream.width])
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                    written += 1
            out.mux(stream.encode())
        if not written:
            raise LiteVSRError(f"{src} contains no decodable frames")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"frames": written, "width": stream.width, "height": stream.height, "output": dst}
