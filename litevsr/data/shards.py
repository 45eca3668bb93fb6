"""WebDataset shards of clips.

A sample holds a lossless HQ clip ("hq.mkv", FFV1 RGB) and JSON metadata ("json"); shards made with
`make_shards.py --lq-variants K` add pre-degraded LQ clips "lq0.mkv" ... "lq{K-1}.mkv" (also lossless), and
`--latents` adds "latents.safetensors": the HQ clip's latents and the condition latents of each stored LQ variant.
No member is ever a pickle. The JSON records a CRC-32 of every other member ("checksums"): FFV1 decodes flipped
bytes without an error, so damage is caught by the checksum and the sample skipped like a truncated one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import zlib
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Self

import numpy as np
import webdataset as wds

from litevsr.atomic import atomic_path, write_json_atomic
from litevsr.data.video import encode_video, read_video
from litevsr.errors import LiteVSRError

MANIFEST = "manifest.json"
LQ_MEMBER = re.compile(r"^lq(\d+)\.mkv$")
LATENTS_MEMBER = "latents.safetensors"


class SampleFormatError(LiteVSRError):
    """Shards lack what the configuration asks for (e.g. stored LQ): a setup problem, never skipped."""


class DamagedSampleError(LiteVSRError):
    """A member's bytes differ from the checksum stored when it was written: skipped and counted."""


def member_checksums(sample: dict) -> dict[str, str]:
    """CRC-32 (hex) of each member of a sample to be written, but its key and JSON (which will hold them)."""
    return {name: f"{zlib.crc32(data):08x}" for name, data in sorted(sample.items()) if name not in ("__key__", "json")}


def sample_metadata(sample: dict) -> dict:
    """A raw sample's JSON, after checking every member that has a stored checksum (shards written before
    checksums have none, and are read unchecked)."""
    meta = json.loads(sample.get("json", b"{}"))
    for name, expected in (meta.get("checksums") or {}).items():
        if name in sample and f"{zlib.crc32(sample[name]):08x}" != expected:
            raise DamagedSampleError(
                f"sample {sample['__key__']}: {name} is damaged (its CRC-32 differs from the "
                "one stored when the shard was written)"
            )
    return meta


class ShardWriter:
    """Samples -> tar shards `pattern % 0`, `pattern % 1`, ..., a new one every `maxcount` samples or `maxsize`
    bytes (webdataset's TarWriter writes them), that all appear at once when the `with` block ends.

    Each shard is written under a temporary name (litevsr.atomic.atomic_path, `<shard>.<hex>.partial`) and renamed
    when the block ends without an error; an error removes them, so readers never see a half-written shard.
    `paths` lists the final paths, in order. No sample, no shard.
    """

    def __init__(self, pattern: str, maxcount: int, maxsize: float = 3e9):
        self.pattern, self.maxcount, self.maxsize = pattern, maxcount, maxsize
        self.paths: list[str] = []
        self._pending = ExitStack()  # one atomic_path per shard
        self._file = self._tar = None
        self._count = self._size = 0

    def write(self, sample: dict) -> None:
        if self._tar is None or self._count >= self.maxcount or self._size >= self.maxsize:
            self._next_shard()
        self._size += self._tar.write(sample)
        self._count += 1

    def _next_shard(self) -> None:
        self._close_shard()
        self.paths.append(self.pattern % len(self.paths))
        tmp = self._pending.enter_context(atomic_path(self.paths[-1]))
        self._file = open(tmp, "wb")  # noqa: SIM115  (open while the shard fills; closed by _close_shard)
        self._tar, self._count, self._size = wds.TarWriter(self._file), 0, 0

    def _close_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self._tar = self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self._close_shard()
        except BaseException as error:
            self._pending.__exit__(type(error), error, error.__traceback__)  # removes the temporaries
            raise
        return self._pending.__exit__(*exc)  # renames them all, or on an error removes them


def write_shards(
    clips: Iterable[tuple[str, np.ndarray, dict]], out_dir: str, clips_per_shard: int = 64, prefix: str = "clips"
) -> dict:
    """Write (key, frames_u8, metadata) clips to `out_dir/prefix-000000.tar`, ... and a manifest."""
    os.makedirs(out_dir, exist_ok=True)
    stats = {"clips": 0, "shards": 0, "min_frames": None, "min_height": None, "min_width": None, "sources": {}}
    with ShardWriter(os.path.join(out_dir, f"{prefix}-%06d.tar"), maxcount=clips_per_shard) as sink:
        for key, frames, meta in clips:
            t, h, w = frames.shape[:3]
            sample = {"__key__": key, "hq.mkv": encode_video(frames, fps=meta.get("fps", 25.0))}
            meta = {**meta, "frames": t, "height": h, "width": w, "checksums": member_checksums(sample)}
            sink.write({**sample, "json": json.dumps(meta).encode()})
            stats["clips"] += 1
            for field, value in (("min_frames", t), ("min_height", h), ("min_width", w)):
                stats[field] = value if stats[field] is None else min(stats[field], value)
            source = meta.get("source", "unknown")
            stats["sources"].setdefault(source, {"clips": 0, "license": meta.get("license", "unknown")})
            stats["sources"][source]["clips"] += 1
    stats["shards"] = len(sink.paths)
    write_json_atomic(os.path.join(out_dir, MANIFEST), stats)
    return stats


def shard_urls(spec: str) -> list[str]:
    """A folder of .tar files, a glob, or a brace pattern ("clips-{000000..000009}.tar")."""
    if os.path.isdir(spec):
        urls = sorted(glob.glob(os.path.join(spec, "*.tar")))
        splits = [d for d in ("train", "val") if os.path.isdir(os.path.join(spec, d))]
        if not urls and splits:
            raise LiteVSRError(f"no .tar shards in {spec}; it holds the splits {splits}: point at one of them")
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


def stored_lq_variants(sample: dict) -> int:
    """How many pre-degraded LQ clips (lq0.mkv, lq1.mkv, ...) a raw sample holds."""
    return sum(1 for name in sample if LQ_MEMBER.match(name))


def latents_member(latents: dict, metadata: dict | None = None) -> bytes:
    """{"hq": (C, T', H', W'), "cond0": ..., "cond{K-1}": ...} latent tensors as safetensors bytes."""
    from safetensors.torch import save

    return save(
        {k: v.contiguous() for k, v in latents.items()}, metadata={k: str(v) for k, v in (metadata or {}).items()}
    )


def decode_latents(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


def decode_sample(sample: dict, lq_variant: int | None = None) -> dict:
    """A raw tar sample -> {"key", "frames" (T, H, W, 3) uint8, "meta"}, plus "lq_frames" when `lq_variant` is
    given (the stored lq{lq_variant}.mkv). Runs in the loader workers."""
    key = sample["__key__"]
    if "hq.mkv" not in sample:
        raise LiteVSRError(f"sample {key} has no hq.mkv member")
    meta = sample_metadata(sample)
    out = {"key": key, "frames": read_video(sample["hq.mkv"]), "meta": meta}
    if lq_variant is not None:
        member = f"lq{lq_variant}.mkv"
        if member not in sample:
            raise SampleFormatError(
                f"sample {key} has no {member}: build the shards with make_shards.py "
                f"--lq-variants K, or set use_stored_lq: false"
            )
        out["lq_frames"] = read_video(sample[member])
    return out
