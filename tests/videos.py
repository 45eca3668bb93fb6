"""Synthetic test videos with real motion (a window panning over a smooth random texture) and scene cuts."""

import numpy as np
import torch

from litevsr.data.video import encode_video


def texture(size: int, seed: int) -> np.ndarray:
    """A smooth random RGB texture (size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.integers(0, 256, (1, 3, max(2, size // 16), max(2, size // 16))).astype(np.float32))
    up = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def pan(frames: int, size: int, seed: int, step: int = 1) -> np.ndarray:
    """(frames, size, size, 3): a size x size window moving `step` pixels per frame over a texture."""
    tex = texture(size + frames * step, seed)
    return np.stack([tex[i * step : i * step + size, i * step : i * step + size] for i in range(frames)])


def still(frames: int, size: int, seed: int) -> np.ndarray:
    return np.repeat(texture(size, seed)[None], frames, axis=0)


def write_video(path, frames_u8: np.ndarray) -> str:
    """A lossless FFV1 .mkv, so decoded frames equal `frames_u8` exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_video(frames_u8))
    return str(path)
