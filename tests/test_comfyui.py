"""The ComfyUI node pack (comfyui/litevsr_nodes), called as ComfyUI calls it, with no ComfyUI installed."""

import importlib
import os
import sys
import types

import pytest
import torch

from litevsr import LiteVSRError, LiteVSRPipeline

COMFYUI = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "comfyui")


@pytest.fixture(scope="module")
def pack():
    """The pack, imported as ComfyUI imports a custom-node folder: by its folder name."""
    sys.path.insert(0, COMFYUI)
    try:
        return importlib.import_module("litevsr_nodes")
    finally:
        sys.path.remove(COMFYUI)


@pytest.fixture(autouse=True)
def outside_comfyui(monkeypatch):
    """No `folder_paths` module, whatever else is installed; tests that stand in for ComfyUI put one back."""
    monkeypatch.setitem(sys.modules, "folder_paths", None)
    monkeypatch.delenv("LITEVSR_MODELS", raising=False)


def node(pack, name: str):
    return pack.NODE_CLASS_MAPPINGS[name]()


def adapters(pack) -> list[str]:
    """The loader's adapter combo, as ComfyUI's front end would list it now."""
    return pack.NODE_CLASS_MAPPINGS["LiteVSRLoader"].INPUT_TYPES()["required"]["adapter"][0]


def run(pack, name: str, **inputs):
    """A node's FUNCTION under torch.inference_mode(), as ComfyUI's executor runs every node."""
    instance = node(pack, name)
    with torch.inference_mode():
        return getattr(instance, instance.FUNCTION)(**inputs)


