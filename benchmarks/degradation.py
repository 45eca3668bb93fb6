"""Throughput of the degradation pipeline on CPU data-loader workers, against a per-frame numpy reference.

17x256x256 HQ clips -> x4 LQ with RealWorldDegradation, through torch DataLoader workers over a synthetic
dataset (one torch thread per worker), for 1 and 2 workers. The reference draws the very same parameters
(`sample_params`) and applies them the way a plain numpy/OpenCV-style implementation would: frame by frame,
kernels built in numpy, OpenCV's filter2D strategy (direct below 11x11, FFT above) via scipy, PIL resizing,
numpy noise, PIL JPEG and the same PyAV codec round trip. Its agreement with the pipeline is checked on a
noise-free configuration (same parameters, so any gap is implementation differences).

    python benchmarks/degradation.py [--clips 24] [--workers 1 2]

`clips_per_second(make_loader)` is the reusable hook: give it any zero-argument factory returning an
iterable of clips (e.g. a shard-backed DataLoader) to time it the same way.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import scipy.ndimage
import scipy.signal
import scipy.special
import torch
from PIL import Image

from litevsr.data import degradations as D
from litevsr.data.degradations import RealWorldDegradation, RealWorldOptions

FRAMES, SIZE, SCALE = 17, 256, 4


def synthetic_clip(seed: int) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1]: panning colour blobs with fine texture and a few edges, on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    blobs = D.resize_video(
        torch.rand(1, 3, 1, SIZE // 16, SIZE // 16, generator=g) * 2 - 1,
        (SIZE + 2 * FRAMES, SIZE + 2 * FRAMES),
        "bicubic",
    )
    texture = D.resize_video(torch.rand(1, 1, 1, SIZE // 2, SIZE // 2, generator=g) - 0.5, blobs.shape[-2:], "bilinear")
    bars = ((torch.arange(blobs.shape[-1]) // 24) % 2).float().view(1, 1, 1, 1, -1) * 0.3
    canvas = (0.7 * blobs + 0.4 * texture + bars).clamp(-1, 1)
    return D.quantize(torch.cat([canvas[..., 2 * i : 2 * i + SIZE, i : i + SIZE] for i in range(FRAMES)], dim=2))[0]


# ------------------------------------------------------------------------------------------------ reference


def _ref_kernel(p: dict, t: int) -> np.ndarray:
    size = p["size"]
    ax = np.arange(size) - (size - 1) / 2
    x, y = np.meshgrid(ax, ax)
    if p["kind"] == "sinc":
        r = np.hypot(x, y)
        with np.errstate(invalid="ignore", divide="ignore"):
            k = p["omega"] * scipy.special.j1(p["omega"] * r) / (2 * np.pi * r)
        k[r == 0] = p["omega"] ** 2 / (4 * np.pi)
        return k / k.sum()
    sx, sy, th = (float(p[name][t]) for name in ("sigma_x", "sigma_y", "theta"))
    u, v = x * np.cos(th) + y * np.sin(th), -x * np.sin(th) + y * np.cos(th)
    q = (u / sx) ** 2 + (v / sy) ** 2
    family = p["kind"].rpartition("_")[0]
    if family == "plateau":
        k = 1 / (1 + q ** p["beta"])
    else:
        k = np.exp(-0.5 * q ** (p["beta"] if family == "generalized" else 1.0))
    return k / k.sum()


def _ref_filter2d(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """cv2.filter2D semantics (correlation, reflect-101 border); direct for small kernels, FFT for large ones."""
    p = k.shape[0] // 2
    if k.shape[0] < 11:
        return scipy.ndimage.correlate(img, k[:, :, None], mode="mirror" if p < min(img.shape[:2]) else "nearest")
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect" if p < min(img.shape[:2]) else "edge")
    return scipy.signal.fftconvolve(padded, k[::-1, ::-1, None], mode="valid", axes=(0, 1))


_PIL_FILTERS = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def _ref_resize(frames: list[np.ndarray], size: tuple[int, int], mode: str) -> list[np.ndarray]:
    if frames[0].shape[:2] == tuple(size):
        return frames
    out = []
    for f in frames:
        channels = [
            np.asarray(Image.fromarray(f[:, :, c], mode="F").resize(size[::-1], _PIL_FILTERS[mode])) for c in range(3)
        ]
        out.append(np.stack(channels, axis=-1))
    return out


def _ref_noise(frames: list[np.ndarray], p: dict, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for t, f in enumerate(frames):
        level = float(p["level"][t])
        if p["kind"] == "gaussian":
            noise = rng.standard_normal((*f.shape[:2], 1 if p["gray"] else 3)) * (2 * level / 255)
        else:
            x01 = np.clip((f + 1) / 2, 0, 1)
            if p["gray"]:
                x01 = (x01 @ np.array([0.299, 0.587, 0.114]))[:, :, None]
            noise = (rng.poisson(x01 * 255) / 255 - x01) * 2 * level
        out.append((f + noise).astype(np.float32))
    return out


def _ref_jpeg(frames: list[np.ndarray], quality) -> list[np.ndarray]:
    import io

    out = []
    for t, f in enumerate(frames):
        buffer = io.BytesIO()
        Image.fromarray(np.round((np.clip(f, -1, 1) + 1) * 127.5).astype(np.uint8)).save(
            buffer, format="JPEG", quality=int(round(min(max(float(quality[t]), 1), 100)))
        )
        out.append(np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32) / 127.5 - 1)
    return out


def _ref_blur(frames: list[np.ndarray], p: dict | None) -> list[np.ndarray]:
    if p is None:
        return frames
    return [_ref_filter2d(f, _ref_kernel(p, t)).astype(np.float32) for t, f in enumerate(frames)]


def reference_degrade(hq: torch.Tensor, scale: int, params: dict, seed: int) -> torch.Tensor:
    """The pipeline's stages applied frame by frame with numpy, scipy and PIL (no old-film extras)."""
    source = params["source"]
    if source["flicker"] is not None or source["grain"] or source["scratches"] or source["dust"]:
        raise NotImplementedError("the reference covers the realesrgan stages only")
    rng = np.random.default_rng(seed)
    h, w = hq.shape[-2:]
    target = (h // scale, w // scale)
    frames = list(hq.permute(1, 2, 3, 0).numpy().astype(np.float32))
    s1, s2 = params["stage1"], params["stage2"]
    frames = _ref_blur(frames, s1["blur"])
    frames = _ref_resize(frames, tuple(max(1, int(n * s1["resize"]["factor"])) for n in (h, w)), s1["resize"]["mode"])
    frames = _ref_jpeg(_ref_noise(frames, s1["noise"], rng), s1["jpeg"])
    frames = _ref_blur(frames, s2["blur"])
    frames = _ref_resize(frames, tuple(max(1, int(n * s2["resize"]["factor"])) for n in target), s2["resize"]["mode"])
    frames = _ref_noise(frames, s2["noise"], rng)
    if s2["posterize"]:
        raise NotImplementedError("the reference covers the realesrgan stages only")
    if s2["jpeg_first"]:
        frames = _ref_blur(_ref_resize(_ref_jpeg(frames, s2["jpeg"]), target, s2["final_mode"]), s2["final_sinc"])
    else:
        frames = _ref_jpeg(_ref_blur(_ref_resize(frames, target, s2["final_mode"]), s2["final_sinc"]), s2["jpeg"])
    video = np.round((np.clip(np.stack(frames), -1, 1) + 1) * 127.5).astype(np.uint8)
    if params["codec"]:
        video = D._codec_roundtrip(video, params["codec"]["codec"], params["codec"]["bitrate"], 25)
    return torch.from_numpy(video).permute(3, 0, 1, 2).float() / 127.5 - 1


# ------------------------------------------------------------------------------------------------ timing


class SyntheticClips(torch.utils.data.Dataset):
    """`clips` items, each a pooled HQ clip degraded with a per-index seed by `implementation`."""

    def __init__(self, clips: int, pool: list[torch.Tensor], degradation: RealWorldDegradation, implementation: str):
        self.clips, self.pool, self.degradation, self.implementation = clips, pool, degradation, implementation

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, i: int) -> dict:
        hq, generator = self.pool[i % len(self.pool)], torch.Generator().manual_seed(i)
        start = time.process_time()  # this worker's CPU time: robust to other load on the machine
        if self.implementation == "torch":
            lq = self.degradation(hq, SCALE, generator)
        else:
            lq = reference_degrade(hq, SCALE, self.degradation.sample_params(hq.shape[1], generator), seed=i)
        return {"lq": lq, "cpu_s": time.process_time() - start}


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


