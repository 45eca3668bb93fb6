"""VideoShardDataModule: batch layout, deterministic validation, corrupt samples skipped and counted, stored LQ,
DDP-style sharding, and more workers than shards."""

import os
import subprocess
import sys
import tarfile
import time
import warnings
import zlib

import pytest
import torch
import webdataset as wds
from conftest import random_clips
from videos import pan, write_video

from litevsr import LiteVSRError
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.data.prep import PrepOptions, prepare_shards
from litevsr.data.shards import decode_sample, shard_urls, write_shards
from litevsr.data.video import encode_video, read_video
from litevsr.frames import frames_to_video


def keys_of(loader) -> list[str]:
    return [k for batch in loader for k in batch["key"]]


def test_batches_have_the_documented_layout(shard_dirs):
    data = VideoShardDataModule(*shard_dirs, clip_frames=5, crop_size=16, batch_size=2)
    data.setup("fit")
    train = next(iter(data.train_dataloader()))
    assert train["hq"].shape == (2, 3, 5, 16, 16) and train["lq"].shape == (2, 3, 5, 4, 4)
    assert train["hq"].min() >= -1 and train["hq"].max() <= 1 and len(train["key"]) == 2
    first = [b["lq"] for b in data.val_dataloader()]
    second = [b["lq"] for b in data.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # validation degradations are fixed per key


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    good = list(random_clips(3, 5, 16, seed=4))
    sink = wds.TarWriter(str(tmp_path / "a.tar"))
    sink.write({"__key__": "broken", "hq.mkv": b"not a video at all", "json": b"{}"})
    for key, frames, _ in good[:2]:
        sink.write({"__key__": key, "hq.mkv": encode_video(frames), "json": b"{}"})
    sink.close()
    sink = wds.TarWriter(str(tmp_path / "b.tar"))
    key, frames, _ = good[2]
    sink.write({"__key__": key, "hq.mkv": encode_video(frames), "json": b"{}"})
    sink.write({"__key__": "cut_short", "hq.mkv": encode_video(frames), "json": b"{}"})
    sink.close()
    with tarfile.open(tmp_path / "b.tar") as tar:
        member = tar.getmember("cut_short.hq.mkv")
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[: member.offset_data + member.size // 2])  # truncated mid-video

    dm = VideoShardDataModule(str(tmp_path), str(tmp_path), clip_frames=5, crop_size=16, batch_size=1)
    dm.setup("validate")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = keys_of(dm.val_dataloader())
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 2 and "cannot open video" in messages[0] and "unexpected end of data" in messages[1]
    assert all(
        f"skipping an unreadable sample ({n} skipped so far in the main process)" in m
        for n, m in enumerate(messages, 1)
    )
    assert keys == [k for k, _, _ in good]  # every readable sample, in order; nothing else lost
    assert dm.skipped_samples == 2  # the broken video and the truncated tail

    workers = VideoShardDataModule(
        str(tmp_path), str(tmp_path), clip_frames=5, crop_size=16, batch_size=1, num_workers=2
    )
    workers.setup("validate")
    assert sorted(keys_of(workers.val_dataloader())) == sorted(k for k, _, _ in good)
    assert workers.skipped_samples == 2  # counted in the loader workers, summed in the main process


@pytest.mark.timeout(90)
def test_loader_workers_start_without_the_locks_held_in_the_loops_process(shard_dirs):
    """A worker forked from the loop's process inherits its locks as they are at the fork, a held one held forever:
    CI stalled in a test whose loader workers decode. Workers come from a fork server, where nothing holds them."""
    from held_lock import LOCK, LockedDegradation

    data = VideoShardDataModule(
        shard_dirs[1],
        shard_dirs[1],
        clip_frames=5,
        crop_size=16,
        batch_size=1,
        num_workers=1,
        degradation=LockedDegradation(),
    )
    data.setup("validate")
    with LOCK:
        assert len(keys_of(data.val_dataloader())) == 2


KILLED_LOOP = """
import sys, time
from multiprocessing import forkserver
from litevsr.data.datamodule import VideoShardDataModule
data = VideoShardDataModule(sys.argv[1], sys.argv[1], clip_frames=5, crop_size=16, batch_size=1, num_workers=2)
data.setup("validate")
batches = iter(data.val_dataloader())
next(batches)
print(*[worker.pid for worker in batches._workers], forkserver._forkserver._forkserver_pid, flush=True)
time.sleep(600)
"""


def test_loader_workers_and_their_fork_server_end_with_a_killed_loop(shard_dirs):
    """SIGKILL of the loop's process (an OOM kill, a cancelled job) leaves no loader worker or fork server behind,
    though the workers' parent is the fork server, not the loop."""

    def ended(pid: int) -> bool:  # gone, or a zombie that no one reaps here
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    loop = subprocess.Popen([sys.executable, "-c", KILLED_LOOP, shard_dirs[1]], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in loop.stdout.readline().split()]
    assert len(pids) == 3 and not any(ended(pid) for pid in pids)
    loop.kill()
    loop.wait()
    deadline = time.monotonic() + 30
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in pids if not ended(pid)] == []


def test_clip_too_small_still_raises(shard_dirs):
    data = VideoShardDataModule(
        shard_dirs[1], shard_dirs[1], clip_frames=5, crop_size=16, val_crop_size=16, batch_size=1
    )
    data.setup("validate")
    data.hparams.val_crop_size = 64  # bigger than the stored 32x32 clips, past the manifest check
    with pytest.raises(Exception, match="smaller than the crop"):
        keys_of(data.val_dataloader())


def test_exact_epochs_deal_every_shard_to_one_rank_and_worker_and_each_val_clip_to_one_rank(tmp_path, monkeypatch):
    """2 ranks x 2 loader workers with resample_shards=False: each shard goes to exactly one (rank, worker), so an
    epoch sees every clip once; validation deals every clip to one rank, in as many steps on each. Ranks are
    emulated with RANK / WORLD_SIZE, which webdataset's split_by_node reads; the workers are real processes."""
    from types import SimpleNamespace

    clips = list(random_clips(8, 5, 16, seed=5))
    write_shards(clips, str(tmp_path), clips_per_shard=2)  # 4 shards
    trained, validated = {}, {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = VideoShardDataModule(
            str(tmp_path),
            str(tmp_path),
            clip_frames=5,
            crop_size=16,
            batch_size=1,
            num_workers=2,
            samples_per_epoch=8,
            resample_shards=False,
        )
        dm.trainer = SimpleNamespace(world_size=2)
        dm.setup("fit")
        trained[rank] = keys_of(dm.train_dataloader())
        validated[rank] = keys_of(dm.val_dataloader())
    keys = sorted(k for k, _, _ in clips)
    assert len(trained[0]) == len(trained[1]) == 4 and sorted(trained[0] + trained[1]) == keys
    assert len(validated[0]) == len(validated[1]) == 4 and sorted(validated[0] + validated[1]) == keys


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_more_workers_than_shards(tmp_path):
    clips = list(random_clips(2, 5, 16, seed=6))
    write_shards(clips, str(tmp_path), clips_per_shard=8)  # one shard
    dm = VideoShardDataModule(
        str(tmp_path), str(tmp_path), clip_frames=5, crop_size=16, batch_size=2, num_workers=3, samples_per_epoch=6
    )
    dm.setup("fit")
    assert sorted(keys_of(dm.val_dataloader())) == [k for k, _, _ in clips]
    batches = list(dm.train_dataloader())  # every worker resamples the one shard
    assert batches and all(b["hq"].shape == (2, 3, 5, 16, 16) for b in batches)


@pytest.fixture(scope="module")
def lq_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stored-lq")
    for i in range(2):
        write_video(root / "in" / f"v{i}.mkv", pan(9, 48, seed=20 + i))
    prepare_shards(
        [str(root / "in")],
        str(root / "out"),
        PrepOptions(clip_frames=9, min_size=16, lq_variants=2, scale=4),
        progress=False,
    )
    prepare_shards([str(root / "in")], str(root / "plain"), PrepOptions(clip_frames=9, min_size=16), progress=False)
    samples = {s["__key__"]: s for s in wds.WebDataset(shard_urls(str(root / "out")), shardshuffle=False)}
    return str(root / "out"), str(root / "plain"), samples


def find_window(hq, lq, sample) -> bool:
    """Is (hq, lq) a crop of the stored HQ and of one stored LQ variant at the same, scale-aligned place?"""
    full = frames_to_video(decode_sample(sample)["frames"])
    for k in range(2):
        stored = frames_to_video(decode_sample(sample, k)["lq_frames"])
        for flip in (False, True):
            h, l_ = (hq.flip(-1), lq.flip(-1)) if flip else (hq, lq)
            for t0 in range(full.shape[1] - hq.shape[1] + 1):
                for y in range(stored.shape[2] - lq.shape[2] + 1):
                    for x in range(stored.shape[3] - lq.shape[3] + 1):
                        lq_crop = stored[:, t0 : t0 + lq.shape[1], y : y + lq.shape[2], x : x + lq.shape[3]]
                        hq_crop = full[
                            :, t0 : t0 + hq.shape[1], 4 * y : 4 * y + hq.shape[2], 4 * x : 4 * x + hq.shape[3]
                        ]
                        if torch.equal(l_, lq_crop) and torch.equal(h, hq_crop):
                            return True
    return False


def test_stored_lq_variants_with_aligned_crops(lq_shards):
    out, _, samples = lq_shards
    dm = VideoShardDataModule(out, out, clip_frames=5, crop_size=16, val_crop_size=32, batch_size=2, use_stored_lq=True)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["lq"].shape == (2, 3, 5, 4, 4)
    for hq, lq, key in zip(train["hq"], train["lq"], train["key"]):
        assert find_window(hq, lq, samples[key])
    for batch in dm.val_dataloader():  # validation: a fixed variant per key, centre crop
        for hq, lq, key in zip(batch["hq"], batch["lq"], batch["key"]):
            variant = zlib.crc32(key.encode()) % 2
            stored = frames_to_video(decode_sample(samples[key], variant)["lq_frames"])
            assert torch.equal(lq, stored[:, 2:7, 2:10, 2:10]) and hq.shape == (3, 5, 32, 32)


def test_stored_lq_needs_shards_that_have_it(lq_shards):
    _, plain, _ = lq_shards
    dm = VideoShardDataModule(plain, plain, clip_frames=5, crop_size=16, use_stored_lq=True)
    with pytest.raises(LiteVSRError, match="use_stored_lq needs shards made with make_shards.py --lq-variants"):
        dm.setup("fit")
    other_scale = VideoShardDataModule(lq_shards[0], None, scale=2, clip_frames=5, crop_size=16, use_stored_lq=True)
    with pytest.raises(LiteVSRError, match="--scale 2"):
        other_scale.setup("fit")


def test_split_folder_is_refused_with_a_hint(tmp_path):
    os.makedirs(tmp_path / "train")
    os.makedirs(tmp_path / "val")
    with pytest.raises(LiteVSRError, match="point at one of them"):
        VideoShardDataModule(str(tmp_path), None).setup("fit")


def test_a_clip_with_flipped_bytes_is_skipped_and_counted(tmp_path):
    """Bits flipped inside an FFV1 clip decode without an error, into wrong frames; the CRC-32 stored in each
    sample's JSON catches them, in shards of both writers (write_shards and make_shards)."""
    write_shards(list(random_clips(3, 9, 64, seed=5)), str(tmp_path / "plain"), clips_per_shard=8)
    write_video(tmp_path / "in" / "pan.mkv", pan(18, 64, 9))
    prepare_shards(
        [str(tmp_path / "in")],
        str(tmp_path / "prepared"),
        PrepOptions(clip_frames=9, lq_variants=1, min_size=16),
        progress=False,
    )
    for folder in ("plain", "prepared"):
        shard = shard_urls(str(tmp_path / folder))[0]
        with tarfile.open(shard) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("hq.mkv"))
            clip = tar.extractfile(member).read()
        data = bytearray(open(shard, "rb").read())
        for i in range(400):  # spread over the middle of the clip's payload
            data[member.offset_data + member.size // 2 + 7 * i] ^= 0x01
        open(shard, "wb").write(bytes(data))
        damaged = bytes(data[member.offset_data : member.offset_data + member.size])
        wrong, right = read_video(damaged), read_video(clip)  # decodes without an error: what the checksum is for
        assert wrong.shape != right.shape or (wrong != right).any()
        dm = VideoShardDataModule(
            str(tmp_path / folder), str(tmp_path / folder), clip_frames=9, crop_size=16, batch_size=1
        )
        dm.setup("validate")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            keys = keys_of(dm.val_dataloader())
        assert member.name.rsplit(".", 2)[0] not in keys and len(keys) >= 1
        assert dm.skipped_samples == 1
        assert any("hq.mkv is damaged" in str(w.message) for w in caught)
