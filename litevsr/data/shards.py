"""WebDataset shards of clips: each sample is a lossless HQ clip ("hq.mkv", ffv1) plus JSON metadata."""

from __future__ import annotations

import glob
import json
import os
from typing import Iterable

import numpy as np
import webdataset as wds

from litevsr import LiteVSRError
from litevsr.data.video import encode_video, read_video

MANIFEST = "manifest.json"


def write_shards(clips: Iterable[tuple[str, np.ndarray, dict]], out_dir: str, clips_per_shard: int = 64,
                 prefix: str = "clips") -> dict:
    """Write (key, frames_u8, metadata) clips to `out_dir/prefix-000000.tar`, ... and a manifest."""
    os.makedirs(out_dir, exist_ok=True)
    stats = {"clips": 0, "shards": 0, "min_frames": None, "min_height": None, "min_width": None, "sources": {}}
    pattern = os.path.join(out_dir, f"{prefix}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=clips_per_shard, verbose=0) as sink:
        for key, frames, meta in clips:
            t, h, w = frames.shape[:3]
            meta = {**meta, "frames": t, "height": h, "width": w}
            sink.write({"__key__": key, "hq.mkv": encode_video(frames, fps=meta.get("fps", 25.0)),
                        "json": json.dumps(meta).encode()})
            stats["clips"] += 1
            for field, value in (("min_frames", t), ("min_height", h), ("min_width", w)):
                stats[field] = value if stats[field] is None else min(stats[field], value)
            source = meta.get("source", "unknown")
            stats["sources"].setdefault(source, {"clips": 0, "license": meta.get("license", "unknown")})
            stats["sources"][source]["clips"] += 1
        stats["shards"] = sink.shard if stats["clips"] else 0
    tmp = os.path.join(out_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(stats, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, MANIFEST))
    return stats


def shard_urls(spec: str) -> list[str]:
    """A folder of .tar files, a glob, or a brace pattern ("clips-{000000..000009}.tar")."""
    if os.path.isdir(spec):
        urls = sorted(glob.glob(os.path.join(spec, "*.tar")))
    elif "{" in spec:
        urls = list(wds.shardlists.expand_urls(spec))
        urls = [u for u in urls if os.path.exists(u) or "://" in u]
    else:
        urls = sorted(glob.glob(spec))
    if not urls:
        raise LiteVSRError(f"no .tar shards found at {spec!r}")
    return urls


def read_manifest(spec: str) -> dict | None:
    path = os.path.join(spec, MANIFEST) if os.path.isdir(spec) else None
    if path and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def decode_sample(sample: dict) -> dict:
    """A raw tar sample -> {"key", "frames" (T, H, W, 3) uint8, "meta"}. Runs in the loader workers."""
    key = sample["__key__"]
    if "hq.mkv" not in sample:
        raise LiteVSRError(f"sample {key} has no hq.mkv member")
    return {"key": key, "frames": read_video(sample["hq.mkv"]), "meta": json.loads(sample.get("json", b"{}"))}
