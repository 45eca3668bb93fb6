"""data_prep at scale: clipping (scene cuts, static clips, crops), resumable sharding, LQ variants, val split,
latents, and the make_shards.py command line."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import random_clips
from videos import pan, still, write_video

from litevsr import LiteVSRError
from litevsr.data import prep
from litevsr.data.clipping import ClipOptions, ClipStats, ClipTooSmallError, crop_window, cut_clips, window_starts
from litevsr.data.degradations import SimpleDegradation
from litevsr.data.prep import PrepOptions, prepare_shards, split_of, variant_seed
from litevsr.data.shards import decode_latents, decode_sample, read_manifest, shard_urls, write_shards
from litevsr.data.video import read_video
from litevsr.frames import frames_to_video, video_to_frames


def read_samples(folder) -> list[dict]:
    return list(wds.WebDataset(shard_urls(str(folder)), shardshuffle=False))


def make_videos(root, n: int = 3, frames: int = 12, size: int = 32) -> list[np.ndarray]:
    videos = [pan(frames, size, seed=10 + i) for i in range(n)]
    for i, frames_u8 in enumerate(videos):
        write_video(root / f"v{i}.mkv", frames_u8)
    return videos


def test_scene_cut_detection_splits_at_a_synthetic_cut():
    frames = np.concatenate([pan(12, 32, seed=1), pan(12, 32, seed=2)])  # a cut before frame 12
    stats = ClipStats()
    clips = list(cut_clips(iter(frames), ClipOptions(clip_frames=5, stride=5, min_size=16), "v", stats))
    assert stats.cuts == 1 and stats.frames == 24
    assert [(c.start, c.scene) for c in clips] == [(0, 0), (5, 0), (12, 1), (17, 1)]  # restarts at the cut
    for clip in clips:
        assert all(c.start + 5 <= 12 or c.start >= 12 for c in clips)  # none spans frames 11 -> 12
        assert np.array_equal(clip.frames, frames[clip.start : clip.start + 5])
    assert [c.key for c in clips] == ["v_000000", "v_000005", "v_000012", "v_000017"]


def test_static_clips_are_skipped():
    frames = np.concatenate([still(10, 32, seed=3), pan(10, 32, seed=3)])
    stats = ClipStats()
    clips = list(cut_clips(iter(frames), ClipOptions(clip_frames=5, stride=5, min_size=16), "v", stats))
    assert stats.static_skipped == 2 and [c.start for c in clips] == [10, 15]
    everything = list(cut_clips(iter(frames), ClipOptions(clip_frames=5, stride=5, min_size=16, min_motion=0), "v"))
    assert len(everything) == 4


def test_crops_are_seeded_by_key_and_aligned():
    frames = pan(5, 64, seed=4)
    options = ClipOptions(clip_frames=5, stride=5, min_size=16, crop=16, multiple=8, min_motion=0)
    first = next(cut_clips(iter(frames), options, "a"))
    again = next(cut_clips(iter(frames), options, "a"))
    y, x, size = first.crop
    assert first.frames.shape == (5, 16, 16, 3) and size == 16 and y % 8 == 0 and x % 8 == 0
    assert again.crop == first.crop and np.array_equal(first.frames, frames[:, y : y + 16, x : x + 16])
    centre = next(cut_clips(iter(frames), ClipOptions(**{**options.__dict__, "crop_mode": "center"}), "a"))
    assert centre.crop == [24, 24, 16]


def test_crop_window_centres_or_draws_on_the_grid_of_each_axis():
    assert crop_window((10, 40, 64), (5, 16, 16), (1, 8, 8)) == (2, 8, 24)  # centred, rounded down onto the grid
    drawn = {
        crop_window((10, 40, 64), (5, 16, 16), (1, 8, 8), np.random.default_rng(seed).integers) for seed in range(200)
    }
    assert {t for t, _, _ in drawn} == set(range(6)) and {y for _, y, _ in drawn} == {0, 8, 16, 24}
    assert {x for _, _, x in drawn} == {0, 8, 16, 24, 32, 40, 48}
    assert list(window_starts(37, 16, 8)) == [0, 8, 16]
    with pytest.raises(ClipTooSmallError, match="clip k is 4x37x64, smaller than the crop 5x16x16"):
        crop_window((4, 37, 64), (5, 16, 16), (1, 8, 8), name="clip k")


def test_shard_round_trip_is_exact_and_small_videos_are_skipped(tmp_path):
    videos = make_videos(tmp_path / "in", n=2, frames=12)
    write_video(tmp_path / "in" / "tiny" / "small.mkv", pan(12, 16, seed=9))  # below --min-size: skipped
    manifest = prepare_shards(
        [str(tmp_path / "in")],
        str(tmp_path / "out"),
        PrepOptions(clip_frames=5, min_size=32, license="CC0"),
        progress=False,
    )
    assert manifest["clips"] == 4 and manifest["videos"] == 3 and manifest["min_frames"] == 5
    assert list(manifest["videos_skipped"]) == [str(tmp_path / "in" / "tiny" / "small.mkv")]
    assert "smaller than --min-size 32" in next(iter(manifest["videos_skipped"].values()))
    assert {s["license"] for s in manifest["sources"].values()} == {"CC0"}
    samples = read_samples(tmp_path / "out")
    assert sorted(s["__key__"] for s in samples) == sorted({s["__key__"] for s in samples})  # unique keys
    for sample in samples:
        decoded = decode_sample(sample)
        meta = decoded["meta"]
        source = videos[int(os.path.basename(meta["source"])[1])]
        assert np.array_equal(decoded["frames"], source[meta["start_frame"] : meta["start_frame"] + 5])
        assert meta["license"] == "CC0" and "." not in sample["__key__"]


def test_resume_after_an_interruption_finishes_without_duplicates(tmp_path, monkeypatch):
    make_videos(tmp_path / "in", n=3, frames=15)
    options = PrepOptions(clip_frames=5, clips_per_shard=1, min_size=16)  # one clip per shard: several shards per task
    reference = prepare_shards([str(tmp_path / "in")], str(tmp_path / "ref"), options, progress=False)

    calls, real_sample = [0], prep._sample

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # the second clip of the second video: task 0 is done, task 1 half written
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(prep, "_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_shards([str(tmp_path / "in")], str(out), options, progress=False)
    monkeypatch.setattr(prep, "_sample", real_sample)
    assert not (out / "manifest.json").exists()
    assert sorted(os.listdir(out / ".make_shards" / "done")) == ["00000.json"]
    assert not glob.glob(str(out / "*-00001-*"))  # the interrupted task removed its unfinished shards

    # also a task killed between renaming its shards and writing its marker, and one killed mid-shard
    manifest = prepare_shards([str(tmp_path / "in")], str(out), options, progress=False)
    os.remove(out / ".make_shards" / "done" / "00002.json")
    os.remove(out / "manifest.json")
    (out / "clips-00002-0009.tar.1a2b3c4d.partial").write_bytes(b"half a shard")
    manifest = prepare_shards([str(tmp_path / "in")], str(out), options, progress=False)

    assert manifest["clips"] == reference["clips"] == 9 and manifest["shards"] == 9
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "ref"))  # no leftovers, no extra shards
    keys = [s["__key__"] for s in read_samples(out)]
    assert len(keys) == len(set(keys)) == 9
    for name in manifest["shard_files"]:  # the same samples as an uninterrupted run
        [redone], [clean] = read_samples(out / name), read_samples(tmp_path / "ref" / name)
        assert redone["__key__"] == clean["__key__"] and redone["json"] == clean["json"]
        assert np.array_equal(read_video(redone["hq.mkv"]), read_video(clean["hq.mkv"]))
    again = prepare_shards([str(tmp_path / "in")], str(out), options, progress=False)  # nothing left to do
    assert again == manifest


def test_rerun_with_other_options_or_inputs_is_refused(tmp_path):
    make_videos(tmp_path / "in", n=2)
    prepare_shards(
        [str(tmp_path / "in")], str(tmp_path / "out"), PrepOptions(clip_frames=5, min_size=16), progress=False
    )
    with pytest.raises(LiteVSRError, match=r"different options \(clip_frames: 5 -> 3, stride: 5 -> 3\)"):
        prepare_shards(
            [str(tmp_path / "in")], str(tmp_path / "out"), PrepOptions(clip_frames=3, min_size=16), progress=False
        )
    with pytest.raises(LiteVSRError, match="input videos differ"):
        prepare_shards(
            [str(tmp_path / "in" / "v0.mkv")],
            str(tmp_path / "out"),
            PrepOptions(clip_frames=5, min_size=16),
            progress=False,
        )
    write_shards(random_clips(1, 5, 16), str(tmp_path / "foreign"))
    with pytest.raises(LiteVSRError, match="already holds shards not written by a resumable make_shards run"):
        prepare_shards([str(tmp_path / "in")], str(tmp_path / "foreign"), PrepOptions(min_size=16), progress=False)
    assert not (tmp_path / "foreign" / ".make_shards").exists()


def test_lq_variants_are_stored_reproducible_and_decodable(tmp_path):
    make_videos(tmp_path / "in", n=1, frames=5)
    options = PrepOptions(clip_frames=5, lq_variants=2, scale=4, min_size=16)
    manifest = prepare_shards([str(tmp_path / "in")], str(tmp_path / "out"), options, progress=False)
    assert manifest["members"] == ["hq.mkv", "json", "lq0.mkv", "lq1.mkv"] and manifest["scale"] == 4
    [sample] = read_samples(tmp_path / "out")
    hq = decode_sample(sample)["frames"]
    lqs = [decode_sample(sample, k)["lq_frames"] for k in range(2)]
    assert all(lq.shape == (5, 8, 8, 3) for lq in lqs) and not np.array_equal(lqs[0], lqs[1])
    for k, lq in enumerate(lqs):  # exactly the degradation seeded by the clip key
        generator = torch.Generator().manual_seed(variant_seed(sample["__key__"], k, 0))
        expected = video_to_frames(SimpleDegradation()(frames_to_video(hq), 4, generator))
        assert np.array_equal(lq, expected)


def test_degradation_preset_builds_the_real_world_pipeline():
    assert (
        type(prep.build_degradation(PrepOptions(lq_variants=1, degradation_preset="anime"))).__name__
        == "RealWorldDegradation"
    )
    with pytest.raises(LiteVSRError, match="unknown degradation preset"):
        prep.check_options(PrepOptions(lq_variants=1, degradation_preset="vhs"))


def test_val_split_is_disjoint_by_source(tmp_path):
    make_videos(tmp_path / "in", n=6, frames=10)
    names = [f"v{i}.mkv" for i in range(6)]
    assert {split_of(n, 0.5) for n in names} == {"train", "val"}  # the fixed hash puts some in each
    summary = prepare_shards(
        [str(tmp_path / "in")],
        str(tmp_path / "out"),
        PrepOptions(clip_frames=5, val_fraction=0.5, min_size=16),
        progress=False,
    )
    train, val = read_manifest(str(tmp_path / "out" / "train")), read_manifest(str(tmp_path / "out" / "val"))
    assert set(train["sources"]).isdisjoint(val["sources"]) and len(train["sources"]) + len(val["sources"]) == 6
    assert {os.path.basename(s) for s in val["sources"]} == {n for n in names if split_of(n, 0.5) == "val"}
    for split, manifest in (("train", train), ("val", val)):
        samples = [decode_sample(s) for s in read_samples(tmp_path / "out" / split)]
        assert len(samples) == manifest["clips"] == summary["splits"][split]["clips"] > 0
        assert {s["meta"]["source"] for s in samples} <= set(manifest["sources"])


def test_latents_of_the_stored_clip_and_its_lq_variants(tmp_path, causal_twin):
    """On Wan2.1's causal structure: the HQ latent of the clip and the condition latent of each stored LQ variant."""
    from litevsr.backbones import WanBackbone
    from litevsr.model import LiteVSR

    make_videos(tmp_path / "in", n=1, frames=5)
    options = PrepOptions(
        clip_frames=5,
        crop=32,
        lq_variants=2,
        scale=4,
        latents=causal_twin["backbone"],
        min_size=16,
        latents_dtype="float32",
    )
    manifest = prepare_shards([str(tmp_path / "in")], str(tmp_path / "out"), options, progress=False)
    backbone = WanBackbone(causal_twin["backbone"])
    assert "latents.safetensors" in manifest["members"]
    assert manifest["latents"]["vae_fingerprint"] == backbone.vae_fingerprint
    [sample] = read_samples(tmp_path / "out")
    latents = decode_latents(sample["latents.safetensors"])
    assert sorted(latents) == ["cond0", "cond1", "hq"] and latents["hq"].shape == (16, 2, 4, 4)  # 1 + 4k -> 2
    model = LiteVSR(backbone, None)
    with torch.no_grad():
        hq = frames_to_video(decode_sample(sample)["frames"])[None]
        torch.testing.assert_close(latents["hq"], backbone.encode(hq)[0])
        for k in range(2):
            lq = frames_to_video(decode_sample(sample, k)["lq_frames"])[None]
            torch.testing.assert_close(latents[f"cond{k}"], model.condition(lq, hq.shape[-2:])[0])
    assert not torch.equal(latents["cond0"], latents["cond1"])
    with pytest.raises(LiteVSRError, match="needs --clip-frames 1 \\+ 4k"):
        prep.check_options(PrepOptions(clip_frames=6, latents=causal_twin["backbone"]))


