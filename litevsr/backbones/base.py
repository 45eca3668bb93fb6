"""The frozen half of litevsr: a diffusers video transformer plus its VAE behind one interface.

`VideoBackbone` is the runtime: it loads its family's models, freezes them, hooks their blocks and runs them. What a
family is (classes, published configs, twins, geometry) is declared in its `FamilySpec` (litevsr.backbones.spec),
the `spec` of its `VideoBackbone` subclass. Families are named in files by `spec.name`, a known name, never by an
import path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable

import torch
from torch import nn

from litevsr.backbones.spec import FamilySpec, Geometry
from litevsr.backbones.switches import Switches, apply_switches
from litevsr.errors import LiteVSRError
from litevsr.injections import Injections


class VideoBackbone(nn.Module):
    """A frozen video DiT + VAE, the runtime of a family's `spec`. It loads `transformer` and `vae`, sets `blocks`
    and the `Geometry` fields (hidden_dim, num_blocks, patch_size, latent_channels, vae_stride, frame_step) as
    attributes, and freezes; subclasses give the latent normalisation, `patch_embedding`, `velocity` and
    `macs_per_token`: everything a method may use of a backbone.

    Adapters write into the backbone through `Injections` (litevsr.injections): residuals added to blocks' video
    tokens, and tokens added to the first block's input. Blocks may take their video tokens as the first argument
    or as `hidden_states`, and return them alone or first in a tuple. Hooks on the blocks read the injections from
    `self._injections`, which is kept until the next forward so that gradient-checkpoint recomputation sees the
    same values. Methods that change the backbone (LoRA, full fine-tuning, ControlNet) do so on a backbone of their
    own (`Adapter.edit_backbone`); these hooks know no method.
    """

    #: what the family is: its classes, published configs, twins, LoRA targets, prompt shape and geometry
    spec: FamilySpec
    vae_is_pointwise: bool = False  # each latent pixel reads one patch of one frame: the VAE needs no tiles
    name: str

    def __init__(
        self,
        pretrained: str,
        transformer_subfolder: str = "transformer",
        vae_subfolder: str = "vae",
        revision: str | None = None,
        dtype: str = "float32",
        prompt_embeds: str | None = None,
        empty_weights: bool = False,
        switches: Switches | None = None,
    ):
        """Load the family's transformer and VAE and the fixed prompt, set the geometry, and freeze.

        Args:
            pretrained: A local diffusers folder, a hub id, or a name registered with `register_source` (litevsr.zoo
                registers "tiny", the generator shipped with litevsr, and "twin:<hub id>", a known checkpoint's tiny
                random-weight twin).
            transformer_subfolder: Subfolder of `pretrained` holding the transformer.
            vae_subfolder: Subfolder of `pretrained` holding the VAE.
            revision: Hub revision (branch, tag or commit).
            dtype: Weight dtype of the transformer: float32, bfloat16 or float16. The VAE stays float32.
            prompt_embeds: Safetensors file with the fixed prompt's text embedding ("prompt_embeds", (1, L, width);
                families with a fixed text length need exactly theirs). Default:
                `<pretrained>/prompt_embeds.safetensors` if it exists, else zeros.
            empty_weights: Build the architecture on the meta device without weights (shape and size checks).
            switches: Memory and speed switches (`Switches`: fp8 storage, offloading, VAE slicing and tiling,
                torch.compile).
        """
        super().__init__()
        spec = self.spec
        self.name, self.revision, self.empty_weights = pretrained, revision, empty_weights
        self.switches = switches or Switches()
        self.source, self.transformer, self.vae = self._load_models(
            pretrained, transformer_subfolder, vae_subfolder, revision, check_dtype(dtype), empty_weights
        )
        self.blocks = getattr(self.transformer, spec.blocks)
        geometry = spec.geometry(self.transformer.config, self.vae.config)
        for field in dataclasses.fields(Geometry):
            setattr(self, field.name, getattr(geometry, field.name))
        length, width = spec.prompt_shape(self.transformer.config)
        shape = (length if spec.fixed_text_length else 1, width)
        embeds = (
            torch.zeros(1, *shape, device="meta")
            if empty_weights
            else load_prompt_embeds(prompt_embeds, self.source, shape, spec.fixed_text_length)
        )
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        device = "meta" if empty_weights else "cpu"
        for name, stat in zip(("latents_mean", "latents_std"), self._latent_statistics()):
            self.register_buffer(name, stat.float().view(1, -1, 1, 1, 1).to(device), persistent=False)
        self._freeze()

    @property
    def family(self) -> str:
        """The family's name (`spec.name`): what exported adapters and cached latents record."""
        return self.spec.name

    def _latent_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) per latent channel: encode gives (latents - mean) / std."""
        raise NotImplementedError

    @classmethod
    def _load_models(
        cls,
        pretrained: str,
        transformer_subfolder: str,
        vae_subfolder: str,
        revision: str | None,
        dtype: torch.dtype,
        empty_weights: bool,
    ) -> tuple[str, nn.Module, nn.Module]:
        """(source, transformer, vae): from a local folder or hub id, or on the meta device for `empty_weights`."""
        spec = cls.spec
        source, prepare_vae = resolve_source(pretrained)
        names = f"a {cls.__name__.removesuffix('Backbone')} backbone"
        if empty_weights:
            if os.path.isdir(source):
                tcfg = spec.transformer_class.load_config(source, subfolder=transformer_subfolder)
                vcfg = spec.vae_class.load_config(source, subfolder=vae_subfolder)
            elif source in spec.known_configs:
                tcfg, vcfg = spec.known_configs[source]["transformer"], spec.known_configs[source]["vae"]
            else:
                raise LiteVSRError(
                    f"empty_weights needs a local folder or one of {sorted(spec.known_configs)}, got {source!r}"
                )
            with torch.device("meta"):
                return source, spec.transformer_class.from_config(tcfg), spec.vae_class.from_config(vcfg)
        if source.startswith(("/", ".", "~")) and not os.path.isdir(source):
            raise LiteVSRError(f"backbone path not found: {source}")
        try:
            transformer = spec.transformer_class.from_pretrained(
                source, subfolder=transformer_subfolder, revision=revision, torch_dtype=dtype
            )
            vae = spec.vae_class.from_pretrained(source, subfolder=vae_subfolder, revision=revision)
        except (OSError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            where = "folder" if os.path.isdir(source) else "hub id (is the hub reachable?)"
            raise LiteVSRError(f"could not load {names} from {where} {source!r}: {first_line}") from err
        return source, transformer, (vae if prepare_vae is None else prepare_vae(vae))

    def _freeze(self) -> None:
        """Freeze, apply the switches, and hook the blocks for injections."""
        self.transformer_parameters = sum(p.numel() for p in self.transformer.parameters())
        self.requires_grad_(False)
        self.eval()
        apply_switches(self.switches, self.transformer, self.vae)
        self._injections = Injections()
        for index, block in enumerate(self.blocks):
            block.register_forward_hook(self._make_injection_hook(index))
        self.blocks[0].register_forward_pre_hook(self._before_first_block, with_kwargs=True)

    def _before_first_block(self, module, args, kwargs):
        tokens = self._injections.input_tokens
        if tokens is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        hidden = hidden + tokens.to(hidden.dtype)
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

    def _make_injection_hook(self, index: int):
        def add_injection(module, args, output):
            injection = self._injections.residuals.get(index)
            if injection is None:
                return output
            if isinstance(output, tuple):  # (video tokens, text tokens, ...)
                return (output[0] + injection.to(output[0].dtype), *output[1:])
            return output + injection.to(output.dtype)

        return add_injection

    def train(self, mode: bool = True) -> VideoBackbone:
        # Frozen means frozen: dropout and friends stay in eval mode whatever the trainer asks.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype (the VAE stays float32)."""
        return self.transformer.dtype

    @functools.cached_property
    def vae_fingerprint(self) -> str:
        """A hash of the VAE's weights and latent normalisation: cached latents are valid for this value only."""
        digest = hashlib.sha256()
        tensors = sorted(self.vae.state_dict().items()) + [
            ("latents_mean", self.latents_mean),
            ("latents_std", self.latents_std),
        ]
        for name, tensor in tensors:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    # --- geometry -----------------------------------------------------------------------------
    @property
    def spatial_multiple(self) -> int:
        """HQ height/width must be a multiple of this (VAE stride x patch size)."""
        return self.vae_stride[1] * self.patch_size[1]

    def valid_num_frames(self, num_frames: int) -> bool:
        return num_frames >= 1 and (num_frames - 1) % self.frame_step == 0

    def check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise LiteVSRError(f"expected a video of shape (B, 3, T, H, W), got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if not self.valid_num_frames(t):
            raise LiteVSRError(f"{self.name} needs 1 + {self.frame_step}k frames, got {t}")
        m = self.spatial_multiple
        if h % m or w % m:
            raise LiteVSRError(f"{self.name} needs height and width that are multiples of {m}, got {h}x{w}")

    def tile_vae(self, tile: int, overlap: int) -> None:
        """Make the VAE encode and decode in `tile`-pixel tiles sharing `overlap` pixels (diffusers' tiling)."""
        self.vae.enable_tiling(
            tile_sample_min_height=tile,
            tile_sample_min_width=tile,
            tile_sample_stride_height=tile - overlap,
            tile_sample_stride_width=tile - overlap,
        )

    # --- the frozen computations ---------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> latents normalised with the backbone's latents_mean / latents_std."""
        self.check_video(video)
        latents = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode()
        return (latents.float() - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.float() * self.latents_std + self.latents_mean
        return self._vae_decode(latents.to(self.vae.dtype)).float().clamp(-1, 1)

    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The transformer's flow velocity for noisy `latents` at noise level `sigma` (B,)."""
        raise NotImplementedError

    def macs_per_token(self, tokens: int) -> float:
        """Multiply-adds per token of one transformer pass over `tokens` tokens (the tile cost model)."""
        raise NotImplementedError

    @property
    def patch_embedding(self) -> nn.Module:
        """The transformer's patch embedding (a Conv3d, or a per-frame Conv2d): what a channel-concatenated
        condition widens."""
        raise NotImplementedError

    def forward(self, latents, sigma, injections: Injections | None = None) -> torch.Tensor:
        self._injections = injections or Injections()
        bad = [i for i in self._injections.residuals if not 0 <= i < self.num_blocks]
        if bad:
            raise LiteVSRError(f"injection targets {bad} are outside the backbone's {self.num_blocks} blocks")
        return self.velocity(latents, sigma)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise LiteVSRError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@dataclasses.dataclass(frozen=True)
class NamedSource:
    """A name that stands for a local folder, and what its VAE needs once loaded (None: nothing)."""

    folder: Callable[[str], str]
    prepare_vae: Callable[[nn.Module], nn.Module] | None = None


#: Names ("tiny") and prefixes ending in ":" ("twin:") that packages above register (litevsr.zoo).
NAMED_SOURCES: dict[str, NamedSource] = {}


def register_source(name: str, folder: Callable[[str], str], prepare_vae=None) -> None:
    """Let `pretrained` be `name` (or start with it, for a name ending in ":"): `folder(pretrained)` gives the
    folder to load, `prepare_vae(vae)` the VAE to use."""
    NAMED_SOURCES[name] = NamedSource(folder, prepare_vae)


def resolve_source(pretrained: str) -> tuple[str, Callable | None]:
    """(folder or hub id, VAE preparation) for `pretrained`: a registered name, or a path or hub id as given."""
    named = NAMED_SOURCES.get(pretrained) or NAMED_SOURCES.get(pretrained.partition(":")[0] + ":")
    if named is not None:
        return named.folder(pretrained), named.prepare_vae
    return os.path.expanduser(pretrained), None


def load_prompt_embeds(path: str | None, source: str, shape: tuple[int, int], fixed_length: bool) -> torch.Tensor:
    """The fixed prompt's embedding (1, L, width): `path`, else `<source>/prompt_embeds.safetensors` if it exists,
    else zeros of `shape`. With `fixed_length`, L must be shape[0] (a transformer with a fixed text length)."""
    from lightning.pytorch.utilities import rank_zero_info
    from safetensors.torch import load_file

    default = os.path.join(source, "prompt_embeds.safetensors")
    if path is None and os.path.isfile(default):
        path = default
    if path is None:
        rank_zero_info("litevsr: no prompt embedding given; using a zero embedding")
        return torch.zeros(1, *shape)
    if not os.path.isfile(path):
        raise LiteVSRError(f"prompt embedding file not found: {path}")
    embeds = load_file(path)["prompt_embeds"]
    embeds = embeds[None] if embeds.ndim == 2 else embeds
    if embeds.shape[-1] != shape[1]:
        raise LiteVSRError(
            f"prompt embedding in {path} has width {embeds.shape[-1]}, the transformer expects {shape[1]}"
        )
    if fixed_length and embeds.shape[1] != shape[0]:
        raise LiteVSRError(
            f"prompt embedding in {path} has {embeds.shape[1]} tokens; this transformer reads exactly "
            f"{shape[0]} (pad the prompt to that length when encoding it)"
        )
    return embeds.float()
