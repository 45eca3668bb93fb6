"""Video I/O through PyAV. Frames at this boundary are uint8 arrays (T, H, W, 3)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import torch

from litevsr.errors import LiteVSRError
from litevsr.frames import shrunk_size

#: File extensions taken for videos wherever a folder is searched (shards, evaluation, batch upscaling).
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".mkv",
        ".mov",
        ".avi",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".ts",
        ".y4m",
        ".mts",
        ".m2ts",
        ".3gp",
        ".ogv",
        ".vob",
        ".dv",
        ".gif",
        ".mxf",
        ".nut",
    }
)


def is_video_file(path: str) -> bool:
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


#: x264's macroblock-tree rate control encodes identical frames to different bytes from run to run (measured at
#: 44x52: 3 different outputs in 4 runs with default settings); without it 12 runs of 12 gave the same bytes. The
#: bitstream also depends on x264's thread count (1, 2 and 4 threads: three different files), which by default
#: follows the machine's cores: one thread gives the same file on any machine and in any number of processes.
X264_REPEATABLE = {"x264-params": "mbtree=0", "threads": "1"}


def codec_threads() -> int:
    """FFmpeg's threads for one decoder or encoder: the process's torch threads. FFmpeg's own default is every core
    in every process, so N ranks on a node (torchrun gives each OMP_NUM_THREADS=1) would each run one per core."""
    return torch.get_num_threads()


def _open(source):
    try:
        return av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    except (av.error.FFmpegError, OSError) as err:
        raise LiteVSRError(f"cannot open video {_name(source)}: {err}") from err


def _name(source) -> str:
    return f"<{len(source)} bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def video_info(source) -> dict:
    """Frame rate, frame count (as the container reports it, may be 0), upright size of the first video stream,
    and the codec of the first audio stream (None without audio)."""
    with _open(source) as container:
        if not container.streams.video:
            raise LiteVSRError(f"{_name(source)} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        width, height = stream.width, stream.height
        try:  # rotation lives in the frames' display matrix: look at the first one
            if next(container.decode(stream)).rotation % 180:
                width, height = height, width
        except (StopIteration, av.error.FFmpegError):
            pass
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return {"fps": fps, "frames": stream.frames, "width": width, "height": height, "audio": audio}


def iter_frames(source, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames one by one as RGB uint8 (H, W, 3), turned upright as players show them (rotation metadata).

    With `max_side`, FFmpeg's scaler shrinks each frame (bicubic) in the same pass so that its longer side is at
    most `max_side`: far cheaper than decoding at full size and resizing afterwards."""
    with _open(source) as container:
        if not container.streams.video:
            raise LiteVSRError(f"{_name(source)} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = codec_threads()
        try:
            for frame in container.decode(stream):
                size = {}
                if max_side and max(frame.width, frame.height) > max_side:
                    height, width = shrunk_size(frame.height, frame.width, max_side)
                    size = {"width": width, "height": height, "interpolation": "BICUBIC"}
                # the display matrix angle is counter-clockwise, as np.rot90 turns
                turns = round(frame.rotation / 90) % 4
                rgb = frame.to_ndarray(format="rgb24", **size)
                yield np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb
        except av.error.FFmpegError as err:
            raise LiteVSRError(f"corrupt video {_name(source)}: {err}") from err


def read_video(source, max_frames: int | None = None) -> np.ndarray:
    frames = []
    for frame in iter_frames(source):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise LiteVSRError(f"{_name(source)} contains no decodable frames")
    return np.stack(frames)


def encode_video(frames_u8: np.ndarray, codec: str = "ffv1", fps: float = 25.0, **options) -> bytes:
    """Encode (T, H, W, 3) uint8 frames in memory. ffv1 (the default) is lossless RGB in Matroska, muxed bit-exactly
    (Matroska otherwise writes a random segment UID), so the same frames give the same bytes and checksum."""
    lossless = codec == "ffv1"
    buffer = io.BytesIO()
    with av.open(
        buffer, mode="w", format="matroska" if lossless else "mp4", options={"fflags": "+bitexact"} if lossless else {}
    ) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames_u8.shape[1:3]
        stream.pix_fmt = "bgr0" if lossless else "yuv420p"
        stream.thread_count = codec_threads()  # ffv1's bytes do not depend on it; x264's options pin their own
        stream.options = {**(X264_REPEATABLE if codec == "libx264" else {}), **{k: str(v) for k, v in options.items()}}
        for frame in frames_u8:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()
