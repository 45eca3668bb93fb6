"""litevsr's ComfyUI custom-node pack: copy or symlink this folder into ComfyUI/custom_nodes/, with litevsr
installed in ComfyUI's Python environment (README, "ComfyUI nodes")."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
