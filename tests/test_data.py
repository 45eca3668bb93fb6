import os
import tarfile

import av
import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import random_clips

from litevsr import LiteVSRError
from litevsr.data.degradations import gaussian_kernel
from litevsr.data.shards import ShardWriter, decode_sample, shard_urls, write_shards
from litevsr.data.video import encode_video, iter_frames, read_video


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


class _Frames(np.ndarray):
    """Frames that note, as the encoder takes each one, the threads of the stream being written."""

    def __iter__(self):
        for frame in super().__iter__():
            self.threads.append(self.containers[-1].streams.video[0].thread_count)
            yield frame


def test_ffmpeg_runs_on_as_many_threads_as_torch(monkeypatch):
    # FFmpeg's default is every core per process: two ranks of one torch thread each contended for the cores
    containers, real_open = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: containers.append(real_open(*a, **k)) or containers[-1])
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8).view(_Frames)
    frames.containers, frames.threads = containers, []
    encoded, decoded = {}, {}
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            encoded[n] = encode_video(frames)
            reading = iter_frames(encoded[n])
            next(reading)  # the decoder is open until the generator ends
            decoded[n] = containers[-1].streams.video[0].thread_count
    finally:
        torch.set_num_threads(before)
    assert frames.threads == [1] * 3 + [2] * 3 and decoded == {1: 1, 2: 2}
    assert encoded[1] == encoded[2]  # ffv1's bytes do not depend on its threads
