import os
from functools import partial

import pytest
import torch

from litevsr import flow
from litevsr.adapters import StateAwareAdapter, load_adapter, save_adapter
from litevsr.adapters.base import backbone_dims
from litevsr.backbones import WanBackbone
from litevsr.model import LiteVSR
from litevsr.pipeline import LiteVSRPipeline, Sampling, start_noise
from litevsr.schedulers import make_scheduler


def make_model(backbone, **kw):
    torch.manual_seed(0)
    return LiteVSR(
        backbone, StateAwareAdapter(backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2, **kw)
    )


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, eps, cond = (torch.randn(2, 16, 3, 4, 4, generator=g) for _ in range(3))
    sigma = torch.tensor([0.2, 0.8])
    return x0, eps, cond, sigma


def test_at_init_output_equals_bare_backbone_bitwise(backbone):
    model = make_model(backbone)
    x0, eps, cond, sigma = batch()
    x = flow.interpolate(x0, eps, sigma)
    assert torch.equal(model.velocity(x, sigma, cond, x), backbone(x, sigma))


@pytest.mark.parametrize("options", [{"state_input": "x_sigma"}, {"state_input": "x0_hat"}, {"structure_stem": 8}])
def test_optimizer_step_leaves_backbone_bitwise_and_trains_every_adapter_parameter(backbone, options):
    model = make_model(backbone, **options)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = torch.optim.AdamW(model.adapter.parameters(), lr=1e-2)
    for step in range(3):
        x0, eps, cond, sigma = batch(step)
        x = flow.interpolate(x0, eps, sigma)
        loss = torch.nn.functional.mse_loss(model.velocity(x, sigma, cond, model.refinement_state(x, sigma)), eps - x0)
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad for n, p in model.adapter.named_parameters()}
        assert all(g is not None for g in grads.values())
        if step == 2:  # once the zero layers (injectors, then the stem's last) have moved, every parameter learns
            assert [n for n, g in grads.items() if g.abs().sum() == 0] == []
        optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None for p in backbone.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(backbone_dir):
    grads = []
    for checkpointing in (False, True):
        bb = WanBackbone(backbone_dir)
        model = make_model(bb)
        torch.nn.init.normal_(model.adapter.injectors["0"].weight, std=0.1)
        if checkpointing:
            bb.transformer.enable_gradient_checkpointing()
            model.adapter.gradient_checkpointing = True
        x0, eps, cond, sigma = batch()
        x = flow.interpolate(x0, eps, sigma)
        model.velocity(x, sigma, cond, x).square().mean().backward()
        grads.append([p.grad.clone() for p in model.adapter.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def same_injections(a, b) -> bool:
    return a.residuals.keys() == b.residuals.keys() and all(
        torch.equal(a.residuals[i], b.residuals[i]) for i in a.residuals
    )


def test_injection_targets(backbone):
    adapter = StateAwareAdapter(backbone_dims=backbone_dims(backbone), width=32, inject_every=3)
    assert adapter.targets == [0, 3]
    explicit = StateAwareAdapter(backbone_dims=backbone_dims(backbone), width=32, inject_blocks=[1, 2])
    assert explicit.targets == [1, 2] and set(explicit.injectors) == {"1", "2"}


def test_default_adapter_binds_on_the_meta_device_at_wan_1_3b():
    bb = WanBackbone("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", empty_weights=True)
    with torch.device("meta"):
        adapter = StateAwareAdapter(backbone_dims=backbone_dims(bb))
    assert next(adapter.parameters()).device.type == "meta"
    assert adapter.targets == list(range(0, 30, 3))
    assert all(p.shape[0] == 1536 for n, p in adapter.injectors.named_parameters())


def test_export_and_load_round_trip(backbone, tmp_path):
    model = make_model(backbone, state_input="x0_hat")
    for p in model.adapter.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = str(tmp_path / "adapter")
    save_adapter(model.adapter, path, backbone.name)
    assert sorted(os.listdir(path)) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = load_adapter(path, backbone)
    LiteVSR(backbone, loaded)  # wrapping a loaded adapter must not re-initialise it
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert loaded.state_input == "x0_hat" and public(loaded.config) == public(model.adapter.config)
    x0, eps, cond, sigma = batch()
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.adapter(cond, x0, sigma).residuals.values(), loaded(cond, x0, sigma).residuals.values())
    )