def clips_per_second(make_loader, warmup: int = 1, on_item=None) -> float:
    """Iterate a fresh loader; time from the `warmup`-th clip (worker start-up excluded) to the last.

    `on_item(item)` sees every item, e.g. to collect per-clip statistics.
    """
    start, seen = None, 0
    for item in make_loader():
        seen += 1
        if on_item is not None:
            on_item(item)
        if seen == warmup:
            start = time.perf_counter()
    if seen <= warmup:
        raise ValueError(f"the loader gave {seen} clips, need more than warmup={warmup}")
    return (seen - warmup) / (time.perf_counter() - start)


def measure(implementation: str, workers: int, clips: int, pool, degradation) -> tuple[float, float]:
    """(clips/s through `workers` DataLoader workers, mean CPU seconds per clip) over clips 0..clips-1."""
    dataset = SyntheticClips(clips, pool, degradation, implementation)
    make = lambda: torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,  # noqa: E731
        worker_init_fn=_one_thread,
        prefetch_factor=2,
    )
    cpu = []
    rate = clips_per_second(make, warmup=workers, on_item=lambda item: cpu.append(item["cpu_s"]))
    return rate, float(np.mean(cpu))


def agreement_psnr() -> float:
    """PSNR between pipeline and reference on the same parameters with noise and codec off (same JPEG encoder)."""
    quiet = RealWorldDegradation(
        RealWorldOptions(noise_sigma=(0.0, 0.0), second_noise_sigma=(0.0, 0.0), gaussian_noise_prob=1.0, codec_prob=0.0)
    )
    scores = []
    for seed in range(3):
        hq = synthetic_clip(100 + seed)
        params = quiet.sample_params(FRAMES, torch.Generator().manual_seed(seed))
        a = quiet.apply(hq, SCALE, params, torch.Generator().manual_seed(seed))
        b = reference_degrade(hq, SCALE, params, seed)
        scores.append(10 * math.log10(4 / float(((a - b) ** 2).mean().clamp(min=1e-12))))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips per measurement (the same seeds for both)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["realesrgan", "anime", "old_film", "phone_lowbitrate"],
        help="presets timed with the most workers (the reference covers realesrgan only)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    pool = [synthetic_clip(seed) for seed in range(4)]
    rows = []
    realesrgan = RealWorldDegradation("realesrgan")
    for workers in args.workers:
        ours, ours_cpu = measure("torch", workers, args.clips, pool, realesrgan)
        reference, reference_cpu = measure("reference", workers, args.clips, pool, realesrgan)
        rows.append(
            {
                "preset": "realesrgan",
                "workers": workers,
                "clips_per_s": ours,
                "cpu_s_per_clip": ours_cpu,
                "reference_clips_per_s": reference,
                "reference_cpu_s_per_clip": reference_cpu,
                "speedup_vs_reference": ours / reference,
                "cpu_speedup_vs_reference": reference_cpu / ours_cpu,
            }
        )
        print(rows[-1], file=sys.stderr)
    for preset in args.presets:
        if preset != "realesrgan":
            rate, cpu = measure("torch", max(args.workers), args.clips, pool, RealWorldDegradation(preset))
            rows.append(
                {
                    "preset": preset,
                    "workers": max(args.workers),
                    "clips_per_s": rate,
                    "cpu_s_per_clip": cpu,
                    **{
                        key: "-"
                        for key in (
                            "reference_clips_per_s",
                            "reference_cpu_s_per_clip",
                            "speedup_vs_reference",
                            "cpu_speedup_vs_reference",
                        )
                    },
                }
            )
            print(rows[-1], file=sys.stderr)
    agreement = agreement_psnr()
    from common import report

    report(
        "degradation",
        rows,
        [
            "preset",
            "workers",
            "clips_per_s",
            "cpu_s_per_clip",
            "reference_clips_per_s",
            "reference_cpu_s_per_clip",
            "speedup_vs_reference",
            "cpu_speedup_vs_reference",
        ],
        {
            "clip": f"{FRAMES}x{SIZE}x{SIZE} HQ -> x{SCALE} LQ, synthetic content",
            "clips_timed": args.clips,
            "load_average_1_5_15": os.getloadavg(),
            "note": "clips/s depend on other load: with a load above the CPU count a second worker finds no free core; "
            "the CPU-time columns and their ratio are the stable comparison",
            "cpu_s_per_clip": "CPU time of the worker per clip (one torch thread), robust to other load",
            "reference": "same sampled parameters, per frame: numpy kernels, scipy filter2D-style blur (direct < 11, "
            "FFT >= 11), PIL float resize, numpy noise, PIL JPEG, the same PyAV codec",
            "agreement_psnr_db_noise_free": agreement,
            "shards": "not measured here; time a shard DataLoader with clips_per_second(make_loader)",
        },
    )
    print(f"agreement with the reference (same parameters, noise and codec off): {agreement:.1f} dB PSNR")


if __name__ == "__main__":
    main()
