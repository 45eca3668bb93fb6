"""`litevsr` / `python -m litevsr`: LightningCLI with litevsr's defaults, and one-line errors."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import sys

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from litevsr import LiteVSRError
from litevsr.callbacks import AdapterExport, ValidationSummary
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.module import LiteVSRModule


def _config_error(message: str) -> str:
    """jsonargparse's nested union errors run to dozens of lines; keep the line that names the problem."""
    for pattern in (r"Option '[^']+' is not accepted", r"does not accept option '[^']+'",
                    r"Key '[^']+' .*", r"Expected .*"):
        found = re.search(pattern, message)
        if found:
            option = re.search(r"'([^']+)'", found.group(0))
            return f"unknown option {option.group(0)}" if "accept" in found.group(0) and option else found.group(0)
    return message.strip().splitlines()[0]


class LiteVSRCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # Parse with stderr captured so that a config error becomes one line instead of a usage dump.
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):
                super().parse_arguments(parser, args)
        except SystemExit as exit_:
            if not exit_.code:
                raise
            message = captured.getvalue().rpartition("error: ")[2] or captured.getvalue()
            print(f"litevsr: error: {_config_error(message)} (see --help or --print_config)", file=sys.stderr)
            sys.exit(2)
        sys.stderr.write(captured.getvalue())

    def before_instantiate_classes(self) -> None:
        """`fit --ckpt_path last` resumes the newest run of this recipe, logging into the same folder."""
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
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
        parser.add_lightning_class_args(AdapterExport, "export")
        parser.add_lightning_class_args(ValidationSummary, "summary")


TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
               "init_args": {"save_dir": "runs", "name": "litevsr"}},
    "plugins": [{"class_path": "litevsr.callbacks.AtomicCheckpointIO"}],
}


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    # DataLoader workers re-raise as "Caught X in DataLoader worker process N. Original Traceback ...".
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def upscale_command(args: list[str]) -> None:
    """litevsr upscale IN OUT [--adapter A] [--backbone B] [--scale S] [--steps N]"""
    import argparse

    from litevsr.adapters.base import load_adapter, read_adapter_config
    from litevsr.backbones.wan import DEMO_ADAPTER, WanBackbone
    from litevsr.inference import upscale_file
    from litevsr.model import LiteVSR

    parser = argparse.ArgumentParser(prog="litevsr upscale", description="Upscale a video file with a trained adapter.")
    parser.add_argument("input", help="any video FFmpeg decodes")
    parser.add_argument("output", help="the upscaled .mp4 (H.264)")
    parser.add_argument("--adapter", default=str(DEMO_ADAPTER), help="adapter.safetensors (default: the shipped demo adapter)")
    parser.add_argument("--backbone", default=None, help="backbone folder or hub id (default: the one the adapter was trained on)")
    parser.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the adapter's)")
    parser.add_argument("--steps", type=int, default=1, help="sampling steps (default 1)")
    parser.add_argument("--chunk-frames", type=int, default=17, help="frames upscaled together")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(args)
    if not os.path.isfile(opts.input):
        raise LiteVSRError(f"input video not found: {opts.input}")
    config = read_adapter_config(opts.adapter)
    backbone = WanBackbone(opts.backbone or config["backbone"])
    model = LiteVSR(backbone, load_adapter(opts.adapter, backbone))
    result = upscale_file(model, opts.input, opts.output, scale=opts.scale or config.get("scale") or 4,
                          steps=opts.steps, chunk_frames=opts.chunk_frames, seed=opts.seed)
    print(f"wrote {result['output']}: {result['frames']} frames at {result['width']}x{result['height']}")


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    try:
        if args[:1] == ["upscale"]:
            return upscale_command(args[1:])
        LiteVSRCLI(
            LiteVSRModule,
            VideoShardDataModule,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except LiteVSRError as err:
        print(f"litevsr: error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)