def test_an_adapter_grows_into_more_blocks_from_a_smaller_one(backbone, tmp_path):
    """init_adapter_grow: the stored tensors load, the new injectors stay zero, so the grown adapter starts as the
    stored one; without it, or with a tensor of another shape, loading is a one-line error."""
    from litevsr import LiteVSRError
    from litevsr.module import LiteVSRModule

    small = make_model(backbone)
    for p in small.adapter.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = str(tmp_path / "small")
    save_adapter(small.adapter, path, backbone.name)
    grown = LiteVSRModule(
        backbone,
        partial(StateAwareAdapter, width=32, time_dim=32, inject_every=1),
        init_adapter=path,
        init_adapter_grow=True,
    ).adapter
    x0, eps, cond, sigma = batch()
    before, after = small.adapter(cond, x0, sigma).residuals, grown(cond, x0, sigma).residuals
    assert sorted(after) == list(range(backbone.num_blocks)) and sorted(before) == [0, 2]
    assert all(torch.equal(after[i], before[i]) if i in before else not after[i].any() for i in after)
    with pytest.raises(LiteVSRError, match="not a StateAwareAdapter with"):
        LiteVSRModule(backbone, partial(StateAwareAdapter, width=32, time_dim=32, inject_every=1), init_adapter=path)
    with pytest.raises(LiteVSRError, match="is .*, not"):
        LiteVSRModule(
            backbone,
            partial(StateAwareAdapter, width=48, time_dim=32, inject_every=1),
            init_adapter=path,
            init_adapter_grow=True,
        )


def test_a_structure_stem_grows_onto_a_trained_adapter_without_changing_it(backbone, tmp_path):
    """A stem added to an exported adapter (init_adapter_grow) starts as the identity: the same residuals."""
    from litevsr.module import LiteVSRModule

    trained = make_model(backbone)
    for p in trained.adapter.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = str(tmp_path / "trained")
    save_adapter(trained.adapter, path, backbone.name)
    stem = partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2, structure_stem=8)
    grown = LiteVSRModule(backbone, stem, init_adapter=path, init_adapter_grow=True).adapter
    x0, eps, cond, sigma = batch()
    before, after = trained.adapter(cond, x0, sigma).residuals, grown(cond, x0, sigma).residuals
    assert sorted(after) == sorted(before) and all(torch.equal(after[i], before[i]) for i in after)
    assert (
        sum(p.numel() for p in grown.stem.parameters())
        == 9 * 8 * (8 + 2 * backbone.latent_channels) + 2 * 8 + backbone.latent_channels
    )
    torch.nn.init.normal_(grown.stem.out.weight, std=0.05)  # a trained stem changes what the adapter reads
    assert not torch.equal(grown(cond, x0, sigma).residuals[0], before[0])


def test_adapter_tokens_are_in_the_backbones_patch_order(causal_twin):
    """With the backbone's own patch weights, the adapter's embedder must give the tokens block 0 receives."""
    from litevsr.adapters.state_aware import PatchEmbedder

    backbone = WanBackbone(causal_twin["backbone"])
    seen = {}

    def record(module, args):
        seen["tokens"] = args[0]

    backbone.blocks[0].register_forward_pre_hook(record)
    latents = torch.randn(1, backbone.latent_channels, 3, 6, 10)  # F, H, W all different
    backbone(latents, torch.tensor([0.5]))
    patch = backbone.transformer.patch_embedding
    embedder = PatchEmbedder(backbone.latent_channels, patch.out_channels, backbone.patch_size)
    embedder.proj.load_state_dict(patch.state_dict())
    torch.nn.init.zeros_(embedder.position.weight)
    torch.nn.init.zeros_(embedder.position.bias)
    torch.testing.assert_close(embedder(latents), seen["tokens"])


def test_a_file_naming_os_system_is_refused_and_runs_nothing(tmp_path, capsys):
    """An adapter folder whose config names os.system with a shell command."""
    import json

    from conftest import random_clips
    from safetensors.torch import save_file

    from litevsr import LiteVSRError
    from litevsr.cli import main
    from litevsr.data.video import encode_video

    marker = tmp_path / "ran"
    folder = tmp_path / "crafted"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "_class_name": "os.system",
                "command": f"touch {marker}",
                "_litevsr": {"backbone": "tiny", "scale": 4, "sampling": {}},
            }
        )
    )
    save_file({"x": torch.zeros(1)}, str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(LiteVSRError, match="unknown adapter class 'os.system'"):
        load_adapter(str(folder))
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 2, 8, seed=7))[1]))
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("litevsr: error:")
    assert "os.system" in err[0]
    assert not marker.exists() and not (tmp_path / "out.mp4").exists()


