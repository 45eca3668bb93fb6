"""Colour fixes against closed-form cases."""

import pytest
import torch

from litevsr import LiteVSRError
from litevsr.color import _lab_to_srgb, _srgb_to_lab, color_fix, low_pass


def smooth(seed=0, shape=(1, 3, 2, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(shape[0], shape[1], shape[2], 4, 4, generator=g) * 1.2 - 0.6
    return torch.nn.functional.interpolate(low.flatten(1, 2), size=shape[-2:], mode="bilinear").unflatten(1, shape[1:3])


def test_adain_undoes_a_per_channel_affine_colour_change():
    ref = smooth()
    scale, shift = (
        torch.tensor([0.5, 1.2, 0.8]).view(1, 3, 1, 1, 1),
        torch.tensor([0.1, -0.2, 0.05]).view(1, 3, 1, 1, 1),
    )
    torch.testing.assert_close(color_fix(ref * scale + shift, ref, "adain"), ref, atol=1e-4, rtol=0)


def test_wavelet_takes_the_references_colour_and_keeps_the_outputs_detail():
    ref = smooth()
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2 * 0.2 - 0.1  # the finest band only
    offset = torch.tensor([0.2, -0.1, 0.15]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(low_pass(checker.expand(1, 3, 32, 32)), torch.zeros(1, 3, 32, 32), atol=1e-6, rtol=0)
    torch.testing.assert_close(color_fix(ref + offset + checker, ref, "wavelet"), ref + checker, atol=1e-5, rtol=0)


def test_lab_round_trip_and_lab_moment_matching():
    rgb = (smooth(1) + 1) / 2
    frames = rgb.transpose(1, 2).flatten(0, 1)
    torch.testing.assert_close(_lab_to_srgb(_srgb_to_lab(frames)), frames, atol=1e-4, rtol=0)
    lab = _srgb_to_lab(frames)
    shifted = _lab_to_srgb(
        lab * torch.tensor([0.9, 1.1, 1.1]).view(1, 3, 1, 1) + torch.tensor([3.0, 2.0, -2.0]).view(1, 3, 1, 1)
    )
    out = shifted.unflatten(0, (1, 2)).transpose(1, 2) * 2 - 1
    torch.testing.assert_close(color_fix(out, rgb * 2 - 1, "lab"), rgb * 2 - 1, atol=2e-3, rtol=0)


def test_none_is_the_identity_and_unknown_methods_are_refused():
    video = smooth()
    assert color_fix(video, -video, "none") is video
    with pytest.raises(LiteVSRError, match="color_fix must be one of none, wavelet, adain, lab"):
        color_fix(video, video, "hist")
