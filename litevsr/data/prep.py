"""Folders of videos -> WebDataset shards, at scale: parallel, resumable, optionally with a validation split,
pre-degraded LQ variants and precomputed HQ latents. The command line is data_prep/make_shards.py.

Work is split into *tasks* of `videos_per_task` consecutive videos (sorted by path). A task writes its own
shards, `<prefix>-<task:05d>-<n:04d>.tar`, under temporary names (`.tar.<hex>.partial`, shards.ShardWriter)
and renames them when the task is complete (an error removes them); then it writes a done-marker
`.make_shards/done/<task:05d>.json` with its stats. A re-run skips tasks that have a marker (and whose shards
are all there), deletes whatever unfinished (killed) tasks left behind, and redoes them, so an interrupted run
never leaves duplicate or half-written shards. Every clip is
deterministic (crops and degradations are seeded by the clip key), so a redone task writes the same samples.
The manifests are written last, atomically, from the markers.

Layout of OUT:
    OUT/.make_shards/state.json      options and input list of the run (a re-run must match them)
    OUT/.make_shards/done/*.json     one marker per finished task
    OUT/*.tar, OUT/manifest.json     without a validation split
    OUT/train/*.tar, OUT/train/manifest.json, OUT/val/..., OUT/manifest.json (summary, written last)  with one
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import math
import multiprocessing
import os
import re
import zlib
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields, replace

import torch

from litevsr.atomic import write_json_atomic
from litevsr.data.clipping import ClipOptions, ClipStats, VideoSkipped, cut_clips
from litevsr.data.shards import LATENTS_MEMBER, MANIFEST, ShardWriter, latents_member, member_checksums
from litevsr.data.video import VIDEO_EXTENSIONS, encode_video, is_video_file, iter_frames, video_info
from litevsr.errors import LiteVSRError

STATE_DIR = ".make_shards"
LATENT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class PrepOptions:
    """Everything that decides the content of the shards (recorded in the manifest; a re-run must match)."""

    clip_frames: int = 17
    stride: int | None = None  # default: clip_frames
    max_side: int = 512
    min_size: int = 64
    crop: int | None = None
    crop_mode: str = "random"
    cut_threshold: float = 30.0
    min_motion: float = 0.5
    shard_size_mb: float = 256.0
    clips_per_shard: int = 1000
    videos_per_task: int = 1
    license: str = "unknown"
    prefix: str = "clips"
    val_fraction: float = 0.0
    lq_variants: int = 0
    scale: int = 4
    degradation_preset: str | None = None
    latents: str | None = None
    latents_dtype: str = "float16"
    seed: int = 0

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


# --- inputs -----------------------------------------------------------------------------------------------


def find_videos(inputs: list[str]) -> list[str]:
    """Video files (by extension) in `inputs`, folders searched recursively; sorted absolute paths."""
    found = set()
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in os.walk(item, followlinks=True):
                found |= {os.path.abspath(os.path.join(root, f)) for f in files if is_video_file(os.path.join(root, f))}
        elif os.path.isfile(item):
            found.add(os.path.abspath(item))
        else:
            raise LiteVSRError(f"input not found: {item}")
    if not found:
        raise LiteVSRError(f"no video files in {inputs} (extensions: {' '.join(sorted(VIDEO_EXTENSIONS))})")
    return sorted(found)


def relative_names(videos: list[str]) -> list[str]:
    """Names relative to the videos' common folder: unique, and unchanged when the whole tree moves."""
    root = os.path.commonpath([os.path.dirname(v) for v in videos])
    return [os.path.relpath(v, root) for v in videos]


def split_of(name: str, val_fraction: float) -> str:
    """ "val" for a stable pseudo-random `val_fraction` of videos (by a hash of the name), else "train"."""
    digest = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big")
    return "val" if digest / 2**64 < val_fraction else "train"


def key_prefix(name: str) -> str:
    """A WebDataset-safe key prefix (no dots) for a video: its stem plus a hash of its relative name."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(name))[0])[:40]
    return f"{stem}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# --- option checks and the pieces they build ----------------------------------------------------------------


def storage_multiple(options: PrepOptions) -> int:
    """Stored H and W are multiples of this: 8, the LQ scale, and the latent backbone's spatial multiple."""
    multiple = 8
    if options.lq_variants:
        multiple = math.lcm(multiple, options.scale)
    if options.latents:
        multiple = math.lcm(multiple, _latent_geometry(options.latents)[1])
    return multiple


