"""The whole user path on tiny twins of the real backbones: fit from shards, upscale with defaults, test, predict."""

import json
import os

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from videos import pan

from litevsr import LiteVSRError, flow
from litevsr.adapters import load_adapter, read_adapter_config
from litevsr.backbones import KNOWN_BACKBONES
from litevsr.cli import main
from litevsr.data.video import encode_video, read_video, video_info
from litevsr.pipeline import LiteVSRPipeline, Sampling, start_noise
from litevsr.schedulers import make_scheduler
from litevsr.zoo.twins import TRANSFORMER_SHARDS, twin_config

NAMES = sorted(KNOWN_BACKBONES)  # every family


@pytest.fixture(scope="module", params=NAMES, ids=[n.split("/")[1] for n in NAMES])
def twin(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("twin") / "model"
    main(["twin", request.param, str(folder)])
    return request.param, str(folder), str(folder / "adapter")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """30 frames (not 1 + 4k) at odd sizes: a lossless 13x11 mkv at 25 fps and an h264 14x10 mp4 at 24 fps."""
    root = tmp_path_factory.mktemp("videos")
    frames = pan(30, 16, seed=3)
    (root / "odd.mkv").write_bytes(encode_video(np.ascontiguousarray(frames[:, :11, :13])))
    (root / "h264.mp4").write_bytes(encode_video(np.ascontiguousarray(frames[:, :10, :14]), codec="libx264", fps=24))
    return root


def test_twin_has_the_structure_of_the_real_backbone(twin):
    name, folder, _ = twin
    cls = KNOWN_BACKBONES[name]
    real = cls(name, empty_weights=True)
    tiny = cls(folder)
    for field in ("vae_stride", "patch_size", "latent_channels", "frame_step", "spatial_multiple", "family"):
        assert getattr(tiny, field) == getattr(real, field), field
    assert type(tiny.blocks[0]) is type(real.blocks[0])
    assert tiny.prompt_embeds.shape[1] == cls.spec.prompt_shape(real.transformer.config)[0] or cls.spec.name == "wan"
    for key in ("is_residual", "patch_size", "scaling_factor", "temporal_compression_ratio"):
        assert tiny.vae.config.get(key) == real.vae.config.get(key), key
    # the causal layout: 1 + 2 x frame_step frames -> 1 + 2 x frame_step / temporal stride latent frames
    frames = 1 + 2 * real.frame_step
    latents = tiny.encode(torch.zeros(1, 3, frames, tiny.spatial_multiple, tiny.spatial_multiple))
    assert latents.shape[1:3] == (real.latent_channels, 1 + 2 * real.frame_step // real.vae_stride[0])
    assert tiny.decode(latents).shape[2] == frames
    index = json.loads(open(os.path.join(folder, "model_index.json")).read())
    assert index["transformer"] == ["diffusers", cls.spec.transformer_class.__name__]
    sharded = os.path.isfile(os.path.join(folder, "transformer", "diffusion_pytorch_model.safetensors.index.json"))
    assert sharded == (TRANSFORMER_SHARDS[name] > 1)
    assert sum(p.numel() for p in tiny.transformer.parameters()) < 1e6


def _model_and_latents(twin, seed):
    """The twin with its adapter, and two random latents of its shape."""
    name, folder, adapter_path = twin
    backbone = KNOWN_BACKBONES[name](folder)
    cond = torch.randn(1, backbone.latent_channels, 2, 4, 4, generator=torch.Generator().manual_seed(seed))
    noise = start_noise(tuple(cond.shape[1:]), 0, ["0"])  # the pipeline's draw for key "0", seed 0
    return backbone, LiteVSRPipeline.from_pretrained(adapter_path, backbone=backbone), cond, noise


def test_twin_adapter_acts_and_tells_condition_from_state(twin):
    backbone, model, cond, x = _model_and_latents(twin, seed=0)
    sigma = torch.tensor([0.7])
    v = model.velocity_field.velocity(x, sigma, cond, x)
    assert (v - backbone(x, sigma)).abs().mean() > 1e-3
    assert (
        v - model.velocity_field.velocity(x, sigma, x, cond)
    ).abs().mean() > 1e-4  # swapped streams give another answer


def test_twin_is_refused_for_unknown_names_and_used_folders(tmp_path, capsys):
    with pytest.raises(LiteVSRError, match="no twin for 'Wan-AI/Wan9'"):
        twin_config("Wan-AI/Wan9")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit):
        main(["twin", NAMES[0], str(tmp_path / "full")])
    assert "is not empty" in capsys.readouterr().err
    assert os.listdir(tmp_path / "full") == ["mine.txt"]


def _fit_config(tmp_path, folder, shard_dirs, multiple, frames, backbone_class):
    train, val = shard_dirs
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 2,
            "val_check_interval": 2,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "twin"},
            },
        },
        "model": {
            "backbone": {"class_path": f"litevsr.backbones.{backbone_class}", "init_args": {"pretrained": folder}},
            "adapter": {"class_path": "litevsr.adapters.StateAwareAdapter"},
        },
        "data": {
            "class_path": "litevsr.data.datamodule.VideoShardDataModule",
            "init_args": {
                "train_shards": train,
                "val_shards": val,
                "clip_frames": frames,
                "crop_size": multiple,
                "batch_size": 1,
                "samples_per_epoch": 100,
            },
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_fit_runs_from_shards_and_validates(twin, shard_dirs, tmp_path):
    name, folder, _ = twin
    cls = KNOWN_BACKBONES[name]
    backbone = cls(folder)  # 16 or 32 pixels and 5 or 9 frames: the test shards are 9x32x32
    main(
        [
            "fit",
            "--config",
            _fit_config(tmp_path, folder, shard_dirs, backbone.spatial_multiple, 1 + backbone.frame_step, cls.__name__),
        ]
    )
    run = tmp_path / "runs" / "twin" / "version_0"
    scalars = set(EventAccumulator(str(run)).Reload().Tags()["scalars"])
    assert {"train/loss", "val/psnr_y", "val/psnr_y_bicubic", "val/psnr_y_no_adapter"} <= scalars
    exported = read_adapter_config(str(run / "adapter"))
    assert (exported["backbone"], exported["family"]) == (folder, cls.spec.name)


@pytest.mark.parametrize("video,fps,size", [("odd.mkv", 25, (13, 11)), ("h264.mp4", 24, (14, 10))])
def test_upscale_with_default_options_is_exact(twin, videos, tmp_path, video, fps, size):
    _, _, adapter = twin
    out = tmp_path / "out.mp4"
    main(["upscale", str(videos / video), str(out), "--adapter", adapter])
    info = video_info(str(out))
    assert (info["width"], info["height"], info["frames"]) == (4 * size[0], 4 * size[1], 30)
    assert info["fps"] == pytest.approx(fps)
    assert read_video(str(out)).shape == (30, 4 * size[1], 4 * size[0], 3)


def test_litevsr_test_and_predict_run(twin, videos, tmp_path, capsys):
    name, folder, adapter = twin
    lq = videos / "odd.mkv"
    gt = tmp_path / "gt" / "odd.mkv"
    gt.parent.mkdir()
    gt.write_bytes(encode_video(np.repeat(np.repeat(read_video(str(lq)), 4, axis=1), 4, axis=2)))
    main(
        [
            "evaluate",
            str(gt.parent),
            str(videos),
            "--adapter",
            adapter,
            "--out",
            str(tmp_path / "eval"),
            "--max_frames",
            "9",
        ]
    )
    rows = (tmp_path / "eval" / "per_clip.csv").read_text().splitlines()
    assert rows[1].startswith("odd,bicubic,9,") and rows[2].startswith("odd,adapter,9,")

    main(
        [
            "predict",
            "--config",
            "recipes/upscale.yaml",
            "--model.backbone.class_path",
            f"litevsr.backbones.{KNOWN_BACKBONES[name].__name__}",
            "--model.backbone.init_args.pretrained",
            folder,
            "--model.init_adapter",
            adapter,
            "--data.inputs",
            f"[{lq}]",
            "--data.output_dir",
            str(tmp_path / "pred"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    main(["upscale", str(lq), str(tmp_path / "direct.mp4"), "--adapter", adapter])
    predicted = read_video(str(tmp_path / "pred" / "odd.mp4"))
    assert predicted.shape == (30, 44, 52, 3)
    assert np.array_equal(predicted, read_video(str(tmp_path / "direct.mp4")))


def test_one_step_sampling_feeds_condition_and_state_to_their_streams(twin):
    """Sampling must equal the one-step formula with the LQ latent in the structural stream and x in the other."""
    backbone, pipe, cond, noise = _model_and_latents(twin, seed=1)
    sampled = pipe.sample_latents(cond, Sampling(steps=1, sigma_start=0.5, tile=0), ["0"])
    x = flow.start_latents(cond, noise, 0.5)
    sigma = torch.tensor([0.5])
    expected = x - 0.5 * backbone(x, sigma, pipe.adapter(cond, x, sigma))
    swapped = x - 0.5 * backbone(x, sigma, pipe.adapter(x, cond, sigma))
    torch.testing.assert_close(sampled, expected, atol=1e-5, rtol=0)
    assert (sampled - swapped).abs().max() > 1e-4


def test_a_noise_free_start_is_deterministic_and_starts_from_the_scaled_condition(twin):
    """start_noise = 0: one step from (1 - sigma) * cond, whatever the noise (no per-frame noise to flicker)."""
    backbone, pipe, cond, _ = _model_and_latents(twin, seed=1)
    sampling = Sampling(steps=1, sigma_start=0.25, start_noise=0.0, tile=0)
    sampled = pipe.sample_latents(cond, sampling, ["0"])
    other = pipe.sample_latents(cond, sampling, ["another key"])
    x, sigma = 0.75 * cond, torch.tensor([0.25])
    expected = x - 0.25 * backbone(x, sigma, pipe.adapter(cond, x, sigma))
    torch.testing.assert_close(sampled, expected, atol=1e-5, rtol=0)
    assert torch.equal(sampled, other)


def test_a_structure_stem_grows_onto_the_twin_adapter_on_the_causal_latent_layout(twin):
    """The stem works on each real family's latents (1 + 2k latent frames from a causal 1 + 4k or 1 + 8k clip): it
    starts as the identity of the adapter it grows onto, and once trained it changes the one-step output."""
    from litevsr.adapters import StateAwareAdapter
    from litevsr.adapters.base import load_adapter_weights

    name, folder, adapter_path = twin
    backbone = KNOWN_BACKBONES[name](folder)
    adapter = load_adapter(adapter_path, backbone)
    grown = StateAwareAdapter.from_config({**adapter.config, "structure_stem": 4})
    load_adapter_weights(grown, adapter_path, grow=True)
    frames, size = 1 + 2 * backbone.frame_step, backbone.spatial_multiple
    clip = torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        cond = backbone.encode(clip)
        assert cond.shape[2] == 1 + 2 * backbone.frame_step // backbone.vae_stride[0]
        sampling = Sampling(steps=1, sigma_start=0.1, start_noise=0.0, tile=0)

        def sample(adapter):
            return LiteVSRPipeline(backbone, adapter, make_scheduler()).sample_latents(cond, sampling, ["0"])

        before = sample(adapter)
        assert torch.equal(sample(grown), before)
        torch.nn.init.normal_(grown.stem.out.weight, std=0.5)
        after = sample(grown)
    assert after.shape == before.shape and (after - before).abs().max() > 1e-4
