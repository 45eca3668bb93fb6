import json

import pytest

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
