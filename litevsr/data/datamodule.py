"""Shards -> batches {"hq": (B,3,T,H,W), "lq": (B,3,T,H/s,W/s), "key": [...]} in [-1, 1]."""

from __future__ import annotations

import zlib

import lightning as L
import torch
import webdataset as wds
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from litevsr import LiteVSRError
from litevsr.data.pipeline import ClipTooSmallError, SimpleDegradation, crop_clip, frames_to_video
from litevsr.data.shards import decode_sample, read_manifest, shard_urls


def skip_corrupt(exn: Exception) -> bool:
    """WebDataset handler: skip unreadable samples with a warning; data that can never fit still fails."""
    if isinstance(exn, ClipTooSmallError):
        raise exn
    rank_zero_warn(f"litevsr: skipping an unreadable sample: {exn}")
    return True


class VideoShardDataModule(L.LightningDataModule):
    def __init__(
        self,
        train_shards: str,
        val_shards: str | None = None,
        scale: int = 4,
        clip_frames: int = 9,
        crop_size: int = 64,
        val_crop_size: int | None = None,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int = 1000,
        shuffle_buffer: int = 64,
        degradation: SimpleDegradation | None = None,
        seed: int = 0,
        build_demo_if_missing: bool = False,
    ):
        """Clips from WebDataset shards, cropped and degraded on the fly.

        Args:
            train_shards: Folder of .tar shards, a glob, or a brace pattern.
            val_shards: Validation shards (finite, deterministic). None disables validation.
            scale: Upscaling factor: LQ is HQ / scale.
            clip_frames: Frames per training clip (the backbone needs 1 + 4k for Wan's VAE).
            crop_size: HQ crop size in pixels (a multiple of scale and of the backbone's VAE x patch stride).
            val_crop_size: HQ centre-crop size for validation. Default: crop_size.
            batch_size: Training clips per batch (per device).
            val_batch_size: Validation clips per batch. Default: batch_size.
            num_workers: Data-loader worker processes (decoding and degradation run there).
            samples_per_epoch: Training clips per epoch, over all devices and workers.
            shuffle_buffer: Samples held for shuffling across shards.
            degradation: How LQ is made from HQ. Default: SimpleDegradation().
            seed: Seed of the validation degradations (combined with each sample's key).
            build_demo_if_missing: Build the demo shards (openly licensed, offline) if the folders are empty.
        """
        super().__init__()
        if crop_size % scale:
            raise LiteVSRError(f"crop_size {crop_size} is not a multiple of scale {scale}")
        self.save_hyperparameters(ignore=["degradation"])
        self.degradation = degradation or SimpleDegradation()

    def prepare_data(self) -> None:
        if self.hparams.build_demo_if_missing:
            from litevsr.data.demo import build_demo_shards

            build_demo_shards(self.hparams.train_shards, self.hparams.val_shards)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.train_urls = shard_urls(hp.train_shards) if stage == "fit" else []  # predict/validate need val only
        self.val_urls = shard_urls(hp.val_shards) if hp.val_shards else []
        for spec, size in ((hp.train_shards, hp.crop_size), (hp.val_shards, hp.val_crop_size or hp.crop_size)):
            manifest = read_manifest(spec) if spec else None
            if manifest and (manifest["min_frames"] < hp.clip_frames
                             or min(manifest["min_height"], manifest["min_width"]) < size):
                raise LiteVSRError(
                    f"shards in {spec} hold clips as small as {manifest['min_frames']}x{manifest['min_height']}x"
                    f"{manifest['min_width']} (TxHxW), shorter or smaller than the crop {hp.clip_frames}x{size}x{size}")

    def _pair(self, sample: dict, size: int, generator: torch.Generator, random_crop: bool) -> dict:
        hq = frames_to_video(crop_clip(sample["frames"], self.hparams.clip_frames, size, sample["key"],
                                       generator if random_crop else None))
        if random_crop and torch.rand((), generator=generator) < 0.5:
            hq = hq.flip(-1)
        return {"hq": hq, "lq": self.degradation(hq, self.hparams.scale, generator), "key": sample["key"]}

    def _train_pair(self, sample: dict) -> dict:
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))  # worker RNG is seeded per worker
        return self._pair(sample, self.hparams.crop_size, generator, random_crop=True)

    def _val_pair(self, sample: dict) -> dict:
        generator = torch.Generator().manual_seed(self.hparams.seed ^ zlib.crc32(sample["key"].encode()))
        return self._pair(sample, self.hparams.val_crop_size or self.hparams.crop_size, generator, random_crop=False)

    def _loader(self, dataset, batch_size: int) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        world = self.trainer.world_size if self.trainer else 1
        per_worker = max(1, hp.samples_per_epoch // (world * max(1, hp.num_workers)))
        dataset = (
            wds.WebDataset(self.train_urls, resampled=True, shardshuffle=False, nodesplitter=wds.split_by_node,
                           workersplitter=wds.split_by_worker, handler=skip_corrupt, empty_check=False)
            .shuffle(hp.shuffle_buffer)
            .map(decode_sample, handler=skip_corrupt)
            .map(self._train_pair, handler=skip_corrupt)
            .with_epoch(per_worker)
        )
        return self._loader(dataset, hp.batch_size)

    def val_dataloader(self):
        if not self.val_urls:
            return []
        dataset = (
            wds.WebDataset(self.val_urls, shardshuffle=False, nodesplitter=wds.split_by_node,
                           workersplitter=wds.split_by_worker, handler=skip_corrupt, empty_check=False)
            .map(decode_sample, handler=skip_corrupt)
            .map(self._val_pair, handler=skip_corrupt)
        )
        rank_zero_info(f"litevsr: validating on {len(self.val_urls)} shard(s) from {self.hparams.val_shards}")
        return self._loader(dataset, self.hparams.val_batch_size or self.hparams.batch_size)

    def predict_dataloader(self):
        return self.val_dataloader()
