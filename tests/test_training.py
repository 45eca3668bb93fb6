"""End to end through the CLI, as a user runs it: fit, checkpoint, resume, export, errors."""

import glob
import os
from functools import partial

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, load_adapter
from litevsr.adapters.base import read_adapter_config
from litevsr.backbones import WanBackbone
from litevsr.cli import main
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.pipeline import LiteVSRPipeline


def write_config(tmp_path, backbone_dir, shard_dirs, **data):
    train, val = shard_dirs
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 3,
            "val_check_interval": 3,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "t"},
            },
        },
        "model": {
            "backbone": {"class_path": "litevsr.backbones.WanBackbone", "init_args": {"pretrained": backbone_dir}},
            "adapter": {
                "class_path": "litevsr.adapters.StateAwareAdapter",
                "init_args": {"width": 32, "time_dim": 32, "inject_every": 2, "output_init_std": 0.05},
            },
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
        },
        "data": {
            "class_path": "litevsr.data.datamodule.VideoShardDataModule",
            "init_args": {
                "train_shards": train,
                "val_shards": val,
                "clip_frames": 5,
                "crop_size": 16,
                "batch_size": 2,
                "samples_per_epoch": 1000,
                **data,
            },
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, backbone_dir, shard_dirs):
    tmp = tmp_path_factory.mktemp("fit")
    config = write_config(tmp, backbone_dir, shard_dirs)
    main(["fit", "--config", config])
    return tmp, config


def test_fit_logs_to_tensorboard_and_exports(fitted):
    tmp, _ = fitted
    run = tmp / "runs" / "t" / "version_0"
    assert (run / "adapter" / "config.json").is_file() and (run / "config.yaml").is_file()
    events = EventAccumulator(str(run)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "val/psnr_y",
        "val/ssim_y",
        "val/psnr_y_bicubic",
        "val/ssim_y_bicubic",
        "val/psnr_y_no_adapter",
        "val/psnr_y_vae",
    } <= tags
    assert {"val/lq_bicubic_sr_gt", "train/degraded_lq_hq"} <= set(events.Tags()["images"])
    assert (run / "val_samples.png").is_file()
    sampling = read_adapter_config(str(run / "adapter"))["sampling"]
    assert set(sampling) == {"steps", "sigma_start", "shift", "color_fix", "start_noise"}


def test_checkpoint_holds_only_the_adapter(fitted):
    tmp, _ = fitted
    ckpt = torch.load(tmp / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)
    keys = ckpt["state_dict"].keys()
    assert keys and all(k.startswith("model.adapter.") for k in keys)
    assert ckpt["global_step"] == 3 and ckpt["optimizer_states"]


def test_resume_from_last_continues_at_the_right_step(fitted):
    tmp, config = fitted
    before = torch.load(tmp / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)["global_step"]
    main(["fit", "--config", config, "--ckpt_path", "last", "--trainer.max_steps", "5"])
    assert not (tmp / "runs/t/version_1").exists()  # same run folder
    ckpt = torch.load(tmp / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)
    assert before == 3 and ckpt["global_step"] == 5
    steps = [e.step for e in EventAccumulator(str(tmp / "runs/t/version_0")).Reload().Scalars("train/loss")]
    assert max(steps) >= 3 and len(steps) == len(set(steps))  # no step logged twice


def test_every_validation_leaves_a_resumable_checkpoint(tmp_path, backbone_dir, shard_dirs):
    """A crash after a mid-run validation can resume from last.ckpt (Lightning saves `last` only with a top-k save)."""
    import lightning as L

    from litevsr.cli import TRAINER_DEFAULTS, LiteVSRCLI
    from litevsr.module import LiteVSRModule

    seen = {}

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:  # after the validation at step 2, before the end of training
                last = glob.glob(str(tmp_path / "runs/t/version_0/checkpoints/last.ckpt"))
                seen["step"] = torch.load(last[0], weights_only=True)["global_step"] if last else None

    config = write_config(tmp_path, backbone_dir, shard_dirs)
    cli = LiteVSRCLI(
        LiteVSRModule,
        VideoShardDataModule,
        subclass_mode_data=True,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        args=["--config", config, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2"],
    )
    cli.trainer.callbacks.append(Probe())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert seen == {"step": 2}


def _module_from(ckpt, backbone_dir):
    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    module = LiteVSRModule(WanBackbone(backbone_dir), partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2))
    module.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"], strict=False)
    return module


