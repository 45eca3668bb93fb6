import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from litevsr.backbones import WanBackbone

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")


@pytest.fixture
def tool(monkeypatch):
    """Import a script of tools/ as running it does: its own folder first on sys.path."""
    monkeypatch.syspath_prepend(TOOLS)
    return importlib.import_module


@pytest.mark.slow
def test_pretraining_pipeline_end_to_end(tmp_path, tool):
    """A few steps of each stage: the saved generator loads through from_pretrained and is measured."""
    from litevsr.data.shards import write_shards

    lavfi_clips, pretrain = tool("build_recipe_data").lavfi_clips, tool("pretrain_generator").pretrain

    out, runs, data = tmp_path / "gen", tmp_path / "runs", tmp_path / "data"
    write_shards(lavfi_clips(1, 17, 128), str(data / "generator"), clips_per_shard=4)  # small: no full build
    results = pretrain(
        out=str(out),
        data_root=str(data),
        log_dir=str(runs),
        transformer_steps=2,
        samples_png=str(tmp_path / "samples.png"),
        results_json=str(tmp_path / "results.json"),
    )
    backbone = WanBackbone(str(out))
    assert backbone.vae_stride == (1, 2, 2) and backbone.patch_size == (1, 4, 4)
    assert backbone.latents_std.flatten().tolist() == pytest.approx(backbone.vae.config.latents_std)
    assert (tmp_path / "samples.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["held_out"]["vae_psnr_y"] == results["held_out"]["vae_psnr_y"] > 0
    assert set(saved["cost_seconds"]) >= {"vae_s", "transformer_s"} and saved["transformer_steps"] == 2
    assert saved["held_out"]["vae_psnr_y"] >= 45  # the PCA VAE, on a video no stage saw
    resumed = pretrain(
        out=str(tmp_path / "gen2"),
        data_root=str(data),
        log_dir=str(tmp_path / "runs2"),
        transformer_steps=3,
        resume=str(runs / "transformer.ckpt"),
        samples_png=str(tmp_path / "s2.png"),
        results_json=str(tmp_path / "results2.json"),
    )
    assert resumed["transformer_steps"] == 3  # continued from step 2, optimizer included


def test_warm_start_copies_matching_tensors_only(tmp_path, tool):
    from diffusers import WanTransformer3DModel

    warm_start = tool("pretrain_generator").warm_start

    config = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        text_dim=8,
        freq_dim=8,
        ffn_dim=16,
        num_layers=1,
    )
    WanTransformer3DModel(in_channels=8, out_channels=8, **config).save_pretrained(tmp_path / "old")
    old = WanTransformer3DModel.from_pretrained(tmp_path / "old").state_dict()
    new = WanTransformer3DModel(in_channels=4, out_channels=4, **config)
    fresh = warm_start(new, str(tmp_path / "old"))
    assert "patch_embedding.weight" in fresh and "proj_out.weight" in fresh  # they face the latent width
    body = [k for k in new.state_dict() if k not in fresh]
    assert body and all(torch.equal(new.state_dict()[k], old[k]) for k in body)


def test_tools_are_outside_the_package_and_need_no_current_folder(tmp_path):
    """Development tooling is not importable from litevsr; its scripts run from any folder."""
    for gone in ("litevsr.pretrain", "litevsr.data.demo"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(gone)
    helps = {}
    for script in ("pretrain_generator.py", "build_recipe_data.py"):
        done = subprocess.run(
            [sys.executable, os.path.join(TOOLS, script), "--help"], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        helps[script] = done.stdout
    assert "--out OUT" in helps["pretrain_generator.py"]  # as the recipes set it, and overridable


def test_pretrain_needs_an_out_folder(tool):
    """No default may overwrite the shipped generator (litevsr/assets/tiny-wan)."""
    import inspect

    assert inspect.signature(tool("pretrain_generator").pretrain).parameters["out"].default is inspect.Parameter.empty
