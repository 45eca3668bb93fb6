"""The offline pieces of benchmarks/heldout_data.py (building the real set needs the package registry)."""

import os

import numpy as np
import pytest
from conftest import load_benchmark

from litevsr import LiteVSRError
from litevsr.data.video import read_video

heldout = load_benchmark("heldout_data")


def test_synthetic_screen_is_deterministic_and_scrolls():
    clip = heldout.synthetic_screen(frames=5, size=128, speed=3)
    assert clip.shape == (5, 128, 128, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, heldout.synthetic_screen(frames=5, size=128, speed=3))
    assert np.array_equal(clip[1, :-3], clip[0, 3:])  # whole-pixel scroll
    assert clip.std() > 20  # text and a chart, not a blank page


def test_make_gt_crops_to_multiples_of_16_and_avoids_cuts():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 128, (2, 120, 150, 3), dtype=np.uint8)
    b += 128  # a scene cut: the mean jumps by 128 levels
    frames = np.stack([np.roll(a, i, axis=1) for i in range(6)] + [np.roll(b, i, axis=1) for i in range(9)])
    gt, steps = heldout.make_gt(frames, 8, size=(256, 256), scene=1)
    assert gt.shape == (8, 112, 144, 3)
    assert steps["frame_range"][0] >= 6  # inside the second scene
    with pytest.raises(LiteVSRError, match="fewer than"):
        heldout.make_gt(frames, 8, scene=0)


def test_detail_crop_finds_the_textured_patch():
    frames = np.full((3, 96, 96, 3), 128, np.uint8)
    frames[:, 48:80, 16:48] = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3))
    assert heldout.detail_crop(frames, 32, 32) == (48, 16)


def test_written_pairs_are_lossless_and_paired(tmp_path):
    gt = heldout.synthetic_screen(frames=3, size=64, speed=1)
    lqs = heldout.make_lq(gt, 4, "screen_test")
    assert all(lq.shape == (3, 16, 16, 3) for lq in lqs.values())
    assert np.array_equal(lqs["lq_realworld"], heldout.make_lq(gt, 4, "screen_test")["lq_realworld"])  # seeded
    for folder, video in {"gt": gt, **lqs}.items():
        heldout.write_video(str(tmp_path / folder / "screen_test.mkv"), video, 25.0)
        assert np.array_equal(read_video(str(tmp_path / folder / "screen_test.mkv")), video)
    # paired by file name, as litevsr.evaluate.find_pairs pairs (importing it would cost seconds)
    assert {tuple(os.listdir(tmp_path / f)) for f in ("gt", *heldout.LQ_FOLDERS)} == {("screen_test.mkv",)}
