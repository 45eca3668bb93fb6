"""Video files (or frame folders) to upscale with `python -m litevsr predict`: one item per input."""

from __future__ import annotations

import os

import lightning as L
from torch.utils.data import DataLoader

from litevsr import LiteVSRError


class VideoFiles(L.LightningDataModule):
    def __init__(self, inputs: list[str], output_dir: str = "results/upscaled", scale: int = 4,
                 output_format: str = "mp4", overwrite: bool = False):
        """Inputs for prediction: each is upscaled whole (streaming, bounded memory) into `output_dir`.

        Args:
            inputs: Video files FFmpeg decodes, or folders of image frames.
            output_dir: Where the results go, named after their inputs.
            scale: Upscaling factor.
            output_format: "mp4" (H.264, audio copied) or "png" (a folder of frames per input).
            overwrite: Replace outputs that already exist.
        """
        super().__init__()
        if output_format not in ("mp4", "png"):
            raise LiteVSRError(f"output_format must be 'mp4' or 'png', got {output_format!r}")
        if not inputs:
            raise LiteVSRError("no inputs to upscale: pass --data.inputs '[video.mp4, ...]'")
        missing = [path for path in inputs if not os.path.exists(path)]
        if missing:
            raise LiteVSRError(f"input not found: {missing[0]}")
        self.save_hyperparameters()

    def predict_dataloader(self) -> DataLoader:
        hp = self.hparams
        suffix = ".mp4" if hp.output_format == "mp4" else ""
        items = [{"input": path, "output": os.path.join(hp.output_dir, os.path.splitext(os.path.basename(
                  os.path.normpath(path)))[0] + suffix), "scale": hp.scale, "overwrite": hp.overwrite}
                 for path in hp.inputs]
        os.makedirs(hp.output_dir, exist_ok=True)
        return DataLoader(items, batch_size=None)
