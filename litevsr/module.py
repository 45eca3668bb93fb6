"""The Lightning training loop: flow matching on adapter parameters only; the backbone stays frozen."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, ImageDraw

import litevsr.flow as flow
from litevsr.adapters.base import Adapter, backbone_dims, load_adapter, load_adapter_weights
from litevsr.backbones.base import VideoBackbone
from litevsr.errors import LiteVSRError
from litevsr.frames import resize_video
from litevsr.inference import upscale_or_skip
from litevsr.metrics import frame_metrics
from litevsr.model import LiteVSR
from litevsr.pipeline import LiteVSRPipeline, Sampling, adapter_folder, recorded_sampling
from litevsr.schedulers import make_scheduler
from litevsr.seeds import derive_seed

TRAINED_PREFIX = "model."  # checkpoint keys are "model." + LiteVSR.trained_parameters() names
LOSS_WEIGHTINGS = ("uniform", "vae_scale")
#: An adapter as recipes give it: a class and its arguments, called with the backbone's dimensions.
AdapterCallable = Callable[[dict], Adapter]


def labelled(grid, labels: list[str]) -> Image.Image:
    """An image grid (H, W, 3) uint8 of equal columns under a header naming each column."""
    header = Image.new("RGB", (grid.shape[1], 18), (255, 255, 255))
    draw, width = ImageDraw.Draw(header), grid.shape[1] // len(labels)
    for i, label in enumerate(labels):
        draw.text((i * width + 4, 3), label, fill=(0, 0, 0))
    image = Image.new("RGB", (grid.shape[1], grid.shape[0] + header.height))
    image.paste(header, (0, 0))
    image.paste(Image.fromarray(grid), (0, header.height))
    return image


def default_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)


class LiteVSRModule(L.LightningModule):
    def __init__(
        self,
        backbone: VideoBackbone,
        adapter: AdapterCallable | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        sigma_mean: float = 0.0,
        sigma_std: float = 1.0,
        sigma_shift: float = 1.0,
        sampling: Sampling | None = None,
        start_state_prob: float = 0.0,
        loss_weighting: str = "uniform",
        val_references: bool = True,
        gradient_checkpointing: bool = False,
        num_logged_samples: int = 4,
        init_adapter: str | None = None,
        init_adapter_grow: bool = False,
    ):
        """Train an adapter on a frozen backbone with rectified flow matching.

        Args:
            backbone: The frozen video DiT + VAE.
            adapter: The trainable adapter: its class and arguments (called with the backbone's dimensions, like
                the optimizer with the parameters), or an adapter built for this backbone. Its parameters are the
                only ones optimised. Leave it out to rebuild the one in `init_adapter`.
            optimizer: Optimizer class and arguments, applied to the adapter's parameters. Default: AdamW with
                lr 1e-4 and no weight decay.
            lr_scheduler: Optional LR scheduler (stepped every optimizer step).
            sigma_mean: Mean of the logit-normal sigma distribution in training.
            sigma_std: Std of the logit-normal sigma distribution in training.
            sigma_shift: Time shift applied to training sigmas (>1 favours high noise).
            sampling: The sampler of validation and prediction, which the exported adapter records: steps,
                shift, sigma_start (start from the LQ latent noised to this sigma; 1 = pure noise), start_noise
                (scale of the start state's noise: 0 is (1 - sigma_start) * LQ latent, deterministic, so no fresh
                noise per frame can flicker), seed, tiles and color_fix (towards the bicubic upsampling of the LQ:
                none, wavelet, adain or lab; see litevsr.color). With `init_adapter`, the sampler it records, with
                the fields given here in place of its values (`--model.sampling.steps 4` changes the steps only).
                Default: one Euler step from pure noise.
            start_state_prob: Share of training samples taken at the sampler's start state (see `sampling`), with
                the velocity that lands on the HQ latent in one step. 0 is plain flow matching; with
                sampling.sigma_start = 1 both coincide.
            loss_weighting: "uniform" (every normalised latent channel alike, as flow matching usually does) or
                "vae_scale" (each channel's error weighted by its variance before normalisation, latents_std^2:
                the loss of the unnormalised latent; for the PCA VAE that is the pixel MSE, which PSNR measures).
            val_references: Also log the frozen generator without adapter and the VAE reconstruction.
            gradient_checkpointing: Recompute backbone and adapter activations in backward to save memory.
            num_logged_samples: Validation samples shown as LQ | SR | GT images in TensorBoard.
            init_adapter: Start from an exported adapter's weights: a path, or the name of a shipped adapter
                ("general": the default x4 adapter of the tiny generator). Its configuration must match `adapter`.
            init_adapter_grow: Let `adapter` be larger than `init_adapter` (e.g. injecting into more blocks): every
                stored tensor must fit, and the new ones keep their initialisation (zero injections add nothing).
        """
        super().__init__()
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise LiteVSRError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        self.save_hyperparameters(ignore=["backbone", "adapter", "optimizer", "lr_scheduler", "sampling"])
        if adapter is not None and not isinstance(adapter, Adapter):
            # the recipe's class and arguments, on this backbone (a meta-device one gets a meta-device adapter)
            with torch.device(backbone.device):
                adapter = adapter(backbone_dims=backbone_dims(backbone))
        if init_adapter is not None:
            path = adapter_folder(init_adapter)
            sampling = Sampling.of(recorded_sampling(path), sampling)
            if adapter is None:
                adapter = load_adapter(path, backbone)
            else:
                adapter.attach(backbone)
                new = load_adapter_weights(adapter, path, grow=init_adapter_grow)
                if new:
                    rank_zero_info(
                        f"litevsr: {len(new)} adapter tensors are new to {path} and start as "
                        f"initialised (e.g. {new[0]})"
                    )
        elif adapter is None:
            raise LiteVSRError("give the model an adapter (model.adapter) or an adapter file (model.init_adapter)")
        self.model = LiteVSR(backbone, adapter)
        self.sampling = sampling or Sampling()
        # what validation and prediction sample through: the modules above, not copies
        self.pipeline = LiteVSRPipeline(
            backbone,
            adapter,
            make_scheduler(self.sampling.scheduler, self.sampling.shift),
            sampling=self.sampling.settings(),
        )
        self._tiles_reported = False  # validation says once which tiles it samples on
        self.hparams["sampling"] = self.sampling.settings()  # plain values: checkpoints load weights-only
        # A function as the default would reach the CLI as its name, a string: resolve it here instead.
        self.optimizer_factory, self.scheduler_factory = optimizer or default_optimizer, lr_scheduler
        self.strict_loading = False  # checkpoints hold the adapter only
        if gradient_checkpointing:
            backbone.transformer.enable_gradient_checkpointing()
            adapter.gradient_checkpointing = True

    @property
    def backbone(self) -> VideoBackbone:
        return self.model.backbone

    @property
    def adapter(self) -> Adapter:
        return self.model.adapter

    def parameter_counts(self) -> dict[str, float]:
        """Trainable and frozen parameters. `share` is trainable / the transformer's parameters (VAE excluded), as
        the paper counts "trainable parameters within the diffusion backbone"."""
        trainable = sum(p.numel() for p in self.model.trained_parameters().values())
        transformer = self.backbone.transformer_parameters  # as loaded, before a method adds layers
        frozen = sum(p.numel() for p in self.backbone.parameters() if not p.requires_grad)
        return {"trainable": trainable, "transformer": transformer, "frozen": frozen, "share": trainable / transformer}

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        rank_zero_info(
            f"litevsr: trainable {counts['trainable']:,} | transformer "
            f"{counts['transformer']:,} (+ VAE: {counts['frozen']:,} frozen in all) "
            f"| trainable share of the transformer {100 * counts['share']:.2f}%"
        )

    def configure_model(self) -> None:
        """Under Lightning's ModelParallelStrategy (FSDP2): shard the frozen transformer block by block (each family's
        `blocks` are its wrap units), then the transformer's remaining layers and the adapter, whose gradients FSDP
        then reduces over the ranks. Other strategies leave the module as it is."""
        mesh = self.device_mesh
        if mesh is None or getattr(self.adapter, "_fsdp_sharded", False):
            return
        if mesh.ndim > 1 and mesh["tensor_parallel"].size() > 1:
            raise LiteVSRError(
                "litevsr shards data-parallel only: give ModelParallelStrategy tensor_parallel_size=1 "
                "and data_parallel_size=<devices>"
            )
        if self.adapter.edits_backbone or self.adapter.copies_backbone:
            raise LiteVSRError(
                f"FSDP supports adapters that keep the backbone as it is; a {type(self.adapter).__name__} "
                "edits or copies it: train it with DDP"
            )
        from torch.distributed.fsdp import fully_shard

        data = mesh["data_parallel"] if mesh.ndim > 1 else mesh
        for block in self.backbone.blocks:
            fully_shard(block, mesh=data)
        fully_shard(self.backbone.transformer, mesh=data)
        fully_shard(self.adapter, mesh=data)
        self.adapter._fsdp_sharded = True

    def configure_optimizers(self):
        self.model.check_frozen()
        optimizer = self.optimizer_factory(list(self.model.trained_parameters().values()))
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }

    def _encode_batch(self, batch):
        hq, lq = batch["hq"], batch["lq"]
        with torch.no_grad():
            return self.backbone.encode(hq), self.model.condition(lq, hq.shape[-2:])

    def _training_latents(self, batch):
        """(x0, cond) latents: cached in the batch (checked against this backbone's VAE), or encoded here."""
        if "hq_latents" not in batch:
            return self._encode_batch(batch)
        stale = sorted(set(batch["vae_fingerprint"]) - {self.backbone.vae_fingerprint})
        if stale:
            raise LiteVSRError(
                f"the cached latents were encoded by another VAE (fingerprint {stale[0]}, this "
                f"backbone's is {self.backbone.vae_fingerprint}): rebuild the shards with "
                "make_shards.py --latents"
            )
        return batch["hq_latents"], batch["cond_latents"]

    def training_step(self, batch, batch_idx):
        if self.global_step == 0 and batch_idx == 0 and "hq" in batch:
            self._log_degraded_examples(batch)
        x0, cond = self._training_latents(batch)
        hp = self.hparams
        # the step's draws are seeded by its position, so a resumed fit draws what an uninterrupted one would
        seed = derive_seed(torch.initial_seed(), self.global_step, batch_idx, self.global_rank)
        generator = torch.Generator(x0.device).manual_seed(seed)
        sigma = flow.sample_sigmas(
            x0.shape[0], hp.sigma_mean, hp.sigma_std, hp.sigma_shift, generator=generator, device=x0.device
        )
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x, target = flow.interpolate(x0, eps, sigma), flow.velocity_target(x0, eps)
        if hp.start_state_prob > 0:  # train where the sampler starts: one step from the noised LQ latent
            start = torch.rand(x0.shape[0], generator=generator, device=x0.device) < hp.start_state_prob
            sampler = self.sampling
            x_start = flow.start_latents(cond, sampler.start_noise * eps, sampler.sigma_start)
            pick = start.view(-1, *[1] * (x0.ndim - 1))
            x = torch.where(pick, x_start, x)
            target = torch.where(pick, flow.landing_velocity(x_start, x0, sampler.sigma_start), target)
            sigma = torch.where(start, torch.full_like(sigma, sampler.sigma_start), sigma)
        v_hat = self.model.velocity(x, sigma, cond, self.model.refinement_state(x, sigma))
        error = (v_hat.float() - target) ** 2
        if hp.loss_weighting == "vae_scale":
            variance = self.backbone.latents_std**2
            error = error * (variance / variance.mean())
        loss = error.mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def _super_resolve(self, lq, scale: int, keys, use_adapter: bool = True):
        """SR clips of an LQ batch as `litevsr upscale` gives them: the pipeline, on the tiles it picks for clips
        this size, each sample's noise keyed by its shard key (so neither the batch nor the rank changes it)."""
        size = (lq.shape[-2] * scale, lq.shape[-1] * scale)
        s = self.pipeline.resolve_tiles(self.sampling, size, lq.shape[2])
        if not self._tiles_reported:
            self._tiles_reported = True
            tiles = f"{s.tile} px tiles overlapping by {s.tile_overlap} px" if s.tile else "whole frames (one tile)"
            rank_zero_info(
                f"litevsr: validation samples {size[1]}x{size[0]} clips on the default path's tiles: {tiles}"
            )
        if not use_adapter:  # the bare generator's reference, as it samples: no colour fix either
            s = dataclasses.replace(s, color_fix="none")
        return self.pipeline.super_resolve(lq, scale, s, [str(k) for k in keys], use_adapter)

    def validation_step(self, batch, batch_idx):
        return self._score(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        """`litevsr test`: the validation metrics on the datamodule's test pairs, logged as test/..."""
        return self._score(batch, batch_idx, "test")

    def _score(self, batch, batch_idx, stage: str):
        """SR of an (hq, lq) batch and its PSNR/SSIM, beside bicubic (and the references), logged as stage/...

        Each figure is a mean over frames: logged with the batch's frame count and `sync_dist`, Lightning divides
        mean x frames, averaged over the ranks, by the frames, averaged over the ranks, so N ranks log what one
        process does. The count is a float: Lightning averages an integer count in integers (15 frames on 2 ranks
        would count as 7). Clips of "weight" 0 (the padding that keeps ranks in step, see VideoShardDataModule) run
        like the others and count for nothing."""
        hq, lq, keys = batch["hq"], batch["lq"], batch["key"]
        weight = batch.get("weight")
        scale = hq.shape[-1] // lq.shape[-1]
        bicubic = resize_video(lq, hq.shape[-2:]).clamp(-1, 1)
        outputs = {"": self._super_resolve(lq, scale, keys), "_bicubic": bicubic}
        if self.hparams.val_references:
            if not self.adapter.edits_backbone:  # an edited backbone is not the bare generator any more
                outputs["_no_adapter"] = self._super_resolve(lq, scale, keys, use_adapter=False)
            with torch.no_grad():
                outputs["_vae"] = self.backbone.decode(self.backbone.encode(hq))
        for suffix, video in outputs.items():
            for name, values in frame_metrics(video, hq, crop_border=scale).items():
                if weight is not None:  # (B*T,) frames, clip by clip
                    values = values[weight.repeat_interleave(values.numel() // weight.numel()) > 0]
                mean = values.mean() if values.numel() else values.sum()  # no frames: 0, weighing nothing
                self.log(f"{stage}/{name}{suffix}", mean, batch_size=float(values.numel()), sync_dist=True)
        if batch_idx == 0 and stage == "val" and self.global_rank == 0:  # rank 0's first batch is one process's
            real = slice(None) if weight is None else weight > 0
            self._log_samples(lq[real], bicubic[real], outputs[""][real], hq[real])
        return outputs[""]

    @staticmethod
    def _side_by_side(*videos: torch.Tensor) -> torch.Tensor:
        """Middle frames of (B, 3, T, H, W) videos in [-1, 1], side by side, as (B, 3, H, n*W) images in [0, 1]."""
        mid = videos[-1].shape[2] // 2
        return (torch.cat([v[:, :, mid] for v in videos], dim=-1).float().clamp(-1, 1) + 1) / 2

    def _add_images(self, tag: str, rows: torch.Tensor) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_images"):  # TensorBoard
            experiment.add_images(tag, rows, self.global_step)

    def _log_degraded_examples(self, batch) -> None:
        """The first training pairs, LQ (nearest-upsampled) | HQ, so the degradations can be checked by eye."""
        n = self.hparams.num_logged_samples
        hq = batch["hq"][:n]
        self._add_images(
            "train/degraded_lq_hq", self._side_by_side(resize_video(batch["lq"][:n], hq.shape[-2:], mode="nearest"), hq)
        )

    def _log_samples(self, lq, bicubic, sr, hq):
        """Aligned middle frames, LQ (nearest) | bicubic | litevsr | GT, to TensorBoard and, as a labelled PNG, into
        the run folder."""
        n = min(self.hparams.num_logged_samples, hq.shape[0])
        if not n:
            return
        rows = self._side_by_side(resize_video(lq[:n], hq.shape[-2:], mode="nearest"), bicubic[:n], sr[:n], hq[:n])
        self._add_images("val/lq_bicubic_sr_gt", rows)
        if (
            self.logger is not None
            and self.logger.log_dir
            and not self.trainer.sanity_checking
            and self.trainer.is_global_zero
        ):  # one writer of the picture
            grid = (rows.permute(0, 2, 3, 1).flatten(0, 1) * 255).round().byte().cpu().numpy()
            labelled(grid, ["LQ (nearest)", "bicubic", "litevsr", "GT"]).save(
                os.path.join(self.logger.log_dir, "val_samples.png")
            )

    def predict_step(self, batch, batch_idx):
        """A file item (litevsr.data.datamodule.VideoFiles) is upscaled into its output file, as `litevsr upscale`
        does: the record of litevsr.inference.upscale_or_skip (done; skipped, for an output already there unless
        `overwrite`; failed, with its reason, for a bad input). A validation-style batch gives SR clips at its HQ
        size, less the padding clips (weight 0) that keep ranks in step."""
        if "input" in batch:
            if batch["input"] is None:  # the stand-in of a rank with no file (more ranks than files)
                return None
            return upscale_or_skip(
                self.pipeline,
                batch["input"],
                batch["output"],
                batch["overwrite"],
                scale=batch["scale"],
                sampling=self.sampling,
            )
        sr = self._super_resolve(batch["lq"], batch["hq"].shape[-1] // batch["lq"].shape[-1], batch["key"])
        return sr if "weight" not in batch else sr[batch["weight"] > 0]

    # --- checkpoints hold what the method trains only --------------------------------------------------
    def _trained_keys(self) -> set[str]:
        """The trained parameters' names (LiteVSR.trained_parameters) and the adapter's buffers."""
        names = set(self.model.trained_parameters()) | {f"adapter.{k}" for k in self.adapter.state_dict()}
        return {TRAINED_PREFIX + k for k in names}

    def on_save_checkpoint(self, checkpoint):
        keys = self._trained_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}

    def on_load_checkpoint(self, checkpoint):
        """Loading is non-strict (the frozen backbone is not in the file), so check the trained keys here."""
        expected = self._trained_keys()
        found = set(checkpoint.get("state_dict", {}))
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        if missing or unexpected:
            problem = (
                f"misses {len(missing)} trained tensors (e.g. {missing[0]})"
                if missing
                else f"holds {len(unexpected)} unexpected tensors (e.g. {unexpected[0]})"
            )
            raise LiteVSRError(f"the checkpoint does not fit this method: it {problem}")
