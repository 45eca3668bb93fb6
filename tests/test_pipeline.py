"""LiteVSRPipeline: the one sampling path, its scheduler, its noise rule, and its folders."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import random_clips

from litevsr import LiteVSRError, LiteVSRPipeline, flow
from litevsr.adapters import StateAwareAdapter
from litevsr.adapters.base import backbone_dims
from litevsr.backbones import WanBackbone
from litevsr.frames import frames_to_video
from litevsr.pipeline import Sampling
from litevsr.schedulers import FlowMatchHeunScheduler, make_scheduler, set_schedule


@pytest.fixture
def pipe(backbone):
    """An adapter that acts (random output projections), sampling from pure noise."""
    torch.manual_seed(0)
    adapter = StateAwareAdapter(
        backbone_dims=backbone_dims(backbone), width=32, time_dim=32, inject_every=2, output_init_std=0.05
    )
    return LiteVSRPipeline(backbone, adapter, make_scheduler(), scale=4, sampling={"start_noise": 1.0})


def test_one_euler_step_of_the_scheduler_is_x_minus_v_bitwise():
    """What the pipeline's scheduler replaced: x1 - v(x1, 1) at one step and shift 1, exactly."""
    x, v = torch.randn(2, 6, 3, 8, 8), torch.randn(2, 6, 3, 8, 8)
    scheduler = make_scheduler()
    set_schedule(scheduler, 1, 1.0)
    assert scheduler.timesteps.tolist() == [1000.0]
    assert torch.equal(scheduler.step(v, scheduler.timesteps[0], x, return_dict=False)[0], x - v)


@pytest.mark.parametrize("steps,shift,start", [(4, 3.0, 1.0), (3, 1.0, 0.5), (2, 5.0, 0.3)])
def test_the_schedule_is_uniform_before_the_shift_and_starts_at_sigma_start(steps, shift, start):
    scheduler = make_scheduler(shift=shift)
    set_schedule(scheduler, steps, start)
    unshifted = flow.unshift_sigma(torch.tensor(start, dtype=torch.float64), shift)
    expected = flow.shift_sigma(torch.linspace(float(unshifted), 0, steps + 1, dtype=torch.float64), shift)
    torch.testing.assert_close(scheduler.sigmas.double(), expected, atol=1e-6, rtol=0)


def test_heun_starts_below_sigma_one_and_swaps_in_as_diffusers_users_do(pipe):
    lq = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    sampling = pipe.sampling(steps=2, sigma_start=0.6, tile=0)
    euler = pipe.super_resolve(lq, 4, sampling)
    pipe.scheduler = FlowMatchHeunScheduler.from_config(pipe.scheduler.config)
    assert pipe.sampling().scheduler == "heun"
    set_schedule(pipe.scheduler, 2, 0.6)
    assert pipe.scheduler.sigmas[0].item() == pytest.approx(0.6) and len(pipe.scheduler.timesteps) == 3
    heun = pipe.super_resolve(lq, 4, pipe.sampling(steps=2, sigma_start=0.6, tile=0))
    assert heun.shape == euler.shape and (heun - euler).abs().max() > 1e-4
    torch.testing.assert_close(pipe.super_resolve(lq, 4, sampling), euler)  # the sampling names euler: it wins


def test_a_generator_gives_the_seed_whatever_its_device_or_state(pipe):
    frames = next(random_clips(1, 5, 8, seed=1))[1]
    by_seed = pipe(frames, sampling=Sampling(seed=7), output_type="pt").frames
    generator = torch.Generator().manual_seed(7)
    torch.randn(3, generator=generator)  # a used generator: its seed, not its state, decides
    assert torch.equal(pipe(frames, generator=generator, output_type="pt").frames, by_seed)
    assert not torch.equal(pipe(frames, generator=torch.Generator().manual_seed(8), output_type="pt").frames, by_seed)


def test_call_takes_arrays_tensors_and_pil_and_returns_each_output_type(pipe):
    from PIL import Image

    frames = next(random_clips(1, 5, 8, seed=2))[1]  # (5, 8, 8, 3) uint8
    np_out = pipe(frames).frames
    assert np_out.shape == (1, 5, 32, 32, 3) and np_out.dtype == np.float32 and 0 <= np_out.min() <= np_out.max() <= 1
    pt_out = pipe(torch.from_numpy(frames).float() / 255, output_type="pt").frames
    assert pt_out.shape == (1, 5, 3, 32, 32)
    np.testing.assert_allclose(pt_out.permute(0, 1, 3, 4, 2).numpy(), np_out, atol=1e-6)
    pil = pipe([Image.fromarray(f) for f in frames], output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == 5 and pil[0][0].size == (32, 32)
    assert pipe(np.stack([frames, frames])).frames.shape == (2, 5, 32, 32, 3)


@pytest.mark.parametrize(
    "video,words",
    [
        (np.zeros((5, 8, 8)), "expected frames \\(T, H, W, 3\\)"),
        (np.full((5, 8, 8, 3), 2.0), "float frames must be finite and in \\[0, 1\\]"),
        ("clip.mp4", "expected frames"),
    ],
)
def test_bad_input_is_one_line(pipe, video, words):
    with pytest.raises(LiteVSRError, match=words):
        pipe(video)
    with pytest.raises(LiteVSRError, match="output_type must be np, pt or pil"):
        pipe(np.zeros((5, 8, 8, 3), np.uint8), output_type="latent")


def test_save_pretrained_loads_back_to_bitwise_equal_outputs(pipe, tmp_path, backbone_dir):
    pipe.backbone.name = backbone_dir  # what the folder names: the backbone's id or path, not its weights
    pipe.scheduler = FlowMatchHeunScheduler(shift=2.0)
    frames = next(random_clips(1, 5, 8, seed=3))[1]
    options = dict(num_inference_steps=2, sampling=Sampling(sigma_start=0.8), output_type="pt")
    before = pipe(frames, **options).frames
    pipe.save_pretrained(str(tmp_path / "saved"))
    index = json.load(open(tmp_path / "saved" / "model_index.json"))
    assert index["_class_name"] == "LiteVSRPipeline" and index["scheduler"] == ["diffusers", "FlowMatchHeunScheduler"]
    assert sorted(os.listdir(tmp_path / "saved")) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "model_index.json",
        "scheduler",
    ]
    loaded = LiteVSRPipeline.from_pretrained(str(tmp_path / "saved"))
    assert loaded.scheduler.config.shift == 2.0 and loaded.sampling().start_noise == 1.0
    assert torch.equal(loaded(frames, **options).frames, before)


