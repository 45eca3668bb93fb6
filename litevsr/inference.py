"""Upscale video files in bounded memory, through a `LiteVSRPipeline`.

Frames stream in from any file FFmpeg decodes (or a folder of images), through the pipeline's temporal windows and
spatial tiles, and out to an H.264 mp4 or PNG files, written under a temporary name and renamed at the end, so a
failure never leaves a partial output.

Batches of files (`litevsr upscale IN_DIR OUT_DIR`, `litevsr predict` on VideoFiles) go through `upscale_or_skip`,
which records each file as done, skipped or failed instead of stopping at the first bad one; over several ranks,
each takes its `share` and rank 0 prints one `summary_line` of all ranks' records.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from litevsr import distributed
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
        if device == "cuda" and dist.is_available() and dist.is_initialized():
            device = f"cuda:{torch.cuda.current_device()}"  # this rank's GPU, as litevsr.distributed.join set it
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


# --- batches of files, over one rank or several -------------------------------------------------------------------
def one_line(err: BaseException) -> str:
    """The first line of an error's message (a DataLoader worker's re-raised error: the original's)."""
    text = str(err).strip()
    # DataLoader workers re-raise as "Caught X in DataLoader worker process N. Original Traceback ...".
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def share(inputs: list[str], output_of, rank: int, world: int) -> list[str]:
    """Rank `rank`'s part of `inputs` (of `world` ranks): in sorted order, the inputs of every `world`-th distinct
    output from the `rank`-th, so every input falls to exactly one rank and no two ranks write one file (inputs
    with the same output, as a.mkv and a.mp4 into a.mp4, go together). One rank takes all, in sorted order."""
    slots: dict[str, int] = {}
    mine = []
    for path in sorted(inputs):
        if slots.setdefault(output_of(path), len(slots)) % world == rank:
            mine.append(path)
    return mine


def upscale_or_skip(pipe: LiteVSRPipeline, src: str, dst: str, overwrite: bool = False, **options) -> dict:
    """`upscale_file` as one item of a batch: {"input", "output", "status", "reason"}, status "skipped" for an
    output already there (outputs appear only when complete; unless `overwrite`), "failed" with the error's one
    line for a bad input (LiteVSRError: corrupt, unreadable, ...), else "done" with upscale_file's result."""
    record = {"input": src, "output": dst, "status": "skipped", "reason": None}
    if os.path.exists(dst) and not overwrite:
        return record
    try:
        return {**upscale_file(pipe, src, dst, overwrite=overwrite, **options), **record, "status": "done"}
    except LiteVSRError as err:
        return {**record, "status": "failed", "reason": one_line(err)}


def summary_line(records: list[dict], command: str = "litevsr upscale") -> str:
    """One line for a batch's records (of all ranks): counts, and each failed input with its reason."""
    count = {status: sum(r["status"] == status for r in records) for status in ("done", "skipped")}
    failed = [
        f"{os.path.basename(os.path.normpath(r['input']))} ({r['reason']})" for r in records if r["status"] == "failed"
    ]
    line = f"{command}: {count['done']} done, {count['skipped']} skipped (already there), {len(failed)} failed"
    return line + (": " + "; ".join(failed) if failed else "")


def gather_records(records: list[dict], group=None) -> list[dict]:
    """The records of all ranks, on every rank, in input order as one rank would have made them."""
    per_rank = distributed.gather(records, group)
    return sorted((r for rank_records in per_rank for r in rank_records), key=lambda r: r["input"])