def test_make_shards_command_line(tmp_path):
    make_videos(tmp_path / "in", n=3, frames=10)
    (tmp_path / "in" / "notes.txt").write_text("not a video")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00" * 64)  # unreadable: recorded, not fatal

    def run(*extra):
        return subprocess.run(
            [
                sys.executable,
                "data_prep/make_shards.py",
                str(tmp_path / "in"),
                str(tmp_path / "out"),
                "--clip-frames",
                "5",
                "--min-size",
                "16",
                "--license",
                "CC0",
                *extra,
            ],
            capture_output=True,
            text=True,
        )

    first = run("--workers", "2")
    assert first.returncode == 0, first.stderr
    assert "videos: 100%" in first.stderr and "4/4" in first.stderr and "clips=6" in first.stderr  # the progress bar
    assert "wrote 6 clips in 3 shard(s)" in first.stdout
    manifest = read_manifest(str(tmp_path / "out"))
    assert manifest["clips"] == 6 and manifest["license"] == "CC0" and len(manifest["videos_skipped"]) == 1
    assert manifest["options"]["clip_frames"] == 5
    changed = run("--stride", "2")
    assert changed.returncode == 2
    assert changed.stderr.strip().splitlines()[-1].startswith("make_shards: error: ")
    assert "different options (stride: 5 -> 2)" in changed.stderr
