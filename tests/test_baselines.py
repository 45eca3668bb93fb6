"""Baselines in the State-Aware Adapter's harness: LoRA (peft) and full fine-tuning, with the LQ latent as input
channels. For each, on the stride-1 test backbone and on the Wan2.1 twin (causal 4x VAE): exactly the declared
parameters train, checkpoints and exports hold exactly them, exports load back (LoRA also through diffusers), and a
recipe runs fit -> export -> upscale."""

import os
from functools import partial

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_training import write_config

from litevsr import LiteVSRError
from litevsr.adapters import (
    ControlNetAdapter,
    FullFinetuneAdapter,
    LoRAAdapter,
    StateAwareAdapter,
    load_adapter,
    save_adapter,
)
from litevsr.adapters.concat import LORA_WEIGHTS_FILE, PATCH_EMBEDDING_FILE
from litevsr.backbones import WanBackbone
from litevsr.cli import main
from litevsr.model import LiteVSR
from litevsr.module import LiteVSRModule

METHODS = {
    "lora": partial(LoRAAdapter, rank=4),
    "full": FullFinetuneAdapter,
    "controlnet": ControlNetAdapter,
    "state_aware": partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2),
}


def _inputs(backbone, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, cond = (torch.randn(2, backbone.latent_channels, 2, 4, 4, generator=g) for _ in range(2))
    return x, cond, torch.tensor([0.3, 0.9])


def _trained_step(backbone, adapter):
    module = LiteVSRModule(backbone, adapter)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    state = lambda: {**dict(module.model.named_parameters()), **dict(module.model.named_buffers())}  # noqa: E731
    before = {k: v.detach().clone() for k, v in state().items()}
    x, cond, sigma = _inputs(backbone)
    for _ in range(2):  # the first step moves only the zero-initialised output paths
        optimizer.zero_grad()
        module.model.velocity(x, sigma, cond, x).pow(2).mean().backward()
        optimizer.step()
    moved = {k for k, v in state().items() if not torch.equal(v, before[k])}
    return module, moved


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("which", ["test", "twin"])
def test_exactly_the_declared_parameters_train_and_are_checkpointed(method, which, backbone_dir, causal_twin):
    backbone = WanBackbone(backbone_dir if which == "test" else causal_twin["backbone"])
    module, moved = _trained_step(backbone, METHODS[method])
    declared = set(module.model.trained_parameters())
    assert moved == declared  # every declared parameter moved, nothing else did (buffers included)
    if method in ("state_aware", "controlnet"):
        assert all(k.startswith("adapter.") for k in declared)
    else:
        assert any(k.startswith("backbone.transformer.") for k in declared)
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()}}  # with aliases
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == {f"model.{k}" for k in declared}
    module.on_load_checkpoint(checkpoint)
    with pytest.raises(LiteVSRError, match="does not fit this method"):
        module.on_load_checkpoint({"state_dict": {k: v for k, v in list(checkpoint["state_dict"].items())[1:]}})


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_stray_trainable_backbone_parameter_breaks_the_frozen_guarantee(method, backbone_dir):
    module = LiteVSRModule(WanBackbone(backbone_dir), METHODS[method])
    if method == "lora":
        module.backbone.vae.requires_grad_(True)
    else:
        next(module.backbone.transformer.parameters()).requires_grad_(False)
    with pytest.raises(LiteVSRError, match="break the frozen guarantee"):
        module.configure_optimizers()


@pytest.mark.parametrize("method", ["lora", "full", "controlnet"])
def test_exports_load_back_with_the_same_velocity(method, backbone_dir, tmp_path):
    module, _ = _trained_step(WanBackbone(backbone_dir), METHODS[method])
    save_adapter(module.adapter, str(tmp_path / method), module.backbone.name)
    fresh = WanBackbone(backbone_dir)
    loaded = LiteVSR(fresh, load_adapter(str(tmp_path / method), fresh))
    x, cond, sigma = _inputs(fresh, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded.velocity(x, sigma, cond, x), module.model.velocity(x, sigma, cond, x))
        # LoRA and full fine-tuning load trained backbone weights; ControlNet's hooks leave a bare call alone
        edited = not torch.allclose(fresh(x, sigma), WanBackbone(backbone_dir)(x, sigma))
        assert edited == bool(loaded.adapter.trained_backbone_parameters()) == (method != "controlnet")
    with pytest.raises(LiteVSRError, match="load it with its backbone"):
        load_adapter(str(tmp_path / method))


