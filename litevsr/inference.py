"""Upscale video files in bounded memory, through a `LiteVSRPipeline`.

Frames stream in from any file FFmpeg decodes (or a folder of images), through the pipeline's temporal windows and
spatial tiles, and out to an H.264 mp4 or PNG files, written under a temporary name and renamed at the end, so a
failure never leaves a partial output.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import torch
from PIL import Image

from litevsr.atomic import atomic_path
from litevsr.data.video import X264_REPEATABLE, iter_frames, video_info
from litevsr.errors import LiteVSRError
from litevsr.frames import stream_frames
from litevsr.pipeline import LiteVSRPipeline, Sampling

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}


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
    pipe: LiteVSRPipeline,
    src: str,
    dst: str,
    scale: int | None = None,
    sampling: Sampling | None = None,
    window: int | None = None,
    overlap: int | None = None,
    crf: int = 18,
    fps: float | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Upscale a video file or frame folder into an mp4 (H.264, audio copied) or, if `dst` has no .mp4
    suffix, a folder of PNG frames, `scale` times larger (default: the adapter's). Nothing is written at `dst` unless
    the whole video succeeds."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise LiteVSRError("the output path must differ from the input path")
    if os.path.exists(dst) and not overwrite:
        raise LiteVSRError(f"output {dst} already exists; pass --overwrite true (overwrite=True) to replace it")
    parent = os.path.dirname(os.path.abspath(dst))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise LiteVSRError(f"the output's folder {parent} is a file")
    os.makedirs(parent, exist_ok=True)  # before the work, which a missing folder would otherwise waste
    info, frames = open_source(src, fps, max_frames)
    scale = scale or pipe.config.scale
    sr = stream_frames(pipe.stream(frames, scale, sampling, window, overlap, total=info["frames"] or None))
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
