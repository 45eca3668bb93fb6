"""The samplers a pipeline can use: diffusers' flow-matching schedulers, by name.

Every scheduler here takes a sigma schedule before its shift (`set_timesteps(sigmas=...)`), so that sampling can
start below sigma 1 (from the noised LQ latent). A file names a scheduler by its class name or short name, which is
looked up here, never imported. Adding a sampler is adding it to SCHEDULERS.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from litevsr.errors import LiteVSRError


class FlowMatchHeunScheduler(FlowMatchHeunDiscreteScheduler):
    """diffusers' flow-matching Heun, which always starts at its top sigma, taught to take a given schedule."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None) -> None:
        super().set_timesteps(num_inference_steps or len(sigmas), device)
        if sigmas is None:
            return
        shift = self.config.shift
        sigmas = np.asarray(sigmas, dtype=np.float32)
        sigmas = torch.from_numpy(shift * sigmas / (1 + (shift - 1) * sigmas)).to(device)
        timesteps = sigmas * self.config.num_train_timesteps
        self.timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
        sigmas = torch.cat([sigmas, torch.zeros(1, device=sigmas.device)])
        self.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])


#: short name -> scheduler class
SCHEDULERS = {"euler": FlowMatchEulerDiscreteScheduler, "heun": FlowMatchHeunScheduler}


def scheduler_class(name: str) -> type:
    """The scheduler called `name` (short or class name); a name read from a file is looked up, never imported."""
    by_class = {cls.__name__: cls for cls in SCHEDULERS.values()}
    if name in SCHEDULERS or name in by_class:
        return SCHEDULERS.get(name) or by_class[name]
    raise LiteVSRError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


def scheduler_name(scheduler) -> str:
    """The short name of a scheduler object: its class must be registered (a schedule that starts below sigma 1 is
    what the unregistered ones lack)."""
    for name, cls in SCHEDULERS.items():
        if type(scheduler) is cls:
            return name
    raise LiteVSRError(f"litevsr samples with {', '.join(SCHEDULERS)}, not a {type(scheduler).__name__}")


def make_scheduler(name: str = "euler", shift: float = 1.0):
    return scheduler_class(name)(shift=shift)


def load_scheduler(folder: str):
    """The scheduler saved in `folder` (scheduler_config.json), its class looked up by the name it records."""
    with open(os.path.join(folder, "scheduler_config.json")) as f:
        config = json.load(f)
    return scheduler_class(config.get("_class_name", "")).from_config(config)


def set_schedule(scheduler, steps: int, sigma_start: float, device=None) -> None:
    """`steps` steps from `sigma_start` to 0, uniform before the scheduler's shift (which maps sigma_start to
    itself): the unshifted start is where the shift lands on sigma_start."""
    shift = scheduler.config.shift
    start = sigma_start / (shift - (shift - 1) * sigma_start)
    scheduler.set_timesteps(sigmas=np.linspace(start, 0.0, steps + 1)[:-1].tolist(), device=device)
