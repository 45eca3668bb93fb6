"""The frozen half of litevsr: a diffusers video transformer plus its VAE behind one interface.

Each family (Wan, CogVideoX, ...) is one `VideoBackbone` subclass that also knows its published configs (for the
meta device and twins), how to build fresh models from a config, and how its hub folder is laid out. Families are
named in files by `family`, a known name, never by an import path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable

import diffusers
import torch
from torch import nn

from litevsr.errors import LiteVSRError
from litevsr.injections import Injections


@dataclasses.dataclass
class Switches:
    """Memory and speed switches of a frozen backbone (in a recipe: `model.backbone.init_args.switches`).

    Args:
        storage_dtype: Store the transformer's layer weights in this dtype ("float8_e4m3fn" or "float8_e5m2") and
            cast each layer to the backbone's `dtype` only while it runs (diffusers' layerwise casting): about half
            the weight memory of bfloat16, at some precision.
        group_offload: Keep the transformer's blocks on the CPU and move one block at a time to this device
            ("cuda") as it runs (diffusers' group offloading), for inference on a card that cannot hold them all.
        vae_slicing: Encode and decode one video of a batch at a time.
        vae_tiling: Encode and decode in spatial tiles (diffusers' defaults; `litevsr upscale` tiles on its own).
        compile: torch.compile each transformer block (diffusers' compile_repeated_blocks): faster steps after a
            compilation on the first call (a C++ compiler is needed on the CPU).
    """

    storage_dtype: str | None = None
    group_offload: str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    compile: bool = False


STORAGE_DTYPES = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


class VideoBackbone(nn.Module):
    """A frozen video DiT + VAE. Subclasses set `transformer`, `vae`, `blocks` and the geometry fields, and give
    `patch_embedding`, `velocity` and `macs_per_token`: everything a method may use of a backbone.

    Adapters write into the backbone through `Injections` (litevsr.injections): residuals added to blocks' video
    tokens, and tokens added to the first block's input. Blocks may take their video tokens as the first argument
    or as `hidden_states`, and return them alone or first in a tuple. Hooks on the blocks read the injections from
    `self._injections`, which is kept until the next forward so that gradient-checkpoint recomputation sees the
    same values. Methods that change the backbone (LoRA, full fine-tuning, ControlNet) do so on a backbone of their
    own (`Adapter.edit_backbone`); these hooks know no method.
    """

    #: the family's name in exported adapters and in `litevsr.backbones.FAMILIES`
    family: str
    #: published checkpoints' {"transformer": config, "vae": config}, by hub id: meta-device builds and twins
    KNOWN_CONFIGS: dict[str, dict] = {}
    #: what a twin shrinks (widths and depths only): {"transformer": {...}, "vae": {...}}
    TWIN_SHRINK: dict[str, dict] = {}
    #: the diffusers pipeline class of the family's hub folders (model_index.json)
    PIPELINE: str
    #: module names (suffixes) of the attention and FFN projections, where LoRA goes by default
    LORA_TARGETS: tuple[str, ...]

    hidden_dim: int
    num_blocks: int
    patch_size: tuple[int, int, int]
    latent_channels: int
    vae_stride: tuple[int, int, int]
    frame_step: int  # videos need 1 + k * frame_step frames
    vae_is_pointwise: bool = False  # each latent pixel reads one patch of one frame: the VAE needs no tiles
    name: str

    #: the diffusers classes of the transformer and the VAE
    TRANSFORMER_CLASS: type
    VAE_CLASS: type
    #: whether the transformer reads exactly `prompt_shape`'s number of text tokens (else any number)
    FIXED_TEXT_LENGTH: bool = False

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
        """Load the family's transformer and VAE, and the fixed prompt; each family then sets its geometry and calls
        `_freeze`.

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
        self.name, self.revision, self.empty_weights = pretrained, revision, empty_weights
        self.switches = switches or Switches()
        self.source, self.transformer, self.vae = self._load_models(
            pretrained, transformer_subfolder, vae_subfolder, revision, check_dtype(dtype), empty_weights
        )
        length, width = self.prompt_shape(self.transformer.config)
        shape = (length if self.FIXED_TEXT_LENGTH else 1, width)
        embeds = (
            torch.zeros(1, *shape, device="meta")
            if empty_weights
            else load_prompt_embeds(prompt_embeds, self.source, shape, self.FIXED_TEXT_LENGTH)
        )
        self.register_buffer("prompt_embeds", embeds, persistent=False)

    # --- building, loading and saving the family's models --------------------------------------
    @classmethod
    def build(cls, config: dict, seed: int = 0) -> tuple[nn.Module, nn.Module]:
        """A freshly initialised transformer + VAE from a {"transformer": ..., "vae": ...} config."""
        with torch.random.fork_rng():  # the caller's RNG (seed_everything's) is left as it was
            torch.manual_seed(seed)
            return cls.TRANSFORMER_CLASS(**config["transformer"]), cls.VAE_CLASS(**config["vae"])

    @classmethod
    def twin_config(cls, name: str) -> dict:
        """The {"transformer", "vae"} config of the twin of published checkpoint `name`."""
        real = cls.KNOWN_CONFIGS[name]
        return {part: {**real[part], **cls.TWIN_SHRINK.get(part, {})} for part in ("transformer", "vae")}

    @classmethod
    def prompt_shape(cls, transformer_config) -> tuple[int, int]:
        """(text length, width) of the prompt embedding the transformer reads."""
        raise NotImplementedError

    @classmethod
    def save(
        cls,
        transformer,
        vae,
        folder: str,
        prompt_embeds: torch.Tensor | None = None,
        max_shard_size: int | str = "10GB",
        components: dict | None = None,
        index_fields: dict | None = None,
    ) -> None:
        """Save in the family's diffusers layout, which `cls(pretrained=folder)` loads, with `components` (see
        `extra_components`) beside them and `index_fields` added to model_index.json; the transformer is split into
        shards with an index where it exceeds `max_shard_size` (bytes), as large hub checkpoints are."""
        transformer.save_pretrained(os.path.join(folder, "transformer"), max_shard_size=max_shard_size)
        vae.save_pretrained(os.path.join(folder, "vae"))
        index = {"transformer": ["diffusers", type(transformer).__name__], "vae": ["diffusers", type(vae).__name__]}
        for name, component in (components or {}).items():
            component.save_pretrained(os.path.join(folder, name))
            index[name] = ["diffusers", type(component).__name__]
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump(
                {
                    "_class_name": cls.PIPELINE,
                    "_diffusers_version": diffusers.__version__,
                    **(index_fields or {}),
                    **index,
                },
                f,
                indent=2,
            )
        if prompt_embeds is not None:
            from safetensors.torch import save_file

            save_file({"prompt_embeds": prompt_embeds.contiguous()}, os.path.join(folder, "prompt_embeds.safetensors"))

    @classmethod
    def extra_components(cls, config: dict) -> dict:
        """Components besides transformer and VAE that a folder of this family holds (e.g. its scheduler), built
        from a {"transformer", "vae", ...} config."""
        return {}

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
        source, prepare_vae = resolve_source(pretrained)
        names = f"a {cls.__name__.removesuffix('Backbone')} backbone"
        if empty_weights:
            if os.path.isdir(source):
                tcfg = cls.TRANSFORMER_CLASS.load_config(source, subfolder=transformer_subfolder)
                vcfg = cls.VAE_CLASS.load_config(source, subfolder=vae_subfolder)
            elif source in cls.KNOWN_CONFIGS:
                tcfg, vcfg = cls.KNOWN_CONFIGS[source]["transformer"], cls.KNOWN_CONFIGS[source]["vae"]
            else:
                raise LiteVSRError(
                    f"empty_weights needs a local folder or one of {sorted(cls.KNOWN_CONFIGS)}, got {source!r}"
                )
            with torch.device("meta"):
                return source, cls.TRANSFORMER_CLASS.from_config(tcfg), cls.VAE_CLASS.from_config(vcfg)
        if source.startswith(("/", ".", "~")) and not os.path.isdir(source):
            raise LiteVSRError(f"backbone path not found: {source}")
        try:
            transformer = cls.TRANSFORMER_CLASS.from_pretrained(
                source, subfolder=transformer_subfolder, revision=revision, torch_dtype=dtype
            )
            vae = cls.VAE_CLASS.from_pretrained(source, subfolder=vae_subfolder, revision=revision)
        except (OSError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            where = "folder" if os.path.isdir(source) else "hub id (is the hub reachable?)"
            raise LiteVSRError(f"could not load {names} from {where} {source!r}: {first_line}") from err
        return source, transformer, (vae if prepare_vae is None else prepare_vae(vae))

    def _freeze(self) -> None:
        """Freeze, hook the blocks for injections, and apply the switches: the last step of a family's __init__."""
        self.transformer_parameters = sum(p.numel() for p in self.transformer.parameters())
        self.requires_grad_(False)
        self.eval()
        self._apply_switches()
        self._injections = Injections()
        for index, block in enumerate(self.blocks):
            block.register_forward_hook(self._make_injection_hook(index))
        self.blocks[0].register_forward_pre_hook(self._before_first_block, with_kwargs=True)

    def _apply_switches(self) -> None:
        switches = self.switches
        if switches.storage_dtype is not None:
            if switches.storage_dtype not in STORAGE_DTYPES:
                raise LiteVSRError(
                    f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {switches.storage_dtype!r}"
                )
            self.transformer.enable_layerwise_casting(
                storage_dtype=STORAGE_DTYPES[switches.storage_dtype], compute_dtype=self.transformer.dtype
            )
        if switches.group_offload is not None:
            self.transformer.enable_group_offload(
                onload_device=torch.device(switches.group_offload), offload_type="block_level", num_blocks_per_group=1
            )
        if switches.vae_slicing:
            self.vae.enable_slicing()
        if switches.vae_tiling:
            self.vae.enable_tiling()
        if switches.compile:
            self.transformer.compile_repeated_blocks()

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
