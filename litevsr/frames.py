"""Video as uint8 frames (T, H, W, 3) at I/O boundaries and as float tensors (C, T, H, W) or (B, C, T, H, W) in
[-1, 1] inside the model: the conversions between the two, and resizing. Both the model and the data code use
these, so neither imports the other."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F


def frames_to_video(frames_u8: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames_u8)).permute(3, 0, 1, 2).float() / 127.5 - 1


def u8_values(video: torch.Tensor) -> torch.Tensor:
    """A video in [-1, 1] -> the same shape, float, holding the 8-bit values it would be stored as."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round()


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return u8_values(video).byte().permute(1, 2, 3, 0).cpu().numpy()


def stream_frames(videos: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
    """A stream of (3, T, H, W) videos in [-1, 1] -> a stream of (H, W, 3) uint8 frames."""
    for video in videos:
        yield from video_to_frames(video)


def resize_video(video: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize every frame of a (B, C, T, H, W) video to `size` (H, W). Antialiased when shrinking, as image
    libraries do."""
    b, c, t = video.shape[:3]
    frames = video.transpose(1, 2).reshape(b * t, c, *video.shape[-2:])
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False, "antialias": True}
    frames = F.interpolate(frames, size=tuple(size), mode=mode, **kwargs)
    return frames.reshape(b, t, c, *frames.shape[-2:]).transpose(1, 2)


def shrunk_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is at most `max_side`; unchanged when it already is."""
    ratio = min(1.0, max_side / max(height, width))
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def shrink_frames(frames_u8: np.ndarray, max_side: int, multiple: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8 shrunk (antialiased bicubic) to `shrunk_size`, then cropped to a multiple of `multiple`."""
    size = shrunk_size(*frames_u8.shape[1:3], max_side)
    if size != frames_u8.shape[1:3]:
        video = resize_video(torch.from_numpy(frames_u8).permute(3, 0, 1, 2)[None].float(), size)
        frames_u8 = video[0].round().clamp(0, 255).byte().permute(1, 2, 3, 0).contiguous().numpy()
    h, w = frames_u8.shape[1:3]
    return frames_u8[:, : h // multiple * multiple, : w // multiple * multiple]
