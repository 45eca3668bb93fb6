"""A ControlNet-style baseline: a trainable copy of the backbone's first `depth` blocks reads the backbone's own
input tokens plus a zero-initialised projection of the LQ latent, and each copied block's output enters the frozen
block of the same index through a zero-initialised projection. It costs a copy of half the backbone by default,
which is what the State-Aware Adapter is compared against.
"""

from __future__ import annotations

import copy

from diffusers.configuration_utils import register_to_config
from torch import nn

from litevsr import LiteVSRError
from litevsr.adapters.base import Adapter, register_adapter


@register_adapter
class ControlNetAdapter(Adapter):
    copies_backbone = True

    @register_to_config
    def __init__(self, depth: int | None = None, backbone_dims: dict | None = None):
        """ControlNet-style copy of the first blocks.

        Args:
            depth: Blocks copied (from the first). Default: half the backbone's depth.
            backbone_dims: Filled in when the adapter is bound to its backbone (see StateAwareAdapter). The copy
                itself is made from the backbone's blocks at binding.
        """
        super().__init__()
        if depth is not None and depth < 1:
            raise LiteVSRError(f"the ControlNet depth must be >= 1 block, got {depth}")
        if backbone_dims is not None:
            self.build(backbone_dims)

    def build(self, dims: dict) -> None:
        depth = self.config.depth or max(1, dims["num_blocks"] // 2)
        if depth > dims["num_blocks"]:
            raise LiteVSRError(f"the ControlNet depth {depth} exceeds the backbone's {dims['num_blocks']} blocks")
        patch = tuple(dims["patch_size"])
        self.input_projection = nn.Conv3d(dims["latent_channels"], dims["hidden_dim"], patch, stride=patch, bias=False)
        self.outputs = nn.ModuleList(nn.Linear(dims["hidden_dim"], dims["hidden_dim"]) for _ in range(depth))
        for layer in (self.input_projection, *self.outputs):
            nn.init.zeros_(layer.weight)
        for layer in self.outputs:
            nn.init.zeros_(layer.bias)

    def bind(self, backbone) -> None:
        super().bind(backbone)
        if not hasattr(self, "copies"):  # initialised from the backbone; an export's weights load over it
            blocks = [copy.deepcopy(block) for block in backbone.blocks[: len(self.outputs)]]
            for block in blocks:
                block._forward_hooks.clear()  # the backbone's injection hooks are not the copy's
                block._forward_pre_hooks.clear()
                block.requires_grad_(True)
            self.copies = nn.ModuleList(blocks)

    def forward(self, cond, state, sigma) -> dict:
        hint = self.input_projection(cond).flatten(2).transpose(1, 2)

        def control(tokens, run):
            hidden, residuals = tokens + hint.to(tokens.dtype), {}
            for index, (block, output) in enumerate(zip(self.copies, self.outputs)):
                hidden = run(block, hidden)
                residuals[index] = output(hidden)
            return residuals

        return {"from_input": control}
