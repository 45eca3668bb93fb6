"""Two CPU processes (gloo) on Lightning's strategies, DDP and FSDP2 (ModelParallelStrategy: the frozen backbone
sharded block by block, the adapter as one unit), launched from the CLI as a user launches them."""

import json
import os
import subprocess
import sys
from functools import partial

import pytest
from conftest import write_train_val_shards
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
