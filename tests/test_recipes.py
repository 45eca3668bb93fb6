import pytest

from litevsr.cli import TRAINER_DEFAULTS, LiteVSRCLI
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.module import LiteVSRModule


def instantiate(recipe, *extra):
    return LiteVSRCLI(LiteVSRModule, VideoShardDataModule, subclass_mode_data=True, run=False,
                      trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True},
                      args=["--config", recipe, *extra])


def test_anime_recipe_instantiates_wan_1_3b_on_meta():
    cli = instantiate("recipes/anime.yaml", "--model.backbone.init_args.empty_weights", "true")
    module, backbone = cli.model, cli.model.backbone
    assert backbone.device.type == "meta" and backbone.hidden_dim == 1536 and backbone.num_blocks == 30
    counts = module.parameter_counts()
    assert counts["trainable"] / sum(p.numel() for p in backbone.transformer.parameters()) <= 0.1125
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
