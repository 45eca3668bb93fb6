"""What a backbone family is, declared: its diffusers classes, published configs, twin shrink, LoRA targets, prompt
shape and geometry, and how to build and save its models. Nothing here loads a checkpoint; `VideoBackbone`
(litevsr.backbones.base) is the runtime that does, reading its family's `FamilySpec`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping

import diffusers
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The shapes a backbone imposes, read from its transformer's and VAE's configs."""

    hidden_dim: int
    num_blocks: int
    patch_size: tuple[int, int, int]
    latent_channels: int
    vae_stride: tuple[int, int, int]
    frame_step: int  # videos need 1 + k * frame_step frames


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """One backbone family, declared.

    Args:
        name: The family's name in exported adapters, cached latents and `litevsr.backbones.FAMILIES`.
        transformer_class: The diffusers class of the transformer.
        vae_class: The diffusers class of the VAE.
        pipeline: The diffusers pipeline class of the family's hub folders (model_index.json).
        blocks: The transformer's attribute holding its blocks (where injections go).
        known_configs: Published checkpoints' {"transformer": config, "vae": config, ...} by hub id: meta-device
            builds and twins. Parts besides transformer and VAE are built by `extra_classes`.
        twin_shrink: What a twin shrinks (widths and depths only): {"transformer": {...}, "vae": {...}}.
        twin_shrink_where_set: What a twin shrinks only where the published config sets it.
        lora_targets: Module names (suffixes) of the attention and FFN projections, where LoRA goes by default.
        prompt_shape: (text length, width) of the prompt embedding a transformer config reads.
        geometry: The `Geometry` of full transformer and VAE configs (a loaded model's `.config`).
        fixed_text_length: Whether the transformer reads exactly `prompt_shape`'s number of text tokens (else any).
        extra_classes: Components besides transformer and VAE that a folder of this family holds (e.g. its
            scheduler), by subfolder: their diffusers classes, built from the config's part of that name.
    """

    name: str
    transformer_class: type
    vae_class: type
    pipeline: str
    blocks: str
    known_configs: Mapping[str, dict]
    twin_shrink: Mapping[str, dict]
    lora_targets: tuple[str, ...]
    prompt_shape: Callable[[Mapping], tuple[int, int]]
    geometry: Callable[[Mapping, Mapping], Geometry]
    fixed_text_length: bool = False
    twin_shrink_where_set: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    extra_classes: Mapping[str, type] = dataclasses.field(default_factory=dict)

    def build(self, config: dict, seed: int = 0) -> tuple[nn.Module, nn.Module]:
        """A freshly initialised transformer + VAE from a {"transformer": ..., "vae": ...} config."""
        with torch.random.fork_rng():  # the caller's RNG (seed_everything's) is left as it was
            torch.manual_seed(seed)
            return self.transformer_class(**config["transformer"]), self.vae_class(**config["vae"])

    def twin_config(self, name: str) -> dict:
        """The config of the twin of published checkpoint `name`: each part of its config, shrunk."""
        real = self.known_configs[name]
        return {
            part: {
                **config,
                **self.twin_shrink.get(part, {}),
                **{k: v for k, v in self.twin_shrink_where_set.get(part, {}).items() if k in config},
            }
            for part, config in real.items()
        }

    def extra_components(self, config: dict) -> dict:
        """The components besides transformer and VAE (`extra_classes`), built from a full config."""
        return {name: cls.from_config(config[name]) for name, cls in self.extra_classes.items()}

    def save(
        self,
        transformer,
        vae,
        folder: str,
        prompt_embeds: torch.Tensor | None = None,
        max_shard_size: int | str = "10GB",
        components: dict | None = None,
        index_fields: dict | None = None,
    ) -> None:
        """Save in the family's diffusers layout, which its backbone loads, with `components` (see
        `extra_components`) beside them and `index_fields` added to model_index.json; the transformer is split into
        shards with an index where it exceeds `max_shard_size` (bytes), as large hub checkpoints are."""
        transformer.save_pretrained(os.path.join(folder, "transformer"), max_shard_size=max_shard_size)
        vae.save_pretrained(os.path.join(folder, "vae"))
        index = {"transformer": ["diffusers", type(transformer).__name__], "vae": ["diffusers", type(vae).__name__]}
        for name, component in (components or {}).items():
            component.save_pretrained(os.path.join(folder, name))
            index[name] = ["diffusers", type(component).__name__]
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump(
                {
                    "_class_name": self.pipeline,
                    "_diffusers_version": diffusers.__version__,
                    **(index_fields or {}),
                    **index,
                },
                f,
                indent=2,
            )
        if prompt_embeds is not None:
            from safetensors.torch import save_file

            save_file({"prompt_embeds": prompt_embeds.contiguous()}, os.path.join(folder, "prompt_embeds.safetensors"))