def test_the_lora_export_loads_through_diffusers(backbone_dir, tmp_path):
    """Plain diffusers: widen the patch embedding with the exported full weight, load_lora_adapter the LoRA file,
    feed [latent, condition] channels: the same velocity as litevsr's."""
    module, _ = _trained_step(WanBackbone(backbone_dir), partial(LoRAAdapter, rank=4))
    folder = str(tmp_path / "lora")
    save_adapter(module.adapter, folder, module.backbone.name)
    plain = WanBackbone(backbone_dir)  # only for its transformer, prompt and hooks-free velocity call
    transformer = plain.transformer
    embedding = load_file(os.path.join(folder, PATCH_EMBEDDING_FILE))
    old = transformer.patch_embedding
    transformer.patch_embedding = torch.nn.Conv3d(
        embedding["weight"].shape[1], old.out_channels, old.kernel_size, stride=old.stride
    )
    transformer.patch_embedding.load_state_dict(embedding)
    transformer.load_lora_adapter(folder, weight_name=LORA_WEIGHTS_FILE, prefix=None)
    x, cond, sigma = _inputs(plain, seed=2)
    with torch.no_grad():
        ours = module.model.velocity(x, sigma, cond, x)
        theirs = plain.velocity(torch.cat([x, cond], dim=1), sigma)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, WanBackbone(backbone_dir)(x, sigma), atol=1e-3)


def test_a_lora_file_of_another_rank_is_a_one_line_error(backbone_dir, tmp_path):
    module, _ = _trained_step(WanBackbone(backbone_dir), partial(LoRAAdapter, rank=4))
    save_adapter(module.adapter, str(tmp_path / "lora"), module.backbone.name)
    config = tmp_path / "lora" / "config.json"
    config.write_text(config.read_text().replace('"rank": 4', '"rank": 8'))
    with pytest.raises(LiteVSRError, match="does not fit this LoRA"):
        load_adapter(str(tmp_path / "lora"), WanBackbone(backbone_dir))


@pytest.mark.parametrize("method", ["lora", "full", "controlnet"])
def test_each_baseline_runs_fit_export_upscale_from_a_recipe(method, tmp_path, backbone_dir, shard_dirs):
    config = write_config(tmp_path, backbone_dir, shard_dirs)
    recipe = yaml.safe_load(open(config))
    recipe["model"]["adapter"] = {
        "class_path": f"litevsr.adapters.{getattr(METHODS[method], 'func', METHODS[method]).__name__}",
        "init_args": {"rank": 4} if method == "lora" else {},
    }
    if method == "controlnet":
        recipe["model"]["val_references"] = True
    with open(config, "w") as f:
        yaml.safe_dump(recipe, f)
    main(["fit", "--config", config])
    exported = tmp_path / "runs" / "t" / "version_0" / "adapter"
    assert (exported / PATCH_EMBEDDING_FILE).is_file() == (method != "controlnet")
    from conftest import random_clips

    from litevsr.data.video import encode_video, video_info

    ((_, frames, _),) = random_clips(1, 5, 8)
    (tmp_path / "in.mkv").write_bytes(encode_video(frames))
    main(["upscale", str(tmp_path / "in.mkv"), str(tmp_path / "out.mp4"), "--adapter", str(exported)])
    info = video_info(str(tmp_path / "out.mp4"))
    assert (info["frames"], info["width"], info["height"]) == (5, 32, 32)


@pytest.mark.parametrize("method", ["controlnet", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(method, backbone_dir):
    """The ControlNet copy runs inside the first block's pre-hook, which checkpointing runs again in backward."""
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module, _ = _trained_step(WanBackbone(backbone_dir), METHODS[method])
        module.zero_grad()
        if checkpointing:
            module.backbone.transformer.enable_gradient_checkpointing()
        x, cond, sigma = _inputs(module.backbone, seed=3)
        torch.manual_seed(0)
        module.model.velocity(x, sigma, cond, x).pow(2).mean().backward()
        grads.append({k: p.grad.clone() for k, p in module.model.trained_parameters().items()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])
