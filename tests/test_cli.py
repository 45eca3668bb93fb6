"""The command line: one sampling config, renamed options, jsonargparse commands with help."""

import pytest

from litevsr.adapters.base import read_adapter_config
from litevsr.backbones.wan import SHIPPED_ADAPTERS, WanBackbone
from litevsr.cli import main
from litevsr.inference import Sampling
from litevsr.module import LiteVSRModule


@pytest.mark.parametrize(
    "old,new",
    [
        ("val_steps", "sampling.steps"),
        ("val_sigma_start", "sampling.sigma_start"),
        ("start_noise", "sampling.start_noise"),
        ("color_fix", "sampling.color_fix"),
    ],
)
def test_an_old_sampling_option_names_its_new_key(capsys, old, new):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "recipes/demo.yaml", f"--model.{old}", "1", "--print_config"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"litevsr: error: model.{old} is now model.{new} (see --help)"
    ]


def test_init_adapter_brings_its_sampler_and_given_fields_replace_only_themselves():
    recorded = Sampling.of_adapter(read_adapter_config(str(SHIPPED_ADAPTERS["general"])))
    assert (recorded.sigma_start, recorded.start_noise) == (0.1, 0.0)  # not the dataclass defaults
    backbone = WanBackbone("tiny")
    assert LiteVSRModule(backbone, init_adapter="general").sampling == recorded
    changed = LiteVSRModule(backbone, init_adapter="general", sampling=Sampling(steps=4)).sampling
    assert changed == Sampling.of_adapter(read_adapter_config(str(SHIPPED_ADAPTERS["general"])), steps=4)
    assert changed.sigma_start == 0.1
    # a given value counts even where it equals the default: the shipped adapter's noise-free start can be undone
    noised = LiteVSRModule(backbone, init_adapter="general", sampling=Sampling(start_noise=1.0, sigma_start=1.0))
    assert (noised.sampling.start_noise, noised.sampling.sigma_start, noised.sampling.steps) == (1.0, 1.0, 1)


def test_upscale_takes_given_sampler_fields_even_at_their_defaults(monkeypatch):
    """`litevsr upscale ... --sampling.start_noise 1.0` on the shipped adapter (which records 0) samples with 1."""
    import litevsr.inference

    seen = {}
    monkeypatch.setattr(
        litevsr.inference,
        "upscale_file",
        lambda model, src, dst, **kw: (
            seen.update(kw) or {"output": dst, "frames": 0, "width": 0, "height": 0, "fps": 0}
        ),
    )
    main(["upscale", "in.mp4", "out.mp4", "--sampling.start_noise", "1.0", "--sampling.seed", "0"])
    assert (seen["sampling"].start_noise, seen["sampling"].sigma_start) == (1.0, 0.1)


def test_a_module_without_adapter_file_samples_with_the_given_sampler(backbone):
    from litevsr.adapters import StateAwareAdapter

    module = LiteVSRModule(backbone, StateAwareAdapter(width=16), sampling=Sampling(steps=3, shift=2.0))
    assert module.sampling == Sampling(steps=3, shift=2.0)
    assert module.hparams["sampling"]["steps"] == 3  # plain values in the checkpoint's hyperparameters


@pytest.mark.parametrize("command", ["upscale", "evaluate", "twin", "convert-adapter"])
def test_every_command_has_help_from_its_docstring(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"usage: litevsr {command}" in out
    assert "(required, type: str)" in out  # each positional argument is described
    if command in ("upscale", "evaluate"):  # the options both share, declared once (litevsr.cli._runs)
        assert all(f"--{name} " in out for name in ("adapter", "backbone", "scale", "window", "overlap", "device"))
        assert "--sampling.help" in out


def test_a_bad_command_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", "in.mp4", "out.mp4", "--sampling.stepz", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["litevsr: error: unknown option 'stepz' (see --help)"]


def test_embed_prompt_writes_the_embedding_a_backbone_reads(tmp_path, capsys):
    """`litevsr embed-prompt` on a tiny UMT5 encoder and tokenizer built here: tokens past the prompt are zero."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "sharp", "video"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(tmp_path / "ckpt" / "tokenizer")
    UMT5EncoderModel(
        UMT5Config(vocab_size=len(words), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).save_pretrained(tmp_path / "ckpt" / "text_encoder")
    out = tmp_path / "prompt_embeds.safetensors"
    main(["embed-prompt", str(tmp_path / "ckpt"), str(out), "--prompt", "a sharp video", "--max_length", "8"])
    embeds = load_file(str(out))["prompt_embeds"]
    assert embeds.shape == (1, 8, 16)
    assert embeds[0, :3].abs().sum(-1).min() > 0 and embeds[0, 3:].abs().max() == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")


@pytest.mark.parametrize(
    "degradation,message",
    [
        (
            "{class_path: litevsr.data.pipeline.RealWorldDegradation}",
            "class_path litevsr.data.pipeline.RealWorldDegradation is now "
            "litevsr.data.degradations.RealWorldDegradation",
        ),
        (
            "{class_path: litevsr.data.files.VideoFiles}",
            "class_path litevsr.data.files.VideoFiles is now litevsr.data.datamodule.VideoFiles",
        ),
        (
            "{class_path: litevsr.data.degradations.RealWorldDegradation, init_args: {preset: anime}}",
            "RealWorldDegradation's init_args.preset is now init_args.options (a preset name or the options)",
        ),
    ],
)
def test_an_old_degradation_recipe_names_the_new_form(tmp_path, capsys, degradation, message):
    old = tmp_path / "old.yaml"
    old.write_text(
        "data:\n  class_path: litevsr.data.datamodule.VideoShardDataModule\n  init_args:\n"
        f"    degradation:\n      {degradation}\n"
    )
    with pytest.raises(SystemExit):
        main(["fit", "--config", "recipes/demo.yaml", "--config", str(old), "--print_config"])
    assert capsys.readouterr().err.strip().splitlines() == [f"litevsr: error: {message} (see --help)"]


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "data:\n  class_path: litevsr.data.nowhere.Shards\n",
            "class_path litevsr.data.nowhere.Shards: module 'litevsr.data' has no attribute 'nowhere'",
        ),
        (
            "data:\n  init_args:\n    batch_size: many\n",
            "litevsr.data.datamodule.VideoShardDataModule: batch_size: Expected a <class 'int'>. Got value: many",
        ),
        ("data:\n  init_args:\n    bogus: 3\n", "unknown option 'bogus'"),
    ],
)
def test_a_bad_recipe_value_is_one_line_naming_the_class_and_key(tmp_path, capsys, override, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(override)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "recipes/demo.yaml", "--config", str(bad), "--print_config"])
    assert capsys.readouterr().err.strip().splitlines() == [f"litevsr: error: {message} (see --help)"]
