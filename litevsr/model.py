"""LiteVSR = frozen backbone + adapter: the velocity field that training fits and the pipeline samples, and the
spatial tiles it runs on."""

from __future__ import annotations

import torch
from torch import nn

import litevsr.flow as flow
from litevsr.adapters.base import Adapter
from litevsr.backbones.base import VideoBackbone
from litevsr.errors import LiteVSRError
from litevsr.frames import resize_video


class LiteVSR(nn.Module):
    def __init__(self, backbone: VideoBackbone, adapter: Adapter | None):
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        if adapter is not None:
            adapter.attach(backbone)

    def trained_parameters(self) -> dict[str, nn.Parameter]:
        """What the method trains, by name in this module: the adapter's parameters and the backbone parameters
        it declares (LoRA layers, a full fine-tune's transformer). Everything else is frozen."""
        if self.adapter is None:
            return {}
        params = {f"adapter.{k}": p for k, p in self.adapter.named_parameters()}
        backbone = dict(self.backbone.named_parameters())
        params.update({f"backbone.{k}": backbone[k] for k in self.adapter.trained_backbone_parameters()})
        return params

    def check_frozen(self) -> None:
        """Exactly the trained parameters require gradients: the frozen guarantee, for every method."""
        trained = {id(p) for p in self.trained_parameters().values()}
        wrong = [k for k, p in self.named_parameters() if p.requires_grad != (id(p) in trained)]
        if wrong:
            raise LiteVSRError(
                f"{len(wrong)} parameters break the frozen guarantee (e.g. {wrong[0]}): exactly the "
                "method's trained parameters may require gradients"
            )

    def condition(self, lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Latent of the LQ video upsampled (bicubic) to the HQ `size`: the structural stream's input."""
        return self.backbone.encode(resize_video(lq, size).clamp(-1, 1))

    def refinement_state(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """What the refinement stream reads: x_sigma itself, or the clean estimate x0_hat = x_sigma - sigma * v of
        the bare frozen backbone at this state (one extra no-grad pass), the same in training and sampling."""
        if self.adapter is None or self.adapter.state_input == "x_sigma":
            return x
        with torch.no_grad():
            return flow.predict_x0(x, self.backbone(x, sigma), sigma)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        injections = None if self.adapter is None else self.adapter(cond, state, sigma)
        return self.backbone(x, sigma, injections)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of a tile: rising over `overlap` at inner edges, flat at the frame's borders."""
    i = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if ramp_start:
        weight = torch.minimum(weight, (i + 1) / (overlap + 1))
    if ramp_end:
        weight = torch.minimum(weight, (length - i) / (overlap + 1))
    return weight


def check_tile_overlap(tile: int, overlap: int, unit: str) -> None:
    if not 0 <= overlap < tile:
        raise LiteVSRError(f"the tile overlap must be in [0, tile), got tile {tile} and overlap {overlap} ({unit})")


def tiled(fn, size: tuple[int, int], multiple: tuple[int, int], tile: int | None, overlap: int) -> torch.Tensor:
    """Run fn(window) on overlapping (..., H, W) windows of a frame of `size` and blend the results.

    `window` indexes (B, C, T, H, W) tensors. Tile and overlap are rounded down to `multiple` (the transformer's
    patch), so every tile holds whole tokens. Without `tile`, or with a tile as large as the frame, fn runs once."""
    if tile is None or tile >= max(size):
        return fn((Ellipsis,))
    check_tile_overlap(tile, overlap, "latent pixels")
    out = weight = None
    (h, w), (mh, mw) = size, multiple
    th, tw = min(tile // mh * mh, h), min(tile // mw * mw, w)
    for y0 in _tile_starts(h, th, overlap // mh * mh):
        for x0 in _tile_starts(w, tw, overlap // mw * mw):
            window = (Ellipsis, slice(y0, y0 + th), slice(x0, x0 + tw))
            result = fn(window)
            if out is None:
                out = result.new_zeros(*result.shape[:-2], h, w)
                weight = result.new_zeros(h, w)
            ramp = _ramp(th, overlap, y0 > 0, y0 + th < h)[:, None] * _ramp(tw, overlap, x0 > 0, x0 + tw < w)[None]
            ramp = ramp.to(result)
            out[window] += result * ramp
            weight[y0 : y0 + th, x0 : x0 + tw] += ramp
    return out / weight
