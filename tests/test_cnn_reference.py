"""benchmarks/cnn_reference.py scores its plain CNN against the same bicubic as litevsr evaluate."""

import pytest
from conftest import load_benchmark


def test_the_reference_scores_bicubic_as_litevsr_evaluate_does(tmp_path):
    from litevsr.evaluate import evaluate

    heldout, reference = load_benchmark("heldout_data"), load_benchmark("cnn_reference")
    gt = heldout.synthetic_screen(frames=3, size=64, speed=2)
    for folder, video in {"gt": gt, **heldout.make_lq(gt, 4, "screen_test")}.items():
        heldout.write_video(str(tmp_path / folder / "screen_test.mkv"), video, 25.0)
    rows = reference.score(reference.PlainCNN(8, 1, 4).eval(), str(tmp_path))
    assert [r["lq"] for r in rows] == ["bicubic", "realworld"]
    for row in rows:
        (bicubic,) = evaluate([], str(tmp_path / "gt"), str(tmp_path / f"lq_{row['lq']}"), 4, str(tmp_path / "eval"))
        assert row["bicubic"] == pytest.approx(bicubic["psnr_y"], abs=1e-9)
        assert row["gain_db"] == pytest.approx(row["plain_cnn"] - row["bicubic"])
