"""`litevsr` / `python -m litevsr`: LightningCLI with litevsr's defaults, and one-line errors."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import pickle
import re
import sys

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from litevsr import LiteVSRError
from litevsr.callbacks import AdapterExport, ResumableCheckpoint, ValidationSummary
from litevsr.inference import Sampling
from litevsr.module import LiteVSRModule

#: Module options that moved into `model.sampling`: an old recipe is told the new key.
RENAMED_OPTIONS = {
    "val_steps": "sampling.steps",
    "val_shift": "sampling.shift",
    "val_sigma_start": "sampling.sigma_start",
    "val_seed": "sampling.seed",
    "start_noise": "sampling.start_noise",
    "color_fix": "sampling.color_fix",
}


#: Modules whose classes moved: an old recipe's class_path is told the new one.
MOVED_MODULES = {"litevsr.data.pipeline": "litevsr.data.degradations", "litevsr.data.files": "litevsr.data.datamodule"}


def _config_error(message: str) -> str:
    """jsonargparse's nested union errors run to dozens of lines; keep the line that names the problem."""
    for old, new in RENAMED_OPTIONS.items():
        if re.search(rf"model\.{old}\b", message) or (f"'{old}'" in message and "accept" in message):
            return f"model.{old} is now model.{new}"
    for old, new in MOVED_MODULES.items():
        moved = re.search(rf"{re.escape(old)}\.(\w+)", message)
        if moved:
            return f"class_path {old}.{moved.group(1)} is now {new}.{moved.group(1)}"
    if re.search(r"'preset'", message) and "accept" in message:
        return "RealWorldDegradation's init_args.preset is now init_args.options (a preset name or the options)"
    unknown = re.search(r"Option ('[^']+') is not accepted|does not accept option ('[^']+')", message)
    if unknown:
        return f"unknown option {unknown.group(1) or unknown.group(2)}"
    broken = re.search(r"Problem with given class_path '([^']+)':\s*\n\s*(.+)", message)
    if broken:  # e.g. a class that cannot be imported, or a bad value of one of its arguments
        key = re.match(r'Parser key "([^"]+)":', broken.group(2))
        reason = re.search(r"Expected .*", message[broken.end() :]) if key else None
        if reason:
            return f"{broken.group(1)}: {key.group(1)}: {reason.group(0)}"
        return f"class_path {broken.group(1)}: {broken.group(2).strip()}"
    found = re.search(r"Key '[^']+' .*|Expected .*", message)
    return found.group(0) if found else message.strip().splitlines()[0]


