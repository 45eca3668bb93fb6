import json

import pytest
import torch

from litevsr.backbones import WanBackbone


@pytest.mark.slow
def test_pretraining_pipeline_end_to_end(tmp_path):
    """A few steps of each stage: the saved generator loads through from_pretrained and is measured."""
    from litevsr.pretrain import pretrain

    out = tmp_path / "gen"
    results = pretrain(out=str(out), data_root=str(tmp_path / "data"), log_dir=str(tmp_path / "runs"), vae_steps=2,
                       vae_clip_steps=1, transformer_steps=2, samples_png=str(tmp_path / "samples.png"),
                       results_json=str(tmp_path / "results.json"))
    backbone = WanBackbone(str(out))
    assert backbone.vae_stride == (1, 2, 2) and backbone.patch_size == (1, 4, 4)
    assert backbone.latents_std.flatten().tolist() == pytest.approx(backbone.vae.config.latents_std)
    assert (tmp_path / "samples.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["held_out"]["vae_psnr_y"] == results["held_out"]["vae_psnr_y"] > 0
    assert set(saved["cost_seconds"]) >= {"vae_frames_s", "vae_clips_s", "transformer_s"}


def test_warm_start_copies_matching_tensors_only(tmp_path):
    from diffusers import AutoencoderKLWan

    from litevsr.pretrain import warm_start

    config = dict(base_dim=8, dim_mult=[1], num_res_blocks=1, temperal_downsample=[], in_channels=12,
                  out_channels=12, patch_size=2, scale_factor_spatial=2)
    AutoencoderKLWan(z_dim=8, **config).save_pretrained(tmp_path / "old")
    old = AutoencoderKLWan.from_pretrained(tmp_path / "old").state_dict()
    new = AutoencoderKLWan(z_dim=4, **config)
    fresh = warm_start(new, str(tmp_path / "old"))
    assert "quant_conv.weight" in fresh and "post_quant_conv.weight" in fresh  # they face the latent width
    body = [k for k in new.state_dict() if k not in fresh]
    assert body and all(torch.equal(new.state_dict()[k], old[k]) for k in body)
