"""make_shards.py under torchrun: two gloo ranks write the samples one process writes (keys, HQ and LQ clips,
latents, bit for bit), each rank its own share of the tasks; a run interrupted on two ranks resumes on one and the
reverse; and the run folder that keeps a second run off OUT (refused while alive, taken over once dead)."""

import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
import torch
import webdataset as wds
from videos import pan, write_video

from litevsr import LiteVSRError
from litevsr.data import prep
from litevsr.data.prep import PrepOptions, prepare_shards
from litevsr.data.shards import decode_latents

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
MAKE_SHARDS = os.path.normpath(os.path.join(ROOT, "data_prep", "make_shards.py"))

# Logs the tasks each rank runs (RANK from torchrun), and whether rank 1 checked the options (which imports the
# backbone's library) while rank 0 planned, rather than after; then runs make_shards.py as its __main__.
PROBE = """
import os, runpy, sys, time
from litevsr.data import prep

real_run_task, real_check_options, real_plan = prep.run_task, prep.check_options, prep._plan
probe = os.environ["PREP_PROBE"]

def run_task(task, *args, **kwargs):
    with open(os.path.join(probe, "rank%s.txt" % os.environ["RANK"]), "a") as f:
        f.write("%d\\n" % task)
    return real_run_task(task, *args, **kwargs)

def check_options(options):
    open(os.path.join(probe, "checked%s" % os.environ["RANK"]), "a").close()
    return real_check_options(options)

def plan(*args, **kwargs):  # rank 0's; rank 1 waits for it, so it gives rank 1 a minute to check meanwhile
    result = real_plan(*args, **kwargs)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(probe, "checked1")) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(os.path.join(probe, "rank1_checked_during_plan"), "w") as f:
        f.write(str(os.path.exists(os.path.join(probe, "checked1"))))
    return result

if __name__ == "__main__":
    prep.run_task, prep.check_options, prep._plan = run_task, check_options, plan
    sys.argv = [{script!r}, *sys.argv[1:]]
    runpy.run_path({script!r}, run_name="__main__")
"""


def cli_args(backbone_dir: str | None) -> list[str]:
    """The options of `options(backbone_dir)` as make_shards.py takes them."""
    args = ["--clip-frames", "5", "--crop", "16", "--min-size", "16", "--clips-per-shard", "1", "--val-fraction", "0.4"]
    args += ["--license", "CC0"]
    if backbone_dir:  # LQ variants and latents
        args += ["--lq-variants", "1", "--scale", "2", "--latents", backbone_dir, "--latents-dtype", "float32"]
    return args


def options(backbone_dir: str | None) -> PrepOptions:
    extras = dict(lq_variants=1, scale=2, latents=backbone_dir, latents_dtype="float32") if backbone_dir else {}
    return PrepOptions(
        clip_frames=5, crop=16, min_size=16, clips_per_shard=1, val_fraction=0.4, license="CC0", **extras
    )


