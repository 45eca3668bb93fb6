"""Image-quality metrics with BasicSR's conventions: 8-bit rounding, Y of ITU-R BT.601, crop_border."""

from __future__ import annotations

import os

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from litevsr.errors import LiteVSRError
from litevsr.frames import u8_values

BT601_Y = (65.481, 128.553, 24.966)  # RGB weights for [0, 1] input -> Y in [16, 235]


def video_to_frames_u8(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B*T, 3, H, W) float holding rounded 8-bit values."""
    return u8_values(video.transpose(1, 2).flatten(0, 1))


def y_channel(frames_u8: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) 8-bit RGB values -> (N, 1, H, W) Y in [16, 235] (float, unrounded, as BasicSR)."""
    w = torch.tensor(BT601_Y, dtype=torch.float64, device=frames_u8.device).view(1, 3, 1, 1)
    return (frames_u8.double() / 255 * w).sum(1, keepdim=True) + 16.0


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of (N, 1, H, W) images in [0, 255], BasicSR's `_ssim`: an 11x11 Gaussian window of sigma 1.5
    over the valid region only (no padding), in float64, the map averaged. Images smaller than the window (where
    BasicSR's map is empty) use the largest odd window that fits."""
    size = min(11, (min(x.shape[-2:]) - 1) // 2 * 2 + 1)
    i = torch.arange(size, dtype=torch.float64, device=x.device) - size // 2
    g = torch.exp(-(i**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :])[None, None]
    x, y = x.double(), y.double()

    def blur(t):
        return torch.nn.functional.conv2d(t, window)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def frame_metrics(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0) -> dict[str, torch.Tensor]:
    """Per-frame PSNR-Y, SSIM-Y and RGB PSNR of two videos (B, 3, T, H, W) in [-1, 1]."""
    sr_u8, gt_u8 = video_to_frames_u8(sr), video_to_frames_u8(gt)
    sr_y, gt_y = _crop(y_channel(sr_u8), crop_border), _crop(y_channel(gt_u8), crop_border)
    per_frame = dict(data_range=255.0, reduction="none", dim=(1, 2, 3))
    return {
        "psnr_y": peak_signal_noise_ratio(sr_y, gt_y, **per_frame).float(),
        "ssim_y": ssim(sr_y, gt_y).float(),
        "psnr_rgb": peak_signal_noise_ratio(_crop(sr_u8, crop_border), _crop(gt_u8, crop_border), **per_frame).float(),
    }


def _flow(src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) such that src(p) ~ dst(p + flow(p)), Farneback (OpenCV)."""
    import cv2

    return cv2.calcOpticalFlowFarneback(src_gray, dst_gray, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32) + flow
    return cv2.remap(image, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warping_error(sr_prev: np.ndarray, gt_prev: np.ndarray, sr: np.ndarray, gt: np.ndarray) -> float:
    """Temporal warping error of two consecutive SR frames (uint8 RGB): mean squared difference in [0, 1] between
    frame t and frame t-1 warped onto it, with the flow estimated on GT and occluded pixels (where forward and
    backward flow disagree) left out."""
    try:
        import cv2
    except ImportError:
        raise LiteVSRError("the warping error needs OpenCV: pip install 'litevsr[metrics]'") from None

    gray, gray_prev = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (gt, gt_prev))
    backward, forward = _flow(gray, gray_prev), _flow(gray_prev, gray)
    forward_there = _warp(forward, backward)  # the forward flow at where each pixel came from
    round_trip = backward + forward_there
    visible = (round_trip**2).sum(-1) < 0.01 * ((backward**2).sum(-1) + (forward_there**2).sum(-1)) + 0.5
    warped = _warp(sr_prev.astype(np.float32) / 255, backward)
    diff = ((sr.astype(np.float32) / 255 - warped) ** 2).sum(-1) / 3
    return float(diff[visible].mean()) if visible.any() else 0.0


# LPIPS/DISTS take their backbone from torchvision's hub cache; these files must be there (no download here).
PERCEPTUAL_BACKBONES = {"lpips": "alexnet-owt-7be5be79.pth", "dists": "vgg16-397923af.pth"}


def perceptual_metric(name: str):
    """LPIPS (AlexNet) or DISTS (VGG16) from torchmetrics, as fn(sr, gt) on (1, 3, 1, H, W) videos in [-1, 1]."""
    if name not in PERCEPTUAL_BACKBONES:
        raise LiteVSRError(f"unknown perceptual metric {name!r}; choose from {sorted(PERCEPTUAL_BACKBONES)}")
    weights = os.path.join(torch.hub.get_dir(), "checkpoints", PERCEPTUAL_BACKBONES[name])
    if not os.path.isfile(weights):
        raise LiteVSRError(
            f"{name.upper()} needs its backbone weights at {weights} (not downloaded automatically "
            "here); copy the file there or leave the metric out"
        )
    from torchmetrics.image import (
        DeepImageStructureAndTextureSimilarity,
        LearnedPerceptualImagePatchSimilarity,
    )

    metric = (
        LearnedPerceptualImagePatchSimilarity("alex") if name == "lpips" else DeepImageStructureAndTextureSimilarity()
    )
    metric.eval()

    to_input = (lambda x: x) if name == "lpips" else (lambda x: (x + 1) / 2)  # LPIPS takes [-1, 1], DISTS [0, 1]

    @torch.no_grad()
    def score(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return metric(to_input(sr[:, :, 0].clamp(-1, 1)), to_input(gt[:, :, 0].clamp(-1, 1)))

    return score
