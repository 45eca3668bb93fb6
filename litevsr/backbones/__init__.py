from litevsr.backbones.base import VideoBackbone
from litevsr.backbones.wan import WanBackbone

__all__ = ["VideoBackbone", "WanBackbone"]
