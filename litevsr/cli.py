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


def main(args: list[str] | None = None) -> None:
    try:
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
