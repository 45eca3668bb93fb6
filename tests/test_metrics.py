import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_clips
from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.cli import main
from litevsr.data.pipeline import frames_to_video
from litevsr.metrics import frame_metrics, perceptual_metric, warping_error
from litevsr.model import LiteVSR


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
    save_adapter(LiteVSR(backbone, StateAwareAdapter(width=32, time_dim=32, inject_every=2)).adapter, str(adapter),
                 backbone_dir, scale=4)
    main(["test", "--gt", str(tmp_path / "GT"), "--lq", str(tmp_path / "LQ"), "--adapter", str(adapter),
          "--out", str(tmp_path / "eval"), "--window", "5"])
    table = capsys.readouterr().out
    assert "| bicubic | 2 |" in table and "| anime | 2 |" in table and "warp_error" in table
    lines = (tmp_path / "eval" / "per_clip.csv").read_text().splitlines()
    assert lines[0].startswith("clip,method,frames,psnr_y,ssim_y,psnr_rgb") and len(lines) == 5


def test_litevsr_test_reports_a_missing_partner(tmp_path, capsys):
    _write_clip(tmp_path / "GT" / "a", next(random_clips(1, 1, 8, seed=1))[1])
    (tmp_path / "LQ").mkdir()
    with pytest.raises(SystemExit):
        main(["test", "--gt", str(tmp_path / "GT"), "--lq", str(tmp_path / "LQ")])
    assert "has no partner" in capsys.readouterr().err


def test_find_pairs_matches_video_files_by_name(tmp_path):
    from litevsr.data.video import encode_video
    from litevsr.evaluate import find_pairs

    for folder, ext in (("GT", ".mkv"), ("LQ", ".mp4")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"city{ext}").write_bytes(encode_video(next(random_clips(1, 2, 8, seed=1))[1]))
    assert find_pairs(str(tmp_path / "GT"), str(tmp_path / "LQ")) == [
        ("city", str(tmp_path / "GT" / "city.mkv"), str(tmp_path / "LQ" / "city.mp4"))]
