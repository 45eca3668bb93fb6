"""A ControlNet-style baseline: a trainable copy of the backbone's first `depth` blocks reads the backbone's own
input tokens plus a zero-initialised projection of the LQ latent, and each copied block's output enters the frozen
block of the same index through a zero-initialised projection. It costs a copy of half the backbone by default,
which is what the State-Aware Adapter is compared against.

The copies need the first block's time, text and position arguments, which exist only inside the transformer's
forward, so this method edits its backbone: hooks of its own on the first `depth` blocks run the copies and add
their outputs. The frozen backbone's own hooks know nothing of it.
"""

from __future__ import annotations

import copy

from diffusers.configuration_utils import register_to_config
from torch import nn

from litevsr.adapters.base import Adapter, register_adapter
from litevsr.errors import LiteVSRError
from litevsr.injections import Injections


@register_adapter
class ControlNetAdapter(Adapter):
    edits_backbone = True
    copies_backbone = True

    @register_to_config
    def __init__(self, *, backbone_dims: dict, depth: int | None = None):
        """ControlNet-style copy of the first blocks.

        Args:
            backbone_dims: The backbone's dimensions (see StateAwareAdapter). The copies themselves are made from
                the backbone's blocks when the adapter is attached to it.
            depth: Blocks copied (from the first). Default: half the backbone's depth.
        """
        super().__init__()
        if depth is not None and depth < 1:
            raise LiteVSRError(f"the ControlNet depth must be >= 1 block, got {depth}")
        dims = backbone_dims
        depth = depth or max(1, dims["num_blocks"] // 2)
        if depth > dims["num_blocks"]:
            raise LiteVSRError(f"the ControlNet depth {depth} exceeds the backbone's {dims['num_blocks']} blocks")
        patch = tuple(dims["patch_size"])
        self.input_projection = nn.Conv3d(dims["latent_channels"], dims["hidden_dim"], patch, stride=patch, bias=False)
        self.outputs = nn.ModuleList(nn.Linear(dims["hidden_dim"], dims["hidden_dim"]) for _ in range(depth))
        for layer in (self.input_projection, *self.outputs):
            nn.init.zeros_(layer.weight)
        for layer in self.outputs:
            nn.init.zeros_(layer.bias)
        self._hint = None  # the projected condition of the transformer call this forward precedes
        self._armed = False
        self._residuals: dict[int, object] = {}

    def edit_backbone(self, backbone) -> None:
        """Copy the first blocks (initialised from the backbone; an export's weights load over them) and hook the
        originals: the first block's input runs the copies, each original adds its copy's projected output."""
        blocks = [copy.deepcopy(block) for block in backbone.blocks[: len(self.outputs)]]
        for block in blocks:
            block._forward_hooks.clear()  # the backbone's hooks are not the copy's
            block._forward_pre_hooks.clear()
            block.requires_grad_(True)
        self.copies = nn.ModuleList(blocks)
        backbone.transformer.register_forward_pre_hook(self._start_call)
        backbone.blocks[0].register_forward_pre_hook(self._run_copies, with_kwargs=True)
        for index in range(len(self.outputs)):
            backbone.blocks[index].register_forward_hook(self._adder(index))

    def _start_call(self, module, args):
        """A transformer call not preceded by this adapter's forward is the bare backbone's: no hint. (Gradient
        checkpointing recomputes blocks, not the transformer call, so the hint stays for them.)"""
        if not self._armed:
            self._hint = None
        self._armed = False

    def _run_copies(self, module, args, kwargs):
        """The copies on the first block's input tokens plus the hint, with its other arguments. Pure: under
        gradient checkpointing it runs again with the same inputs and gives the same residuals."""
        if self._hint is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        hidden = hidden + self._hint.to(hidden.dtype)
        residuals = {}
        for index, (block, output) in enumerate(zip(self.copies, self.outputs)):
            out = block(hidden, *args[1:], **kwargs) if args else block(**{**kwargs, "hidden_states": hidden})
            hidden = out[0] if isinstance(out, tuple) else out
            residuals[index] = output(hidden)
        self._residuals = residuals
        return None

    def _adder(self, index: int):
        def add(module, args, output):
            residual = self._residuals.get(index) if self._hint is not None else None
            if residual is None:
                return output
            if isinstance(output, tuple):
                return (output[0] + residual.to(output[0].dtype), *output[1:])
            return output + residual.to(output.dtype)

        return add

    def forward(self, cond, state, sigma) -> Injections:
        self._hint, self._armed = self.input_projection(cond).flatten(2).transpose(1, 2), True
        return Injections()
