"""Training plumbing: adapter export, readable validation summaries, atomic and resumable checkpoints, progress
in steps."""

from __future__ import annotations

import os

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from litevsr.adapters.base import ADAPTER_CLASSES, save_adapter
from litevsr.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file, then rename: a crash never leaves a half-written .ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class ResumableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (litevsr keeps the latest checkpoint and last.ckpt, see the CLI defaults) whose last.ckpt also
    holds the final step: Lightning writes `last` at the end of training only if nothing was saved before."""

    def on_train_end(self, trainer, pl_module):
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, which counts batches per epoch; a run bounded by `max_steps` (litevsr's are: the
    training stream is endless, so its epochs mean nothing) shows optimizer steps against max_steps instead."""

    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        if self.trainer.max_steps > 0:
            bar.bar_format = "step {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
        return bar

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_steps > 0:
            bar = self.train_progress_bar
            bar.total, bar.initial, bar.n = trainer.max_steps, trainer.global_step, trainer.global_step
            bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.max_steps <= 0:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if self.is_enabled and (step % self.refresh_rate == 0 or step == trainer.max_steps):
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar


def unsharded_adapter(adapter):
    """`adapter` itself, or, where FSDP sharded it, a plain copy holding the full weights (on rank 0; None on the
    others). The copy is of the registered class FSDP subclassed, so the export reads as a single process's."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in adapter.parameters()):
        return adapter
    state = get_model_state_dict(adapter, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return None
    cls = next(c for c in type(adapter).__mro__ if ADAPTER_CLASSES.get(c.__name__) is c)
    plain = cls.from_config(adapter.config)
    plain.load_state_dict(state)
    return plain


def _run_dir(trainer: L.Trainer) -> str:
    return trainer.log_dir or trainer.default_root_dir


class AdapterExport(L.Callback):
    def __init__(self, filename: str = "adapter"):
        """Export the trained adapter (a diffusers folder: config.json + safetensors) into the run folder when
        fit ends.

        Args:
            filename: Folder name inside the run folder.
        """
        self.filename = filename
        self.path: str | None = None

    def on_train_end(self, trainer, pl_module):
        run_dir = _run_dir(trainer)  # on every rank: Trainer.log_dir is a broadcast under DDP
        adapter = unsharded_adapter(pl_module.adapter)  # on every rank too: gathering shards is a collective
        if not trainer.is_global_zero:
            return
        self.path = os.path.join(run_dir, self.filename)
        scale = getattr(getattr(trainer.datamodule, "hparams", None), "scale", None)
        sampling = {
            k: v
            for k, v in pl_module.sampling.settings().items()
            if k in ("steps", "sigma_start", "shift", "color_fix", "start_noise")
        }
        save_adapter(adapter, self.path, pl_module.backbone.name, scale, sampling, family=pl_module.backbone.family)
        ckpt = getattr(trainer.checkpoint_callback, "dirpath", None) or "(checkpointing disabled)"
        figures = validation_line(trainer.callback_metrics)
        pictures = os.path.join(run_dir, "val_samples.png")
        rank_zero_info(
            "\nlitevsr: done."
            + (f"\n  held-out validation PSNR-Y / SSIM-Y: {figures}" if figures else "")
            + (
                f"\n  pictures         : {pictures} (LQ | bicubic | litevsr | GT) and TensorBoard's Images tab"
                if os.path.isfile(pictures)
                else ""
            )
            + f"\n  exported adapter : {self.path}"
            f"\n  checkpoints      : {ckpt}"
            f"\n  TensorBoard      : tensorboard --logdir {os.path.dirname(run_dir)}"
        )


def validation_line(metrics) -> str:
    """The model against its references, in one line ("" before any validation)."""
    m = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
    if "val/psnr_y" not in m:
        return ""
    parts = [
        f"{label} {m[f'val/psnr_y{s}']:.2f} dB / {m[f'val/ssim_y{s}']:.4f}"
        for label, s in (("model", ""), ("bicubic", "_bicubic"), ("no adapter", "_no_adapter"), ("VAE ceiling", "_vae"))
        if f"val/psnr_y{s}" in m
    ]
    gain = m["val/psnr_y"] - m.get("val/psnr_y_bicubic", float("nan"))
    return " | ".join(parts) + f" | gain over bicubic {gain:+.2f} dB"


class ValidationSummary(L.Callback):
    """Print one readable line of validation figures after every validation."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        line = validation_line(trainer.callback_metrics)
        if line:
            rank_zero_info(f"litevsr: step {trainer.global_step} validation PSNR-Y / SSIM-Y: {line}")
