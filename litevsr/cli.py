"""`litevsr` / `python -m litevsr`: LightningCLI with litevsr's defaults, and one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import inspect
import io
import logging
import os
import pickle
import sys
import types
import typing
import warnings

import lightning as L
import yaml
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from litevsr import LiteVSRError
from litevsr.callbacks import AdapterExport, ResumableCheckpoint, StepProgressBar, ValidationSummary
from litevsr.distributed import quick_exit
from litevsr.inference import one_line as _one_line
from litevsr.module import LiteVSRModule
from litevsr.pipeline import Sampling


def _imported(path: str):
    """The object a dotted class path names, as jsonargparse resolves it, or the reason it cannot be imported."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name), None
    except (ImportError, AttributeError) as err:
        return None, str(err)


def _members(hint) -> list:
    """The alternatives of a Union / Optional annotation (nested ones flattened), else [hint]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(hint) for m in _members(arg)]
    return [hint]


def _fits(value, hint) -> bool:
    """Whether a YAML scalar can be a value of the scalar type `hint`; lenient where jsonargparse converts."""
    if typing.get_origin(hint) is typing.Literal:
        return value in typing.get_args(hint) or str(value) in map(str, typing.get_args(hint))
    if hint is str:
        return True
    if hint is bool:
        return isinstance(value, bool) or str(value).lower() in ("true", "false")
    if hint is type(None):
        return value is None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            hint(value)
            return True
        return False
    return isinstance(value, int) or (isinstance(value, float) and (hint is float or value.is_integer()))


def _describe(hint) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(map(repr, typing.get_args(hint)))
    return "None" if hint is type(None) else hint.__name__


def _parameters(target) -> tuple[dict, bool]:
    """{name: annotation} of what `target` (a class or function) takes, and whether it also takes **kwargs."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # no signature to hold options against
        return {}, True
    try:
        hints = typing.get_type_hints(inspect.unwrap(target.__init__ if isinstance(target, type) else target))
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve: names only
        hints = {}
    kinds = {p.kind for p in params.values()}
    named = {n: hints.get(n) for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, inspect.Parameter.VAR_KEYWORD in kinds


def _options_problem(named: dict, takes_more: bool, options: dict, where: str) -> str | None:
    for key, value in options.items():
        if key not in named:
            if takes_more:
                continue
            return f"unknown option {key!r} of {where} (accepted: {', '.join(named)})"
        problem = _value_problem(value, named[key], f"{where}: {key}")
        if problem:
            return problem
    return None


def _value_problem(value, hint, where: str) -> str | None:
    """The first mistake in `value`, given for a parameter annotated `hint` (None: unknown), or None."""
    if isinstance(value, list):
        return next(filter(None, (_value_problem(v, None, where) for v in value)), None)
    if isinstance(value, dict) and isinstance(value.get("class_path"), str):
        path = value["class_path"]
        if "." not in path:
            return None  # a short name, which jsonargparse looks up among the subclasses it knows
        target, error = _imported(path)
        if error:
            return f"class_path {path}: cannot import it ({error})"
        init_args = value.get("init_args") if isinstance(value.get("init_args"), dict) else {}
        options = {k: v for k, v in value.items() if k not in ("class_path", "init_args", "dict_kwargs")}
        return _options_problem(*_parameters(target), {**options, **init_args}, path)
    members = _members(hint)
    if isinstance(value, dict):  # options of a dataclass argument, e.g. `sampling`
        group = next((m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)), None)
        if group is None:
            return None
        return _options_problem(*_parameters(group), value, f"{group.__module__}.{group.__qualname__}")
    scalar = {str, bool, int, float, type(None)}
    if value is None or not all(m in scalar or typing.get_origin(m) is typing.Literal for m in members):
        return None  # jsonargparse's to judge
    if any(_fits(value, m) for m in members):
        return None
    return f"{where}: expected {' or '.join(map(_describe, members))}, got {value!r}"


def _merge(base: dict, new: dict) -> dict:
    """`new` over `base`, as a later --config or --key value overrides: dicts merge, unless `new` names another
    class_path, whose options then start afresh."""
    for key, value in new.items():
        old = base.get(key)
        both_dicts = isinstance(old, dict) and isinstance(value, dict)
        if both_dicts and value.get("class_path", old.get("class_path")) == old.get("class_path"):
            base[key] = _merge(dict(old), value)
        else:
            base[key] = value
    return base


