"""Shared benchmark plumbing: machine facts, a markdown table, JSON results."""

from __future__ import annotations

import json
import os
import platform
import time

import torch


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def report(name: str, rows: list[dict], columns: list[str], notes: dict | None = None) -> None:
    """Print one markdown table and write benchmarks/results/<name>.json."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), "rows": rows, **(notes or {})}, f, indent=2)
    print(f"\nwrote {path}")