def torchrun(inputs: str, out: str, *args: str, script: str = MAKE_SHARDS, env=None):
    """make_shards.py on 2 gloo ranks (CPU, one thread each); --standalone picks a free port itself."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    done = subprocess.run(
        [*command, script, inputs, out, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def prepare_on_one_thread(inputs: str, out: str, options: PrepOptions) -> None:
    """prepare_shards in this process on one thread, as each rank runs: CPU latents are bitwise the same only with
    the same reduction order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prepare_shards([inputs], out, options, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> str:
    """Five short 32x32 videos (two 5-frame clips each) and an unreadable one: six tasks, 0 the broken one."""
    root = tmp_path_factory.mktemp("ranks_in")
    for i in range(5):
        write_video(root / f"v{i}.mkv", pan(10, 32, seed=40 + i))
    (root / "broken.mp4").write_bytes(b"\x00" * 64)
    return str(root)


@pytest.fixture(scope="module")
def reference(inputs, backbone_dir, tmp_path_factory) -> str:
    """The output of one process."""
    out = str(tmp_path_factory.mktemp("ranks_ref") / "out")
    prepare_on_one_thread(inputs, out, options(backbone_dir))
    return out


@pytest.fixture(scope="module")
def two_ranks(inputs, backbone_dir, tmp_path_factory) -> dict:
    """The output of two ranks, with the tasks each rank ran."""
    root = tmp_path_factory.mktemp("ranks_two")
    (root / "probe").mkdir()
    (root / "probe.py").write_text(PROBE.format(script=MAKE_SHARDS))
    done = torchrun(
        inputs,
        str(root / "out"),
        *cli_args(backbone_dir),
        script=str(root / "probe.py"),
        env={"PREP_PROBE": str(root / "probe")},
    )
    ran = {r: [int(t) for t in (root / "probe" / f"rank{r}.txt").read_text().split()] for r in range(2)}
    checked = (root / "probe" / "rank1_checked_during_plan").read_text() == "True"
    return {"out": str(root / "out"), "ran": ran, "checked": checked, "stdout": done.stdout, "stderr": done.stderr}


def samples(out: str) -> dict[str, dict]:
    """Every sample under OUT (both splits) by key, with its split; no key twice. The latents member as its metadata
    and tensors: safetensors writes the metadata in a random order (a Rust HashMap), so its bytes, and their
    checksum in the JSON, vary from process to process even where the tensors are bitwise the same."""
    found = {}
    for split in ("train", "val"):
        for sample in wds.WebDataset(sorted(glob.glob(os.path.join(out, split, "*.tar"))), shardshuffle=False):
            key = sample["__key__"]
            assert key not in found
            found[key] = {"split": split, **{k: v for k, v in sample.items() if not k.startswith("__")}}
            found[key]["json"] = json.loads(sample["json"])
            if "latents.safetensors" in sample:
                data = found[key].pop("latents.safetensors")
                found[key]["json"]["checksums"].pop("latents.safetensors")
                header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
                found[key]["latents metadata"] = header["__metadata__"]
                found[key]["latents"] = decode_latents(data)
    return found


def manifests(out: str) -> dict:
    """The summary and the split manifests, less the lists of shard files (their names may differ by world size)."""
    found = {}
    for name in ("manifest.json", "train/manifest.json", "val/manifest.json"):
        with open(os.path.join(out, name)) as f:
            manifest = json.load(f)
        assert manifest.pop("shard_files", manifest.get("splits")) is not None
        found[name] = manifest
    return found


def files(out: str) -> list[str]:
    """The files under OUT but its state folder (no leftovers: no .partial, no run folder)."""
    return sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**", "*"), recursive=True))


def assert_same_output(out: str, reference: str) -> None:
    mine, theirs = samples(out), samples(reference)
    assert sorted(mine) == sorted(theirs) and len(theirs) == 10
    assert {s["split"] for s in theirs.values()} == {"train", "val"}
    for key, sample in theirs.items():  # every member bit for bit: HQ and LQ clips, latents, metadata
        assert sorted(mine[key]) == sorted(sample)
        with_latents = {"hq.mkv", "json", "latents", "latents metadata", "lq0.mkv", "split"}
        assert set(sample) in ({"hq.mkv", "json", "split"}, with_latents)
        for member, data in sample.items():
            if member == "latents":
                assert sorted(data) == sorted(mine[key][member]) == ["cond0", "hq"]
                assert all(torch.equal(mine[key][member][n], data[n]) for n in data), key
            else:
                assert mine[key][member] == data, (key, member)
    assert manifests(out) == manifests(reference)
    assert not os.path.exists(os.path.join(out, ".make_shards", "run"))
    assert not [f for f in files(out) if ".partial" in f]
    assert sorted(os.listdir(os.path.join(out, ".make_shards", "done"))) == [f"{t:05d}.json" for t in range(6)]


def test_two_ranks_write_the_samples_of_one_process_each_rank_its_share(two_ranks, reference):
    assert two_ranks["ran"] == {0: [0, 2, 4], 1: [1, 3, 5]}  # todo[r::2]: every task once, on both ranks
    assert two_ranks["checked"]  # rank 1 paid its imports while rank 0 planned, not after (ranks.py: 8 s of 28)
    assert_same_output(two_ranks["out"], reference)
    assert files(two_ranks["out"]) == files(reference)  # here the shard names are even the same
    assert two_ranks["stdout"].count("wrote ") == 2  # rank 0 alone reports: train and val
    assert "wrote 1 clips in 1 shard(s)" not in two_ranks["stderr"]


def damage(out: str) -> None:
    """As a killed run leaves OUT: tasks 1 and 4 unfinished (one with a half shard), task 2's marker without one of
    its shards, no manifests."""
    state = os.path.join(out, ".make_shards", "done")
    with open(os.path.join(state, "00002.json")) as f:
        split, [name, *_] = next((s, n) for s, n in json.load(f)["shards"].items() if n)
    os.remove(os.path.join(out, split, name))
    for task in (1, 4):
        os.remove(os.path.join(state, f"{task:05d}.json"))
    with open(os.path.join(out, "train", "clips-00001-0005.tar.1a2b3c4d.partial"), "wb") as f:
        f.write(b"half a shard")
    for name in ("manifest.json", "train/manifest.json", "val/manifest.json"):
        os.remove(os.path.join(out, name))


def test_a_run_interrupted_on_two_ranks_resumes_on_one(two_ranks, reference, inputs, backbone_dir, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(two_ranks["out"], out)
    damage(out)
    prepare_on_one_thread(inputs, out, options(backbone_dir))
    assert_same_output(out, reference)
    assert files(out) == files(reference)


def test_a_run_interrupted_on_one_process_resumes_on_two_ranks_with_workers(inputs, tmp_path):
    """Without LQ variants and latents, which the other tests cover: here the worker processes of a rank."""
    reference = str(tmp_path / "reference")
    prepare_shards([inputs], reference, options(None), progress=False)
    out = str(tmp_path / "out")
    shutil.copytree(reference, out)
    damage(out)  # tasks 1, 2 and 4 to redo: rank 0 takes 1 and 4, with two worker processes
    torchrun(inputs, out, *cli_args(None), "--workers", "2")
    assert_same_output(out, reference)
    assert files(out) == files(reference)


def test_a_second_run_is_refused_while_the_first_lives_and_a_dead_ones_folder_is_taken_over(
    inputs, tmp_path, monkeypatch
):
    monkeypatch.setattr(prep, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(prep, "STALE_S", 1.0)
    out = tmp_path / "out"
    small = PrepOptions(clip_frames=5, min_size=16, crop=16)
    prepare_shards([inputs], str(out), small, progress=False)
    run = out / ".make_shards" / "run"
    assert not run.exists()

    with prep._RunGuard(str(out)):  # a live run: its beat goes on
        with pytest.raises(LiteVSRError, match="another make_shards run is writing to"):
            prepare_shards([inputs], str(out), small, progress=False)
        assert run.is_dir()
    assert not run.exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for host, pid in ((prep._host(), int(gone.stdout)), ("another-node", os.getpid())):  # killed here / elsewhere
        run.mkdir()
        (run / "owner.json").write_text(json.dumps({"run": "killed", "host": host, "pid": pid}))
        (run / "beat").write_text("7 0.0\n")
        manifest = prepare_shards([inputs], str(out), small, progress=False)
        assert manifest["clips"] == 10 and not run.exists()


def test_cuda_means_each_ranks_own_gpu_under_torchrun(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert prep.rank_device("cuda") == "cuda" and prep.rank_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert prep.rank_device("cuda") == "cuda:3"
    assert prep.rank_device("cuda:1") == "cuda:1" and prep.rank_device("cpu") == "cpu"


def test_a_rank_that_does_not_see_rank_0s_out_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARED_WAIT_S", 0.2)
    (tmp_path / ".make_shards" / "run").mkdir(parents=True)
    (tmp_path / ".make_shards" / "run" / "owner.json").write_text(json.dumps({"run": "another"}))
    with pytest.raises(LiteVSRError, match="a file system every node shares"):
        prep._check_shared(str(tmp_path), "mine")
    prep._check_shared(str(tmp_path), "another")