def _given_config(args: list[str]) -> dict | None:
    """What the --config files and the --key value options in `args` add up to, or None if a file does not read
    (which jsonargparse reports itself)."""
    config: dict = {}
    i = 0
    while i < len(args):
        key, eq, value = args[i].removeprefix("--").partition("=")
        if not args[i].startswith("--") or key.endswith("+"):  # positionals, subcommands, list appends
            i += 1
            continue
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        i += 1
        try:
            if key == "config":
                with open(value) as f:
                    given = yaml.safe_load(f)
            else:
                given = yaml.safe_load(value) if value else None
                for part in reversed(key.split(".")):
                    given = {part: given}
        except (OSError, yaml.YAMLError):
            return None
        if isinstance(given, dict):
            _merge(config, given)
    return config


def _config_problem(config: dict) -> str | None:
    """The first mistake in the config of a fit, validate, test or predict."""
    for key, value in config.items():
        target = SECTIONS.get(key)
        if target is not None and isinstance(value, dict) and "class_path" not in value:
            problem = _options_problem(*_parameters(target), value, f"{target.__module__}.{target.__qualname__}")
        else:
            problem = _value_problem(value, None, key)
        if problem:
            return problem
    return None


def _parse_quietly(parse, explain):
    """Run a jsonargparse parse with stderr captured. A refused config becomes one line: the mistake `explain()`
    finds in it, else the last line of jsonargparse's message (whose wording is its own)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            result = parse()
    except SystemExit as exit_:
        if not exit_.code:
            raise
        lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        problem = explain() or (lines[-1].removeprefix("error: ") if lines else "invalid arguments")
        print(f"litevsr: error: {problem} (see --help)", file=sys.stderr)
        sys.exit(2)
    sys.stderr.write(captured.getvalue())
    return result


#: The callbacks every run has, by their config key.
CALLBACKS = {"checkpoint": ResumableCheckpoint, "export": AdapterExport, "summary": ValidationSummary}
#: The classes whose options a recipe gives directly under their key (the others it names by class_path).
SECTIONS = {"model": LiteVSRModule, "trainer": L.Trainer, **CALLBACKS}


class FileSummary(L.Callback):
    """`predict` on files (litevsr.data.datamodule.VideoFiles): the records of every rank's predict_step
    (litevsr.inference.upscale_or_skip), gathered from all ranks at the end into the one `line` that `main` prints
    on rank 0 (as `litevsr upscale` does; after the progress bar is done), and the count of `failed` files, on
    every rank, for the exit status."""

    def __init__(self):
        self.records: list[dict] = []
        self.line: str | None = None
        self.failed = 0
        self.group = None

    @staticmethod
    def _on_files(trainer) -> bool:
        from litevsr.data.datamodule import VideoFiles

        return isinstance(getattr(trainer, "datamodule", None), VideoFiles)

    def on_predict_start(self, trainer, pl_module) -> None:
        from litevsr.distributed import patient_group

        self.records, self.line, self.failed = [], None, 0
        # every rank, in step, before the predict steps; VideoFiles gives every rank an item, so every rank gets here
        self.group = patient_group() if self._on_files(trainer) else None

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if isinstance(outputs, dict) and "status" in outputs:
            self.records.append({k: outputs[k] for k in ("input", "output", "status", "reason")})

    def on_predict_end(self, trainer, pl_module) -> None:
        from litevsr.inference import gather_records, summary_line

        if not self._on_files(trainer):
            return
        records = gather_records(self.records, self.group)
        self.failed = sum(r["status"] == "failed" for r in records)
        self.line = summary_line(records, "litevsr predict") if records else None


class LiteVSRCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        _parse_quietly(
            lambda: super(LiteVSRCLI, self).parse_arguments(parser, args),
            lambda: _config_problem(_given_config(sys.argv[1:] if args is None else args) or {}),
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning would overwrite the model options given in the recipe and on the command line with the
        hyperparameters saved in the checkpoint (`validate --ckpt_path X --model.sampling.steps 4` would validate
        with the old steps). Here the recipe and the command line define the model; a checkpoint holds its weights."""

    def before_instantiate_classes(self) -> None:
        """Checkpoints load as weights only; `fit --ckpt_path last` resumes the newest run of this recipe, logging
        into the same folder."""
        options = self.config.get(self.subcommand) if self.subcommand else None
        if options is not None and options.get("weights_only") is None:
            options.weights_only = True  # a .ckpt is data: never unpickle objects from it
        if self.subcommand != "fit" or self.config.fit.get("ckpt_path") != "last":
            return
        logger = self.config.fit.trainer.logger
        init = getattr(logger, "init_args", None)
        if init is None or not hasattr(init, "save_dir"):
            return  # not a TensorBoardLogger-like folder layout: leave "last" to Lightning
        pattern = os.path.join(init.save_dir, init.name or "", "version_*", "checkpoints", "last.ckpt")
        found = sorted(glob.glob(pattern), key=os.path.getmtime)
        if not found:
            raise LiteVSRError(f"--ckpt_path last: no checkpoint matches {pattern}")
        self.config.fit.ckpt_path = found[-1]
        init.version = os.path.basename(os.path.dirname(os.path.dirname(found[-1])))

    def instantiate_trainer(self, **kwargs):
        """Unless the recipe brings its own or turns it off, the progress bar counts steps against max_steps.
        (Not a trainer default: Lightning adds those callbacks even where `enable_progress_bar` is false.) A
        predict reports the files it upscales in one line (FileSummary)."""
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        added = [FileSummary()] if self.subcommand == "predict" else []
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            added.append(StepProgressBar())
        if added:
            kwargs.setdefault("callbacks", [*callbacks, *added])
        return super().instantiate_trainer(**kwargs)

    def add_arguments_to_parser(self, parser):
        for key, callback in CALLBACKS.items():
            parser.add_lightning_class_args(callback, key)
        # Lightning writes last.ckpt only next to a top-k save: keeping the latest one (top 1, no metric) makes
        # every validation leave a resumable last.ckpt, not only the end of training.
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 1})


TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "litevsr"},
    },
    "plugins": [{"class_path": "litevsr.callbacks.AtomicCheckpointIO"}],
}


def _runs(
    adapter: str | None = None,
    backbone: str | None = None,
    scale: int | None = None,
    sampling: Sampling | None = None,
    window: int | None = None,
    overlap: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> list[tuple[str, object, dict]]:
    """The adapters `upscale` and `evaluate` run, as [(name, LiteVSRPipeline, upscaling options)]; these arguments are
    both commands' options.

    Args:
        adapter: An exported adapter folder, or several separated by commas (default: the shipped 'general' one).
        backbone: Backbone folder or hub id (default: the adapters' own).
        scale: Upscaling factor (default: the adapter's).
        sampling: The sampler; fields left out keep the adapter's recorded values, given ones replace them (e.g.
            --sampling.steps 4, --sampling.tile 256, --sampling.color_fix wavelet).
        window: Frames per temporal window (default: from the backbone's frame rule, 17 for Wan).
        overlap: Frames neighbouring windows share and blend (default: the frame rule's step, 4 for Wan).
        device: auto (a visible GPU, else the CPU), cpu, cuda or cuda:N.
        dtype: Transformer precision: auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16 or float16.
    """
    from litevsr.inference import resolve_device
    from litevsr.pipeline import load_pipelines

    return [
        (
            name,
            pipe,
            dict(scale=scale or pipe.config.scale, sampling=pipe.sampling(sampling), window=window, overlap=overlap),
        )
        for name, pipe in load_pipelines(adapter, backbone, *resolve_device(device, dtype))
    ]


def upscale(
    input: str,
    output: str,
    max_frames: int | None = None,
    fps: float | None = None,
    crf: int = 18,
    overwrite: bool = False,
    **run,
) -> None:
    """Upscale a video file, a folder of frames, or every video in a folder.

    Args:
        input: Any video FFmpeg decodes; a folder of video files (told apart by their extensions), each upscaled
            on its own; or a folder of image frames only, upscaled as one video.
        output: An .mp4 file (H.264, audio copied) or a folder for PNG frames; for a folder of videos, the folder
            that receives OUTPUT/<name>.mp4 (finished ones are skipped on a rerun; under `torchrun`, each rank
            upscales its share of the videos and rank 0 prints the summary of all).
        max_frames: Upscale only the first N frames.
        fps: Frame rate (default: the input's; 25 for folders of frames).
        crf: H.264 quality: lower is better.
        overwrite: Replace an existing output.
    """
    from tqdm import tqdm

    from litevsr.data.video import is_video_file
    from litevsr.distributed import join, leave, patient_group, world
    from litevsr.inference import gather_records, share, summary_line, upscale_file, upscale_or_skip

    rank, ranks = world()
    written = dict(crf=crf, fps=fps, max_frames=max_frames)
    videos = (
        sorted(os.path.join(input, f) for f in os.listdir(input) if is_video_file(os.path.join(input, f)))
        if os.path.isdir(input)
        else []
    )
    if not videos and rank > 0:  # one input: rank 0 writes it
        return
    if videos and os.path.isfile(output):
        raise LiteVSRError(f"{input} holds videos, so the output must be a folder, but {output} is a file")
    joined = bool(videos) and join()  # torchrun's process group (and this rank's GPU), for the summary of all ranks
    try:
        group = patient_group()  # every rank, in step, before its share
        runs = _runs(**run)
        if not videos:
            for path, pipe, options in _outputs(output, runs):
                result = upscale_file(pipe, input, path, **options, **written, overwrite=overwrite)
                print(
                    f"wrote {result['output']}: {result['frames']} frames at {result['width']}x{result['height']}, "
                    f"{result['fps']:g} fps"
                )
            return
        os.makedirs(output, exist_ok=True)
        records = []
        desc = "videos" if ranks == 1 else f"videos (rank 0 of {ranks})"
        for video in tqdm(share(videos, _stem, rank, ranks), unit="video", desc=desc, disable=rank > 0):
            for path, pipe, options in _outputs(os.path.join(output, _stem(video) + ".mp4"), runs):
                records.append(upscale_or_skip(pipe, video, path, overwrite, **options, **written))
        records = gather_records(records, group)
    finally:
        if joined:
            leave()
    if rank == 0:
        print(summary_line(records, "litevsr upscale"), flush=True)
    if any(r["status"] == "failed" for r in records):
        sys.exit(1)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _outputs(output: str, runs: list) -> list[tuple[str, object, dict]]:
    """(output path, pipeline, options) per adapter: out.mp4, or out.<adapter>.mp4 for several adapters."""
    if len(runs) == 1:
        return [(output, *runs[0][1:])]
    stem, ext = os.path.splitext(output)
    return [(f"{stem}.{name}{ext}", pipe, options) for name, pipe, options in runs]


def evaluate(
    gt: str,
    lq: str,
    out: str = "results/eval",
    lpips: bool = False,
    dists: bool = False,
    max_frames: int | None = None,
    **run,
) -> None:
    """Evaluate adapters and bicubic on paired clips: GT/<clip>/<frame>.png with LQ/<clip>/<frame>.png, or video
    files paired by name, or one GT video with one LQ video.

    Args:
        gt: GT folder (or one GT video).
        lq: LQ folder (or one LQ video).
        out: Where per_clip.csv and summary.md go.
        lpips: Also LPIPS (needs AlexNet weights in the torch hub cache).
        dists: Also DISTS (needs VGG16 weights in the torch hub cache).
        max_frames: Score only the first N frames of each clip.
    """
    from litevsr import evaluate as evaluation

    runs = _runs(**run)
    first = runs[0][2]
    perceptual = tuple(name for name, wanted in (("lpips", lpips), ("dists", dists)) if wanted)
    rows = evaluation.evaluate(
        [(name, pipe, options["sampling"]) for name, pipe, options in runs],
        gt,
        lq,
        first["scale"],
        out,
        perceptual,
        max_frames,
        first["window"],
        first["overlap"],
    )
    print(evaluation.summary_table(rows))
    print(f"\nper-clip results: {os.path.join(out, 'per_clip.csv')}; table: {os.path.join(out, 'summary.md')}")


def twin(name: str, output: str, seed: int = 0) -> None:
    """Write a tiny random-weight twin of a known backbone (same VAE compression, latent channels, patch, blocks
    and repository layout) and a random adapter for it: smoke-test recipes and upscaling on a CPU.

    Args:
        name: A known hub id (see litevsr.backbones.KNOWN_BACKBONES), e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers.
        output: A new (or empty) folder.
        seed: Seed of the random weights.
    """
    from litevsr.zoo.twins import write_twin

    paths = write_twin(name, output, seed=seed)
    print(f"wrote the twin of {name} to {paths['backbone']} and its adapter to {paths['adapter']}")


def embed_prompt(text_encoder: str, output: str, prompt: str | None = None, max_length: int = 512) -> None:
    """Embed the fixed VSR prompt once with a checkpoint's text encoder, so that training and upscaling never load
    it; backbones read <pretrained>/prompt_embeds.safetensors, or the file given as their `prompt_embeds`.

    Args:
        text_encoder: A diffusers checkpoint folder or hub id with text_encoder/ and tokenizer/ subfolders.
        output: The safetensors file to write.
        prompt: The prompt (default: litevsr.backbones.prompt.DEFAULT_PROMPT).
        max_length: Tokens, as the family's pipeline pads them: Wan 512, CogVideoX 226, LTX-Video 128.
    """
    from litevsr.backbones.prompt import DEFAULT_PROMPT, compute_prompt_embeds

    embeds = compute_prompt_embeds(text_encoder, output, prompt or DEFAULT_PROMPT, max_length)
    print(f"wrote {output}: prompt embedding {tuple(embeds.shape)}")


#: The commands besides LightningCLI's fit / validate / test / predict, each a typed function whose docstring is
#: its help (jsonargparse, like the rest of the CLI).
COMMANDS = {
    "upscale": upscale,
    "evaluate": evaluate,
    "twin": twin,
    "embed-prompt": embed_prompt,
}


def _command_problem(name: str, args: list[str]) -> str | None:
    named, takes_more = _parameters(COMMANDS[name])
    if takes_more:  # upscale and evaluate pass **run on to _runs, as jsonargparse follows them
        named = {**named, **_parameters(_runs)[0]}
    return _options_problem(named, False, _given_config(args) or {}, f"litevsr {name}")


def _run_command(name: str, args: list[str]) -> None:
    from jsonargparse import ArgumentParser

    function = COMMANDS[name]
    parser = ArgumentParser(prog=f"litevsr {name}", description=function.__doc__.split("\n\n")[0])
    parser.add_function_arguments(function, as_group=False, as_positional=True)
    config = _parse_quietly(lambda: parser.parse_args(args), lambda: _command_problem(name, args))
    function(**vars(parser.instantiate_classes(config)))


def _lightning_tip(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("💡 Tip:")


def _quiet_what_is_not_for_the_user() -> None:
    """Silence, by message and by the module or logger it comes from, what a run would print that is not meant
    for its user."""
    # The backbone is frozen, so kept in eval mode on purpose.
    warnings.filterwarnings(
        "ignore",
        r"Found \d+ module\(s\) in eval mode at the start of training",
        PossibleUserWarning,
        r"lightning\.pytorch\.loops\.fit_loop",
    )
    # Lightning's own use of a torch API that torch deprecates: Lightning's to change.
    warnings.filterwarnings(
        "ignore",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    )
    # Lightning's advertisements of its cloud services (adding the same filter twice keeps one).
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_lightning_tip)


def _report_files(cli: LightningCLI) -> None:
    """After a predict on files: rank 0 prints the summary of all ranks; every rank exits 1 if a file failed."""
    trainer = getattr(cli, "trainer", None)
    summary = next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, FileSummary)), None)
    if summary is None or summary.line is None:
        return
    if trainer.is_global_zero:
        print(summary.line, flush=True)
    if summary.failed:
        sys.exit(1)


def main(args: list[str] | None = None) -> None:
    quick_exit()
    _quiet_what_is_not_for_the_user()
    given = sys.argv[1:] if args is None else args
    try:
        if given[:1] and given[0] in COMMANDS:
            return _run_command(given[0], given[1:])
        cli = LiteVSRCLI(
            LiteVSRModule,
            L.LightningDataModule,  # any datamodule by class_path: shards for fit, VideoFiles for predict
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,  # None from the command line: LightningCLI warns when given both it and sys.argv
        )
        _report_files(cli)
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met an object in a checkpoint
        print(
            f"litevsr: error: refused to load a checkpoint that holds Python objects, not just tensors: "
            f"{_one_line(err)}",
            file=sys.stderr,
        )
        sys.exit(2)
    except ValueError as err:  # LiteVSRError, or jsonargparse wrapping one raised while building a class
        cause = err
        while cause is not None and not isinstance(cause, LiteVSRError):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"litevsr: error: {_one_line(cause)}", file=sys.stderr)
        sys.exit(2)
