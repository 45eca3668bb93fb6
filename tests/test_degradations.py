import dataclasses
import glob
import math
import os
import pickle

import pytest
import torch
import yaml

from litevsr import LiteVSRError
from litevsr.data import degradations as D
from litevsr.data.degradations import (
    PRESETS,
    Degradation,
    MixedDegradation,
    RealWorldDegradation,
    RealWorldOptions,
    SimpleDegradation,
    preset_options,
)

KINDS = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4 / float(((a - b) ** 2).mean()))


def smooth_clip(frames=5, height=32, width=32, seed=0, batch=1) -> torch.Tensor:
    """Low-frequency colour blobs panning one pixel a frame, on the 8-bit grid: (B, 3, T, H, W)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, 1, height // 8 + 2, width // 8 + 2, generator=g) * 2 - 1
    big = D.resize_video(base, (height + frames, width + frames), "bicubic")
    return D.quantize(torch.cat([big[..., i : i + height, i : i + width] for i in range(frames)], dim=2))


# ------------------------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("kind", KINDS + ["sinc"])
def test_kernels_sum_to_one_scalar_and_per_frame(kind):
    k = D.blur_kernel(kind, 11, 1.7, 0.9, 0.4, 1.5)
    assert k.shape == (11, 11) and torch.isclose(k.sum(), torch.tensor(1.0), atol=1e-5)
    per_frame = D.blur_kernel(
        kind,
        9,
        torch.tensor([0.8, 1.0, 2.0]),
        torch.tensor([0.5, 1.5, 1.0]),
        torch.tensor([0.0, 0.5, 1.0]),
        torch.tensor([0.7, 1.0, 2.0]),
    )
    assert per_frame.shape == (3, 9, 9)
    assert torch.allclose(per_frame.sum((-2, -1)), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("kind", ["iso", "generalized_iso", "plateau_iso"])
def test_isotropic_kernels_are_rotation_and_transposition_symmetric(kind):
    k = D.blur_kernel(kind, 13, 2.0, beta=0.8)
    assert torch.allclose(k, k.T, atol=1e-7)
    assert torch.allclose(k, torch.rot90(k), atol=1e-7)
    assert torch.allclose(k, k.flip(0), atol=1e-7) and torch.allclose(k, k.flip(1), atol=1e-7)


@pytest.mark.parametrize("kind", ["aniso", "generalized_aniso", "plateau_aniso"])
def test_anisotropic_kernels_at_angle_zero_are_flip_symmetric_but_not_transposable(kind):
    k = D.blur_kernel(kind, 15, 3.0, 1.0, 0.0, 1.5)
    assert torch.allclose(k, k.flip(0), atol=1e-7) and torch.allclose(k, k.flip(1), atol=1e-7)
    assert not torch.allclose(k, k.T, atol=1e-4)
    assert k[7].sum() > k[:, 7].sum()  # wider along x (columns) than along y
    rotated = D.blur_kernel(kind, 15, 3.0, 1.0, math.pi / 2, 1.5)  # a quarter turn swaps the axes
    assert torch.allclose(rotated, k.T, atol=1e-6)


def test_gaussian_kernel_families_agree():
    iso = D.gaussian_kernel(9, 1.3)
    assert torch.allclose(D.blur_kernel("iso", 9, 1.3), iso, atol=1e-7)
    assert torch.allclose(D.blur_kernel("generalized_iso", 9, 1.3, beta=1.0), iso, atol=1e-7)
    assert torch.allclose(torch.outer(D.gaussian_kernel_1d(9, 1.3), D.gaussian_kernel_1d(9, 1.3)), iso, atol=1e-7)


@pytest.mark.parametrize("omega", [math.pi / 2, math.pi / 3])
def test_sinc_kernel_cuts_off_at_omega(omega):
    k = D.sinc_kernel(21, omega).double()
    assert torch.allclose(k, k.T) and torch.allclose(k, torch.rot90(k))
    spectrum = torch.fft.fft2(k, s=(128, 128)).abs()
    f = torch.fft.fftfreq(128, dtype=torch.float64) * 2 * math.pi
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    passband, stopband = spectrum[radius < 0.7 * omega], spectrum[radius > 1.3 * omega]
    assert passband.min() > 0.8 and passband.mean() > 0.9
    assert stopband.max() < 0.15 and stopband.mean() < 0.02


def test_separable_blur_equals_two_dimensional_blur_per_frame():
    video = torch.rand(2, 3, 4, 20, 17) * 2 - 1
    sigma = torch.tensor([[0.5, 1.0, 1.5, 2.0], [2.0, 1.5, 1.0, 0.5]])
    separable = D.separable_blur(video, D.gaussian_kernel_1d(9, sigma))
    full = D.blur(video, D.blur_kernel("iso", 9, sigma))
    assert torch.allclose(separable, full, atol=1e-5)
    # one kernel per frame: frame i is blurred exactly as a whole video blurred with kernel i
    kernels = D.blur_kernel("aniso", 7, torch.tensor([0.5, 2.0]), torch.tensor([1.0, 0.7]), torch.tensor([0.3, 1.0]))
    out = D.blur(video[:, :, :2], kernels)
    for i in range(2):
        assert torch.allclose(out[:, :, i], D.blur(video[:, :, i : i + 1], kernels[i])[:, :, 0], atol=1e-6)


def test_blur_pads_frames_smaller_than_the_kernel():
    assert D.blur(torch.zeros(1, 3, 2, 5, 4), D.gaussian_kernel(21, 3.0)).shape == (1, 3, 2, 5, 4)


# ------------------------------------------------------------------------------------------------ functions


@pytest.mark.parametrize("mode", D.RESIZE_MODES)
def test_resize_modes(mode):
    video = smooth_clip(2, 17, 23)
    assert D.resize_video(video, (7, 9), mode).shape == (1, 3, 2, 7, 9)
    assert D.resize_video(video, (40, 30), mode).shape == (1, 3, 2, 40, 30)


def test_noise_levels_gray_and_per_frame():
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 3, 3, 64, 64)
    noisy = D.gaussian_noise(flat, torch.tensor([0.0, 10.0, 20.0]), g)
    std = (noisy * 127.5).std(dim=(0, 1, 3, 4))
    assert std[0] == 0 and abs(std[1] - 10) < 0.5 and abs(std[2] - 20) < 1
    gray = D.gaussian_noise(flat, 5.0, g, gray=True)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    # shot noise grows with brightness; black stays black
    dark_bright = torch.cat([torch.full((1, 3, 1, 64, 64), -1.0), torch.full((1, 3, 1, 64, 64), 0.5)], dim=2)
    shot = D.poisson_noise(dark_bright, 1.0, g) - dark_bright
    assert shot[:, :, 0].abs().max() == 0 and shot[:, :, 1].std() > 0
    gray_shot = D.poisson_noise(dark_bright, 1.0, g, gray=True)
    assert torch.equal(gray_shot[:, 0], gray_shot[:, 2])


def test_jpeg_psnr_rises_with_quality_and_accepts_per_frame_quality():
    video = smooth_clip(2, 48, 48)
    scores = [psnr(video, D.jpeg(video, q)) for q in (10, 50, 95)]
    assert scores[0] < scores[1] < scores[2]
    per_frame = D.jpeg(video, torch.tensor([10.0, 95.0]))
    assert torch.equal(per_frame[:, :, 0], D.jpeg(video[:, :, :1], 10)[:, :, 0])
    assert torch.equal(per_frame[:, :, 1], D.jpeg(video[:, :, 1:], 95)[:, :, 0])


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_codec_psnr_rises_with_bitrate_and_is_deterministic(codec):
    video = smooth_clip(9, 48, 48)
    scores = [psnr(video, D.video_codec(video, codec, rate)) for rate in (5e3, 2e4, 1e5)]
    assert scores[0] < scores[1] <= scores[2] and scores[0] + 2 < scores[2]  # 4:2:0 chroma caps the top
    assert torch.equal(D.video_codec(video, codec, 2e4), D.video_codec(video, codec, 2e4))


def test_codec_keeps_odd_sizes_and_batches():
    video = smooth_clip(3, 21, 19, batch=2)
    out = D.video_codec(video, "h264", 5e4)
    assert out.shape == video.shape and psnr(video, out) > 20


def test_unsharp_mask_sharpens_edges_and_leaves_flat_areas():
    step = torch.full((1, 3, 1, 32, 32), -0.5)
    step[..., 16:] = 0.5
    soft = D.blur(step, D.gaussian_kernel(7, 1.5))
    sharp = D.unsharp_mask(soft)
    assert (sharp[..., 17] - sharp[..., 14]).mean() > (soft[..., 17] - soft[..., 14]).mean()
    assert torch.allclose(sharp[..., :4], soft[..., :4], atol=1e-6)  # flat: untouched


def test_posterize_flicker_and_film_artefacts():
    g = torch.Generator().manual_seed(0)
    video = smooth_clip(3, 32, 32)
    assert len(torch.unique(D.posterize(video, 4))) <= 4
    levels = D.posterize(video, torch.tensor([2.0, 8.0, 8.0]))
    assert len(torch.unique(levels[:, :, 0])) <= 2 and len(torch.unique(levels[:, :, 1])) > 2
    mid = torch.zeros(1, 3, 2, 8, 8)
    assert torch.allclose((D.flicker(mid, torch.tensor([1.0, 1.2])) + 1).mean((0, 1, 3, 4)), torch.tensor([1.0, 1.2]))
    grain = D.film_grain(mid, 8.0, g, grain_size=1.5)
    assert torch.equal(grain[:, 0], grain[:, 1]) and 4 < (grain * 127.5).std() < 12  # monochrome, about 8 levels
    for artefact in (D.scratches, D.dust):
        once = artefact(video, 3, torch.Generator().manual_seed(1))
        assert once.shape == video.shape and not torch.equal(once, video)
        assert torch.equal(once, artefact(video, 3, torch.Generator().manual_seed(1)))
        assert torch.equal(artefact(video, 0, g), video)


# ------------------------------------------------------------------------------------------------ pipeline


def test_pipelines_share_a_base_class():
    assert isinstance(RealWorldDegradation(), Degradation) and isinstance(SimpleDegradation(), Degradation)


def test_simple_degradation_without_blur_and_noise_is_plain_bicubic():
    hq = smooth_clip(3, 32, 40)[0]
    lq = SimpleDegradation((0, 0), (0, 0))(hq, 4, torch.Generator().manual_seed(0))
    assert torch.equal(lq, D.quantize(D.resize_video(hq[None], (8, 10)))[0])


def test_mixed_degradation_draws_each_member_by_weight_per_clip():
    hq = smooth_clip(3, 32, 32)[0]
    bicubic, real = SimpleDegradation((0, 0), (0, 0)), RealWorldDegradation()
    mix = MixedDegradation([bicubic, real], [0.7, 0.3])
    plain = bicubic(hq, 4, torch.Generator())
    picks = [torch.equal(mix(hq, 4, torch.Generator().manual_seed(i)), plain) for i in range(200)]
    assert 0.6 < sum(picks) / len(picks) < 0.8
    assert torch.equal(mix(hq, 4, torch.Generator().manual_seed(5)), mix(hq, 4, torch.Generator().manual_seed(5)))
    with pytest.raises(LiteVSRError, match="one non-negative weight per degradation"):
        MixedDegradation([bicubic], [0.5, 0.5])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_run_with_exact_shapes_on_the_8bit_grid(preset):
    hq = smooth_clip(5, 37, 45)[0]  # odd sizes
    degradation = RealWorldDegradation(preset)
    for scale, seed in ((4, 0), (2, 1)):
        lq = degradation(hq, scale, torch.Generator().manual_seed(seed))
        assert lq.shape == (3, 5, 37 // scale, 45 // scale) and lq.dtype == hq.dtype
        assert (
            lq.min() >= -1 and lq.max() <= 1 and torch.allclose((lq + 1) * 127.5, ((lq + 1) * 127.5).round(), atol=1e-4)
        )


def test_same_seed_same_output_different_seed_different_output():
    hq = smooth_clip(5, 32, 32)[0]
    original = hq.clone()
    degradation = RealWorldDegradation(
        RealWorldOptions(codec_prob=1.0, grain_prob=0.5, dust_prob=0.5, scratch_prob=0.5)
    )
    first = degradation(hq, 4, torch.Generator().manual_seed(7))
    assert torch.equal(first, degradation(hq, 4, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, degradation(hq, 4, torch.Generator().manual_seed(8)))
    assert torch.equal(hq, original)  # the HQ clip is left alone
    copy = pickle.loads(pickle.dumps(degradation))  # data-loader workers may receive it pickled
    assert torch.equal(first, copy(hq, 4, torch.Generator().manual_seed(7)))


def test_per_frame_parameters_drift_by_at_most_the_walk_step():
    degradation = RealWorldDegradation(
        preset_options(
            "realesrgan",
            sinc_prob=0.0,
            second_sinc_prob=0.0,
            blur_prob=1.0,
            second_blur_prob=1.0,
            kernel_probs={"aniso": 1.0},
        )
    )
    o = degradation.options
    moved = 0
    for seed in range(4):
        params = degradation.sample_params(9, torch.Generator().manual_seed(seed))
        for stage, sigma_range in (("stage1", o.blur_sigma), ("stage2", o.second_blur_sigma)):
            p = params[stage]
            kernel, noise = p["blur"], p["noise"]
            noise_step = o.drift_noise if noise["kind"] == "gaussian" else o.drift_poisson
            for track, step in (
                (kernel["sigma_x"], o.drift_sigma),
                (kernel["sigma_y"], o.drift_sigma),
                (kernel["theta"], o.drift_angle),
                (noise["level"], noise_step),
                (p["jpeg"], o.drift_quality),
            ):
                assert track.shape == (9,)
                assert (track[1:] - track[:-1]).abs().max() <= step + 1e-9
                moved += int((track[1:] != track[:-1]).any())
            assert sigma_range[0] <= kernel["sigma_x"].min() and kernel["sigma_x"].max() <= sigma_range[1]
    assert moved >= 30  # they do drift
    frozen = RealWorldDegradation(
        RealWorldOptions(drift_sigma=0.0, drift_angle=0.0, drift_noise=0.0, drift_poisson=0.0, drift_quality=0.0)
    ).sample_params(5, torch.Generator().manual_seed(0))
    assert len(set(frozen["stage1"]["jpeg"].tolist())) == 1


def test_sample_params_is_what_call_applies():
    hq = smooth_clip(3, 32, 32)[0]
    degradation = RealWorldDegradation("old_film")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    params = degradation.sample_params(3, g1)
    assert torch.equal(degradation.apply(hq, 4, params, g1), degradation(hq, 4, g2))


def test_explicit_arguments_override_the_preset():
    anime = RealWorldDegradation(preset_options("anime", codec_prob=0.25))
    assert anime.options.codec_prob == 0.25
    assert anime.options.posterize_prob == PRESETS["anime"].posterize_prob
    never = RealWorldDegradation(RealWorldOptions(codec_prob=0.0, posterize_prob=0.0))
    assert never.sample_params(3, torch.Generator().manual_seed(0))["codec"] is None


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(blur_sigma=(-1.0, 2.0)), "blur_sigma"),
        (dict(second_blur_sigma=(0.0, 2.0)), "second_blur_sigma"),
        (dict(noise_sigma=(5.0, 1.0)), "noise_sigma"),
        (dict(jpeg_quality=(50.0, 101.0)), "jpeg_quality"),
        (dict(posterize_levels=(1, 8)), "posterize_levels"),
        (dict(codec_prob=1.5), "codec_prob"),
        (dict(drift_sigma=-0.1), "drift_sigma"),
        (dict(kernel_probs={"box": 1.0}), "kernel_probs"),
        (dict(kernel_size=(8, 8)), "kernel_size"),
        (dict(resize_probs=(0.5, 0.5)), "resize_probs"),
        (dict(codecs=["vp9"]), "codecs"),
        (dict(resize_modes=["lanczos"]), "resize_modes"),
    ],
)
def test_bad_options_raise_one_line_errors_naming_the_option(kwargs, words):
    with pytest.raises(LiteVSRError, match=f"RealWorldOptions: {words} ") as error:
        RealWorldOptions(**kwargs)
    assert "\n" not in str(error.value)
    with pytest.raises(LiteVSRError, match=words):  # also when changing a preset
        preset_options("anime", **kwargs)


def test_unknown_preset_names_the_presets():
    with pytest.raises(LiteVSRError, match="unknown degradation preset 'cartoon'; choose one of realesrgan, anime"):
        RealWorldDegradation("cartoon")


def test_options_from_lists_equal_the_preset_and_name_it():
    spelled = RealWorldOptions(
        **{k: list(v) if isinstance(v, tuple) else v for k, v in vars(PRESETS["anime"]).items()}
    )  # as YAML gives them
    assert spelled == PRESETS["anime"] and repr(RealWorldDegradation(spelled)) == "RealWorldDegradation(preset='anime')"
    assert "codec_prob=0.5" in repr(RealWorldDegradation(preset_options("anime", codec_prob=0.5)))


@pytest.mark.parametrize("path", sorted(glob.glob("recipes/degradations/*.yaml")))
def test_preset_files_spell_out_their_preset(path):
    block = yaml.safe_load(open(path))
    assert block["class_path"] == "litevsr.data.degradations.RealWorldDegradation"
    name = os.path.basename(path).removesuffix(".yaml")
    assert RealWorldOptions(**block["init_args"]["options"]) == PRESETS[name]
    assert set(block["init_args"]["options"]) == {f.name for f in dataclasses.fields(RealWorldOptions)}


def test_degradation_block_parses_from_yaml():
    """As recipes give it: a preset's name, a preset file with a changed value, or some options."""
    from jsonargparse import ArgumentParser

    def data(degradation: Degradation):
        """Stands in for the data module, whose arguments take sub-config files, as the CLI's do."""

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(data, "data", sub_configs=True)
    block = "data:\n  degradation:\n    class_path: litevsr.data.degradations.RealWorldDegradation\n    init_args: "
    assert (
        parser.instantiate(parser.parse_string(block + "{options: old_film}\n")).data.degradation.options
        == PRESETS["old_film"]
    )
    cfg = parser.parse_args(
        [
            "--data.degradation",
            "recipes/degradations/old_film.yaml",
            "--data.degradation.init_args.options.dust_count",
            "2",
        ]
    )
    assert parser.instantiate(cfg).data.degradation.options == preset_options("old_film", dust_count=2)
    cfg = parser.parse_string(block + "{options: {dust_count: 2, kernel_probs: {iso: 1.0}}}\n")
    assert parser.instantiate(cfg).data.degradation.options == RealWorldOptions(dust_count=2, kernel_probs={"iso": 1.0})
    with pytest.raises(Exception, match="codec_prob"):
        parser.instantiate(parser.parse_string(block + "{options: {codec_prob: 2.0}}\n"))