@pytest.fixture(scope="module")
def general(pack):
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "folder_paths", None)
        (pipe,) = run(pack, "LiteVSRLoader", adapter="general", device="cpu", dtype="auto")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def noisy(general):
    """The shipped adapter sampling from noise (it records start_noise 0), so that the seed matters."""
    config = general.config
    pipe = LiteVSRPipeline(
        general.backbone, general.adapter, general.scheduler, config.scale, {**config.sampling, "start_noise": 1.0}
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def images():
    """A ComfyUI IMAGE batch: 5 frames of 16x16, channels-last floats in [0, 1]."""
    return torch.rand(5, 16, 16, 3, generator=torch.Generator().manual_seed(0))


def test_the_pack_exports_nodes_in_comfyuis_shape(pack):
    assert set(pack.NODE_CLASS_MAPPINGS) == {"LiteVSRLoader", "LiteVSRUpscale"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        inputs = cls.INPUT_TYPES()["required"]
        assert isinstance(cls.RETURN_TYPES, tuple) and len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        assert callable(getattr(cls, cls.FUNCTION)) and cls.CATEGORY == "litevsr"
        for kind, *options in inputs.values():
            if isinstance(kind, list) and options:  # a combo's default must be one of its values
                assert options[0].get("default", kind[0]) in kind
    loader, upscale = pack.NODE_CLASS_MAPPINGS["LiteVSRLoader"], pack.NODE_CLASS_MAPPINGS["LiteVSRUpscale"]
    assert loader.RETURN_TYPES == ("LITEVSR_PIPELINE",) and upscale.INPUT_TYPES()["required"]["pipeline"][0] == (
        "LITEVSR_PIPELINE"
    )
    assert upscale.RETURN_TYPES == ("IMAGE",) and upscale.INPUT_TYPES()["required"]["images"][0] == "IMAGE"


def test_the_adapter_combo_lists_general_and_the_folders_under_litevsr_models(
    pack, general, images, tmp_path, monkeypatch
):
    models = tmp_path / "models"
    general.save_pretrained(str(models / "mine"))
    (models / "notes").mkdir()  # no config.json: not an adapter
    (models / "readme.txt").write_text("")
    general.save_pretrained(str(models / "general"))  # the shipped name keeps meaning the shipped adapter
    monkeypatch.setenv("LITEVSR_MODELS", str(models))
    assert adapters(pack) == ["general", "mine"]
    (mine,) = run(pack, "LiteVSRLoader", adapter="mine", device="cpu", dtype="float32")
    mine.set_progress_bar_config(disable=True)
    assert isinstance(mine, LiteVSRPipeline) and mine.backbone.device.type == "cpu"
    ours, shipped = (run(pack, "LiteVSRUpscale", pipeline=p, images=images)[0] for p in (mine, general))
    assert torch.equal(ours, shipped)  # a saved copy of the shipped adapter


def test_without_litevsr_models_adapters_are_looked_for_in_models_litevsr(pack, general, tmp_path, monkeypatch):
    general.save_pretrained(str(tmp_path / "models" / "litevsr" / "here"))
    monkeypatch.chdir(tmp_path)
    assert adapters(pack) == ["general", "here"]


def test_under_comfyui_adapters_live_in_its_models_litevsr_folder(pack, general, tmp_path, monkeypatch):
    """A stand-in for ComfyUI's folder_paths: models/litevsr is registered once, and LITEVSR_MODELS is not used."""
    registry = {}

    def add_model_folder_path(name, path, is_default=False):
        registry.setdefault(name, []).append(path)

    fake = types.SimpleNamespace(
        models_dir=str(tmp_path / "ComfyUI" / "models"),
        add_model_folder_path=add_model_folder_path,
        get_folder_paths=lambda name: list(registry[name]),
    )
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    general.save_pretrained(str(tmp_path / "ComfyUI" / "models" / "litevsr" / "comfy"))
    general.save_pretrained(str(tmp_path / "elsewhere" / "ignored"))
    monkeypatch.setenv("LITEVSR_MODELS", str(tmp_path / "elsewhere"))
    for _ in range(2):
        assert adapters(pack) == ["general", "comfy"]
    assert registry == {"litevsr": [os.path.join(fake.models_dir, "litevsr")]}


@pytest.mark.parametrize(
    "inputs,direct",
    [
        (dict(), dict()),
        (dict(tile=0), dict(tile=0)),
        (dict(tile=32), dict(tile=32)),
        (dict(steps=2), dict(num_inference_steps=2)),
        (dict(seed=7), dict(seed=7)),
        (dict(color_fix="adain"), dict(color_fix="adain")),
    ],
    ids=["defaults", "whole-frames", "tile-32", "steps-2", "seed-7", "adain"],
)
def test_upscale_equals_the_pipeline_called_directly_bitwise(pack, noisy, images, inputs, direct):
    """Each input reaches the pipeline: its output is the pipeline's for the same arguments, bitwise, and (except
    for tile 0, which is what the automatic tile picks for frames this small) not the defaults' output."""
    (out,) = run(pack, "LiteVSRUpscale", pipeline=noisy, images=images, **inputs)
    assert out.shape == (5, 64, 64, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.is_contiguous() and 0 <= out.min() and out.max() <= 1
    seed = direct.pop("seed", 0)
    with torch.inference_mode():
        expected = noisy(images.numpy(), generator=torch.Generator().manual_seed(seed), **direct).frames[0]
    assert torch.equal(out, torch.from_numpy(expected))
    (defaults,) = run(pack, "LiteVSRUpscale", pipeline=noisy, images=images)
    assert torch.equal(out, defaults) == (inputs in (dict(), dict(tile=0)))


def test_the_automatic_tile_is_the_pipelines_and_tiles_frames_wider_than_one_tile(pack, general):
    """208 px output frames are wider than the embedded generator's 192 px automatic tile: tile -1 runs the
    pipeline's automatic tiles, which are not whole frames here."""
    images = torch.rand(2, 52, 52, 3, generator=torch.Generator().manual_seed(1))
    (auto,) = run(pack, "LiteVSRUpscale", pipeline=general, images=images, tile=-1)
    (whole,) = run(pack, "LiteVSRUpscale", pipeline=general, images=images, tile=0)
    with torch.inference_mode():
        expected = general(images, generator=torch.Generator().manual_seed(0), output_type="pt").frames[0]
    assert auto.shape == (2, 208, 208, 3) and torch.equal(auto, expected.permute(0, 2, 3, 1))
    assert not torch.equal(auto, whole)


def test_half_precision_images_upscale_like_their_float32_values(pack, general, images):
    half = images.bfloat16()
    (out,) = run(pack, "LiteVSRUpscale", pipeline=general, images=half)
    assert torch.equal(out, run(pack, "LiteVSRUpscale", pipeline=general, images=half.float())[0])


@pytest.mark.parametrize(
    "images,message",
    [
        (torch.rand(5, 16, 16, 4), r"RGB frames \(frames, height, width, 3\), got \(5, 16, 16, 4\)"),
        (torch.rand(16, 16, 3), r"got \(16, 16, 3\)"),
        (torch.rand(1, 5, 16, 16, 3), r"got \(1, 5, 16, 16, 3\)"),
        ([[0.5]], "got list"),
        (torch.full((5, 16, 16, 3), 2.0), r"in \[0, 1\]"),
        (torch.rand(0, 16, 16, 3), "holds no frames"),
    ],
    ids=["rgba", "one-frame-no-batch", "5-d", "not-a-tensor", "out-of-range", "empty"],
)
def test_bad_images_are_one_line_errors(pack, general, images, message):
    with pytest.raises(LiteVSRError, match=message) as err:
        run(pack, "LiteVSRUpscale", pipeline=general, images=images)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name,inputs,message",
    [
        ("LiteVSRUpscale", dict(tile=-2), "tile must be -1 .automatic., 0 .whole frames. or a size"),
        ("LiteVSRUpscale", dict(color_fix="sepia"), "color_fix must be one of none, wavelet, adain, lab"),
        ("LiteVSRLoader", dict(adapter="missing"), r"no adapter 'missing': expected general or an adapter folder"),
    ],
)
def test_bad_inputs_are_one_line_errors(pack, general, images, name, inputs, message):
    if name == "LiteVSRUpscale":
        inputs = dict(pipeline=general, images=images, **inputs)
    with pytest.raises(LiteVSRError, match=message) as err:
        run(pack, name, **inputs)
    assert "\n" not in str(err.value)
