"""What trains: the adapter interface, and its diffusers-format export that loads without running code.

An exported adapter is a folder: `config.json` (the adapter's arguments, the backbone dimensions it was built for,
and, under "_litevsr", the backbone id, scale, sampler and litevsr version) beside
`diffusion_pytorch_model.safetensors`. Loading picks the class by name from the adapters litevsr knows or that
the user registered with `register_adapter`; it never imports a name read from a file.
"""

from __future__ import annotations

import inspect
import json
import os

import torch
from diffusers import ConfigMixin, ModelMixin
from safetensors import SafetensorError
from safetensors.torch import load_file

from litevsr.atomic import atomic_path
from litevsr.errors import LiteVSRError
from litevsr.injections import Injections
from litevsr.version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
#: Adapter classes a file may name, by class name. `register_adapter` adds the user's own.
ADAPTER_CLASSES: dict[str, type] = {}


def register_adapter(cls: type) -> type:
    """Allow exported files to name `cls` (by its class name). Usable as a class decorator."""
    ADAPTER_CLASSES[cls.__name__] = cls
    return cls


def backbone_dims(backbone) -> dict:
    """The backbone dimensions an adapter's layers depend on, as stored in its config."""
    return {
        "hidden_dim": int(backbone.hidden_dim),
        "num_blocks": int(backbone.num_blocks),
        "latent_channels": int(backbone.latent_channels),
        "patch_size": [int(p) for p in backbone.patch_size],
    }


class Adapter(ModelMixin, ConfigMixin):
    """A method of steering a `VideoBackbone`: forward returns the `Injections` it writes into the backbone
    (block residuals, optionally input tokens).

    Subclasses decorate `__init__` with diffusers' `@register_to_config` and take the backbone's dimensions
    (see `backbone_dims`) as the keyword-only argument `backbone_dims` (diffusers' config keeps a positional argument
    as a default, which `from_config` then drops), so that their layers are built at once: a recipe gives the adapter
    as a callable of the dimensions (class_path + init_args, like the optimizer), which the training module calls
    with its backbone's. Methods that change the backbone itself (LoRA, full fine-tuning, ControlNet's copies and
    hooks) set `edits_backbone` and do it in `edit_backbone`, which `attach` calls once;
    they name what they train there in `trained_backbone_parameters` and store it beside their own weights with
    `save_extra` / `load_extra`.
    """

    config_name = CONFIG_NAME
    #: what the refinement stream reads: "x_sigma" (the noisy latent) or "x0_hat" (the clean estimate)
    state_input: str = "x_sigma"
    #: whether this method changes the backbone it is attached to (so that backbone is its own, not shared)
    edits_backbone: bool = False
    #: whether its layers are built from the backbone's (a ControlNet copy), so it loads only with a backbone
    copies_backbone: bool = False

    def attach(self, backbone) -> None:
        """Check that this adapter was built for `backbone`'s dimensions; a method that edits its backbone edits
        it here, once."""
        dims = backbone_dims(backbone)
        if dict(self.config.backbone_dims) != dims:
            raise LiteVSRError(
                f"this adapter was built for a backbone with {dict(self.config.backbone_dims)}, not {dims}"
            )
        if self.edits_backbone and self.edited_backbone is not backbone:
            if self.edited_backbone is not None:
                raise LiteVSRError(f"a {type(self).__name__} edits its backbone, so it cannot serve a second one")
            self.edit_backbone(backbone)
            self.__dict__["_edited_backbone"] = backbone  # a reference, not a submodule: not in this state_dict

    @property
    def edited_backbone(self):
        """The backbone this adapter has edited (methods with `edits_backbone`), else None."""
        return self.__dict__.get("_edited_backbone")

    def edit_backbone(self, backbone) -> None:
        """Change `backbone` for this method (e.g. add LoRA layers); called once, by `attach`."""

    def trained_backbone_parameters(self) -> list[str]:
        """Names (in the edited backbone's `named_parameters()`) of the backbone parameters this method trains."""
        return []

    def save_extra(self, folder: str) -> None:
        """Write what this method trains in the backbone into an export folder."""

    def load_extra(self, folder: str) -> None:
        """Read back what `save_extra` wrote, into the edited backbone."""

    def forward(self, cond: torch.Tensor, state: torch.Tensor, sigma: torch.Tensor) -> Injections:
        raise NotImplementedError


def _arguments(config, cls: type) -> dict:
    """The arguments of a `cls` config, as JSON would hold them, with the defaults of any it does not name (a file
    written before an argument existed), less private keys and backbone dims."""
    defaults = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return json.loads(
        json.dumps(
            {k: v for k, v in {**defaults, **dict(config)}.items() if not k.startswith("_") and k != "backbone_dims"}
        )
    )


