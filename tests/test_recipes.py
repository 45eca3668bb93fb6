import pytest

from litevsr.backbones.wan import WAN
from litevsr.cli import TRAINER_DEFAULTS, LiteVSRCLI
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.module import LiteVSRModule


def instantiate(recipe, *extra):
    return LiteVSRCLI(
        LiteVSRModule,
        VideoShardDataModule,
        subclass_mode_data=True,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=["--config", recipe, *extra],
    )


def test_anime_recipe_instantiates_wan_1_3b_on_meta():
    cli = instantiate("recipes/anime.yaml", "--model.backbone.init_args.empty_weights", "true")
    module, backbone = cli.model, cli.model.backbone
    assert backbone.device.type == "meta" and backbone.hidden_dim == 1536 and backbone.num_blocks == 30
    counts = module.parameter_counts()
    assert counts["share"] <= 0.1125
    assert module.adapter.targets == list(range(0, 30, 3))
    assert backbone.transformer.gradient_checkpointing and module.adapter.gradient_checkpointing
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.datamodule.hparams.crop_size % backbone.spatial_multiple == 0
    assert backbone.valid_num_frames(cli.datamodule.hparams.clip_frames)


@pytest.mark.parametrize("recipe", ["recipes/demo.yaml"])
def test_demo_recipe_uses_the_shipped_generator(recipe):
    cli = instantiate(recipe)
    assert cli.model.backbone.name == "tiny"
    assert cli.model.parameter_counts()["trainable"] > 0
    assert cli.datamodule.hparams.build_demo_if_missing


@pytest.mark.parametrize("name", sorted(WAN.known_configs))
def test_default_adapter_stays_within_the_papers_share_at_real_size(name):
    """Trainable share = adapter / transformer parameters (VAE excluded), as in the paper's Table 1."""
    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones import WanBackbone

    backbone = WanBackbone(name, empty_weights=True)
    counts = LiteVSRModule(backbone, StateAwareAdapter).parameter_counts()
    assert counts["transformer"] == sum(p.numel() for p in backbone.transformer.parameters())
    assert 0.05 < counts["share"] <= 0.1125


def test_general_recipe_trains_a_light_adapter_that_the_demo_starts_from():
    """The default adapter stays within 20 % of the generator's transformer, sees clean and damaged LQ, and the
    demo's adapter settings match it (the demo loads the shipped one)."""
    from litevsr.data.degradations import MixedDegradation

    general, demo = instantiate("recipes/general_x4.yaml"), instantiate("recipes/demo.yaml")
    assert general.model.parameter_counts()["share"] <= 0.20
    assert isinstance(general.datamodule.degradation, MixedDegradation)
    assert demo.model.hparams.init_adapter == "general"
    assert dict(demo.model.adapter.config) == dict(general.model.adapter.config)
    assert (demo.model.sampling.start_noise, general.model.sampling.start_noise) == (0.0, 0.0)


@pytest.mark.parametrize(
    "method, cls", [("lora", "LoRAAdapter"), ("controlnet", "ControlNetAdapter"), ("full", "FullFinetuneAdapter")]
)
def test_each_method_is_one_recipe_piece(method, cls):
    """A baseline replaces the adapter of any recipe, the demo's (which starts from the shipped adapter) included."""
    for base in ("recipes/general_x4.yaml", "recipes/demo.yaml"):
        cli = instantiate(base, "--config", f"recipes/methods/{method}.yaml")
        assert type(cli.model.adapter).__name__ == cls and cli.model.hparams.init_adapter is None
        assert cli.model.parameter_counts()["trainable"] > 0


def test_the_upscale_recipe_as_shipped_predicts_with_the_default_adapter(tmp_path):
    """recipes/upscale.yaml names its warm start by a shipped name; it once named one that does not exist."""
    import numpy as np

    from litevsr.cli import main
    from litevsr.data.video import encode_video, read_video

    (tmp_path / "in.mkv").write_bytes(encode_video(np.full((5, 12, 16, 3), 128, np.uint8)))
    main(
        [
            "predict",
            "--config",
            "recipes/upscale.yaml",
            "--data.inputs",
            f"[{tmp_path / 'in.mkv'}]",
            "--data.output_dir",
            str(tmp_path / "out"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert read_video(str(tmp_path / "out" / "in.mp4")).shape == (5, 48, 64, 3)
    from litevsr.inference import upscale_file  # the same frames as `litevsr upscale`
    from litevsr.pipeline import LiteVSRPipeline

    upscale_file(LiteVSRPipeline.from_pretrained("general"), str(tmp_path / "in.mkv"), str(tmp_path / "direct.mp4"))
    assert np.array_equal(read_video(str(tmp_path / "out" / "in.mp4")), read_video(str(tmp_path / "direct.mp4")))
