import pytest
import torch

from litevsr import flow
from litevsr.adapters import StateAwareAdapter, load_adapter, save_adapter
from litevsr.backbones import WanBackbone
from litevsr.model import LiteVSR


def make_model(backbone, **kw):
    torch.manual_seed(0)
    return LiteVSR(backbone, StateAwareAdapter(width=32, time_dim=32, inject_every=2, **kw))


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


@pytest.mark.parametrize("state_input", ["x_sigma", "x0_hat"])
def test_optimizer_step_leaves_backbone_bitwise_and_trains_every_adapter_parameter(backbone, state_input):
    model = make_model(backbone, state_input=state_input)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = torch.optim.AdamW(model.adapter.parameters(), lr=1e-2)
    for step in range(2):
        x0, eps, cond, sigma = batch(step)
        x = flow.interpolate(x0, eps, sigma)
        loss = torch.nn.functional.mse_loss(model.velocity(x, sigma, cond, model.refinement_state(x, sigma)), eps - x0)
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad for n, p in model.adapter.named_parameters()}
        assert all(g is not None for g in grads.values())
        if step == 1:  # once the zero projections have moved, every parameter gets a non-zero gradient
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


def test_injection_targets(backbone):
    adapter = StateAwareAdapter(width=32, inject_every=3)
    adapter.bind(backbone)
    assert adapter.targets == [0, 3]
    explicit = StateAwareAdapter(width=32, inject_blocks=[1, 2])
    explicit.bind(backbone)
    assert explicit.targets == [1, 2] and set(explicit.injectors) == {"1", "2"}


def test_default_adapter_is_at_most_11_25_percent_of_wan_1_3b():
    bb = WanBackbone("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", empty_weights=True)
    adapter = StateAwareAdapter()
    adapter.bind(bb)
    trainable = sum(p.numel() for p in adapter.parameters())
    backbone = sum(p.numel() for p in bb.transformer.parameters())
    assert next(adapter.parameters()).device.type == "meta"
    assert trainable / backbone <= 0.1125, trainable / backbone
    assert adapter.targets == list(range(0, 30, 3))
    assert all(p.shape[0] == 1536 for n, p in adapter.injectors.named_parameters())


def test_export_and_load_round_trip(backbone, tmp_path):
    model = make_model(backbone, state_input="x0_hat")
    for p in model.adapter.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = str(tmp_path / "adapter.safetensors")
    save_adapter(model.adapter, path, backbone.name)
    loaded = load_adapter(path, backbone)
    LiteVSR(backbone, loaded)  # wrapping a loaded adapter must not re-initialise it
    assert loaded.state_input == "x0_hat" and loaded.init_args == model.adapter.init_args
    x0, eps, cond, sigma = batch()
    assert all(torch.equal(a, b) for a, b in zip(model.adapter(cond, x0, sigma).values(), loaded(cond, x0, sigma).values()))


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
