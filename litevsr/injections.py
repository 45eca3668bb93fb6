"""What an adapter writes into the frozen backbone: the one contract between the two."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Injections:
    """Residuals added to the backbone's blocks' video tokens, by block index, each (B, N, D) in the backbone's token
    order; and optional tokens added to the first block's input (how a channel-concatenated condition enters)."""

    residuals: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    input_tokens: torch.Tensor | None = None
