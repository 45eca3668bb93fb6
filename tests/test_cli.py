"""The command line: one sampling config, jsonargparse commands with help, one-line config errors."""

import dataclasses
import glob
import json
import re
from functools import partial

import pytest
import yaml

from litevsr.backbones.wan import WanBackbone
from litevsr.cli import main
from litevsr.module import LiteVSRModule
from litevsr.pipeline import Sampling, recorded_sampling
from litevsr.zoo import SHIPPED_ADAPTERS


def test_init_adapter_brings_its_sampler_and_given_fields_replace_only_themselves():
    recorded = Sampling.of(recorded_sampling(str(SHIPPED_ADAPTERS["general"])))
    assert (recorded.sigma_start, recorded.start_noise) == (0.1, 0.0)  # not the dataclass defaults
    backbone = WanBackbone("tiny")
    assert LiteVSRModule(backbone, init_adapter="general").sampling == recorded
    changed = LiteVSRModule(backbone, init_adapter="general", sampling=Sampling(steps=4)).sampling
    assert changed == Sampling.of(recorded_sampling(str(SHIPPED_ADAPTERS["general"])), steps=4)
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

    module = LiteVSRModule(backbone, partial(StateAwareAdapter, width=16), sampling=Sampling(steps=3, shift=2.0))
    assert module.sampling == Sampling(steps=3, shift=2.0)
    assert module.hparams["sampling"]["steps"] == 3  # plain values in the checkpoint's hyperparameters


@pytest.mark.parametrize("command", ["upscale", "evaluate", "twin"])
def test_every_command_has_help_from_its_docstring(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"usage: litevsr {command}" in out
    assert "(required, type: str)" in out  # each positional argument is described
    if command in ("upscale", "evaluate"):  # the options both share, declared once (litevsr.cli._runs)
        assert all(f"--{name} " in out for name in ("adapter", "backbone", "scale", "window", "overlap", "device"))
        assert "--sampling.help" in out


def one_line_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("litevsr: error: ") and lines[0].endswith(" (see --help)")
    return lines[0].removeprefix("litevsr: error: ").removesuffix(" (see --help)")


SAMPLING = f"{Sampling.__module__}.Sampling"
SAMPLING_FIELDS = ", ".join(f.name for f in dataclasses.fields(Sampling) if f.init)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sampling.stepz", "2"], f"unknown option 'stepz' of {SAMPLING} (accepted: {SAMPLING_FIELDS})"),
        (["--max_framez", "2"], "unknown option 'max_framez' of litevsr upscale (accepted: input, output, max_frames"),
        (["--crf", "best"], "litevsr upscale: crf: expected int, got 'best'"),
        (["--sampling.shift", "high"], f"{SAMPLING}: shift: expected float or None, got 'high'"),
    ],
)
def test_a_bad_command_option_is_one_line_naming_it(capsys, args, message):
    assert one_line_error(capsys, ["upscale", "in.mp4", "out.mp4", *args]).startswith(message)


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


DATA = "litevsr.data.datamodule.VideoShardDataModule"
ADAPTER = "litevsr.adapters.StateAwareAdapter"


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "data:\n  class_path: litevsr.data.nowhere.Shards\n",
            "class_path litevsr.data.nowhere.Shards: cannot import it (No module named 'litevsr.data.nowhere')",
        ),
        (
            "data:\n  init_args:\n    degradation: {class_path: litevsr.data.degradations.Blur}\n",
            "class_path litevsr.data.degradations.Blur: cannot import it "
            "(module 'litevsr.data.degradations' has no attribute 'Blur')",
        ),
        ("data:\n  init_args:\n    batch_size: many\n", f"{DATA}: batch_size: expected int, got 'many'"),
        ("data:\n  init_args:\n    bogus: 3\n", f"unknown option 'bogus' of {DATA} (accepted: *train_shards, "),
        ("model:\n  adapter:\n    init_args: {widht: 8}\n", f"unknown option 'widht' of {ADAPTER} (accepted: *width, "),
        ("model:\n  sampling: {stepz: 2}\n", f"unknown option 'stepz' of {SAMPLING} (accepted: {SAMPLING_FIELDS})"),
        (
            "model:\n  val_stepz: 2\n",
            "unknown option 'val_stepz' of litevsr.module.LiteVSRModule (accepted: *sampling, ",
        ),
        (
            "trainer:\n  max_steps: lots\n",
            "lightning.pytorch.trainer.trainer.Trainer: max_steps: expected int, got 'lots'",
        ),
        (
            "export:\n  file_name: a\n",
            "unknown option 'file_name' of litevsr.callbacks.AdapterExport (accepted: filename)",
        ),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_class_and_key(tmp_path, capsys, override, message):
    """In a recipe given with --config and as the same keys on the command line; litevsr finds the mistake itself,
    without reading jsonargparse's message. A `*` in `message` stands for any text (of the accepted options)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(override)
    base = ["fit", "--config", "recipes/demo.yaml", "--print_config"]
    pattern = ".*".join(map(re.escape, message.split("*")))
    assert re.match(pattern, one_line_error(capsys, [*base, "--config", str(bad)]))
    flat = []
    for key, value in _leaves(yaml.safe_load(override)):
        flat += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    assert re.match(pattern, one_line_error(capsys, [*base, *flat]))


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" not in value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_a_config_litevsr_cannot_explain_is_jsonargparses_last_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert str(missing) in one_line_error(capsys, ["fit", "--config", str(missing), "--print_config"])


def _recipe_args():
    for recipe in sorted(glob.glob("recipes/*.yaml")):
        yield pytest.param(["--config", recipe], id=recipe)
    for overlay in sorted(glob.glob("recipes/backbones/*.yaml") + glob.glob("recipes/methods/*.yaml")):
        yield pytest.param(["--config", "recipes/demo.yaml", "--config", overlay], id=overlay)
    for degradation in sorted(glob.glob("recipes/degradations/*.yaml")):
        with open(degradation) as f:
            args = ["--config", "recipes/demo.yaml", "--data.init_args.degradation", f.read()]
        yield pytest.param(args, id=degradation)


@pytest.mark.parametrize("args", list(_recipe_args()))
def test_the_shipped_recipes_hold_no_mistake_litevsr_would_report(args):
    """litevsr explains a config jsonargparse refuses: it must not blame a sound part of it."""
    from litevsr.cli import _config_problem, _given_config

    assert _config_problem(_given_config(["fit", *args])) is None
