"""What trains: the adapter interface and its safetensors export (weights + config in the metadata)."""

from __future__ import annotations

import importlib
import inspect
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import litevsr
from litevsr import LiteVSRError


class Adapter(nn.Module):
    """Steers a frozen `VideoBackbone`: forward returns {block_index: (B, N, D)} residuals.

    Subclasses build their layers in `bind`, once the backbone's dimensions are known. Their
    `__init__` arguments are recorded in `init_args` so that an exported file can rebuild them.
    """

    #: set by `bind`; an adapter is bound to one backbone once, and keeps its weights after that
    bound: bool = False
    #: what the refinement stream reads: "x_sigma" (the noisy latent) or "x0_hat" (the clean estimate)
    state_input: str = "x_sigma"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        def recording_init(self, *args, **kw):
            init(self, *args, **kw)
            if type(self) is cls:
                bound = inspect.signature(init).bind(self, *args, **kw)
                bound.apply_defaults()
                self.init_args = {k: v for k, v in bound.arguments.items() if k != "self"}

        recording_init.__signature__ = inspect.signature(init)
        recording_init.__doc__ = init.__doc__
        cls.__init__ = recording_init

    def bind(self, backbone) -> None:
        raise NotImplementedError

    def forward(self, cond: torch.Tensor, state: torch.Tensor, sigma: torch.Tensor) -> dict[int, torch.Tensor]:
        raise NotImplementedError


def save_adapter(adapter: Adapter, path: str, backbone_name: str, scale: int | None = None,
                 sampling: dict | None = None) -> None:
    """Write `adapter.safetensors`: weights plus {class_path, init_args, backbone, scale, sampling, version}, where
    `sampling` holds the settings it was trained to sample with (steps, sigma_start, shift). Atomic."""
    cls = type(adapter)
    config = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": adapter.init_args,
              "backbone": backbone_name, "scale": scale, "sampling": sampling or {},
              "litevsr_version": litevsr.__version__}
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={"litevsr": json.dumps(config)})
    os.replace(tmp, path)


def read_adapter_config(path: str) -> dict:
    if not os.path.isfile(path):
        raise LiteVSRError(f"adapter file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise LiteVSRError(f"{path} is not a readable safetensors file: {err}") from err
    if "litevsr" not in meta:
        raise LiteVSRError(f"{path} has no litevsr config in its metadata; was it written by save_adapter?")
    return json.loads(meta["litevsr"])


def load_adapter_weights(adapter: Adapter, path: str) -> None:
    """Load an exported adapter's weights into a bound adapter of the same configuration."""
    from safetensors.torch import load_file

    config = read_adapter_config(path)
    # Arguments added after a file was written are absent from it and keep their defaults.
    if any(adapter.init_args.get(k) != v for k, v in config["init_args"].items()):
        raise LiteVSRError(f"{path} holds an adapter built with {config['init_args']}, not {adapter.init_args}")
    try:
        adapter.load_state_dict(load_file(path, device=str(next(adapter.parameters()).device)))
    except RuntimeError as err:
        raise LiteVSRError(f"{path} (trained on {config['backbone']!r}) does not fit this backbone: "
                           f"{str(err).splitlines()[0]}") from err


def load_adapter(path: str, backbone) -> Adapter:
    """Rebuild an exported adapter, bind it to `backbone` and load its weights (strictly)."""
    config = read_adapter_config(path)
    module_name, _, class_name = config["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    adapter = cls(**config["init_args"])
    adapter.bind(backbone)
    load_adapter_weights(adapter, path)
    return adapter