def test_validate_from_a_checkpoint_scores_its_weights(fitted, backbone_dir, shard_dirs):
    tmp, config = fitted
    ckpt = str(tmp / "runs/t/version_0/checkpoints/last.ckpt")
    main(["validate", "--config", config, "--ckpt_path", ckpt, "--model.val_references", "false"])
    run = sorted(glob.glob(str(tmp / "runs/t/version_*")), key=os.path.getmtime)[-1]
    events = EventAccumulator(run).Reload()
    assert "val/psnr_y_no_adapter" not in events.Tags()["scalars"]  # options given next to a checkpoint apply
    logged = events.Scalars("val/psnr_y")[-1].value
    data = VideoShardDataModule(shard_dirs[0], shard_dirs[1], clip_frames=5, crop_size=16, batch_size=2)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    sr = _module_from(ckpt, backbone_dir).validation_step(batch, 0)
    from litevsr.metrics import frame_metrics

    assert logged == pytest.approx(frame_metrics(sr, batch["hq"], crop_border=4)["psnr_y"].mean().item(), abs=1e-4)


def test_lightning_test_scores_the_test_shards_as_validation_scores_its_own(fitted, shard_dirs):
    """`litevsr test` is LightningCLI's test: the module's test_step on the datamodule's test shards."""
    tmp, config = fitted
    ckpt = str(tmp / "runs/t/version_0/checkpoints/last.ckpt")
    main(["validate", "--config", config, "--ckpt_path", ckpt])
    main(["test", "--config", config, "--ckpt_path", ckpt, "--data.init_args.test_shards", shard_dirs[1]])
    runs = sorted(glob.glob(str(tmp / "runs/t/version_*")), key=os.path.getmtime)
    val, test = (EventAccumulator(run).Reload() for run in runs[-2:])
    assert {"test/psnr_y", "test/ssim_y", "test/psnr_y_bicubic"} <= set(test.Tags()["scalars"])
    assert test.Scalars("test/psnr_y")[-1].value == pytest.approx(val.Scalars("val/psnr_y")[-1].value, abs=1e-5)


def test_predict_from_a_checkpoint_upscales_with_its_weights(fitted, tmp_path):
    from conftest import random_clips

    from litevsr.data.video import encode_video

    tmp, config = fitted
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 5, 8, seed=9))[1]))
    ckpt = str(tmp / "runs/t/version_0/checkpoints/last.ckpt")
    files = ["--data", "litevsr.data.datamodule.VideoFiles", "--data.inputs", f"[{src}]", "--data.output_format", "png"]
    main(["predict", "--config", config, "--ckpt_path", ckpt, *files, "--data.output_dir", str(tmp_path / "trained")])
    main(["predict", "--config", config, *files, "--data.output_dir", str(tmp_path / "untrained")])
    exported = str(tmp / "runs/t/version_0/adapter")  # written with the checkpoint's weights
    main(["upscale", str(src), str(tmp_path / "direct"), "--adapter", exported])
    trained = read_frames(tmp_path / "trained" / "in")
    assert trained.shape == (5, 32, 32, 3)
    assert np.array_equal(trained, read_frames(tmp_path / "direct"))
    assert not np.array_equal(trained, read_frames(tmp_path / "untrained" / "in"))


def read_frames(folder):
    from PIL import Image

    return np.stack([np.array(Image.open(f)) for f in sorted(glob.glob(str(folder / "*.png")))])


def test_exported_adapter_reproduces_validation_outputs(fitted, backbone_dir, shard_dirs):
    tmp, config = fitted
    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    ckpt = torch.load(tmp / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)
    module = LiteVSRModule(WanBackbone(backbone_dir), partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2))
    module.load_state_dict(ckpt["state_dict"], strict=False)
    data = VideoShardDataModule(shard_dirs[0], shard_dirs[1], clip_frames=5, crop_size=16, batch_size=2)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    expected = module.validation_step(batch, 0)

    backbone = WanBackbone(backbone_dir)  # a fresh backbone: the file alone must suffice
    exported = sorted(glob.glob(str(tmp / "runs/t/version_*/adapter")), key=os.path.getmtime)[-1]
    pipe = LiteVSRPipeline.from_pretrained(exported, backbone=backbone)
    scale = batch["hq"].shape[-1] // batch["lq"].shape[-1]
    assert torch.equal(pipe.super_resolve(batch["lq"], scale, keys=batch["key"]), expected)


