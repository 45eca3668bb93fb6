"""Two CPU processes (gloo) on Lightning's strategies, DDP and FSDP2 (ModelParallelStrategy: the frozen backbone
sharded block by block, the adapter as one unit), launched from the CLI as a user launches them."""

import json
import os
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import yaml
from conftest import random_clips, write_train_val_shards
from PIL import Image
from safetensors.torch import load_file
from test_training import write_config

from litevsr.adapters import load_adapter
from litevsr.adapters.base import WEIGHTS_NAME, save_adapter
from litevsr.backbones import WanBackbone

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def exact_shards(tmp_path_factory):
    """4 shards of 3 clips: two ranks get two shards each, six clips per epoch."""
    return write_train_val_shards(tmp_path_factory.mktemp("ddp_shards"), 12, seed=4)


STRATEGIES = {
    "ddp": ["--trainer.strategy", "ddp"],
    "fsdp": [
        "--trainer.strategy",
        "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.data_parallel_size",
        "2",
        "--trainer.strategy.tensor_parallel_size",
        "1",
    ],
}


def _fit(tmp_path, backbone_dir, shards, strategy: str = "ddp", steps: int = 6):
    probe = tmp_path / "probe"
    probe.mkdir()
    recipe = write_config(tmp_path, backbone_dir, shards, samples_per_epoch=12, resample_shards=False)
    env = {
        **os.environ,
        "LITEVSR_PROBE_DIR": str(probe),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "litevsr",
            "fit",
            "--config",
            recipe,
            "--trainer.devices",
            "2",
            *STRATEGIES[strategy],
            "--trainer.max_steps",
            str(steps),
            "--trainer.val_check_interval",
            str(steps),
            "--trainer.callbacks+=ddp_probe.Probe",
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return probe, tmp_path / "runs" / "t" / "version_0" / "adapter"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_ranks_agree_see_disjoint_clips_and_export_what_one_process_would(
    tmp_path, backbone_dir, exact_shards, strategy
):
    probe, exported = _fit(tmp_path, backbone_dir, exact_shards, strategy)
    ranks = [load_file(str(probe / f"adapter_rank{r}.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(ranks[0][k].equal(ranks[1][k]) for k in ranks[0])  # one model, replicated or sharded
    logs = [json.load(open(probe / f"keys_rank{r}.json")) for r in (0, 1)]
    assert [log["world_size"] for log in logs] == [2, 2]
    for epoch in (0, 1):  # 12 clips per epoch, 6 per rank: three batches of 2 each, 6 steps in all
        seen = [[key for e, keys in log["batches"] if e == epoch for key in keys] for log in logs]
        assert [len(s) for s in seen] == [6, 6]
        assert len(set(seen[0]) | set(seen[1])) == 12  # no clip twice in an epoch, on one rank or across both

    backbone = WanBackbone(backbone_dir)
    adapter = load_adapter(str(exported), backbone)
    adapter.load_state_dict(ranks[0])
    save_adapter(adapter, str(tmp_path / "single"), backbone_dir)
    theirs, ours = load_file(str(exported / WEIGHTS_NAME)), load_file(str(tmp_path / "single" / WEIGHTS_NAME))
    assert theirs.keys() == ours.keys() and all(theirs[k].equal(ours[k]) for k in ours)
    assert all(theirs[k].equal(ranks[0][k]) for k in theirs)


def test_exact_epochs_refuse_shards_that_cannot_be_dealt_evenly(tmp_path, backbone_dir):
    shards = write_train_val_shards(tmp_path, 9, seed=6)  # 3 shards
    with pytest.raises(subprocess.CalledProcessError) as err:
        _fit(tmp_path, backbone_dir, shards, steps=1)
    assert "needs a shard count that is a multiple of ranks x workers (2 x 1)" in err.value.stderr


def test_fsdp_refuses_methods_that_edit_the_backbone_in_one_line(backbone_dir):
    from types import SimpleNamespace

    from litevsr import LiteVSRError
    from litevsr.adapters import LoRAAdapter
    from litevsr.module import LiteVSRModule

    module = LiteVSRModule(WanBackbone(backbone_dir), partial(LoRAAdapter, rank=2))
    module._device_mesh = SimpleNamespace(ndim=1)  # what ModelParallelStrategy sets before configure_model
    with pytest.raises(LiteVSRError, match="a LoRAAdapter edits or copies it: train it with DDP"):
        module.configure_model()


# --- validation and test: each clip scored on one rank, the figures one process logs ---------------------------


@pytest.fixture(scope="module")
def odd_val(tmp_path_factory, exact_shards):
    """3 validation clips (9x32x32) in shards of 2: with batches of 1 over 2 ranks, rank 1 pads its second step."""
    from litevsr.data.shards import write_shards

    val = tmp_path_factory.mktemp("odd_val")
    write_shards(random_clips(3, 9, 32, seed=9), str(val), clips_per_shard=2)
    return exact_shards[0], str(val)


def _val_recipe(tmp_path, backbone_dir, shards) -> str:
    """A recipe that validates every clip, in batches of 1."""
    recipe = write_config(tmp_path, backbone_dir, shards, val_batch_size=1)
    config = yaml.safe_load(open(recipe))
    config["trainer"]["limit_val_batches"] = 1.0
    open(recipe, "w").write(yaml.safe_dump(config))
    return recipe


@pytest.fixture(scope="module")
def one_process_val(tmp_path_factory, backbone_dir, odd_val):
    """The val/* figures, the scored keys and the sample picture of one process validating the initial adapter
    (on one thread, as the ranks run: another sum order in the model can round an output pixel the other way)."""
    import torch

    from litevsr.cli import main

    tmp = tmp_path_factory.mktemp("one_process_val")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LITEVSR_PROBE_DIR", str(tmp))
        mp.syspath_prepend(TESTS)
        torch.set_num_threads(1)
        recipe = _val_recipe(tmp, backbone_dir, odd_val)
        try:
            main(["validate", "--config", recipe, "--trainer.callbacks+=val_probe.ValProbe"])
        finally:
            torch.set_num_threads(threads)
    picture = np.asarray(Image.open(tmp / "runs" / "t" / "version_0" / "val_samples.png"), dtype=np.int16)
    return json.load(open(tmp / "val_rank0.json")), picture


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_validation_scores_each_clip_on_one_rank_and_logs_what_one_process_logs(
    tmp_path, backbone_dir, odd_val, one_process_val, strategy
):
    probe = tmp_path / "probe"
    probe.mkdir()
    recipe = _val_recipe(tmp_path, backbone_dir, odd_val)
    env = {
        **os.environ,
        "LITEVSR_PROBE_DIR": str(probe),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p),
    }
    command = [sys.executable, "-m", "litevsr", "validate", "--config", recipe, "--trainer.devices", "2"]
    command += [*STRATEGIES[strategy], "--trainer.callbacks+=val_probe.ValProbe"]
    subprocess.run(command, check=True, env=env, capture_output=True, text=True, timeout=300)  # a hang times out

    one, picture = one_process_val
    ranks = [json.load(open(probe / f"val_rank{r}.json")) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [len(r["batches"]) for r in ranks] == [2, 2]  # 3 batches of 1: rank 1 runs a padding step
    scored = [[k for keys, weights in r["batches"] for k, w in zip(keys, weights) if w] for r in ranks]
    assert sorted(scored[0] + scored[1]) == sorted(k for keys, _ in one["batches"] for k in keys)  # each once
    assert [w for _, weights in ranks[1]["batches"] for w in weights] == [1.0, 0.0]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # reduced over the ranks
    assert ranks[0]["metrics"].keys() == one["metrics"].keys() and len(one["metrics"]) == 12
    for name, value in one["metrics"].items():
        assert ranks[0]["metrics"][name] == pytest.approx(value, abs=1e-5), name
    ours = np.asarray(Image.open(tmp_path / "runs" / "t" / "version_0" / "val_samples.png"), dtype=np.int16)
    assert ours.shape == picture.shape and np.abs(ours - picture).max() <= 1  # rank 0 shows one process's clips


def test_test_clips_are_dealt_to_ranks_in_equal_steps(tmp_path, monkeypatch):
    """Test shards as validation's: 5 clips in batches of 2 are 3 batches; rank 0 takes batches 0 and 2 (so its
    first is one process's first), rank 1 batch 1 and a padding step; 2 loader workers each. Ranks are emulated
    with RANK / WORLD_SIZE, as webdataset reads them."""
    from litevsr.data.datamodule import VideoShardDataModule
    from litevsr.data.shards import write_shards

    clips = [key for key, _, _ in random_clips(5, 5, 16, seed=3)]
    write_shards(random_clips(5, 5, 16, seed=3), str(tmp_path), clips_per_shard=2)
    seen = {}
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        data = VideoShardDataModule(
            str(tmp_path), None, str(tmp_path), clip_frames=5, crop_size=16, batch_size=2, num_workers=2
        )
        data.setup("test")
        loader = data.test_dataloader()
        seen[rank, world] = [(batch["key"], batch["weight"].tolist()) for batch in loader]
        assert len(loader) == len(seen[rank, world])
    assert seen[0, 1] == [(clips[0:2], [1, 1]), (clips[2:4], [1, 1]), (clips[4:], [1])]
    assert seen[0, 2] == [seen[0, 1][0], seen[0, 1][2]]
    assert seen[1, 2] == [seen[0, 1][1], (["padding"], [0])]


def test_predict_on_shards_leaves_out_the_padding_clips(backbone):
    """A rank short of clips runs padding clips (weight 0) to stay in step; predict returns only the real ones."""
    from functools import partial

    import torch

    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    module = LiteVSRModule(backbone, partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2))
    lq = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    batch = {"lq": lq, "hq": torch.zeros(2, 3, 5, 32, 32), "key": ["a", "b"], "weight": torch.tensor([1.0, 0.0])}
    sr = module.predict_step(batch, 0)
    assert sr.shape == (1, 3, 5, 32, 32)
    assert torch.equal(sr, module.predict_step({**batch, "weight": torch.ones(2)}, 0)[:1])
