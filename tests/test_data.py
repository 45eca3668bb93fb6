import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from conftest import random_clips
from litevsr import LiteVSRError
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.data.degradations import gaussian_kernel
from litevsr.data.shards import decode_sample, shard_urls, write_shards
from litevsr.data.video import encode_video, read_video
import webdataset as wds


def test_lossless_clip_round_trip_through_shards(tmp_path):
    clips = list(random_clips(3, 5, 24, seed=3))
    stats = write_shards(clips, str(tmp_path), clips_per_shard=2)
    assert stats["clips"] == 3 and stats["shards"] == 2 and stats["min_frames"] == 5
    samples = [decode_sample(s) for s in wds.WebDataset(shard_urls(str(tmp_path)), shardshuffle=False)]
    assert [s["key"] for s in samples] == [k for k, _, _ in clips]
    for (_, frames, meta), sample in zip(clips, samples):
        assert np.array_equal(sample["frames"], frames)
        assert sample["meta"]["license"] == "CC0" and sample["meta"]["frames"] == 5


def test_shards_hold_no_pickle(shard_dirs):
    with tarfile.open(shard_urls(shard_dirs[0])[0]) as tar:
        names = tar.getnames()
    assert names and all(n.endswith((".hq.mkv", ".json")) for n in names)


def test_batches_have_the_documented_layout(shard_dirs):
    data = VideoShardDataModule(*shard_dirs, clip_frames=5, crop_size=16, batch_size=2)
    data.setup("fit")
    train = next(iter(data.train_dataloader()))
    assert train["hq"].shape == (2, 3, 5, 16, 16) and train["lq"].shape == (2, 3, 5, 4, 4)
    assert train["hq"].min() >= -1 and train["hq"].max() <= 1 and len(train["key"]) == 2
    first = [b["lq"] for b in data.val_dataloader()]
    second = [b["lq"] for b in data.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # validation degradations are fixed per key


def test_corrupt_video_member_is_skipped(tmp_path, shard_dirs):
    good = list(random_clips(2, 5, 16, seed=4))
    sink = wds.TarWriter(str(tmp_path / "mixed.tar"))
    sink.write({"__key__": "broken", "hq.mkv": b"not a video at all", "json": b"{}"})
    for key, frames, meta in good:
        sink.write({"__key__": key, "hq.mkv": encode_video(frames), "json": b"{}"})
    sink.close()
    data = VideoShardDataModule(str(tmp_path), str(tmp_path), clip_frames=5, crop_size=16, batch_size=1)
    data.setup("validate")
    with pytest.warns(UserWarning, match="skipping an unreadable sample"):
        keys = [k for b in data.val_dataloader() for k in b["key"]]
    assert keys == [k for k, _, _ in good]


def test_video_io_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(LiteVSRError, match="cannot open video"):
        read_video(str(bad))


def test_gaussian_kernel_sums_to_one_and_is_symmetric():
    k = gaussian_kernel(7, 1.3)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))


def test_make_shards_tool(tmp_path):
    frames = next(random_clips(1, 12, 32, seed=5))[1]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mkv").write_bytes(encode_video(frames))
    run = lambda: subprocess.run([sys.executable, "data_prep/make_shards.py", str(tmp_path / "in"), str(tmp_path / "out"),  # noqa: E731
                                  "--clip-frames", "5", "--license", "CC0"], capture_output=True, text=True)
    result = run()
    assert result.returncode == 0, result.stderr
    assert "wrote 2 clips in 1 shard(s)" in result.stdout
    again = run()  # never overwrite what is there
    assert again.returncode == 2 and "already holds shards" in again.stderr.strip().splitlines()[-1]
