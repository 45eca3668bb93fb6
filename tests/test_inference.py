import os

import pytest
import torch

from conftest import random_clips
from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.cli import main
from litevsr.data.video import encode_video, read_video, video_info
from litevsr.inference import upscale_clip, upscale_file
from litevsr.model import LiteVSR


@pytest.fixture
def model(backbone):
    return LiteVSR(backbone, StateAwareAdapter(width=32, time_dim=32, inject_every=2))


@pytest.mark.parametrize("frames,h,w", [(1, 7, 9), (2, 6, 10), (6, 5, 3)])
def test_output_is_exactly_scale_times_the_input(model, frames, h, w):
    lq = torch.rand(1, 3, frames, h, w) * 2 - 1
    assert upscale_clip(model, lq, 4).shape == (1, 3, frames, 4 * h, 4 * w)


def test_nan_input_is_refused(model):
    lq = torch.zeros(1, 3, 1, 4, 4)
    lq[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(LiteVSRError, match="NaN"):
        upscale_clip(model, lq, 4)


def test_upscale_file_streams_chunks_into_a_playable_mp4(model, tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    src.write_bytes(encode_video(next(random_clips(1, 7, 12, seed=7))[1]))
    result = upscale_file(model, str(src), str(dst), scale=4, chunk_frames=5)
    assert result["frames"] == 7
    info = video_info(str(dst))
    assert (info["width"], info["height"]) == (48, 48)
    assert read_video(str(dst)).shape == (7, 48, 48, 3)


def test_corrupt_input_fails_in_one_line_and_leaves_nothing(model, tmp_path, capsys, backbone_dir):
    good = encode_video(next(random_clips(1, 9, 16, seed=8))[1], codec="libx264")
    src = tmp_path / "truncated.mp4"
    src.write_bytes(good[: len(good) // 3])
    adapter = tmp_path / "a.safetensors"
    save_adapter(model.adapter, str(adapter), backbone_dir, scale=4)
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", str(adapter)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("litevsr: error:") and str(src) in err[-1]
    assert set(os.listdir(tmp_path)) == {"truncated.mp4", "a.safetensors"}  # no partial output