def run_error(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    return err[-1]


def test_bad_inputs_are_one_line_errors(tmp_path, backbone_dir, shard_dirs, capsys):
    config = write_config(tmp_path, backbone_dir, shard_dirs)
    line = run_error(capsys, ["fit", "--config", config, "--data.init_args.crop_sise", "16"])
    assert line.startswith("litevsr: error: unknown option") and "crop_sise" in line
    line = run_error(
        capsys, ["fit", "--config", config, "--model.backbone.init_args.pretrained", str(tmp_path / "missing")]
    )
    assert line == f"litevsr: error: backbone path not found: {tmp_path / 'missing'}"
    (tmp_path / "empty").mkdir()
    line = run_error(capsys, ["fit", "--config", config, "--data.init_args.train_shards", str(tmp_path / "empty")])
    assert line == f"litevsr: error: no .tar shards found at {str(tmp_path / 'empty')!r}"
    line = run_error(capsys, ["fit", "--config", config, "--data.init_args.clip_frames", "13"])
    assert line.startswith("litevsr: error: shards in") and "shorter or smaller than the crop 13x16x16" in line


def test_print_config_documents_options(capsys, tmp_path, backbone_dir, shard_dirs):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--model.sigma_shift" in out and "Time shift applied to training sigmas" in out
    assert "--model.gradient_checkpointing" in out


def test_bf16_mixed_with_gradient_checkpointing_trains_on_cpu(tmp_path, backbone_dir, shard_dirs):
    config = write_config(tmp_path, backbone_dir, shard_dirs)
    main(
        [
            "fit",
            "--config",
            config,
            "--trainer.precision",
            "bf16-mixed",
            "--model.gradient_checkpointing",
            "true",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "0",
        ]
    )
    ckpt = torch.load(tmp_path / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    losses = EventAccumulator(str(tmp_path / "runs/t/version_0")).Reload().Scalars("train/loss")
    assert all(torch.isfinite(torch.tensor(e.value)) for e in losses)


def test_checkpoints_load_strictly_and_as_weights_only(fitted, tmp_path, capsys, backbone_dir):
    tmp, config = fitted
    ckpt = torch.load(tmp / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)
    module = _module_from(str(tmp / "runs/t/version_0/checkpoints/last.ckpt"), backbone_dir)
    for broken, message in (
        ({}, "misses"),
        ({**ckpt["state_dict"], "model.adapter.extra": torch.zeros(1)}, "unexpected"),
    ):
        with pytest.raises(LiteVSRError, match=f"the checkpoint does not fit this method: it .*{message}"):
            module.on_load_checkpoint({"state_dict": broken})

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    crafted = tmp_path / "crafted.ckpt"
    torch.save({**ckpt, "payload": Payload()}, crafted)
    line = run_error(capsys, ["validate", "--config", config, "--ckpt_path", str(crafted)])
    assert line.startswith("litevsr: error: refused to load a checkpoint that holds Python objects")
    assert not marker.exists()


def test_a_backbone_parameter_that_trains_is_an_error(backbone_dir):
    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    module = LiteVSRModule(WanBackbone(backbone_dir), partial(StateAwareAdapter, width=32, time_dim=32))
    next(module.backbone.parameters()).requires_grad_(True)
    with pytest.raises(LiteVSRError, match="break the frozen guarantee"):
        module.configure_optimizers()


def _cached_config(tmp_path, twin_dir, train, val):
    config = yaml.safe_load(open(write_config(tmp_path, twin_dir, (train, val), use_cached_latents=True)))
    config["model"]["adapter"] = {"class_path": "litevsr.adapters.StateAwareAdapter"}
    config["trainer"]["max_steps"] = 2
    config["trainer"]["val_check_interval"] = 2
    (tmp_path / "cached.yaml").write_text(yaml.safe_dump(config))
    return str(tmp_path / "cached.yaml")


def test_cached_latents_train_without_the_vae(cached_shards, causal_twin, shard_dirs, monkeypatch):
    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    data = VideoShardDataModule(
        cached_shards, shard_dirs[1], clip_frames=5, crop_size=16, batch_size=2, use_cached_latents=True
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert {"hq_latents", "cond_latents", "vae_fingerprint", "key"} <= set(batch) and "hq" not in batch
    assert batch["hq_latents"].shape == (2, 16, 2, 4, 4) == batch["cond_latents"].shape
    backbone = WanBackbone(causal_twin["backbone"])
    module = LiteVSRModule(backbone, partial(StateAwareAdapter, output_init_std=0.05))
    module.log = lambda *args, **kwargs: None

    def no_vae(*args, **kwargs):
        raise AssertionError("a training step on cached latents ran the VAE")

    monkeypatch.setattr(backbone.vae, "encode", no_vae)
    monkeypatch.setattr(backbone.vae, "decode", no_vae)
    loss = module.training_step(batch, 1)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in module.adapter.parameters())


def test_fit_on_cached_latents_and_a_stale_cache_is_one_line(cached_shards, causal_twin, shard_dirs, tmp_path, capsys):
    from litevsr.zoo.twins import write_twin

    config = _cached_config(tmp_path, causal_twin["backbone"], cached_shards, shard_dirs[1])
    main(["fit", "--config", config])
    run = tmp_path / "runs" / "t" / "version_0"
    assert {"train/loss", "val/psnr_y"} <= set(EventAccumulator(str(run)).Reload().Tags()["scalars"])

    retrained = write_twin("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", str(tmp_path / "retrained"), seed=1)["backbone"]
    line = run_error(capsys, ["fit", "--config", config, "--model.backbone.init_args.pretrained", retrained])
    assert line.startswith("litevsr: error: the cached latents were encoded by another VAE")


def test_validation_applies_the_recipes_colour_fix(causal_twin, shard_dirs):
    """model.sampling.color_fix corrects validation outputs towards the bicubic upsampling of the LQ clip."""
    from litevsr.adapters import load_adapter
    from litevsr.color import color_fix
    from litevsr.frames import resize_video
    from litevsr.module import LiteVSRModule
    from litevsr.pipeline import Sampling

    data = VideoShardDataModule(shard_dirs[0], shard_dirs[1], clip_frames=5, crop_size=16, batch_size=2)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    outputs = {}
    for fix in ("none", "wavelet"):
        backbone = WanBackbone(causal_twin["backbone"])
        module = LiteVSRModule(
            backbone,
            load_adapter(causal_twin["adapter"], backbone),
            sampling=Sampling(color_fix=fix),
            val_references=False,
        )
        module.log = lambda *args, **kwargs: None
        outputs[fix] = module.validation_step(batch, 0)
    bicubic = resize_video(batch["lq"], batch["hq"].shape[-2:]).clamp(-1, 1)
    torch.testing.assert_close(outputs["wavelet"], color_fix(outputs["none"], bicubic, "wavelet"))
    assert not torch.equal(outputs["wavelet"], outputs["none"])


@pytest.mark.parametrize("structure", ["stride 1", "Wan2.1 causal 4x temporal"])
def test_validation_samples_on_the_tiles_litevsr_upscale_picks(structure, backbone, causal_twin, caplog):
    """Validation's SR is the default path's: sampled on the automatic tiles `litevsr upscale` picks for clips of
    its size (just above the 24-token floor, so tiled), and it says so; on the test backbone (8 px tokens, one
    frame) and on the Wan2.1 twin (16 px tokens, 5 frames through its causal 1 + 4k VAE)."""
    import logging

    from litevsr.module import LiteVSRModule
    from litevsr.pipeline import MIN_TILE_TOKENS, Sampling, resolve_tiles

    torch.manual_seed(0)
    if structure == "stride 1":
        adapter, frames = partial(StateAwareAdapter, width=32, time_dim=32, inject_every=2, output_init_std=0.05), 1
    else:
        backbone, frames = WanBackbone(causal_twin["backbone"]), 5
        adapter = load_adapter(causal_twin["adapter"], backbone)
    unit = backbone.spatial_multiple
    size = (MIN_TILE_TOKENS + 1) * unit
    module = LiteVSRModule(backbone, adapter, sampling=Sampling(sigma_start=0.5), val_references=False)
    module.log = lambda *args, **kwargs: None
    hq = torch.rand(1, 3, frames, size, size) * 2 - 1
    lq = torch.nn.functional.avg_pool3d(hq, (1, 4, 4))
    sampling = resolve_tiles(module.sampling, backbone, (size, size), frames)
    assert sampling.tile == MIN_TILE_TOKENS * unit
    with caplog.at_level(logging.INFO):
        sr = module.validation_step({"hq": hq, "lq": lq, "key": ["a"]}, 0)
    torch.testing.assert_close(sr, module.pipeline.super_resolve(lq, 4, sampling, ["a"]), atol=1e-5, rtol=0)
    tiles = f"{sampling.tile} px tiles overlapping by {sampling.tile_overlap} px"
    assert f"validation samples {size}x{size} clips on the default path's tiles: {tiles}" in caplog.text


def test_vae_scale_loss_weights_each_channel_by_its_unnormalised_variance(
    cached_shards, causal_twin, shard_dirs, monkeypatch
):
    from litevsr.adapters import StateAwareAdapter
    from litevsr.module import LiteVSRModule

    data = VideoShardDataModule(
        cached_shards, shard_dirs[1], clip_frames=5, crop_size=16, batch_size=2, use_cached_latents=True
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    backbone = WanBackbone(causal_twin["backbone"])

    def channel0_only(x0, eps):  # the velocity target: ones on latent channel 0, zeros elsewhere
        target = torch.zeros_like(x0)
        target[:, 0] = 1
        return target

    monkeypatch.setattr("litevsr.module.flow.velocity_target", channel0_only)
    losses = {}
    for weighting in ("uniform", "vae_scale"):
        module = LiteVSRModule(backbone, StateAwareAdapter, loss_weighting=weighting)
        module.log = lambda *args, **kwargs: None
        monkeypatch.setattr(module.model, "velocity", lambda x, *args: torch.zeros_like(x))
        losses[weighting] = float(module.training_step(batch, 1))
    variance = backbone.latents_std.flatten() ** 2
    channels = variance.numel()
    assert losses["uniform"] == pytest.approx(1 / channels)
    assert losses["vae_scale"] == pytest.approx(float(variance[0] / variance.mean()) / channels)
    with pytest.raises(LiteVSRError, match="loss_weighting must be one of"):
        LiteVSRModule(backbone, StateAwareAdapter, loss_weighting="pixel")


def test_the_same_recipe_and_seed_give_the_same_adapter(tmp_path, backbone_dir, shard_dirs):
    """Two fits with 2 loader workers end bitwise equal: webdataset's shard draws and shuffle buffer would otherwise
    seed themselves from the pid and the clock."""
    from safetensors.torch import load_file

    adapters = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        config = write_config(tmp_path / run, backbone_dir, shard_dirs, num_workers=2)
        main(["fit", "--config", config, "--trainer.max_steps", "6", "--trainer.val_check_interval", "6"])
        adapters.append(
            load_file(
                str(tmp_path / run / "runs" / "t" / "version_0" / "adapter" / "diffusion_pytorch_model.safetensors")
            )
        )
    assert adapters[0].keys() == adapters[1].keys()
    assert all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])


KILLER = '''
import os, signal
import lightning as L


class KillAt(L.Callback):
    """SIGKILL this process when training reaches `step`: nothing gets to clean up or save."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("samples_per_epoch", [1000, 8], ids=["mid-epoch", "at-an-epoch-end"])
def test_a_fit_killed_and_resumed_ends_with_the_adapter_of_an_uninterrupted_fit(
    tmp_path, backbone_dir, shard_dirs, samples_per_epoch
):
    """SIGKILL after the checkpoint at step 4, `--ckpt_path last`, and the adapter after step 8 is bitwise the one
    of a fit that ran through: the stream resumes at its position (2 loader workers), the step's noise is seeded
    by the step. With 8 samples an epoch (4 batches of 2), the checkpoint falls on the end of epoch 0."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    def adapter(run):
        return load_file(str(run / "runs/t/version_0/adapter/diffusion_pytorch_model.safetensors"))

    steps = ["--trainer.max_steps", "8", "--trainer.val_check_interval", "4"]
    (tmp_path / "whole").mkdir()
    data = {"num_workers": 2, "samples_per_epoch": samples_per_epoch}
    main(["fit", "--config", write_config(tmp_path / "whole", backbone_dir, shard_dirs, **data), *steps])

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "killer.py").write_text(KILLER)
    config = write_config(killed, backbone_dir, shard_dirs, **data)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(killed), os.environ.get("PYTHONPATH", "")])}
    kill = ["--trainer.callbacks+=killer.KillAt", "--trainer.callbacks.step", "6"]
    run = subprocess.run([sys.executable, "-m", "litevsr", "fit", "--config", config, *steps, *kill], env=env)
    assert run.returncode == -9  # killed, not finished
    assert torch.load(killed / "runs/t/version_0/checkpoints/last.ckpt", weights_only=True)["global_step"] == 4
    main(["fit", "--config", config, "--ckpt_path", "last", *steps])

    whole, resumed = adapter(tmp_path / "whole"), adapter(killed)
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
