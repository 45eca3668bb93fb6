"""Backbone families beyond Wan: CogVideoX's objective, its real shapes on the meta device, its twin under every
method, and swapping families from a recipe piece or an exported adapter."""

import json
import os
from functools import partial

import pytest
import torch

from litevsr import LiteVSRError
from litevsr.adapters import ControlNetAdapter, FullFinetuneAdapter, LoRAAdapter, StateAwareAdapter
from litevsr.adapters.base import backbone_dims, read_adapter_config, save_adapter
from litevsr.backbones import CogVideoXBackbone, LTXVideoBackbone, WanBackbone, backbone_class, detect_family
from litevsr.module import LiteVSRModule
from litevsr.pipeline import LiteVSRPipeline, Sampling
from litevsr.zoo.twins import cached_twin, write_twin

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


TWINS = {CogVideoXBackbone: "THUDM/CogVideoX-2b", LTXVideoBackbone: "Lightricks/LTX-Video"}


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    return write_twin("THUDM/CogVideoX-2b", str(tmp_path_factory.mktemp("cog") / "twin"))


@pytest.fixture(scope="module", params=list(TWINS), ids=[cls.spec.name for cls in TWINS])
def family(request, tmp_path_factory):
    """(backbone class, {"backbone": twin folder, "adapter": its active adapter}) of each family besides Wan."""
    return request.param, write_twin(TWINS[request.param], str(tmp_path_factory.mktemp("family") / "twin"))


