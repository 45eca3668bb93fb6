"""Batch upscaling over two CPU processes: `litevsr upscale` under torchrun and `litevsr predict` with two devices
(DDP on gloo), against a one-process run of the same folder, which holds three good clips and a corrupt file."""

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import random_clips

from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.adapters.base import backbone_dims
from litevsr.backbones import WanBackbone
from litevsr.cli import main
from litevsr.data.datamodule import VideoFiles
from litevsr.data.video import encode_video, read_video
from litevsr.inference import share

GOOD = ["a.mp4", "b.mp4", "c.mp4"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: torch's results may depend on its thread count: one thread, in the reference and in every rank
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, backbone_dir):
    """An adapter (random output projections, so that it acts), the input folder and the outputs of one process."""
    root = tmp_path_factory.mktemp("ranks")
    torch.manual_seed(0)
    backbone = WanBackbone(backbone_dir)
    adapter = StateAwareAdapter(
        backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2, output_init_std=0.05
    )
    save_adapter(adapter, str(root / "adapter"), backbone_dir, scale=4, sampling={"steps": 1, "sigma_start": 0.5})
    src = root / "in"
    src.mkdir()
    for (_, frames, _), name in zip(random_clips(3, 5, 16, seed=3), ("a", "b", "c")):
        (src / f"{name}.mkv").write_bytes(encode_video(frames))
    (src / "broken.mp4").write_bytes(b"\x00" * 100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["upscale", str(src), str(root / "reference"), "--adapter", str(root / "adapter")])
    finally:
        torch.set_num_threads(threads)
    assert exit_.value.code == 1
    assert sorted(os.listdir(root / "reference")) == GOOD
    return SimpleNamespace(root=root, src=src, adapter=str(root / "adapter"), reference=root / "reference")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ONE_THREAD, cwd=REPO, capture_output=True, text=True, timeout=300)


def _torchrun_upscale(batch, out) -> subprocess.CompletedProcess:
    return _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            "-m",
            "litevsr",
            "upscale",
            str(batch.src),
            str(out),
            "--adapter",
            batch.adapter,
        ]
    )


def _predict(batch, backbone_dir, out) -> subprocess.CompletedProcess:
    return _run(
        [
            sys.executable,
            "-m",
            "litevsr",
            "predict",
            "--config",
            "recipes/upscale.yaml",
            "--model.backbone.init_args.pretrained",
            backbone_dir,
            "--model.init_adapter",
            batch.adapter,
            "--data.inputs",
            f"[{batch.src}]",
            "--data.output_dir",
            str(out),
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.default_root_dir",
            str(out.parent / "predict_run"),
        ]
    )


def _summary(run: subprocess.CompletedProcess, command: str) -> str:
    """The one summary line, which only rank 0 prints."""
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"litevsr {command}:")]
    assert len(lines) == 1, run.stdout + run.stderr[-3000:]
    return lines[0]


def _check_first_and_rerun(batch, out, command, launch):
    first = launch()
    summary = _summary(first, command)
    assert first.returncode == 1, first.stderr[-3000:]
    # each good clip upscaled once over both ranks, the corrupt one reported with its reason
    assert summary.startswith(f"litevsr {command}: 3 done, 0 skipped (already there), 1 failed: broken.mp4 (cannot ")
    assert sorted(os.listdir(out)) == GOOD  # no second copy, no partial file
    for name in GOOD:
        assert np.array_equal(read_video(str(out / name)), read_video(str(batch.reference / name))), name
        assert (out / name).read_bytes() == (batch.reference / name).read_bytes(), name
    written = {name: os.stat(out / name).st_mtime_ns for name in GOOD}

    rerun = launch()
    assert rerun.returncode == 1
    assert _summary(rerun, command).startswith(
        f"litevsr {command}: 0 done, 3 skipped (already there), 1 failed: broken.mp4 ("
    )
    assert {name: os.stat(out / name).st_mtime_ns for name in GOOD} == written


def test_torchrun_upscale_splits_a_folder_over_ranks_like_one_process(batch):
    out = batch.root / "torchrun"
    _check_first_and_rerun(batch, out, "upscale", lambda: _torchrun_upscale(batch, out))


def test_predict_on_two_devices_splits_a_folder_over_ranks_like_one_process(batch, backbone_dir):
    out = batch.root / "predict"
    _check_first_and_rerun(batch, out, "predict", lambda: _predict(batch, backbone_dir, out))


def test_shares_cover_every_input_once_and_keep_each_output_on_one_rank():
    inputs = ["v/c.mp4", "v/a.mkv", "v/b.mp4", "v/a.mp4", "v/d.mov"]  # a.mkv and a.mp4 both write a.mp4

    def output(path):
        return os.path.splitext(os.path.basename(path))[0]

    assert share(inputs, output, 0, 1) == sorted(inputs)
    for world in (2, 3, 4, 7):
        shares = [share(inputs, output, rank, world) for rank in range(world)]
        assert sorted(p for s in shares for p in s) == sorted(inputs)
        assert sum(("v/a.mkv" in s) and ("v/a.mp4" in s) for s in shares) == 1
    assert share(inputs, output, 1, 2) == ["v/b.mp4", "v/d.mov"]  # outputs a, b, c, d: rank 1 takes b and d


def test_every_rank_of_more_ranks_than_files_predicts_something(tmp_path):
    (tmp_path / "x.mkv").write_bytes(b"")
    data = VideoFiles([str(tmp_path / "x.mkv")], output_dir=str(tmp_path / "out"))
    seen = []
    for rank in range(3):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=3)
        seen.append([item["input"] for item in data.predict_dataloader()])
    assert seen == [[str(tmp_path / "x.mkv")], [None], [None]]