def test_a_weights_file_given_as_an_adapter_says_an_adapter_is_a_folder(tmp_path, capsys):
    from safetensors.torch import save_file

    from litevsr.cli import main

    weights = tmp_path / "adapter.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", "in.mp4", "out.mp4", "--adapter", str(weights)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"litevsr: error: {weights} is a file; an adapter is a folder with config.json and "
        "diffusion_pytorch_model.safetensors"
    ]


def test_an_adapter_with_a_missing_tensor_is_an_error(backbone, tmp_path):
    from safetensors.torch import load_file, save_file

    from litevsr import LiteVSRError

    path = tmp_path / "adapter"
    save_adapter(make_model(backbone).adapter, str(path), backbone.name)
    weights = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    weights.pop("out_norm.weight")
    save_file(weights, str(path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(LiteVSRError, match="do not fit.*out_norm.weight"):
        load_adapter(str(path), backbone)


def test_x0_hat_sampling_reads_the_bare_backbones_estimate_at_every_step(backbone):
    """Training feeds x_sigma - sigma * v(bare backbone); sampling must feed the same, not the adapted velocity."""
    model = make_model(backbone, state_input="x0_hat", output_init_std=0.05)
    g = torch.Generator().manual_seed(3)
    cond = torch.randn(1, 16, 2, 4, 4, generator=g)
    pipe = LiteVSRPipeline(backbone, model.adapter, make_scheduler())
    sampled = pipe.sample_latents(cond, Sampling(steps=2, tile=0), ["0"])
    x = start_noise(tuple(cond.shape[1:]), 0, ["0"])
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        s = sigma.expand(1)
        state = x - sigma * backbone(x, s)
        x = x + (sigma_next - sigma) * backbone(x, s, model.adapter(cond, state, s))
    torch.testing.assert_close(sampled, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["full", "gate", "none"])
def test_time_conditioning_ablations_remove_what_they_name(backbone, mode):
    """full: blocks and gate follow sigma; gate: only the stream gate does (blocks see a constant); none: nothing
    does, so the injections are the same at every sigma."""
    torch.manual_seed(0)
    adapter = StateAwareAdapter(
        backbone_dims=backbone_dims(backbone),
        width=32,
        time_dim=32,
        inject_every=2,
        time_conditioning=mode,
        output_init_std=0.05,
    )
    for p in adapter.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x0, _, cond, _ = batch()
    seen = []
    adapter.structure_blocks[0].modulation.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    low, high = (adapter(cond, x0, torch.full((2,), s)).residuals for s in (0.1, 0.9))
    blocks_follow_sigma = not torch.equal(seen[0], seen[1])
    assert blocks_follow_sigma == (mode == "full")
    assert (not all(torch.equal(low[i], high[i]) for i in low)) == (mode != "none")


def test_without_the_refinement_stream_the_state_is_not_read(backbone):
    torch.manual_seed(0)
    adapter = StateAwareAdapter(
        backbone_dims=backbone_dims(backbone),
        width=32,
        time_dim=32,
        inject_every=2,
        refinement_depth=0,
        output_init_std=0.05,
    )
    assert not hasattr(adapter, "state_embedder") and not hasattr(adapter, "stream_gate")
    x0, eps, cond, sigma = batch()
    assert all(
        torch.equal(a, b)
        for a, b in zip(adapter(cond, x0, sigma).residuals.values(), adapter(cond, eps, sigma).residuals.values())
    )
    assert not all(
        torch.equal(a, b)
        for a, b in zip(adapter(cond, x0, sigma).residuals.values(), adapter(eps, x0, sigma).residuals.values())
    )


def test_an_adapter_built_by_the_module_rebuilds_from_its_config(backbone):
    """FSDP's export rebuilds the adapter from its in-memory config (callbacks.unsharded_adapter): the backbone's
    dimensions must be there, not dropped as a default by diffusers' config."""
    from litevsr.module import LiteVSRModule

    adapter = LiteVSRModule(backbone, partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2)).adapter
    rebuilt = StateAwareAdapter.from_config(adapter.config)
    assert rebuilt.config.backbone_dims == adapter.config.backbone_dims