def check_options(options: PrepOptions) -> None:
    """Raise LiteVSRError for options that cannot work, before any video is read."""
    o = options
    if o.clip_frames < 1 or (o.stride is not None and o.stride < 1):
        raise LiteVSRError("--clip-frames and --stride must be at least 1")
    if o.crop_mode not in ("random", "center"):
        raise LiteVSRError(f"--crop-mode must be random or center, got {o.crop_mode!r}")
    if not 0 <= o.val_fraction < 1:
        raise LiteVSRError(f"--val-fraction must be in [0, 1), got {o.val_fraction}")
    if o.lq_variants < 0 or o.scale < 1 or o.videos_per_task < 1 or o.clips_per_shard < 1 or o.shard_size_mb <= 0:
        raise LiteVSRError(
            "--lq-variants must be >= 0; --scale, --videos-per-task, --clips-per-shard and "
            "--shard-size-mb must be positive"
        )
    if o.latents_dtype not in LATENT_DTYPES:
        raise LiteVSRError(f"--latents-dtype must be one of {sorted(LATENT_DTYPES)}, got {o.latents_dtype!r}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", o.prefix):
        raise LiteVSRError(f"--prefix may hold only letters, digits, - and _, got {o.prefix!r}")
    if o.degradation_preset and not o.lq_variants:
        raise LiteVSRError("--degradation-preset needs --lq-variants K (K >= 1)")
    multiple = storage_multiple(o)
    if o.max_side < multiple or o.min_size < 1:
        raise LiteVSRError(f"--max-side must be at least {multiple} and --min-size at least 1")
    if o.crop is not None and (o.crop < multiple or o.crop % multiple):
        raise LiteVSRError(
            f"--crop {o.crop} must be a positive multiple of {multiple} (8, the LQ scale and the "
            "latent backbone's VAE x patch stride)"
        )
    if o.latents:
        frame_step = _latent_geometry(o.latents)[0]
        if (o.clip_frames - 1) % frame_step:
            raise LiteVSRError(f"--latents {o.latents} needs --clip-frames 1 + {frame_step}k, got {o.clip_frames}")
    if o.lq_variants:
        build_degradation(o)


def build_degradation(options: PrepOptions):
    from litevsr.data.degradations import RealWorldDegradation, SimpleDegradation

    if options.degradation_preset is None:
        return SimpleDegradation()
    return RealWorldDegradation(options.degradation_preset)


def degradation_name(options: PrepOptions) -> str | None:
    if not options.lq_variants:
        return None
    return (
        f"RealWorldDegradation(preset={options.degradation_preset!r})"
        if options.degradation_preset
        else "SimpleDegradation()"
    )


def variant_seed(key: str, variant: int, seed: int) -> int:
    """The seed of LQ variant `variant` of clip `key`: reproducible, independent of order and workers."""
    return zlib.crc32(f"{key}/lq{variant}".encode()) ^ seed


_GEOMETRY: dict[str, tuple[int, int]] = {}
_CACHE: dict[tuple, object] = {}


def _latent_geometry(pretrained: str) -> tuple[int, int]:
    """(frame step, spatial multiple) of a backbone of any family, from its config only (meta device, no weights)."""
    if pretrained not in _GEOMETRY:
        from litevsr.zoo import load_backbone

        backbone = load_backbone(pretrained, empty_weights=True)
        _GEOMETRY[pretrained] = (backbone.frame_step, backbone.spatial_multiple)
    return _GEOMETRY[pretrained]


def _cached(kind: str, options: PrepOptions, device: str = "cpu"):
    """One degradation / backbone per process (workers build their own)."""
    key = (kind, options.degradation_preset if kind == "degradation" else options.latents, device)
    if key not in _CACHE:
        if kind == "degradation":
            _CACHE[key] = build_degradation(options)
        else:
            from litevsr.zoo import load_backbone

            _CACHE[key] = load_backbone(options.latents).to(device).eval()
    return _CACHE[key]


# --- one task ---------------------------------------------------------------------------------------------


def shard_dirs(out: str, options: PrepOptions) -> dict[str, str]:
    if options.val_fraction > 0:
        return {"train": os.path.join(out, "train"), "val": os.path.join(out, "val")}
    return {"train": out}