def test_cogvideox_velocity_is_the_flow_velocity_of_its_v_prediction(cog):
    """At the timestep of equal signal-to-noise ratio, the scaled flow state is the DDPM state the transformer
    knows, and a perfect v-prediction gives exactly the flow velocity eps - x0."""
    backbone = CogVideoXBackbone(cog["backbone"])
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 16, 3, 4, 4, generator=g), torch.randn(2, 16, 3, 4, 4, generator=g)
    sigma = torch.tensor([0.3, 0.85])
    s = sigma.view(-1, 1, 1, 1, 1)
    n = ((1 - s) ** 2 + s**2).sqrt()
    a, b = (1 - s) / n, s / n
    seen = {}

    def perfect_v(hidden_states, encoder_hidden_states, timestep, image_rotary_emb=None, return_dict=False):
        seen.update(x_t=hidden_states.transpose(1, 2), t=timestep)
        return ((a * eps - b * x0).transpose(1, 2),)

    backbone.transformer.forward = perfect_v
    velocity = backbone.velocity((1 - s) * x0 + s * eps, sigma)
    torch.testing.assert_close(velocity, eps - x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(seen["x_t"], a * x0 + b * eps, atol=1e-5, rtol=0)
    lo = seen["t"].floor().long()
    w = seen["t"] - lo
    log_snr = backbone.log_snr[lo] * (1 - w) + backbone.log_snr[lo + 1] * w
    torch.testing.assert_close(log_snr, 2 * torch.log((1 - sigma) / sigma), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "name,params,blocks,width,rotary",
    [("THUDM/CogVideoX-2b", 1.69e9, 30, 1920, False), ("THUDM/CogVideoX-5b", 5.57e9, 42, 3072, True)],
)
def test_real_cogvideox_shapes_on_the_meta_device(name, params, blocks, width, rotary):
    backbone = CogVideoXBackbone(name, empty_weights=True)
    assert backbone.transformer_parameters == pytest.approx(params, rel=0.01)
    assert (backbone.num_blocks, backbone.hidden_dim, backbone.transformer.config.use_rotary_positional_embeddings) == (
        blocks,
        width,
        rotary,
    )
    assert (backbone.vae_stride, backbone.frame_step, backbone.prompt_embeds.shape[1]) == ((4, 8, 8), 8, 226)
    with torch.device("meta"):  # a real-size adapter, built without memory
        adapter = StateAwareAdapter(backbone_dims=backbone_dims(backbone), inject_every=3)
    module = LiteVSRModule(backbone, adapter)
    assert module.parameter_counts()["share"] < 0.2
    latents = torch.zeros(1, 16, 13, 60, 90, device="meta")  # 49 frames of 480x720
    injections = adapter(latents, latents, torch.zeros(1, device="meta")).residuals
    video_tokens = backbone.transformer.patch_embed(backbone.prompt_embeds, latents.transpose(1, 2)).shape[1] - 226
    assert video_tokens == 13 * 30 * 45
    assert sorted(injections) == list(range(0, blocks, 3))
    assert all(v.shape == (1, video_tokens, width) for v in injections.values())


def test_real_ltx_video_shapes_on_the_meta_device():
    backbone = LTXVideoBackbone("Lightricks/LTX-Video", empty_weights=True)
    assert backbone.transformer_parameters == pytest.approx(1.92e9, rel=0.01)
    assert (backbone.num_blocks, backbone.hidden_dim, backbone.patch_size) == (28, 2048, (1, 1, 1))
    assert (backbone.vae_stride, backbone.frame_step, backbone.latent_channels) == ((8, 32, 32), 8, 128)
    with torch.device("meta"):  # a real-size adapter, built without memory
        adapter = StateAwareAdapter(backbone_dims=backbone_dims(backbone), inject_every=4)
    assert LiteVSRModule(backbone, adapter).parameter_counts()["share"] < 0.2
    latents = torch.zeros(1, 128, 16, 16, 24, device="meta")  # 121 frames of 512x768
    injections = adapter(latents, latents, torch.zeros(1, device="meta")).residuals
    tokens = backbone.transformer.proj_in(latents.flatten(2).transpose(1, 2)).shape[1]  # packed, patch size 1
    assert tokens == 16 * 16 * 24
    assert sorted(injections) == list(range(0, 28, 4))
    assert all(v.shape == (1, tokens, 2048) for v in injections.values())


def test_tiled_upscaling_through_the_family_vae(family):
    """AutoencoderKLCogVideoX takes its tile overlap as a fraction, the others a stride: tiling goes through the
    backbone."""
    cls, twin = family
    backbone = cls(twin["backbone"])
    pipe = LiteVSRPipeline.from_pretrained(twin["adapter"], backbone=backbone)
    lq = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    out = pipe.super_resolve(lq, 4, Sampling(steps=1, sigma_start=1.0, tile=32, tile_overlap=8))
    assert out.shape == (1, 3, 9, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("method", [LoRAAdapter, ControlNetAdapter, FullFinetuneAdapter, StateAwareAdapter])
def test_every_method_trains_exports_and_loads_on_the_family(family, tmp_path, method):
    cls, twin = family
    backbone = cls(twin["backbone"])
    torch.manual_seed(0)
    module = LiteVSRModule(backbone, method)
    module.log = lambda *a, **k: None
    g = torch.Generator().manual_seed(0)
    shape = (1, backbone.latent_channels, 3, 4, 4)
    batch = {
        "hq_latents": torch.randn(shape, generator=g),
        "cond_latents": torch.randn(shape, generator=g),
        "vae_fingerprint": [backbone.vae_fingerprint],
    }
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    for _ in range(2):  # the first step moves the zero outputs, the second makes them matter
        module.training_step(batch, 0).backward()
        optimizer.step()
        optimizer.zero_grad()
    module.model.check_frozen()
    folder = str(tmp_path / "export")
    save_adapter(module.adapter, folder, twin["backbone"], scale=4, family=backbone.family)
    loaded = LiteVSRPipeline.from_pretrained(folder)
    assert type(loaded.backbone) is cls and read_adapter_config(folder)["family"] == cls.spec.name
    x, cond, sigma = batch["hq_latents"], batch["cond_latents"], torch.tensor([0.6])
    with torch.no_grad():
        expected = module.model.velocity(x, sigma, cond, x)
        torch.testing.assert_close(loaded.velocity_field.velocity(x, sigma, cond, x), expected, atol=1e-5, rtol=1e-5)
        assert (expected - backbone(x, sigma)).abs().max() > 1e-6  # the method acts


def test_the_lora_export_loads_through_diffusers_on_the_family(family, tmp_path):
    cls, twin = family
    backbone = cls(twin["backbone"])
    module = LiteVSRModule(backbone, partial(LoRAAdapter, rank=4))
    for name, p in backbone.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    save_adapter(module.adapter, str(tmp_path / "lora"), twin["backbone"], family=cls.spec.name)
    transformer = cls.spec.transformer_class.from_pretrained(twin["backbone"], subfolder="transformer")
    transformer.load_lora_adapter(
        str(tmp_path / "lora"), weight_name="pytorch_lora_weights.safetensors", adapter_name="check", prefix=None
    )
    ours = dict(backbone.transformer.named_parameters())
    loaded = {name: p for name, p in transformer.named_parameters() if "lora_B.check" in name}
    assert loaded and all(torch.equal(p, ours[name.replace(".check", ".litevsr")]) for name, p in loaded.items())


def test_families_are_found_by_known_names_never_by_import_paths(cog, tmp_path):
    assert detect_family(cog["backbone"]) is CogVideoXBackbone
    assert detect_family("THUDM/CogVideoX-5b") is CogVideoXBackbone and detect_family("tiny") is WanBackbone
    assert backbone_class("cogvideox") is CogVideoXBackbone
    with pytest.raises(LiteVSRError, match="unknown backbone family 'os.system'"):
        backbone_class("os.system")
    config = json.load(open(os.path.join(cog["adapter"], "config.json")))
    config["_litevsr"]["family"] = "os.system"
    (tmp_path / "bad").mkdir()
    json.dump(config, open(tmp_path / "bad" / "config.json", "w"))
    os.link(
        os.path.join(cog["adapter"], "diffusion_pytorch_model.safetensors"),
        tmp_path / "bad" / "diffusion_pytorch_model.safetensors",
    )
    with pytest.raises(LiteVSRError, match="unknown backbone family"):
        LiteVSRPipeline.from_pretrained(str(tmp_path / "bad"))


def test_a_twin_named_in_a_recipe_is_written_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LITEVSR_CACHE", str(tmp_path))
    backbone = CogVideoXBackbone("twin:THUDM/CogVideoX-2b")
    folder = cached_twin("THUDM/CogVideoX-2b")
    assert folder.startswith(str(tmp_path)) and os.path.isfile(
        os.path.join(folder, "scheduler", "scheduler_config.json")
    )
    stamp = os.path.getmtime(os.path.join(folder, "model_index.json"))
    assert CogVideoXBackbone("twin:THUDM/CogVideoX-2b").vae_fingerprint == backbone.vae_fingerprint
    assert os.path.getmtime(os.path.join(folder, "model_index.json")) == stamp
    assert sorted(os.listdir(tmp_path / "twins")) == ["THUDM--CogVideoX-2b"]  # no temporary folder left


@pytest.mark.parametrize(
    "piece,cls", [("cogvideox-twin", CogVideoXBackbone), ("ltx-twin", LTXVideoBackbone), ("wan2.1-twin", WanBackbone)]
)
def test_a_recipe_piece_swaps_the_family_of_the_demo(piece, cls, shard_dirs, tmp_path, monkeypatch):
    """`fit --config recipes/demo.yaml --config recipes/backbones/<piece>.yaml`, on test shards: the piece resets the
    demo's warm start (an adapter of the embedded Wan generator) and the export records the new family."""
    from litevsr.adapters import read_adapter_config
    from litevsr.cli import main

    monkeypatch.setenv("LITEVSR_CACHE", str(tmp_path / "cache"))
    train, val = shard_dirs
    main(
        [
            "fit",
            "--config",
            os.path.join(ROOT, "recipes", "demo.yaml"),
            "--config",
            os.path.join(ROOT, "recipes", "backbones", f"{piece}.yaml"),
            "--trainer.max_steps",
            "1",
            "--trainer.val_check_interval",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"),
            "--data.init_args.train_shards",
            train,
            "--data.init_args.val_shards",
            val,
            "--data.init_args.build_demo_if_missing",
            "false",
            "--data.init_args.crop_size",
            "32",
            "--data.init_args.val_crop_size",
            "32",
            "--data.init_args.batch_size",
            "1",
            "--data.init_args.num_workers",
            "0",
        ]
    )
    exported = read_adapter_config(str(tmp_path / "runs" / "demo" / "version_0" / "adapter"))
    assert exported["family"] == cls.spec.name and exported["backbone"].startswith("twin:")
