"""Image-quality metrics with BasicSR's conventions: 8-bit rounding, Y of ITU-R BT.601, crop_border."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

BT601_Y = (65.481, 128.553, 24.966)  # RGB weights for [0, 1] input -> Y in [16, 235]


def video_to_frames_u8(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B*T, 3, H, W) float holding rounded 8-bit values."""
    frames = video.transpose(1, 2).flatten(0, 1).float()
    return torch.round((frames.clamp(-1, 1) + 1) * 127.5)


def y_channel(frames_u8: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) 8-bit RGB values -> (N, 1, H, W) Y in [16, 235] (float, unrounded, as BasicSR)."""
    w = torch.tensor(BT601_Y, dtype=torch.float64, device=frames_u8.device).view(1, 3, 1, 1)
    return ((frames_u8.double() / 255 * w).sum(1, keepdim=True) + 16.0)


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def frame_metrics(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0) -> dict[str, torch.Tensor]:
    """Per-frame PSNR-Y, SSIM-Y and RGB PSNR of two videos (B, 3, T, H, W) in [-1, 1]."""
    sr_u8, gt_u8 = video_to_frames_u8(sr), video_to_frames_u8(gt)
    sr_y, gt_y = _crop(y_channel(sr_u8), crop_border), _crop(y_channel(gt_u8), crop_border)
    per_frame = dict(data_range=255.0, reduction="none", dim=(1, 2, 3))
    return {
        "psnr_y": peak_signal_noise_ratio(sr_y, gt_y, **per_frame).float(),
        "ssim_y": structural_similarity_index_measure(sr_y, gt_y, data_range=255.0, reduction="none").float(),
        "psnr_rgb": peak_signal_noise_ratio(_crop(sr_u8, crop_border), _crop(gt_u8, crop_border), **per_frame).float(),
    }