def task_files(out: str, options: PrepOptions, task: int) -> list[str]:
    """Every file a task may have written, finished (.tar) or not (.tar.<hex>.partial)."""
    pattern = f"{glob.escape(options.prefix)}-{task:05d}-*.tar*"
    return sorted(
        f for d in shard_dirs(out, options).values() for f in glob.glob(os.path.join(glob.escape(d), pattern))
    )


def marker_path(out: str, task: int) -> str:
    return os.path.join(out, STATE_DIR, "done", f"{task:05d}.json")


def run_task(task: int, videos: list[tuple[str, str]], out: str, options: PrepOptions, device: str = "cpu") -> dict:
    """Write the shards of one task (videos: (absolute path, relative name)), then its done-marker."""
    for leftover in task_files(out, options, task):
        os.remove(leftover)
    dirs = shard_dirs(out, options)
    writers: dict[str, ShardWriter] = {}
    with ExitStack() as finish:  # every split's shards appear when the task is complete, or none do

        def writer(split: str) -> ShardWriter:
            if split not in writers:
                os.makedirs(dirs[split], exist_ok=True)
                pattern = os.path.join(dirs[split], f"{options.prefix}-{task:05d}-%04d.tar")
                writers[split] = finish.enter_context(
                    ShardWriter(pattern, maxcount=options.clips_per_shard, maxsize=options.shard_size_mb * 1e6)
                )
            return writers[split]

        entries = [_process_video(path, name, options, writer, device) for path, name in videos]
    shards = {
        split: [os.path.basename(p) for p in (writers[split].paths if split in writers else [])] for split in dirs
    }
    marker = {"task": task, "videos": entries, "shards": shards}
    write_json_atomic(marker_path(out, task), marker)
    return marker


def _process_video(path: str, name: str, options: PrepOptions, writer, device: str) -> dict:
    split = split_of(name, options.val_fraction)
    entry = {"source": path, "name": name, "split": split, "clips": 0}
    try:
        info = video_info(path)
    except LiteVSRError as err:
        return {**entry, "skipped": str(err)}
    shared = {f.name: getattr(options, f.name) for f in fields(ClipOptions) if hasattr(options, f.name)}
    clip_options = ClipOptions(
        **{**shared, "stride": options.stride or options.clip_frames, "multiple": storage_multiple(options)}
    )
    base = {
        "source": path,
        "license": options.license,
        "fps": info["fps"],
        "split": split,
        "source_size": [info["height"], info["width"]],
    }
    if options.lq_variants:
        base.update(lq_variants=options.lq_variants, scale=options.scale, degradation=degradation_name(options))
    stats = ClipStats()
    sizes = []
    clips = cut_clips(iter_frames(path, options.max_side), clip_options, key_prefix(name), stats)
    while True:
        try:
            clip = next(clips)
        except StopIteration:
            break
        except VideoSkipped as err:
            entry["skipped"] = str(err)
            break
        except LiteVSRError as err:  # undecodable from some frame on: keep the clips before it
            entry["error"] = f"{err} (kept the {len(sizes)} clips before it)"
            break
        writer(split).write(_sample(clip, base, options, device))  # errors here are not the video's: they stop the run
        sizes.append(clip.frames.shape[:3])
    entry.update(
        clips=len(sizes),
        frames=stats.frames,
        scene_cuts=stats.cuts,
        static_clips_skipped=stats.static_skipped,
        height=stats.height,
        width=stats.width,
    )
    if sizes:
        entry.update(
            min_frames=min(s[0] for s in sizes), min_height=min(s[1] for s in sizes), min_width=min(s[2] for s in sizes)
        )
    return entry


