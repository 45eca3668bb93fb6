"""litevsr's LightningDataModules: shards -> batches for fit, validate and test (`VideoShardDataModule`), and
video files -> upscaled files for predict (`VideoFiles`).

Shard batches are {"hq": (B,3,T,H,W), "lq": (B,3,T,H/s,W/s), "key": [...]} in [-1, 1]; validation and test
batches add "weight" (B,): 1, or 0 for the padding that keeps ranks in step.

Training: epochs of `samples_per_epoch` (in whole batches) from shards resampled with replacement per rank and
worker, or dealt out to them pass by pass with `resample_shards=False`; samples shuffled in a buffer; every draw
seeded by its position, so that a resume continues the stream exactly (`TrainingStream`). Validation and test:
finite and deterministic; the clips are dealt out to the ranks batch by batch, each scored on one rank, and every
rank runs as many steps (`EvaluationStream`). Decoding, cropping and degrading run in the loader workers. Corrupt
samples are skipped, counted and reported (see `SkippedSamples`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import select
import tarfile
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from itertools import groupby, islice

import lightning as L
import torch
import webdataset as wds
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, default_collate

from litevsr.data.clipping import ClipTooSmallError, crop_window
from litevsr.data.degradations import Degradation, SimpleDegradation
from litevsr.data.shards import (
    LATENTS_MEMBER,
    SampleFormatError,
    decode_latents,
    decode_sample,
    read_manifest,
    sample_metadata,
    shard_urls,
    stored_lq_variants,
)
from litevsr.distributed import process_alive
from litevsr.errors import LiteVSRError
from litevsr.frames import frames_to_video
from litevsr.seeds import derive_seed

# Loader workers are forked from a fork server, a single-threaded process that has imported this module, not from
# the loop's process: a fork copies the memory of a process whose FFmpeg, x264 or progress-bar threads may hold
# locks at that moment, and the worker then waits on them forever.
LOADER_CONTEXT = multiprocessing.get_context("forkserver")
LOADER_CONTEXT.set_forkserver_preload([__name__])


class SkippedSamples:
    """WebDataset handler: skip an unreadable sample, count it, and warn with the running counts.

    A truncated shard counts once: the samples after the cut cannot be told apart, and are lost.

    Each loader worker holds its own copy (its own `count`); `total` is shared by all workers of the
    process that made it (a multiprocessing.Value). Data that can never fit (ClipTooSmallError) and shards
    that lack what the configuration asks for (SampleFormatError) still raise.
    """

    def __init__(self, total=None):
        self.count = 0
        self.total = total
        self._last = ""

    def __call__(self, exn: Exception) -> bool:
        if isinstance(exn, (ClipTooSmallError, SampleFormatError)):
            raise exn
        stream = exn.args[-2] if len(exn.args) >= 3 and exn.args[-2] is not None else None
        if stream is not None and str(stream) in self._last:
            return True  # webdataset reports a truncated shard twice (tar reader, then shard expander): count it once
        self._last = str(exn)
        self.count += 1
        if self.total is not None:
            with self.total.get_lock():
                self.total.value += 1
        info = torch.utils.data.get_worker_info()
        where = f"loader worker {info.id}" if info else "the main process"
        rank, world = wds.utils.pytorch_worker_info()[:2]
        where += f" of rank {rank}" if world > 1 else ""
        reason = (str(exn).strip().splitlines() or [type(exn).__name__])[0]
        warnings.warn(
            f"litevsr: skipping an unreadable sample ({self.count} skipped so far in {where}): "
            f"{type(exn).__name__}: {reason}",
            UserWarning,
            stacklevel=2,
        )
        return True


def _join_loop(loop: int, rank: int, world: int, worker: int) -> None:
    """A loader worker's start: it takes its rank from the loop's process (pid `loop`), as it has no process group
    of its own and webdataset (shard splits and draws) reads RANK and WORLD_SIZE; and it ends when that process
    ends, even by SIGKILL. Its parent is the fork server, which lives on while workers do, so torch's own watchdog,
    which watches the parent, would keep it forever."""
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    threading.Thread(target=_exit_with, args=(loop,), name="litevsr-loop-watch", daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        select.select([os.pidfd_open(pid)], [], [])  # readable once the process has ended (Linux 5.3+)
    except (AttributeError, OSError):  # no pidfd: poll
        while process_alive(pid):
            time.sleep(2)
    os._exit(0)


class TrainingStream(torch.utils.data.IterableDataset):
    """The training samples of this rank's loader workers, `per_worker` each an epoch, resumable at any batch.

    Epoch e of worker w is `raw(e)` (undecoded samples, seeded by the epoch); its i-th sample is prepared with a
    generator seeded by (seed, epoch, rank, w, i), so no sample's crop or degradation depends on another's.
    Resuming at (epoch, batches) passes over the samples of the batches already trained on without decoding
    them: the DataLoader takes batch j of an epoch from worker j % workers. A sample that cannot be read still
    counts as drawn, so the position is exact on intact shards; each unreadable one after the cut (skipped and
    counted) shortens a batch, and a resume across it lands one sample late.
    """

    def __init__(self, raw, prepare, handler, seed: int, per_worker: int, batch_size: int):
        self.raw, self.prepare, self.handler, self.seed = raw, prepare, handler, seed
        self.per_worker, self.batch_size = per_worker, batch_size
        self.resume_at(0, 0)

    def resume_at(self, epoch: int, batches: int) -> None:
        """Start at batch `batches` of epoch `epoch` (before the loader starts its workers)."""
        self.resume_epoch, self.resume_batches = epoch, batches
        self.epoch = epoch - 1  # each worker's copy counts the epochs it served (persistent workers)

    def __iter__(self):
        self.epoch += 1
        rank, _, worker, workers = wds.utils.pytorch_worker_info()
        done = 0
        if self.epoch == self.resume_epoch:
            done = max(0, -(-(self.resume_batches - worker) // workers)) * self.batch_size
        samples = islice(self.raw(derive_seed(self.seed, self.epoch), self.handler), done, self.per_worker)
        for index, sample in enumerate(samples, start=done):
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, rank, worker, index))
            try:
                yield self.prepare(sample, generator)
            except Exception as exn:
                self.handler(exn)  # counts and skips it, or raises


class TrainingLoader(DataLoader):
    """The training DataLoader, resumable: Lightning's fit loop saves its `state_dict` (the stream's position) in
    each checkpoint and gives it back to `load_state_dict` on a resume, before the workers start."""

    def __init__(self, stream: TrainingStream, position, **kwargs):
        super().__init__(stream, **kwargs)
        self._position = position

    def state_dict(self) -> dict:
        return self._position()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.resume_at(state["epoch"], state["batches"])


def clip_window(
    clip_shape: Sequence[int], frames: int, size: int, scale: int, key: str, generator: torch.Generator | None
) -> tuple[int, int, int]:
    """(t0, y0, x0) of a frames x size x size crop of a (T, H, W) clip, with y0 and x0 multiples of `scale` (so an
    LQ crop at 1/scale matches exactly): drawn with a generator, centred without."""
    draw = None if generator is None else (lambda n: torch.randint(n, (), generator=generator))
    return crop_window(clip_shape, (frames, size, size), (1, scale, scale), draw, f"clip {key} (TxHxW)")


def shard_samples(url: str) -> list[tuple[str, frozenset[str]]]:
    """The samples of a shard in order, (key, member suffixes), grouped as webdataset groups them; read from the tar
    headers only (a local shard is not read through). A damaged shard lists the samples before the damage: reading
    it later reports the damage, as a skipped sample."""
    samples: dict[str, set[str]] = {}  # a key met again further on is webdataset's duplicate: the first one counts
    last, stream = None, None
    try:
        if os.path.isfile(url):
            tar = tarfile.open(url)
        else:
            stream = wds.gopen(url)
            tar = tarfile.open(fileobj=stream, mode="r|*")
        with tar:
            for info in tar:
                if not info.isreg() or re.match(r"__[^/]*__($|/)", info.name):
                    continue  # what webdataset's tar_file_iterator passes over
                key, suffix = wds.tariterators.base_plus_ext(info.name)
                if key is not None and (key == last or key not in samples):
                    samples.setdefault(key, set()).add(suffix.lower())
                last = key
    except Exception:
        pass
    finally:
        if stream is not None:
            stream.close()
    return [(key, frozenset(suffixes)) for key, suffixes in samples.items()]


class EvaluationStream(torch.utils.data.IterableDataset):
    """One rank's share of a validation or test set, as whole batches (a DataLoader with batch_size=None).

    `batches` are this rank's: lists of (url, key), in the order of the global list the ranks were dealt from, and
    [] for a padding step. A padding step, or a batch none of whose samples can be read, is a batch of one zero
    clip with "weight" 0 when several ranks validate (they all run as many steps); one process drops it. Real
    batches have "weight" 1 per clip. Loader worker w takes the batches w, w + workers, ... (the DataLoader
    returns batch j from worker j % workers), and reads from each shard only up to its last sample there.
    """

    def __init__(self, batches, members, prepare, handler, padding, pad: bool):
        self.batches, self.members, self.prepare, self.handler = batches, members, prepare, handler
        self.padding, self.pad = padding, pad

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        _, _, worker, workers = wds.utils.pytorch_worker_info()
        mine = self.batches[worker::workers]
        raw = self._raw([sample for batch in mine for sample in batch])
        for batch in mine:
            items = []
            for sample in (next(raw) for _ in batch):
                if sample is None:
                    continue
                try:
                    items.append(self.prepare(sample))
                except Exception as exn:
                    if not self.handler(exn):  # counts and skips it, or raises
                        raise
            if items:
                yield {**default_collate(items), "weight": torch.ones(len(items))}
            elif self.pad:
                yield self.padding()

    def _raw(self, wanted):
        """The raw sample (or None where it could not be read) of each wanted (url, key), in order."""
        for url, group in groupby(wanted, key=lambda sample: sample[0]):
            yield from self._read_shard(url, [key for _, key in group])

    def _read_shard(self, url: str, keys: list[str]):
        members = {key: self.members[url][key] for key in keys}
        pending, left = iter(keys), len(keys)
        partial: dict[str, dict] = {}
        done: set[str] = set()
        stream = None
        try:
            stream = wds.gopen(url)
            select = lambda name: wds.tariterators.base_plus_ext(name)[0] in members  # noqa: E731
            for file in wds.tariterators.tar_file_iterator(stream, handler=self.handler, select_files=select):
                key, suffix = wds.tariterators.base_plus_ext(file["fname"])
                if key in done:
                    continue
                sample = partial.setdefault(key, {"__key__": key, "__url__": url})
                sample[suffix.lower()] = file["data"]
                if members[key] <= sample.keys():
                    del partial[key]
                    done.add(key)
                    for expected in pending:  # those before it could not be read
                        left -= 1
                        yield sample if expected == key else None
                        if expected == key:
                            break
                    if not left:
                        break  # the rest of the shard is other loaders'
        except Exception as exn:  # a damaged shard: the samples after the damage are lost
            exn.args = exn.args + (stream, url)  # as webdataset reports it (so a truncation counts once)
            if not self.handler(exn):
                raise
        finally:
            if stream is not None:
                stream.close()
        for _ in pending:
            yield None


class VideoShardDataModule(L.LightningDataModule):
    def __init__(
        self,
        train_shards: str,
        val_shards: str | None = None,
        test_shards: str | None = None,
        scale: int = 4,
        clip_frames: int = 9,
        crop_size: int = 64,
        val_crop_size: int | None = None,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int = 1000,
        shuffle_buffer: int = 64,
        degradation: Degradation | None = None,
        seed: int = 0,
        build_demo_if_missing: bool = False,
        use_stored_lq: bool = False,
        use_cached_latents: bool = False,
        resample_shards: bool = True,
    ):
        """Clips from WebDataset shards, cropped and degraded on the fly.

        Args:
            train_shards: Folder of .tar shards, a glob, or a brace pattern.
            val_shards: Validation shards (finite, deterministic). None disables validation.
            test_shards: Shards of `litevsr test`, read as validation reads its own. Default: val_shards.
            scale: Upscaling factor: LQ is HQ / scale.
            clip_frames: Frames per training clip (the backbone needs 1 + 4k for Wan's VAE).
            crop_size: HQ crop size in pixels (a multiple of scale and of the backbone's VAE x patch stride).
            val_crop_size: HQ centre-crop size for validation. Default: crop_size.
            batch_size: Training clips per batch (per device).
            val_batch_size: Validation clips per batch. Default: batch_size.
            num_workers: Data-loader worker processes (decoding and degradation run there).
            samples_per_epoch: Training clips per epoch, over all devices and workers (rounded down to whole
                batches per worker).
            shuffle_buffer: Samples held for shuffling across shards.
            degradation: How LQ is made from HQ. Default: SimpleDegradation().
            seed: Seed of the validation degradations (combined with each sample's key).
            build_demo_if_missing: Build the demo shards (openly licensed, offline) if the folders are empty.
            use_stored_lq: Use the LQ clips stored in the shards (make_shards.py --lq-variants K --scale S, with S
                equal to `scale`) instead of `degradation`: training picks one of the K at random, validation a
                fixed one per key. Crops are aligned to the scale so HQ and LQ crops match exactly.
            use_cached_latents: Train on the latents stored in the shards (make_shards.py --latents BACKBONE
                --lq-variants K --crop SIZE): the HQ latent and the condition latent of one of the K stored LQ
                variants, so training runs no VAE. Crops, windows and degradations are then the stored ones:
                clip_frames, crop_size and `degradation` do not apply to training. Validation still decodes pixels.
            resample_shards: Draw training shards with replacement (each rank and worker on its own, endless).
                False: exact epochs, as with a DistributedSampler: every pass deals the shuffled shards out to the
                ranks and workers, so no clip is seen twice within `samples_per_epoch` (at most the clips in the
                shards); the shard count must be a multiple of ranks x workers, so all ranks see as many batches.
        """
        super().__init__()
        if crop_size % scale:
            raise LiteVSRError(f"crop_size {crop_size} is not a multiple of scale {scale}")
        self.save_hyperparameters(ignore=["degradation"])
        self.degradation = degradation or SimpleDegradation()
        self._skipped = None  # multiprocessing.Value, made with the first loader

    def __getstate__(self) -> dict:
        # loader workers get a copy through the streams' bound methods; the trainer, and the model, stay behind
        return {**self.__dict__, "trainer": None}

    @property
    def skipped_samples(self) -> int:
        """Corrupt samples skipped so far by this process's loaders and their workers (all epochs)."""
        return self._skipped.value if self._skipped is not None else 0

    def teardown(self, stage: str) -> None:
        if self.skipped_samples:
            rank = wds.utils.pytorch_worker_info()[0]
            warnings.warn(
                f"litevsr: {self.skipped_samples} unreadable sample(s) were skipped so far (rank {rank}, "
                "all loader workers)",
                UserWarning,
                stacklevel=2,
            )

    def _handler(self) -> SkippedSamples:
        if self._skipped is None:
            self._skipped = LOADER_CONTEXT.Value("q", 0)
        return SkippedSamples(self._skipped)

    def prepare_data(self) -> None:
        if self.hparams.build_demo_if_missing:
            from litevsr.data.demo_shards import build_demo_shards

            build_demo_shards(self.hparams.train_shards, self.hparams.val_shards)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.train_urls = shard_urls(hp.train_shards) if stage == "fit" else []  # predict/validate need val only
        self.val_urls = shard_urls(hp.val_shards) if hp.val_shards else []
        self.test_urls = shard_urls(hp.test_shards) if hp.test_shards else self.val_urls
        for spec, size, cached in (
            (hp.train_shards, hp.crop_size, hp.use_cached_latents),
            (hp.val_shards, hp.val_crop_size or hp.crop_size, False),
            (hp.test_shards, hp.val_crop_size or hp.crop_size, False),
        ):
            manifest = read_manifest(spec) if spec else None
            if manifest and "splits" in manifest:
                raise LiteVSRError(f"{spec} holds the splits {sorted(manifest['splits'])}: point at one of them")
            if manifest and not manifest.get("clips", 1):
                raise LiteVSRError(f"the shards in {spec} hold no clips (see its manifest.json)")
            if (
                manifest
                and cached
                and not (
                    manifest.get("latents")
                    and manifest.get("lq_variants", 0) >= 1
                    and manifest.get("scale") == hp.scale
                )
            ):
                raise LiteVSRError(
                    f"use_cached_latents needs shards made with make_shards.py --latents BACKBONE --lq-variants K "
                    f"--scale {hp.scale}; {spec} has latents: {bool(manifest.get('latents'))}, "
                    f"{manifest.get('lq_variants', 0)} LQ variant(s) at scale {manifest.get('scale')}"
                )
            if manifest and cached:
                continue  # training uses the stored clips whole
            if (
                manifest
                and hp.use_stored_lq
                and (manifest.get("lq_variants", 0) < 1 or manifest.get("scale") != hp.scale)
            ):
                raise LiteVSRError(
                    f"use_stored_lq needs shards made with make_shards.py --lq-variants K --scale {hp.scale}; {spec} "
                    f"has {manifest.get('lq_variants', 0)} LQ variant(s) at scale {manifest.get('scale')}"
                )
            if manifest and (
                manifest["min_frames"] < hp.clip_frames or min(manifest["min_height"], manifest["min_width"]) < size
            ):
                raise LiteVSRError(
                    f"shards in {spec} hold clips as small as {manifest['min_frames']}x{manifest['min_height']}x"
                    f"{manifest['min_width']} (TxHxW), shorter or smaller than the crop {hp.clip_frames}x{size}x{size}"
                )

    def _pair(self, sample: dict, size: int, generator: torch.Generator, random_crop: bool) -> dict:
        if "lq_frames" in sample:
            return self._stored_pair(sample, size, generator if random_crop else None)
        t0, y0, x0 = clip_window(
            sample["frames"].shape[:3],
            self.hparams.clip_frames,
            size,
            1,
            sample["key"],
            generator if random_crop else None,
        )
        hq = frames_to_video(sample["frames"][t0 : t0 + self.hparams.clip_frames, y0 : y0 + size, x0 : x0 + size])
        if random_crop and torch.rand((), generator=generator) < 0.5:
            hq = hq.flip(-1)
        return {"hq": hq, "lq": self.degradation(hq, self.hparams.scale, generator), "key": sample["key"]}

    def _stored_pair(self, sample: dict, size: int, generator: torch.Generator | None) -> dict:
        hq_u8, lq_u8, s, key = sample["frames"], sample["lq_frames"], self.hparams.scale, sample["key"]
        t, h, w = hq_u8.shape[:3]
        if lq_u8.shape[:3] != (t, h // s, w // s) or h % s or w % s:
            raise LiteVSRError(
                f"sample {key}: stored LQ is {lq_u8.shape[:3]}, expected {(t, h // s, w // s)} for "
                f"HQ {(t, h, w)} at scale {s}"
            )
        t0, y0, x0 = clip_window((t, h, w), self.hparams.clip_frames, size, s, key, generator)
        t1 = t0 + self.hparams.clip_frames
        hq = frames_to_video(hq_u8[t0:t1, y0 : y0 + size, x0 : x0 + size])
        lq = frames_to_video(lq_u8[t0:t1, y0 // s : (y0 + size) // s, x0 // s : (x0 + size) // s])
        if generator is not None and torch.rand((), generator=generator) < 0.5:
            hq, lq = hq.flip(-1), lq.flip(-1)
        return {"hq": hq, "lq": lq, "key": key}

    def _decode_train(self, sample: dict, generator: torch.Generator) -> dict:
        if not self.hparams.use_stored_lq:
            return decode_sample(sample)
        variants = stored_lq_variants(sample)
        if not variants:
            raise SampleFormatError(
                f"sample {sample['__key__']} holds no stored LQ (lq0.mkv ...) but use_stored_lq "
                "is set: build the shards with make_shards.py --lq-variants K"
            )
        return decode_sample(sample, int(torch.randint(variants, (), generator=generator)))

    def _decode_val(self, sample: dict) -> dict:
        if not self.hparams.use_stored_lq:
            return decode_sample(sample)
        variants = stored_lq_variants(sample)
        return decode_sample(sample, zlib.crc32(sample["__key__"].encode()) % variants if variants else 0)

    @staticmethod
    def _cached_latents(sample: dict, generator: torch.Generator) -> dict:
        """HQ latents and the condition latents of a random stored LQ variant; no pixels are decoded."""
        key = sample["__key__"]
        meta = sample_metadata(sample).get("latents") or {}
        if LATENTS_MEMBER not in sample or "vae_fingerprint" not in meta:
            raise SampleFormatError(
                f"sample {key} holds no cached latents with a VAE fingerprint: build the shards "
                "with make_shards.py --latents BACKBONE --lq-variants K"
            )
        latents = decode_latents(sample[LATENTS_MEMBER])
        conditions = sorted(k for k in latents if k.startswith("cond"))
        if not conditions:
            raise SampleFormatError(f"sample {key} holds no condition latents: build the shards with --lq-variants K")
        cond = conditions[int(torch.randint(len(conditions), (), generator=generator))]
        return {
            "hq_latents": latents["hq"].float(),
            "cond_latents": latents[cond].float(),
            "vae_fingerprint": meta["vae_fingerprint"],
            "key": key,
        }

    def _train_sample(self, sample: dict, generator: torch.Generator) -> dict:
        """A raw training sample -> its batch entry: cached latents, or a cropped, degraded pair."""
        if self.hparams.use_cached_latents:
            return self._cached_latents(sample, generator)
        return self._pair(self._decode_train(sample, generator), self.hparams.crop_size, generator, random_crop=True)

    def _val_pair(self, sample: dict) -> dict:
        generator = torch.Generator().manual_seed(self.hparams.seed ^ zlib.crc32(sample["key"].encode()))
        return self._pair(sample, self.hparams.val_crop_size or self.hparams.crop_size, generator, random_crop=False)

    def _workers(self) -> dict:
        workers = self.hparams.num_workers
        if not workers:
            return {"num_workers": 0}
        rank, world = wds.utils.pytorch_worker_info()[:2]
        return {
            "num_workers": workers,
            "persistent_workers": True,
            "multiprocessing_context": LOADER_CONTEXT,
            "worker_init_fn": functools.partial(_join_loop, os.getpid(), rank, world),
        }

    def _raw_training_samples(self, seed: int, handler: SkippedSamples) -> wds.DataPipeline:
        """One epoch's endless stream of undecoded training samples on this rank and loader worker.

        Shard draws and the shuffle buffer are seeded by `seed`, from seed_everything's and the epoch (webdataset's
        defaults mix in the pid and the clock), so the same recipe and seed give the same stream, and a resume
        can rebuild any epoch's; each rank and worker draws its own shards (ResampledShards seeds per rank and
        worker)."""
        if self.hparams.resample_shards:
            shards = [wds.ResampledShards(self.train_urls, seed=seed, deterministic=True)]
        else:  # the same shuffle on every rank (advanced per pass), then each rank and worker takes its share
            shards = [
                wds.SimpleShardList(self.train_urls),
                wds.detshuffle(len(self.train_urls), seed=seed),
                wds.split_by_node,
                wds.split_by_worker,
            ]
        stages = [*shards, wds.tarfile_to_samples(handler=handler), wds.shuffle(self.hparams.shuffle_buffer, seed=seed)]
        return wds.DataPipeline(*stages).repeat()  # passes over the shards as long as the epoch needs

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        world = self.trainer.world_size if self.trainer else 1
        workers = max(1, hp.num_workers)
        if not hp.resample_shards and len(self.train_urls) % (world * workers):
            raise LiteVSRError(
                f"resample_shards=False needs a shard count that is a multiple of ranks x workers "
                f"({world} x {workers}); {hp.train_shards} has {len(self.train_urls)}"
            )
        per_worker = max(1, hp.samples_per_epoch // (world * workers * hp.batch_size)) * hp.batch_size
        stream = TrainingStream(
            self._raw_training_samples,
            self._train_sample,
            self._handler(),
            torch.initial_seed(),
            per_worker,
            hp.batch_size,
        )
        return TrainingLoader(stream, self._stream_position, batch_size=hp.batch_size, **self._workers())

    def _stream_position(self) -> dict:
        """The training stream's position for a checkpoint: the epoch and the batches of it trained on."""
        # as Lightning counts them: a fit saved after its epoch's last batch resumes that epoch, with none left
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self.trainer.current_epoch, "batches": batches}

    def val_dataloader(self):
        return self._evaluation_loader(self.val_urls, "validating", self.hparams.val_shards)

    def test_dataloader(self):
        return self._evaluation_loader(self.test_urls, "testing", self.hparams.test_shards or self.hparams.val_shards)

    def _evaluation_loader(self, urls: list[str], what: str, spec: str | None):
        """Every clip once over all ranks, with fixed crops and degradations per key.

        The clips, listed in shard order, are cut into batches as one process cuts them, and rank r takes the
        batches r, r + ranks, ...: each clip is scored on one rank, and rank 0's first batch, the one the sample
        picture shows, is a single process's. Every rank runs as many steps (each a collective under DDP and FSDP),
        the short ones padded with weight-0 batches that the metrics leave out."""
        if not urls:
            return []
        rank, world = wds.utils.pytorch_worker_info()[:2]
        members = {url: dict(shard_samples(url)) for url in urls}
        samples = [(url, key) for url in urls for key in members[url]]
        size = self.hparams.val_batch_size or self.hparams.batch_size
        batches = [samples[i : i + size] for i in range(0, len(samples), size)]
        steps = -(-len(batches) // world)
        mine = batches[rank::world]
        mine += [[]] * (steps - len(mine))
        stream = EvaluationStream(
            mine,
            members,
            self._val_sample,
            self._handler(),
            self._padding_batch,
            pad=world > 1,
        )
        per_rank = f", {steps} batch(es) on each of {world} ranks" if world > 1 else ""
        rank_zero_info(f"litevsr: {what} on {len(samples)} clip(s) in {len(urls)} shard(s) from {spec}{per_rank}")
        return DataLoader(stream, batch_size=None, **self._workers())

    def _val_sample(self, sample: dict) -> dict:
        return self._val_pair(self._decode_val(sample))

    def _padding_batch(self) -> dict:
        """A batch of one zero clip of the validation shape, weight 0: a step that scores nothing."""
        hp = self.hparams
        size = hp.val_crop_size or hp.crop_size
        hq = torch.zeros(1, 3, hp.clip_frames, size, size)
        lq = torch.zeros(1, 3, hp.clip_frames, size // hp.scale, size // hp.scale)
        return {"hq": hq, "lq": lq, "key": ["padding"], "weight": torch.zeros(1)}

    def predict_dataloader(self):
        return self.val_dataloader()


class VideoFiles(L.LightningDataModule):
    def __init__(
        self,
        inputs: list[str],
        output_dir: str = "results/upscaled",
        scale: int = 4,
        output_format: str = "mp4",
        overwrite: bool = False,
    ):
        """Inputs for prediction: each is upscaled whole (streaming, bounded memory) into `output_dir`, as
        `litevsr upscale` does. Outputs already there are skipped (a rerun resumes), a bad input is reported and
        the others go on; over several ranks (`--trainer.devices N`), rank r upscales the r-th of every N inputs
        in sorted order.

        Args:
            inputs: Video files FFmpeg decodes, folders of video files (told apart by their extensions), or
                folders of image frames (one video each).
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
        self.files = sorted({file for path in inputs for file in self._videos(path)})
        by_output: dict[str, str] = {}
        for file in self.files:
            other = by_output.setdefault(self._output(file), file)
            if other != file:
                raise LiteVSRError(f"inputs {other} and {file} would both write {self._output(file)}")

    @staticmethod
    def _videos(path: str) -> list[str]:
        """The inputs a path stands for: the video files in a folder that holds some, else the path itself."""
        from litevsr.data.video import is_video_file

        if not os.path.isdir(path):
            return [path]
        videos = [os.path.join(path, f) for f in os.listdir(path) if is_video_file(os.path.join(path, f))]
        return videos or [path]

    def _output(self, path: str) -> str:
        suffix = ".mp4" if self.hparams.output_format == "mp4" else ""
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        return os.path.join(self.hparams.output_dir, name + suffix)

    def predict_dataloader(self) -> DataLoader:
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        hp = self.hparams
        item = {"scale": hp.scale, "overwrite": hp.overwrite}
        items = [{"input": path, "output": self._output(path), **item} for path in self.files]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        # every rank predicts at least one item (a stand-in where there are more ranks than files), so that every
        # rank gets to the end of predict, where their records are gathered
        items += [{"input": None, "output": None, **item}] * max(0, world - len(items))
        os.makedirs(hp.output_dir, exist_ok=True)
        # rank r takes items r, r + world, ...: a sampler of our own, which Lightning does not replace
        sampler = UnrepeatedDistributedSampler(items, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(items, batch_size=None, sampler=sampler)
