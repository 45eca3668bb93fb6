import os
import tarfile

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import random_clips

from litevsr import LiteVSRError
from litevsr.data.degradations import gaussian_kernel
from litevsr.data.shards import ShardWriter, decode_sample, shard_urls, write_shards
from litevsr.data.video import read_video


def test_lossless_clip_round_trip_through_shards(tmp_path):
    clips = list(random_clips(3, 5, 24, seed=3))
    stats = write_shards(clips, str(tmp_path), clips_per_shard=2)
    assert stats["clips"] == 3 and stats["shards"] == 2 and stats["min_frames"] == 5
    samples = [decode_sample(s) for s in wds.WebDataset(shard_urls(str(tmp_path)), shardshuffle=False)]
    assert [s["key"] for s in samples] == [k for k, _, _ in clips]
    for (_, frames, _), sample in zip(clips, samples):
        assert np.array_equal(sample["frames"], frames)
        assert sample["meta"]["license"] == "CC0" and sample["meta"]["frames"] == 5


def test_shards_appear_only_when_the_writer_finishes_without_an_error(tmp_path):
    clips = list(random_clips(3, 5, 24, seed=3))

    def interrupted():
        yield from clips
        raise KeyboardInterrupt  # after the second shard was begun

    with pytest.raises(KeyboardInterrupt):
        write_shards(interrupted(), str(tmp_path), clips_per_shard=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no shard, no temporary, no manifest
    with ShardWriter(str(tmp_path / "s-%02d.tar"), maxcount=2) as sink:
        for key, _, _ in clips:
            sink.write({"__key__": key, "txt": key})
        assert all(not os.path.exists(p) for p in sink.paths)  # under temporary names until the block ends
    assert sink.paths == [str(tmp_path / "s-00.tar"), str(tmp_path / "s-01.tar")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-00.tar", "s-01.tar"]
    with ShardWriter(str(tmp_path / "empty-%02d.tar"), maxcount=2) as sink:
        pass
    assert sink.paths == [] and not list(tmp_path.glob("empty*"))  # no sample, no shard


def test_shards_hold_no_pickle(shard_dirs):
    with tarfile.open(shard_urls(shard_dirs[0])[0]) as tar:
        names = tar.getnames()
    assert names and all(n.endswith((".hq.mkv", ".json")) for n in names)


def test_video_io_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(LiteVSRError, match="cannot open video"):
        read_video(str(bad))


def test_gaussian_kernel_sums_to_one_and_is_symmetric():
    k = gaussian_kernel(7, 1.3)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
