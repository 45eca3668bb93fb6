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

Under torchrun (one node or several sharing OUT) rank 0 lists the unfinished tasks, rank r of W runs todo[r::W], and
rank 0 writes the manifests when every rank has ended its share. Task names, shard names and markers do not depend
on the world size, so a run interrupted on any number of ranks resumes on any other. Ranks need no lock among
themselves (their tasks are disjoint, every file appears by an atomic rename); OUT/.make_shards/run keeps other
runs off OUT (_RunGuard).

Layout of OUT:
    OUT/.make_shards/state.json      options and input list of the run (a re-run must match them)
    OUT/.make_shards/run/            the run writing OUT now (owner.json, beat); gone when it ends
    OUT/.make_shards/done/*.json     one marker per finished task
    OUT/*.tar, OUT/manifest.json     without a validation split
    OUT/train/*.tar, OUT/train/manifest.json, OUT/val/..., OUT/manifest.json (summary, written last)  with one
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import socket
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.distributed as dist

from litevsr import distributed
from litevsr.atomic import write_json_atomic
from litevsr.data.clipping import ClipOptions, ClipStats, VideoSkipped, cut_clips
from litevsr.data.shards import LATENTS_MEMBER, MANIFEST, ShardWriter, latents_member, member_checksums
from litevsr.data.video import VIDEO_EXTENSIONS, encode_video, is_video_file, iter_frames, video_info
from litevsr.errors import LiteVSRError

STATE_DIR = ".make_shards"
LATENT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
HEARTBEAT_S = 10.0  # a run rewrites OUT/.make_shards/run/beat this often
STALE_S = 60.0  # a beat unchanged this long: its run is dead, the next run takes OUT over
SHARED_WAIT_S = 60.0  # how long a rank waits to see rank 0's OUT/.make_shards/run (NFS shows new files late)


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


class _RunGuard:
    """Keeps a second make_shards run off an OUT that a run is writing, on one machine or on several sharing OUT.

    Rank 0 of the run makes the folder OUT/.make_shards/run with os.mkdir, which is atomic on local file systems and
    on NFS, where flock is not to be trusted. Its owner.json names the run (id, host, pid) and a thread rewrites its
    `beat` file every HEARTBEAT_S seconds while the run lives; the folder goes when the run ends, an error included.
    A run that finds the folder takes it over when its owner is dead: a process of this host that is gone, or a beat
    unchanged for STALE_S seconds (no clock of another host is read), so a killed run never blocks the next one.
    """

    def __init__(self, out: str):
        self.path = os.path.join(out, STATE_DIR, "run")
        self.run_id = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        for _ in range(5):  # another run may take the folder between our take-over and our mkdir
            try:
                os.mkdir(self.path)
                break
            except FileExistsError:
                self._take_over_if_dead()
        else:
            raise LiteVSRError(f"could not claim {self.path}: other make_shards runs keep taking it")
        try:
            write_json_atomic(os.path.join(self.path, "owner.json"), _owner(self.run_id))
            self._beat(0)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._thread = threading.Thread(target=self._beat_loop, name="make_shards-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if (_read_json(os.path.join(self.path, "owner.json")) or {}).get("run") == self.run_id:
            shutil.rmtree(self.path, ignore_errors=True)

    def _beat(self, n: int) -> None:
        with open(os.path.join(self.path, "beat"), "w") as f:  # in place: NFS readers see it at their next open
            f.write(f"{n} {time.time()}\n")

    def _beat_loop(self) -> None:
        n = 1
        while not self._stop.wait(HEARTBEAT_S):
            with suppress(OSError):  # a lost beat or two is harmless; STALE_S is several of them
                self._beat(n)
            n += 1

    def _take_over_if_dead(self) -> None:
        owner = _read_json(os.path.join(self.path, "owner.json")) or {}
        folder = os.path.dirname(os.path.dirname(self.path))
        busy = LiteVSRError(
            f"another make_shards run is writing to {folder} (host {owner.get('host', '?')}, pid "
            f"{owner.get('pid', '?')}); wait for it, or stop it and run again"
        )
        known_dead = owner.get("host") == _host() and not distributed.process_alive(owner.get("pid", 0))
        if not known_dead:  # watch its beat
            first = _read_text(os.path.join(self.path, "beat"))
            deadline = time.monotonic() + STALE_S
            if STALE_S >= 5:
                print(
                    f"make_shards: {self.path} exists; watching its heartbeat for up to {STALE_S:.0f} s",
                    file=sys.stderr,
                )
            while time.monotonic() < deadline:
                time.sleep(min(1.0, STALE_S / 10))
                if not os.path.isdir(self.path):
                    return  # its run ended meanwhile
                if _read_text(os.path.join(self.path, "beat")) != first:
                    raise busy
        aside = f"{self.path}.dead-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # taken over by another run meanwhile
        shutil.rmtree(aside, ignore_errors=True)


def _host() -> str:
    """This host and PID namespace: containers that share a host name do not share process ids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


def _owner(run_id: str) -> dict:
    return {"run": run_id, "host": _host(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_json(path: str) -> dict | None:
    text = _read_text(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _check_shared(out: str, run_id: str) -> None:
    """Every rank must write into the OUT that rank 0 claimed: one folder, on a file system all nodes share."""
    path = os.path.join(out, STATE_DIR, "run", "owner.json")
    deadline = time.monotonic() + SHARED_WAIT_S  # NFS may show a new file to other hosts a little later
    while (_read_json(path) or {}).get("run") != run_id:
        if time.monotonic() > deadline:
            raise LiteVSRError(
                f"{out} is not the folder rank 0 writes (no {path} of this run): with several nodes OUT must be on "
                "a file system every node shares"
            )
        time.sleep(0.5)


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


def rank_device(device: str) -> str:
    """`cuda` under torchrun is this rank's own GPU, cuda:LOCAL_RANK; any other device (cpu, cuda:1) is kept."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


class RankFailed(LiteVSRError):
    """Raised on the ranks of a run whose other rank stopped with an error (that rank reports it)."""


def _describe(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return str(error) if isinstance(error, LiteVSRError) else f"{type(error).__name__}: {error}"


class _Ranks:
    """The processes of the run (one process: rank 0 of 1, and no messages) and their patient group (a rank that
    ends its share waits for the slowest one, possibly for hours)."""

    def __init__(self):
        self.rank, self.size = distributed.world()
        self.group = distributed.patient_group()

    def from_rank0(self, work):
        """work() on rank 0; its result on every rank, or its error (RankFailed on the other ranks)."""
        result = error = None
        if self.rank == 0:
            try:
                result = work()
            except Exception as err:
                error = err
        if self.group is not None:
            result, message = distributed.broadcast((result, _describe(error)), self.group)
            if self.rank != 0 and message is not None:
                raise RankFailed(f"rank 0 stopped: {message}")
        if error is not None:
            raise error
        return result

    def to_rank0(self, value) -> list | None:
        """Every rank's `value` in rank order on rank 0, None on the others; returns once every rank has sent."""
        values = distributed.gather(value, self.group)
        return values if self.rank == 0 else None


def prepare_shards(
    inputs: list[str], out: str, options: PrepOptions, workers: int = 1, device: str = "cpu", progress: bool = True
) -> dict:
    """Build (or finish building) the shards of the videos in `inputs` under `out`; return the manifest.

    Under torchrun (WORLD_SIZE > 1) every rank calls it: rank 0 checks OUT and lists the unfinished tasks, rank r of
    W runs tasks todo[r::W] (with `workers` processes of its own), and once every rank has ended its share rank 0
    alone writes the manifests, which every rank returns. `device="cuda"` is each rank's GPU, cuda:LOCAL_RANK.
    """
    started = distributed.join()
    try:
        ranks = _Ranks()
        try:
            return _prepare(ranks, inputs, out, options, workers, rank_device(device), progress)
        finally:
            if ranks.group is not None and not started:
                dist.destroy_process_group(ranks.group)
    finally:
        if started:
            distributed.leave()


def _plan(inputs: list[str], out: str, options: PrepOptions, stack: ExitStack) -> dict:
    """Rank 0: check the options, inputs and OUT, claim OUT, and list the tasks and the finished ones."""
    check_options(options)
    videos = find_videos(inputs)
    names = relative_names(videos)
    _refuse_foreign(out)
    os.makedirs(os.path.join(out, STATE_DIR, "done"), exist_ok=True)
    guard = stack.enter_context(_RunGuard(out))
    _check_state(out, options, names)
    size = options.videos_per_task
    tasks = {t: list(zip(videos[i : i + size], names[i : i + size])) for t, i in enumerate(range(0, len(videos), size))}
    markers = {t: m for t in tasks if (m := _finished(out, options, t)) is not None}
    todo = [t for t in tasks if t not in markers]
    for t in todo:
        for leftover in task_files(out, options, t):
            os.remove(leftover)
    return {"run": guard.run_id, "videos": videos, "tasks": tasks, "markers": markers, "todo": todo}


def _prepare(ranks: _Ranks, inputs, out, options, workers, device, progress) -> dict:
    from tqdm import tqdm

    options = replace(options, stride=options.stride or options.clip_frames)
    with ExitStack() as stack:
        plan = {}  # rank 0's

        def shared() -> dict:
            plan.update(_plan(inputs, out, options, stack))
            return {"run": plan["run"], "todo": plan["todo"], "tasks": {t: plan["tasks"][t] for t in plan["todo"]}}

        if ranks.rank != 0:  # import and build what the checks need while rank 0 plans; rank 0 reports errors
            with suppress(Exception):
                check_options(options)
        run = ranks.from_rank0(shared)
        tasks, share = run["tasks"], run["todo"][ranks.rank :: ranks.size]
        markers = dict(plan.get("markers", {})) if ranks.size == 1 else {}  # the ones the progress bar counts

        def clips() -> int:
            return sum(v["clips"] for m in markers.values() for v in m["videos"])

        bar = tqdm(
            total=len(plan["videos"]) if ranks.size == 1 else sum(len(tasks[t]) for t in share),
            initial=sum(len(plan["tasks"][t]) for t in markers),
            desc="videos" if ranks.size == 1 else f"videos (rank 0's share of {ranks.size})",
            unit="video",
            disable=not progress or ranks.rank != 0,
            dynamic_ncols=True,
        )
        bar.set_postfix(clips=clips())

        def finish(marker: dict) -> None:
            markers[marker["task"]] = marker
            bar.set_postfix(clips=clips(), refresh=False)
            bar.update(len(marker["videos"]))

        error = None
        try:
            if ranks.rank != 0:
                _check_shared(out, run["run"])
            if workers <= 1 or len(share) <= 1:
                for t in share:
                    finish(run_task(t, tasks[t], out, options, device))
            else:
                _run_pool(share, tasks, out, options, device, workers, finish)
        except Exception as err:  # told to rank 0, so that it writes no manifest and every rank stops
            error = err
        finally:
            bar.close()
        reports = ranks.to_rank0(([markers[t] for t in share if t in markers], _describe(error)))

        def manifest() -> dict:
            if error is not None:
                raise error
            failed = [f"rank {r}: {message}" for r, (_, message) in enumerate(reports) if message]
            if failed:
                raise LiteVSRError(f"{'; '.join(failed)}; run the same command again to resume")
            done = {**plan["markers"], **{m["task"]: m for new, _ in reports for m in new}}
            missing = sorted(set(plan["tasks"]) - set(done))
            if missing:
                raise LiteVSRError(f"tasks {missing[:5]} have no marker; run the same command again to resume")
            return write_manifests(out, options, [done[t] for t in sorted(done)])

        try:
            return ranks.from_rank0(manifest)
        except RankFailed:
            if error is None:
                raise
            raise error from None


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
