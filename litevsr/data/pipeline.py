"""Per-clip pipelines: HQ clip -> (HQ crop, LQ). Recipes pick one by class_path."""

from __future__ import annotations

import numpy as np
import torch

from litevsr import LiteVSRError
from litevsr.data.degradations import simple_degradation


class ClipTooSmallError(LiteVSRError):
    pass


def frames_to_video(frames_u8: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames_u8)).permute(3, 0, 1, 2).float() / 127.5 - 1


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


def crop_clip(frames_u8: np.ndarray, frames: int, size: int, key: str, generator: torch.Generator | None) -> np.ndarray:
    """A `frames` x `size` x `size` crop: random with a generator, centred without."""
    t, h, w = frames_u8.shape[:3]
    if t < frames or h < size or w < size:
        raise ClipTooSmallError(f"clip {key} is {t}x{h}x{w} (TxHxW), smaller than the crop {frames}x{size}x{size}")
    if generator is None:
        t0, y0, x0 = (t - frames) // 2, (h - size) // 2, (w - size) // 2
    else:
        t0, y0, x0 = (int(torch.randint(n + 1, (), generator=generator)) for n in (t - frames, h - size, w - size))
    return frames_u8[t0:t0 + frames, y0:y0 + size, x0:x0 + size]


class SimpleDegradation:
    def __init__(self, blur_sigma: tuple[float, float] = (0.2, 1.5), noise_sigma: tuple[float, float] = (0.0, 5.0)):
        """Gaussian blur, bicubic downscale, Gaussian noise, 8-bit rounding; one draw per clip.

        Args:
            blur_sigma: Range of the Gaussian blur's sigma (HQ pixels).
            noise_sigma: Range of the noise sigma, in 8-bit levels.
        """
        self.blur_sigma, self.noise_sigma = tuple(blur_sigma), tuple(noise_sigma)

    def __call__(self, hq: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        """hq (3, T, H, W) in [-1, 1] -> lq (3, T, H/scale, W/scale)."""
        return simple_degradation(hq[None], scale, generator, self.blur_sigma, self.noise_sigma)[0]