def _sample(clip, base: dict, options: PrepOptions, device: str) -> dict:
    from litevsr.frames import frames_to_video, video_to_frames

    t, h, w = clip.frames.shape[:3]
    meta = {
        **base,
        "start_frame": clip.start,
        "scene": clip.scene,
        "motion": round(clip.motion, 3),
        "frames": t,
        "height": h,
        "width": w,
        "crop": clip.crop,
    }
    sample = {"__key__": clip.key, "hq.mkv": encode_video(clip.frames, fps=base["fps"])}
    if options.lq_variants or options.latents:
        hq = frames_to_video(clip.frames)
    lqs = []
    for k in range(options.lq_variants):
        generator = torch.Generator().manual_seed(variant_seed(clip.key, k, options.seed))
        lq_u8 = video_to_frames(_cached("degradation", options)(hq, options.scale, generator))
        sample[f"lq{k}.mkv"] = encode_video(lq_u8, fps=base["fps"])
        lqs.append(frames_to_video(lq_u8))  # what a reader of lq{k}.mkv gets
    if options.latents:
        from litevsr.model import LiteVSR

        backbone = _cached("backbone", options, device)
        model = LiteVSR(backbone, None)
        with torch.no_grad():  # the condition is encoded exactly as training would encode it
            latents = {"hq": backbone.encode(hq[None].to(device))[0]}
            latents.update(
                {f"cond{k}": model.condition(lq[None].to(device), hq.shape[-2:])[0] for k, lq in enumerate(lqs)}
            )
        latents = {k: v.to(LATENT_DTYPES[options.latents_dtype]).cpu() for k, v in latents.items()}
        meta["latents"] = {
            "backbone": options.latents,
            "vae_fingerprint": backbone.vae_fingerprint,
            "shape": list(latents["hq"].shape),
            "dtype": options.latents_dtype,
            "conditions": len(lqs),
        }
        sample[LATENTS_MEMBER] = latents_member(
            latents, {"backbone": options.latents, "key": clip.key, "vae_fingerprint": backbone.vae_fingerprint}
        )
    sample["json"] = json.dumps({**meta, "checksums": member_checksums(sample)}).encode()
    return sample


# --- the whole run ----------------------------------------------------------------------------------------


class _OutputLock:
    """An exclusive lock on OUT (flock: released by the kernel even if the process is killed)."""

    def __init__(self, out: str):
        self.path = os.path.join(out, STATE_DIR, "lock")

    def __enter__(self):
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            folder = os.path.dirname(os.path.dirname(self.path))
            raise LiteVSRError(f"another make_shards run is writing to {folder}") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _refuse_foreign(out: str) -> None:
    if os.path.isfile(os.path.join(out, STATE_DIR, "state.json")):
        return
    if os.path.isfile(os.path.join(out, MANIFEST)) or glob.glob(os.path.join(glob.escape(out), "*.tar")):
        raise LiteVSRError(
            f"{out} already holds shards not written by a resumable make_shards run; choose another folder"
        )


def _check_state(out: str, options: PrepOptions, names: list[str]) -> None:
    state_path = os.path.join(out, STATE_DIR, "state.json")
    manifest_path = os.path.join(out, MANIFEST)
    if not os.path.isfile(state_path):
        _refuse_foreign(out)
        write_json_atomic(state_path, {"options": options.as_json(), "videos": names})
        return
    with open(state_path) as f:
        state = json.load(f)
    recorded = [state["options"]]
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            recorded.append(json.load(f).get("options", state["options"]))
    for old in recorded:
        changed = {k: (old.get(k), v) for k, v in options.as_json().items() if old.get(k) != v}
        if changed:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise LiteVSRError(
                f"{out} already holds shards written with different options ({what}); "
                "re-run with the same options or choose another folder"
            )
    if state["videos"] != names:
        added = sorted(set(names) - set(state["videos"]))[:1]
        removed = sorted(set(state["videos"]) - set(names))[:1]
        raise LiteVSRError(
            f"the input videos differ from those {out} was started with ({len(state['videos'])} then, "
            f"{len(names)} now; new: {added}, gone: {removed}); use the same inputs or another folder"
        )


def _finished(out: str, options: PrepOptions, task: int) -> dict | None:
    """The task's marker, if it exists and every shard it lists is on disk."""
    path = marker_path(out, task)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        marker = json.load(f)
    dirs = shard_dirs(out, options)
    if all(os.path.isfile(os.path.join(dirs[s], n)) for s, names in marker["shards"].items() for n in names):
        return marker
    os.remove(path)  # a shard went missing: redo the task
    return None