def save_adapter(
    adapter: Adapter,
    folder: str,
    backbone_name: str,
    scale: int | None = None,
    sampling: dict | None = None,
    family: str = "wan",
) -> None:
    """Export `adapter` into `folder` (config.json + safetensors), recording the backbone it was trained on (its
    name and its family's, see `litevsr.backbones.FAMILIES`), its scale and `sampling`, the settings it was
    validated with (steps, sigma_start, shift). Atomic: the folder is complete or untouched."""
    with atomic_path(os.path.abspath(folder)) as tmp:
        adapter.save_pretrained(tmp, safe_serialization=True)
        adapter.save_extra(tmp)
        config_path = os.path.join(tmp, CONFIG_NAME)
        with open(config_path) as f:
            config = json.load(f)
        config["_litevsr"] = {
            "backbone": backbone_name,
            "family": family,
            "scale": scale,
            "sampling": sampling or {},
            "litevsr_version": __version__,
        }
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)


def _read_config(path: str) -> dict:
    if os.path.isfile(path):
        raise LiteVSRError(f"{path} is a file; an adapter is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path) or not os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
        raise LiteVSRError(f"adapter not found: {path} (expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise LiteVSRError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or "_litevsr" not in config:
        raise LiteVSRError(f"{config_path} has no litevsr section; was it written by save_adapter?")
    return config


def read_adapter_config(path: str) -> dict:
    """What an exported adapter records: {"class_name", "backbone", "family", "scale", "sampling",
    "litevsr_version"}. Adapters written before families existed were all trained on Wan."""
    config = _read_config(path)
    return {"class_name": config.get("_class_name"), "family": "wan", **config["_litevsr"]}


def adapter_class(name) -> type:
    """The registered adapter class called `name`; a name read from a file is looked up, never imported."""
    if not isinstance(name, str) or name not in ADAPTER_CLASSES:
        raise LiteVSRError(
            f"unknown adapter class {name!r}; known: {', '.join(sorted(ADAPTER_CLASSES))} "
            "(register your own with litevsr.adapters.register_adapter)"
        )
    return ADAPTER_CLASSES[name]


def _load_weights(adapter: Adapter, path: str, grow: bool = False) -> list[str]:
    """Load the folder's weights strictly: a missing or unexpected tensor is an error. With `grow`, the adapter may
    hold tensors the file lacks; they keep their initial values (zero output projections add nothing). Returns
    their names."""
    try:
        state = load_file(os.path.join(path, WEIGHTS_NAME), device=str(adapter.device))
    except (SafetensorError, OSError) as err:
        raise LiteVSRError(f"{path}: unreadable weights: {str(err).strip().splitlines()[0]}") from err
    expected = adapter.state_dict()
    new = sorted(set(expected) - set(state))
    problems = [] if grow else [f"missing {k}" for k in new]
    problems += [f"unexpected {k}" for k in sorted(set(state) - set(expected))]
    problems += [
        f"{k} is {tuple(state[k].shape)}, not {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LiteVSRError(
            f"{path}: the weights do not fit the adapter its config describes: {', '.join(problems[:3])}{more}"
        )
    adapter.load_state_dict(state, strict=not grow)
    return new


def load_adapter(path: str, backbone=None) -> Adapter:
    """Rebuild an exported adapter from its folder, load its weights strictly and, given `backbone`, check that it
    fits."""
    config = _read_config(path)
    cls = adapter_class(config.get("_class_name"))
    if not config.get("backbone_dims"):
        raise LiteVSRError(f"{path}: the config records no backbone_dims")
    try:
        adapter = cls.from_config(config)
    except (TypeError, ValueError) as err:
        raise LiteVSRError(f"{path}: cannot build {cls.__name__} from its config: {err}") from err
    if backbone is None and (adapter.edits_backbone or adapter.copies_backbone):
        raise LiteVSRError(f"{path}: a {cls.__name__} is built on backbone weights; load it with its backbone")
    if backbone is not None:
        adapter.attach(backbone)
    _load_weights(adapter, path)
    if backbone is not None:
        adapter.load_extra(path)
    return adapter


def load_adapter_weights(adapter: Adapter, path: str, grow: bool = False) -> list[str]:
    """Load an exported adapter's weights into an adapter built with the same arguments. With `grow`, the
    arguments may differ as long as every stored tensor fits (e.g. more injected blocks): the adapter's other
    tensors keep their initial values, and their names are returned."""
    config = _read_config(path)
    if config.get("_class_name") != type(adapter).__name__ or (
        not grow and _arguments(config, type(adapter)) != _arguments(adapter.config, type(adapter))
    ):
        raise LiteVSRError(
            f"{path} holds a {config.get('_class_name')} built with "
            f"{_arguments(config, type(adapter))}, not a {type(adapter).__name__} with "
            f"{_arguments(adapter.config, type(adapter))}"
        )
    if dict(config["backbone_dims"]) != dict(adapter.config.backbone_dims):
        raise LiteVSRError(
            f"{path} was built for a backbone with {config['backbone_dims']}, not {dict(adapter.config.backbone_dims)}"
        )
    new = _load_weights(adapter, path, grow)
    adapter.load_extra(path)
    return new