def test_a_saved_folder_never_makes_litevsr_import_what_it_names(pipe, tmp_path, backbone_dir):
    pipe.backbone.name = backbone_dir
    pipe.save_pretrained(str(tmp_path / "saved"))
    path = tmp_path / "saved" / "scheduler" / "scheduler_config.json"
    config = json.load(open(path))
    path.write_text(json.dumps({**config, "_class_name": "os.system"}))
    with pytest.raises(LiteVSRError, match="unknown scheduler 'os.system'; known: euler, heun"):
        LiteVSRPipeline.from_pretrained(str(tmp_path / "saved"))


def test_a_hub_id_is_fetched_as_a_snapshot_of_the_adapter_files(pipe, tmp_path, backbone_dir, monkeypatch):
    import huggingface_hub

    pipe.backbone.name = backbone_dir
    pipe.save_pretrained(str(tmp_path / "snapshot"))
    asked = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append((repo, kw)) or str(tmp_path / "snapshot")
    )
    loaded = LiteVSRPipeline.from_pretrained("someone/litevsr-anime")
    assert asked == [("someone/litevsr-anime", {"allow_patterns": ["*.json", "*.safetensors"]})]
    assert loaded.backbone.name == backbone_dir


def test_to_and_the_progress_bar_config_follow_diffusers(pipe, capsys):
    assert pipe.to("cpu") is pipe and pipe.device.type == "cpu"
    frames = next(random_clips(1, 5, 8, seed=4))[1]
    pipe(frames)
    assert "upscaling x4" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(frames)
    assert "upscaling x4" not in capsys.readouterr().err


def test_validation_and_upscale_give_the_same_floats_for_one_key(pipe, tmp_path, backbone_dir, monkeypatch):
    """One noise rule: validation keys a sample's noise by its shard key, `upscale` a window's by its index. Same key,
    same floats, with fresh noise (start_noise 1), whatever the batch index (validation's old seed)."""
    import litevsr.inference
    from litevsr.adapters import save_adapter
    from litevsr.cli import main
    from litevsr.data.video import encode_video, read_video
    from litevsr.module import LiteVSRModule

    lq_u8 = next(random_clips(1, 5, 8, seed=5))[1]  # one window, no padding: 5 = 1 + 4k frames, 8 px
    src = tmp_path / "lq.mkv"
    src.write_bytes(encode_video(lq_u8))
    lq_u8 = read_video(str(src))  # the frames upscale decodes (lossless here)
    adapter = str(tmp_path / "adapter")
    save_adapter(pipe.adapter, adapter, backbone_dir, scale=4, sampling={"start_noise": 1.0, "seed": 0})

    chunks = []
    stream_frames = litevsr.inference.stream_frames
    monkeypatch.setattr(litevsr.inference, "stream_frames", lambda c: stream_frames(chunks.append(x := list(c)) or x))
    main(["upscale", str(src), str(tmp_path / "sr.mp4"), "--adapter", adapter, "--sampling.tile", "0"])
    upscaled = torch.cat(chunks[0], dim=1)

    module = LiteVSRModule(
        WanBackbone(backbone_dir), init_adapter=adapter, sampling=Sampling(tile=0), val_references=False
    )
    module.log = lambda *a, **k: None  # no trainer attached
    lq = frames_to_video(lq_u8)[None]
    batch = {"hq": torch.zeros(1, 3, 5, 32, 32), "lq": lq, "key": ["0"]}
    validated = module.validation_step(batch, batch_idx=3)[0]
    assert upscaled.shape == validated.shape == (3, 5, 32, 32)
    assert torch.equal(upscaled, validated)


@pytest.mark.parametrize("name", ["Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"])
def test_the_pipeline_on_twins_of_the_real_structures(name, tmp_path):
    """The causal 4x-temporal Wan VAEs (2.2's folds pixels too): odd frame counts and sizes come back exact."""
    from litevsr.zoo.twins import write_twin

    paths = write_twin(name, str(tmp_path / "twin"))
    pipe = LiteVSRPipeline.from_pretrained(paths["adapter"], backbone=paths["backbone"])
    frames = next(random_clips(1, 7, 12, seed=6))[1][:, :, :10]  # 7 frames: no 1 + 4k; 12x10: no multiple of 16
    out = pipe(frames, sampling=Sampling(start_noise=1.0)).frames
    assert out.shape == (1, 7, 48, 40, 3) and np.isfinite(out).all()
    pipe.save_pretrained(str(tmp_path / "saved"))
    again = LiteVSRPipeline.from_pretrained(str(tmp_path / "saved"))
    assert np.array_equal(again(frames, sampling=Sampling(start_noise=1.0)).frames, out)
