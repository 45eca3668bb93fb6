"""`litevsr` / `python -m litevsr`: LightningCLI with litevsr's defaults, and one-line errors."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from litevsr import LiteVSRError
from litevsr.callbacks import AdapterExport, ValidationSummary
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.module import LiteVSRModule


class LiteVSRCLI(LightningCLI):
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
