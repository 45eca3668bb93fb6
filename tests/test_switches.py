"""Memory and speed switches of the frozen backbone: each is wired through and keeps the backbone's results."""

from functools import partial

import pytest
import torch

from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter
from litevsr.backbones import Switches, WanBackbone
from litevsr.module import LiteVSRModule


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 16, 2, 8, 8, generator=g), torch.tensor([0.6])


def test_fp8_storage_keeps_weights_in_fp8_and_trains_the_adapter_in_fp32(backbone_dir, inputs):
    x, sigma = inputs
    reference = WanBackbone(backbone_dir)(x, sigma)
    backbone = WanBackbone(backbone_dir, switches=Switches(storage_dtype="float8_e4m3fn"))
    assert backbone.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    out = backbone(x, sigma)
    assert out.dtype == torch.float32 and 0 < (out - reference).abs().max() < 0.2 * reference.abs().max()
    module = LiteVSRModule(backbone, partial(StateAwareAdapter, width=32, time_dim=32, output_init_std=0.05))
    module.log = lambda *a, **k: None
    loss = module.training_step(
        {"hq_latents": x, "cond_latents": x.flip(-1), "vae_fingerprint": [backbone.vae_fingerprint]}, 0
    )
    loss.backward()
    grads = [p.grad for p in module.adapter.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)


@pytest.mark.parametrize("which", ["stride-1 test backbone", "causal Wan2.1 twin"])
def test_group_offload_and_vae_slicing_and_tiling_keep_the_results(backbone_dir, causal_twin, inputs, which):
    x, sigma = inputs
    folder = backbone_dir if which.startswith("stride") else causal_twin["backbone"]
    plain = WanBackbone(folder)
    switched = WanBackbone(folder, switches=Switches(group_offload="cpu", vae_slicing=True, vae_tiling=True))
    assert switched.vae.use_slicing and switched.vae.use_tiling
    assert any(hasattr(m, "_diffusers_hook") for m in switched.blocks)  # the offloading hooks
    torch.testing.assert_close(switched(x, sigma), plain(x, sigma))
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    torch.testing.assert_close(switched.encode(video), plain.encode(video), atol=1e-5, rtol=1e-5)


def test_compile_wraps_every_block(backbone_dir):
    backbone = WanBackbone(backbone_dir, switches=Switches(compile=True))
    assert all(block._compiled_call_impl is not None for block in backbone.blocks)


def test_an_unknown_storage_dtype_is_a_one_line_error(backbone_dir):
    with pytest.raises(LiteVSRError, match="storage_dtype must be one of"):
        WanBackbone(backbone_dir, switches=Switches(storage_dtype="int4"))


def test_switches_come_from_a_recipe(tmp_path, backbone_dir, shard_dirs):
    from test_training import write_config

    from litevsr.cli import main

    main(
        [
            "fit",
            "--config",
            write_config(tmp_path, backbone_dir, shard_dirs),
            "--trainer.max_steps",
            "1",
            "--trainer.val_check_interval",
            "1",
            "--model.backbone.init_args.switches.storage_dtype",
            "float8_e4m3fn",
            "--model.backbone.init_args.switches.vae_slicing",
            "true",
        ]
    )
    config = (tmp_path / "runs" / "t" / "version_0" / "config.yaml").read_text()
    assert "storage_dtype: float8_e4m3fn" in config and "vae_slicing: true" in config
