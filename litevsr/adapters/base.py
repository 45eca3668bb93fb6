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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

import litevsr
from litevsr import LiteVSRError
from litevsr.atomic import atomic_path

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
    """A method of steering a `VideoBackbone`: forward returns {block_index: (B, N, D)} residuals added to those
    blocks' outputs, and optionally {"input": (B, N, D)} tokens added to the first block's input (how a
    channel-concatenated condition enters: a zero-initialised extension of the patch embedding), or
    {"from_input": fn}: fn(tokens, run) -> {block_index: residual}, for methods that run backbone-like blocks on
    the first block's input tokens, where run(block, tokens) calls a block with the backbone's own time, text and
    position arguments (a ControlNet copy).

    Subclasses decorate `__init__` with diffusers' `@register_to_config` and take `backbone_dims`: given (as when
    loading an export), the layers are built at once; left out (as in a recipe), they are built by `bind` once the
    backbone is known. Methods that train backbone parameters too (LoRA, full fine-tuning) set `edits_backbone`,
    change the backbone in `edit_backbone`, name what they train in `trained_backbone_parameters`, and store it
    beside their own weights with `save_extra` / `load_extra`.
    """

    config_name = CONFIG_NAME
    #: what the refinement stream reads: "x_sigma" (the noisy latent) or "x0_hat" (the clean estimate)
    state_input: str = "x_sigma"
    #: whether this method changes the backbone it is bound to (so that backbone is its own, not shared)
    edits_backbone: bool = False
    #: whether its layers are built from the backbone's (a ControlNet copy), so it loads only with a backbone
    copies_backbone: bool = False

    @property
    def bound(self) -> bool:
        return self.config.backbone_dims is not None

    def bind(self, backbone) -> None:
        """Build the layers for `backbone`, or check that an adapter built earlier fits it."""
        dims = backbone_dims(backbone)
        if not self.bound:
            self.register_to_config(backbone_dims=dims)
            with torch.device(backbone.device):
                self.build(dims)
        elif dict(self.config.backbone_dims) != dims:
            raise LiteVSRError(
                f"this adapter was built for a backbone with {dict(self.config.backbone_dims)}, not {dims}"
            )
        if self.edits_backbone and self.edited_backbone is not backbone:
            if self.edited_backbone is not None:
                raise LiteVSRError(f"a {type(self).__name__} edits its backbone, so it cannot be bound to a second one")
            self.edit_backbone(backbone)
            self.__dict__["_edited_backbone"] = backbone  # a reference, not a submodule: not in this state_dict

    def build(self, dims: dict) -> None:
        raise NotImplementedError

    @property
    def edited_backbone(self):
        """The backbone this adapter has edited (methods with `edits_backbone`), else None."""
        return self.__dict__.get("_edited_backbone")

    def edit_backbone(self, backbone) -> None:
        """Change `backbone` for this method (e.g. add LoRA layers); called once, when the adapter is bound."""

    def trained_backbone_parameters(self) -> list[str]:
        """Names (in the edited backbone's `named_parameters()`) of the backbone parameters this method trains."""
        return []

    def save_extra(self, folder: str) -> None:
        """Write what this method trains in the backbone into an export folder."""

    def load_extra(self, folder: str) -> None:
        """Read back what `save_extra` wrote, into the edited backbone."""

    def forward(self, cond: torch.Tensor, state: torch.Tensor, sigma: torch.Tensor) -> dict[int, torch.Tensor]:
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
            "litevsr_version": litevsr.__version__,
        }
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)


def _read_config(path: str) -> dict:
    if os.path.isfile(path) and path.endswith(".safetensors"):
        try:
            with safe_open(path, framework="pt") as f:
                old_format = "litevsr" in (f.metadata() or {})
        except (SafetensorError, OSError) as err:
            raise LiteVSRError(f"{path} is not a readable safetensors file: {str(err).splitlines()[0]}") from err
        if old_format:
            raise LiteVSRError(
                f"{path} is an adapter in litevsr's old single-file format; convert it once with "
                f"`litevsr convert-adapter {path} NEW_FOLDER`"
            )
        raise LiteVSRError(
            f"{path} is a bare weights file; an adapter is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
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
    try:
        adapter = cls.from_config(config)
    except (TypeError, ValueError) as err:
        raise LiteVSRError(f"{path}: cannot build {cls.__name__} from its config: {err}") from err
    if not adapter.bound:
        raise LiteVSRError(f"{path}: the config records no backbone_dims")
    if backbone is None and (adapter.edits_backbone or adapter.copies_backbone):
        raise LiteVSRError(f"{path}: a {cls.__name__} is built on backbone weights; load it with its backbone")
    if backbone is not None:
        adapter.bind(backbone)
    _load_weights(adapter, path)
    if backbone is not None:
        adapter.load_extra(path)
    return adapter


def load_adapter_weights(adapter: Adapter, path: str, grow: bool = False) -> list[str]:
    """Load an exported adapter's weights into a bound adapter built with the same arguments. With `grow`, the
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


def read_old_adapter_metadata(path: str) -> dict:
    """{class_path, init_args, backbone, scale, sampling, ...} of an adapter in litevsr's old single-file format."""
    try:
        with safe_open(path, framework="pt") as f:
            return json.loads((f.metadata() or {})["litevsr"])
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise LiteVSRError(f"{path} is not an adapter in litevsr's old single-file format") from err


def convert_old_adapter(path: str, folder: str, backbone) -> None:
    """Rewrite an adapter in litevsr's old single-file format (class path and arguments in the safetensors metadata)
    as an exported folder. The old class path must name a registered adapter: it is matched, never imported."""
    meta = read_old_adapter_metadata(path)
    known = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in ADAPTER_CLASSES.values()}
    if meta.get("class_path") not in known:
        raise LiteVSRError(f"{path} names {meta.get('class_path')!r}, which is not a registered adapter class")
    cls = known[meta["class_path"]]
    try:
        adapter = cls(**meta["init_args"])
    except TypeError as err:
        raise LiteVSRError(f"{path}: cannot build {cls.__name__} from {meta['init_args']}: {err}") from err
    adapter.bind(backbone)
    try:
        adapter.load_state_dict(load_file(path, device=str(adapter.device)), strict=True)
    except RuntimeError as err:
        raise LiteVSRError(f"{path} does not fit {backbone.name}: {str(err).strip().splitlines()[0]}") from err
    save_adapter(adapter, folder, meta["backbone"], meta.get("scale"), meta.get("sampling"))
