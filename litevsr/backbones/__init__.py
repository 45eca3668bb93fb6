"""Backbone families behind one interface, and how a name read from a file or a folder picks one."""

import json
import os

from litevsr.backbones.base import VideoBackbone, register_source, resolve_source
from litevsr.backbones.cogvideox import CogVideoXBackbone
from litevsr.backbones.ltx import LTXVideoBackbone
from litevsr.backbones.switches import Switches
from litevsr.backbones.wan import WanBackbone
from litevsr.errors import LiteVSRError

#: backbone classes by family name: what exported adapters and cached latents record
FAMILIES: dict[str, type[VideoBackbone]] = {
    cls.spec.name: cls for cls in (WanBackbone, CogVideoXBackbone, LTXVideoBackbone)
}
#: every published checkpoint litevsr knows (meta-device builds, twins), with its family
KNOWN_BACKBONES: dict[str, type[VideoBackbone]] = {
    name: cls for cls in FAMILIES.values() for name in cls.spec.known_configs
}


def backbone_class(family: str) -> type[VideoBackbone]:
    if family not in FAMILIES:
        raise LiteVSRError(f"unknown backbone family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family]


def detect_family(pretrained: str) -> type[VideoBackbone]:
    """The family of a known hub id, a registered name, or a local diffusers folder (by its transformer's class
    name, matched against the known families, never imported)."""
    if pretrained in KNOWN_BACKBONES:
        return KNOWN_BACKBONES[pretrained]
    folder, _ = resolve_source(pretrained)
    config = os.path.join(folder, "transformer", "config.json")
    if os.path.isfile(config):
        with open(config) as f:
            class_name = json.load(f).get("_class_name")
        for cls in FAMILIES.values():
            if cls.spec.transformer_class.__name__ == class_name:
                return cls
        raise LiteVSRError(
            f"{pretrained}: its transformer is a {class_name}, which no backbone family reads "
            f"(known: {', '.join(c.spec.transformer_class.__name__ for c in FAMILIES.values())})"
        )
    return WanBackbone  # a hub id litevsr has no config for: Wan, the default family


__all__ = [
    "Switches",
    "VideoBackbone",
    "WanBackbone",
    "CogVideoXBackbone",
    "LTXVideoBackbone",
    "FAMILIES",
    "KNOWN_BACKBONES",
    "backbone_class",
    "detect_family",
    "register_source",
]
