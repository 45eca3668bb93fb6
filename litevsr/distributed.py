"""The process group of a run started by `torchrun` (or `srun` with torchrun's variables), for the stages that run
outside a Lightning Trainer: shard preparation and `litevsr upscale`. Training, validation and `predict` use
Lightning's strategies instead.

One process (no WORLD_SIZE, or 1) is rank 0 of 1, and nothing here starts a process group for it.
"""

from __future__ import annotations

import atexit
import gc
import os
from datetime import timedelta

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size): the process group's where one is running, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def join() -> bool:
    """Join torchrun's process group (gloo on the CPU, nccl where every rank has a GPU) if the run has more than one
    process; True when this call started it (the caller then calls `leave`)."""
    if world()[1] == 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # nccl's collectives run on this rank's GPU
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def leave() -> None:
    dist.destroy_process_group()


#: How long a rank that has ended its share waits for the others: shares may end hours apart, beyond a process
#: group's usual timeout (30 minutes for gloo, 10 for NCCL). A rank that dies closes its connections, which ends
#: the wait at once.
PATIENCE = timedelta(days=7)


def patient_group():
    """A gloo group of all ranks with PATIENCE, for the few small messages of a stage whose ranks end at different
    times (None for one process). Every rank makes it at the same point, while the ranks are still in step."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.new_group(backend="gloo", timeout=PATIENCE)


def gather(value, group=None) -> list:
    """Every rank's `value` (a picklable object of our own making, never one read from a file), in rank order, on
    every rank; [value] for one process."""
    if group is None:
        return [value]
    values = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    return values


def broadcast(value, group=None):
    """Rank 0's `value` on every rank."""
    if group is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (or has ended but not been reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def quick_exit() -> None:
    """Make the interpreter's exit skip its garbage collections, which walk every object that torch, diffusers and
    lightning hold (about 2 s per process, and every rank pays it). Our files are closed by then; called from a
    command's main."""
    atexit.register(gc.freeze)