def _parse_quietly(parse):
    """Run a jsonargparse parse with stderr captured, so that a config error becomes one line, not a usage dump."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            result = parse()
    except SystemExit as exit_:
        if not exit_.code:
            raise
        message = captured.getvalue().rpartition("error: ")[2] or captured.getvalue()
        print(f"litevsr: error: {_config_error(message)} (see --help)", file=sys.stderr)
        sys.exit(2)
    sys.stderr.write(captured.getvalue())
    return result


class LiteVSRCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        _parse_quietly(lambda: super(LiteVSRCLI, self).parse_arguments(parser, args))

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

    def add_arguments_to_parser(self, parser):
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        # Lightning writes last.ckpt only next to a top-k save: keeping the latest one (top 1, no metric) makes
        # every validation leave a resumable last.ckpt, not only the end of training.
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 1})
        parser.add_lightning_class_args(AdapterExport, "export")
        parser.add_lightning_class_args(ValidationSummary, "summary")


TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "litevsr"},
    },
    "plugins": [{"class_path": "litevsr.callbacks.AtomicCheckpointIO"}],
}


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    # DataLoader workers re-raise as "Caught X in DataLoader worker process N. Original Traceback ...".
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def load_models(adapter_arg: str | None, backbone_arg: str | None, device: str = "auto", dtype: str = "auto"):
    """One backbone, several adapters on it: [(name, LiteVSR, adapter config)]. The backbone loads once, with its
    transformer in `dtype`, and everything moves to `device` (see `resolve_device`)."""
    from litevsr.adapters.base import adapter_class, load_adapter, read_adapter_config
    from litevsr.backbones import backbone_class
    from litevsr.backbones.wan import DEFAULT_ADAPTER, SHIPPED_ADAPTERS
    from litevsr.inference import resolve_device
    from litevsr.model import LiteVSR

    device, dtype = resolve_device(device, dtype)
    paths = [str(SHIPPED_ADAPTERS.get(p, p)) for p in (adapter_arg or DEFAULT_ADAPTER).split(",") if p]
    configs = [read_adapter_config(p) for p in paths]
    backbones = {c["backbone"] for c in configs}
    if backbone_arg is None and len(backbones) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbones {sorted(backbones)}; pass --backbone")
    families = {c["family"] for c in configs}
    if len(families) > 1:
        raise LiteVSRError(f"the adapters were trained on different backbone families {sorted(families)}")
    cls = backbone_class(families.pop())
    names = [os.path.basename(os.path.normpath(p)) for p in paths]  # they name the outputs: out.<name>.mp4
    if len(set(names)) < len(names):
        raise LiteVSRError(f"the adapter folders {paths} share names; give each a distinct folder name")

    def build():
        return cls(backbone_arg or configs[0]["backbone"], dtype=dtype).to(device)

    shared = build()  # methods that edit their backbone (LoRA, full fine-tuning) get one of their own
    backbones = [build() if adapter_class(c["class_name"]).edits_backbone else shared for c in configs]
    return [
        (name, LiteVSR(backbone, load_adapter(p, backbone).to(device)), c)
        for name, p, c, backbone in zip(names, paths, configs, backbones)
    ]


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
    """The adapters `upscale` and `evaluate` run, as [(name, LiteVSR, upscaling options)]; these arguments are
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
    return [
        (
            name,
            model,
            dict(
                scale=scale or config.get("scale") or 4,
                sampling=Sampling.of_adapter(config, sampling),
                window=window,
                overlap=overlap,
            ),
        )
        for name, model, config in load_models(adapter, backbone, device, dtype)
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
            that receives OUTPUT/<name>.mp4 (finished ones are skipped on a rerun).
        max_frames: Upscale only the first N frames.
        fps: Frame rate (default: the input's; 25 for folders of frames).
        crf: H.264 quality: lower is better.
        overwrite: Replace an existing output.
    """
    from tqdm import tqdm

    from litevsr.data.video import is_video_file
    from litevsr.inference import upscale_file

    runs = _runs(**run)
    written = dict(crf=crf, fps=fps, max_frames=max_frames, overwrite=overwrite)
    videos = (
        sorted(os.path.join(input, f) for f in os.listdir(input) if is_video_file(os.path.join(input, f)))
        if os.path.isdir(input)
        else []
    )
    if not videos:
        for path, model, options in _outputs(output, runs):
            result = upscale_file(model, input, path, **options, **written)
            print(
                f"wrote {result['output']}: {result['frames']} frames at {result['width']}x{result['height']}, "
                f"{result['fps']:g} fps"
            )
        return
    if os.path.isfile(output):
        raise LiteVSRError(f"{input} holds videos, so the output must be a folder, but {output} is a file")
    done, skipped, failed = 0, 0, []
    for video in tqdm(videos, unit="video", desc="videos"):
        stem = os.path.splitext(os.path.basename(video))[0]
        for path, model, options in _outputs(os.path.join(output, stem + ".mp4"), runs):
            if os.path.exists(path) and not overwrite:  # outputs appear only when complete
                skipped += 1
                continue
            os.makedirs(output, exist_ok=True)
            try:
                upscale_file(model, video, path, **options, **written)
                done += 1
            except LiteVSRError as err:
                failed.append(f"{os.path.basename(video)} ({_one_line(err)})")
    print(
        f"litevsr upscale: {done} done, {skipped} skipped (already there), {len(failed)} failed"
        + (": " + "; ".join(failed) if failed else "")
    )
    if failed:
        sys.exit(1)


def _outputs(output: str, runs: list) -> list[tuple[str, object, dict]]:
    """(output path, model, options) per adapter: out.mp4, or out.<adapter>.mp4 for several adapters."""
    if len(runs) == 1:
        return [(output, *runs[0][1:])]
    stem, ext = os.path.splitext(output)
    return [(f"{stem}.{name}{ext}", model, options) for name, model, options in runs]


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
        [(name, model, options["sampling"]) for name, model, options in runs],
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


def convert_adapter(old: str, output: str, backbone: str | None = None) -> None:
    """Convert an adapter file in litevsr's old single-file format into an adapter folder (config.json +
    safetensors). Only adapter classes litevsr knows are accepted.

    Args:
        old: The old .safetensors adapter file.
        output: The new adapter folder.
        backbone: Backbone folder or hub id (default: the one it records).
    """
    from litevsr.adapters.base import convert_old_adapter, read_old_adapter_metadata
    from litevsr.backbones.wan import WanBackbone

    if os.path.exists(output):
        raise LiteVSRError(f"{output} already exists; give the converted adapter a new folder")
    convert_old_adapter(old, output, WanBackbone(backbone or read_old_adapter_metadata(old)["backbone"]))
    print(f"wrote {output}")


def twin(name: str, output: str, seed: int = 0) -> None:
    """Write a tiny random-weight twin of a known backbone (same VAE compression, latent channels, patch, blocks
    and repository layout) and a random adapter for it: smoke-test recipes and upscaling on a CPU.

    Args:
        name: A known hub id (see litevsr.backbones.KNOWN_BACKBONES), e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers.
        output: A new (or empty) folder.
        seed: Seed of the random weights.
    """
    from litevsr.backbones.twins import write_twin

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
    "convert-adapter": convert_adapter,
}


def _run_command(name: str, args: list[str]) -> None:
    from jsonargparse import ArgumentParser

    function = COMMANDS[name]
    parser = ArgumentParser(prog=f"litevsr {name}", description=function.__doc__.split("\n\n")[0])
    parser.add_function_arguments(function, as_group=False, as_positional=True)
    config = _parse_quietly(lambda: parser.parse_args(args))
    function(**vars(parser.instantiate_classes(config)))


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    try:
        if args[:1] and args[0] in COMMANDS:
            return _run_command(args[0], args[1:])
        LiteVSRCLI(
            LiteVSRModule,
            L.LightningDataModule,  # any datamodule by class_path: shards for fit, VideoFiles for predict
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
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
