"""Shared benchmark plumbing: machine facts, a markdown table, JSON results, and the repository's folders.

Benchmarks run as scripts from any folder (`python benchmarks/x.py`, or a path to it): their own folder is first on
sys.path, so `from common import ...` finds this file, and their default paths start at ROOT, not the current folder."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def peak_memory_mib(device: str = "cpu") -> float:
    """Peak memory of this process so far: allocated CUDA memory on a GPU, else its own peak RSS (VmHWM, where
    ru_maxrss would carry a forking parent's)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Gradients plus optimizer state, in bytes, of the parameters `optimizer` trains."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    states = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.dim() > 0
    )
    return grads + states


def time_training_steps(loss_fn, optimizer: torch.optim.Optimizer, steps: int) -> tuple[float, int]:
    """(seconds per step, gradient + optimizer bytes held after a step) over `steps` steps after one warm-up."""

    def step() -> int:
        loss_fn().backward()
        optimizer.step()
        held = state_bytes(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return held

    step()
    start = time.perf_counter()
    for _ in range(steps):
        held = step()
    return (time.perf_counter() - start) / steps, held


def report(name: str, rows: list[dict], columns: list[str], notes: dict | None = None) -> None:
    """Print one markdown table and write benchmarks/results/<name>.json."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    path = os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), "rows": rows, **(notes or {})}, f, indent=2)
    print(f"\nwrote {path}")