def prepare_shards(
    inputs: list[str], out: str, options: PrepOptions, workers: int = 1, device: str = "cpu", progress: bool = True
) -> dict:
    """Build (or finish building) the shards of the videos in `inputs` under `out`; return the manifest."""
    from tqdm import tqdm

    options = replace(options, stride=options.stride or options.clip_frames)
    check_options(options)
    videos = find_videos(inputs)
    names = relative_names(videos)
    _refuse_foreign(out)
    os.makedirs(os.path.join(out, STATE_DIR, "done"), exist_ok=True)
    with _OutputLock(out):
        _check_state(out, options, names)
        size = options.videos_per_task
        tasks = {
            t: list(zip(videos[i : i + size], names[i : i + size])) for t, i in enumerate(range(0, len(videos), size))
        }
        markers = {t: m for t in tasks if (m := _finished(out, options, t)) is not None}
        todo = [t for t in tasks if t not in markers]
        for t in todo:
            for leftover in task_files(out, options, t):
                os.remove(leftover)

        def clips() -> int:
            return sum(v["clips"] for m in markers.values() for v in m["videos"])

        bar = tqdm(
            total=len(videos),
            initial=sum(len(tasks[t]) for t in markers),
            desc="videos",
            unit="video",
            disable=not progress,
            dynamic_ncols=True,
        )
        bar.set_postfix(clips=clips())

        def finish(marker: dict) -> None:
            markers[marker["task"]] = marker
            bar.set_postfix(clips=clips(), refresh=False)
            bar.update(len(marker["videos"]))

        try:
            if workers <= 1 or len(todo) <= 1:
                for t in todo:
                    finish(run_task(t, tasks[t], out, options, device))
            else:
                _run_pool(todo, tasks, out, options, device, workers, finish)
        finally:
            bar.close()
        return write_manifests(out, options, [markers[t] for t in sorted(markers)])


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_pool(todo, tasks, out, options, device, workers, finish) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context, initializer=_init_worker) as pool:
        pending = {pool.submit(run_task, t, tasks[t], out, options, device) for t in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    finish(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def write_manifests(out: str, options: PrepOptions, markers: list[dict]) -> dict:
    """Per-split manifests from the done-markers; with a validation split, then a summary in OUT (last)."""
    dirs = shard_dirs(out, options)
    members = (
        ["hq.mkv", "json"]
        + [f"lq{k}.mkv" for k in range(options.lq_variants)]
        + ([LATENTS_MEMBER] if options.latents else [])
    )
    manifests = {}
    for split, folder in dirs.items():
        entries = [v for m in markers for v in m["videos"] if v["split"] == split]
        files = [n for m in markers for n in m["shards"].get(split, [])]
        if len(set(files)) != len(files):
            raise LiteVSRError(
                f"duplicate shard names in {folder}; delete {os.path.join(out, STATE_DIR)} and the shards"
            )
        with_clips = [v for v in entries if v["clips"]]
        manifest = {
            "split": split,
            "clips": sum(v["clips"] for v in entries),
            "shards": len(files),
            "min_frames": min((v["min_frames"] for v in with_clips), default=None),
            "min_height": min((v["min_height"] for v in with_clips), default=None),
            "min_width": min((v["min_width"] for v in with_clips), default=None),
            "license": options.license,
            "videos": len(entries),
            "videos_skipped": {v["source"]: v["skipped"] for v in entries if "skipped" in v},
            "videos_with_errors": {v["source"]: v["error"] for v in entries if "error" in v},
            "scene_cuts": sum(v.get("scene_cuts", 0) for v in entries),
            "static_clips_skipped": sum(v.get("static_clips_skipped", 0) for v in entries),
            "sources": {
                v["source"]: {"clips": v["clips"], "license": options.license, "split": split} for v in entries
            },
            "members": members,
            "lq_variants": options.lq_variants,
            "scale": options.scale if options.lq_variants else None,
            "degradation": degradation_name(options),
            "latents": {
                "backbone": options.latents,
                "dtype": options.latents_dtype,
                "vae_fingerprint": _cached("backbone", options).vae_fingerprint,
                "note": "latents of each whole stored clip (hq) and of each stored LQ variant upsampled "
                "(cond0, ...): training on them uses these fixed crops and degradations",
            }
            if options.latents
            else None,
            "options": options.as_json(),
            "shard_files": files,
        }
        manifests[split] = manifest
        if folder != out:
            os.makedirs(folder, exist_ok=True)
            write_json_atomic(os.path.join(folder, MANIFEST), manifest)
    if list(dirs.values()) == [out]:
        summary = manifests["train"]
    else:
        summary = {
            "splits": {
                s: {k: m[k] for k in ("clips", "shards", "videos", "min_frames", "min_height", "min_width")}
                | {"folder": s}
                for s, m in manifests.items()
            },
            "license": options.license,
            "val_fraction": options.val_fraction,
            "sources": {k: v for m in manifests.values() for k, v in m["sources"].items()},
            "options": options.as_json(),
        }
    write_json_atomic(os.path.join(out, MANIFEST), summary)
    return summary
