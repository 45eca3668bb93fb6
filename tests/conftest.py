import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

import litevsr.zoo  # noqa: F401  registers "tiny" and "twin:<hub id>", as the pipeline and the CLI do

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks")
torch.set_num_threads(min(2, os.cpu_count() or 1))

# Small enough for fast tests, but the real diffusers classes and the real loading path.
TEST_CONFIG = {
    "transformer": dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
        ffn_dim=64,
        num_layers=4,
        rope_max_seq_len=32,
    ),
    "vae": dict(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, False],
        scale_factor_temporal=1,
        scale_factor_spatial=4,
        latents_mean=[0.1] * 16,
        latents_std=[2.0] * 16,
    ),
}


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, imported as it runs as a script: its folder first on sys.path, for
    `from common import ...` (benchmarks is not a package)."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory):
    from litevsr.backbones.wan import WAN

    folder = tmp_path_factory.mktemp("tiny-wan")
    transformer, vae = WAN.build(TEST_CONFIG, seed=0)
    WAN.save(transformer, vae, str(folder), torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(0)))
    return str(folder)


@pytest.fixture(scope="session")
def causal_twin(tmp_path_factory):
    """A twin of Wan2.1-T2V-1.3B (causal VAE: 4x in time, 8x in space) and its active adapter."""
    from litevsr.zoo.twins import write_twin

    return write_twin("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", str(tmp_path_factory.mktemp("twin") / "wan21"))


@pytest.fixture
def backbone(backbone_dir):
    from litevsr.backbones import WanBackbone

    return WanBackbone(pretrained=backbone_dir)


def random_clips(n: int, frames: int, size: int, seed: int = 0):
    """Smooth random clips (low-frequency noise drifting in time) with keys and metadata."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.integers(0, 256, (frames, size // 8, size // 8, 3)).astype(np.float32)
        up = torch.nn.functional.interpolate(
            torch.from_numpy(base).permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False
        )
        yield (
            f"clip{i:04d}",
            up.permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy(),
            {"source": "test", "license": "CC0"},
        )


def write_train_val_shards(root, train_clips: int, seed: int) -> tuple[str, str]:
    """Shards of 3 clips (9x32x32) in root/train, one shard of 2 in root/val: (train, val) folders."""
    from litevsr.data.shards import write_shards

    write_shards(random_clips(train_clips, 9, 32, seed=seed), str(root / "train"), clips_per_shard=3)
    write_shards(random_clips(2, 9, 32, seed=seed + 1), str(root / "val"), clips_per_shard=2)
    return str(root / "train"), str(root / "val")


@pytest.fixture(scope="session")
def shard_dirs(tmp_path_factory):
    return write_train_val_shards(tmp_path_factory.mktemp("shards"), 6, seed=1)


@pytest.fixture(scope="session")
def cached_shards(tmp_path_factory, causal_twin):
    """Shards with 2 LQ variants and latents from the Wan2.1 twin: 3 clips of 5x32x32."""
    from videos import pan, write_video

    from litevsr.data.prep import PrepOptions, prepare_shards

    root = tmp_path_factory.mktemp("cached")
    for i in range(3):
        write_video(root / "in" / f"v{i}.mkv", pan(5, 40, seed=20 + i))
    options = PrepOptions(clip_frames=5, crop=32, lq_variants=2, scale=4, latents=causal_twin["backbone"], min_size=16)
    prepare_shards([str(root / "in")], str(root / "train"), options, progress=False)
    return str(root / "train")
