import pytest
import torch
from safetensors.torch import save_file

from litevsr import LiteVSRError
from litevsr.backbones import WanBackbone
from litevsr.injections import Injections


def test_loads_from_saved_folder_frozen_and_in_eval(backbone):
    assert backbone.hidden_dim == 32 and backbone.num_blocks == 4
    assert backbone.vae_stride == (1, 4, 4) and backbone.patch_size == (1, 2, 2)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not any(m.training for m in backbone.modules())
    assert backbone.prompt_embeds.shape == (1, 4, 32)  # read from <folder>/prompt_embeds.safetensors


def test_latents_are_normalised_with_vae_statistics(backbone):
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    raw = backbone.vae.encode(video).latent_dist.mode()
    torch.testing.assert_close(backbone.encode(video), (raw - 0.1) / 2.0)
    assert backbone.decode(backbone.encode(video)).shape == video.shape


def test_velocity_shape_and_injection_changes_only_later_output(backbone):
    x = torch.randn(2, 16, 2, 4, 4)
    sigma = torch.tensor([0.3, 0.9])
    v = backbone(x, sigma)
    assert v.shape == x.shape
    tokens = 2 * 2 * 2
    injected = backbone(x, sigma, Injections({1: torch.ones(2, tokens, 32)}))
    assert not torch.equal(v, injected)
    assert torch.equal(backbone(x, sigma), v)  # injections do not leak into the next call


def test_bad_geometry_and_targets_are_one_line_errors(backbone):
    with pytest.raises(LiteVSRError, match="multiples of 8"):
        backbone.encode(torch.zeros(1, 3, 1, 12, 16))
    with pytest.raises(LiteVSRError, match="needs 1 \\+ 4k frames, got 3"):
        backbone.encode(torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(LiteVSRError, match="outside the backbone's 4 blocks"):
        backbone(torch.randn(1, 16, 1, 4, 4), torch.tensor([0.5]), Injections({7: torch.zeros(1, 4, 32)}))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(LiteVSRError, match="backbone path not found"):
        WanBackbone(pretrained=str(tmp_path / "nope"))


def test_unreachable_hub_id_is_a_clear_error():
    with pytest.raises(LiteVSRError, match="could not load a Wan backbone from hub id"):
        WanBackbone(pretrained="someone/not-a-real-wan-model")


def test_prompt_embedding_file(backbone_dir, tmp_path):
    path = str(tmp_path / "prompt.safetensors")
    save_file({"prompt_embeds": torch.ones(7, 32)}, path)
    assert torch.equal(WanBackbone(backbone_dir, prompt_embeds=path).prompt_embeds, torch.ones(1, 7, 32))
    save_file({"prompt_embeds": torch.ones(7, 5)}, path)
    with pytest.raises(LiteVSRError, match="width 5"):
        WanBackbone(backbone_dir, prompt_embeds=path)


def test_bfloat16_weights_keep_wan_fp32_modules(backbone_dir):
    bb = WanBackbone(backbone_dir, dtype="bfloat16")
    assert bb.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert bb.transformer.scale_shift_table.dtype == torch.float32  # diffusers' _keep_in_fp32_modules
    assert bb.vae.dtype == torch.float32
    assert bb(torch.randn(1, 16, 1, 4, 4), torch.tensor([0.5])).dtype == torch.float32


def test_wan_1_3b_on_meta_device():
    bb = WanBackbone("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", empty_weights=True)
    assert bb.device.type == "meta"
    assert (bb.hidden_dim, bb.num_blocks, bb.latent_channels) == (1536, 30, 16)
    assert bb.vae_stride == (4, 8, 8) and bb.spatial_multiple == 16
    assert sum(p.numel() for p in bb.transformer.parameters()) == 1_418_996_800


def test_shipped_generator_head_reaches_every_latent_direction():
    """An adapter steers only the hidden states, so velocities live in the image of proj_out. The first tiny
    generator (hidden 128 -> 4x4x16 = 256 outputs per token) could never correct half of each latent patch,
    which capped one-step SR far below its VAE (benchmarks/output_head_ceiling.py). Like Wan2.1 (1536 -> 64),
    the head must be full rank and the hidden width larger than a patch."""
    from litevsr.zoo import TINY_PATH

    head = WanBackbone(str(TINY_PATH)).transformer.proj_out
    outputs, hidden = head.weight.shape
    assert hidden > outputs
    assert torch.linalg.matrix_rank(head.weight.double()) == outputs
