"""The two nodes: `LiteVSRLoader` (an adapter and the frozen backbone it names, as a LITEVSR_PIPELINE) and
`LiteVSRUpscale` (an IMAGE batch, read as the frames of one video, upscaled through `LiteVSRPipeline`).

ComfyUI's `folder_paths` is imported only when asked for, so the nodes also load and run without ComfyUI.
"""

from __future__ import annotations

import os

import torch

from litevsr import LiteVSRError, LiteVSRPipeline
from litevsr.color import COLOR_FIXES
from litevsr.inference import resolve_device
from litevsr.zoo import SHIPPED_ADAPTERS

#: ComfyUI's model-folder name for adapters: ComfyUI/models/litevsr/<adapter>/ (config.json + safetensors).
MODELS_FOLDER = "litevsr"
#: Where adapter folders are looked for outside ComfyUI, unless LITEVSR_MODELS names other folders.
LOCAL_MODELS = os.path.join("models", MODELS_FOLDER)
PIPELINE_TYPE = "LITEVSR_PIPELINE"
CATEGORY = "litevsr"
#: A combo value meaning "what the adapter records".
RECORDED = "default"
#: The tile input's value for the pipeline's automatic tiles (0 is whole frames, as in the pipeline).
AUTO_TILE = -1


def _folder_paths():
    """ComfyUI's folder_paths module, or None when the nodes run outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def model_roots() -> list[str]:
    """The folders that hold adapter folders. Under ComfyUI: its "litevsr" model folders, with models/litevsr
    registered on first use (extra_model_paths.yaml may add more); else LITEVSR_MODELS (os.pathsep-separated) or
    ./models/litevsr."""
    folder_paths = _folder_paths()
    if folder_paths is None:
        return [p for p in os.environ.get("LITEVSR_MODELS", LOCAL_MODELS).split(os.pathsep) if p]
    default = os.path.join(folder_paths.models_dir, MODELS_FOLDER)
    try:
        roots = folder_paths.get_folder_paths(MODELS_FOLDER)
    except KeyError:  # not registered yet
        roots = []
    if default not in roots:
        folder_paths.add_model_folder_path(MODELS_FOLDER, default)
    return folder_paths.get_folder_paths(MODELS_FOLDER)


def local_adapters() -> dict[str, str]:
    """{name: folder} of the adapter folders (those with a config.json) in model_roots(). The first root holding a
    name wins, as in ComfyUI's own look-ups; a shipped name ("general") always means the shipped adapter."""
    found = {}
    for root in model_roots():
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if name not in SHIPPED_ADAPTERS and os.path.isfile(os.path.join(folder, "config.json")):
                found.setdefault(name, folder)
    return found


def adapter_choices() -> list[str]:
    return [*SHIPPED_ADAPTERS, *sorted(local_adapters())]


class LiteVSRLoader:
    """Load an adapter with the frozen backbone it records, for LiteVSR Upscale."""

    DESCRIPTION = "Loads a litevsr adapter (shipped, or a folder under models/litevsr) and its frozen video DiT."
    RETURN_TYPES = (PIPELINE_TYPE,)
    RETURN_NAMES = ("pipeline",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "adapter": (
                    adapter_choices(),
                    {"tooltip": "general: the shipped x4 adapter; others: adapter folders under models/litevsr"},
                ),
                "device": (
                    ["auto", "cpu", "cuda"],
                    {"default": "auto", "tooltip": "auto: a visible GPU, else the CPU"},
                ),
                "dtype": (
                    ["auto", "float32", "bfloat16"],
                    {
                        "default": "auto",
                        "tooltip": "the transformer's precision (the VAE stays float32); auto: bfloat16 on a GPU, "
                        "float32 on the CPU",
                    },
                ),
            }
        }

    def load(self, adapter: str, device: str = "auto", dtype: str = "auto") -> tuple[LiteVSRPipeline]:
        local = local_adapters()
        if adapter not in SHIPPED_ADAPTERS and adapter not in local:
            raise LiteVSRError(
                f"no adapter {adapter!r}: expected {', '.join(SHIPPED_ADAPTERS)} or an adapter folder (with a "
                f"config.json) in {', '.join(model_roots()) or 'no models folder'}"
            )
        resolved, transformer_dtype = resolve_device(device, dtype)
        pipe = LiteVSRPipeline.from_pretrained(local.get(adapter, adapter), torch_dtype=transformer_dtype)
        return (pipe.to(resolved),)


class LiteVSRUpscale:
    """Upscale an IMAGE batch as one video: the batch's images are its frames, in order."""

    DESCRIPTION = (
        "Upscales the frames of one video (an IMAGE batch, in order) by the adapter's scale; windows of frames "
        "are sampled together, so frames of unrelated images blend."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "upscale"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pipeline": (PIPELINE_TYPE,),
                "images": ("IMAGE", {"tooltip": "the frames of one video, in order"}),
                "tile": (
                    "INT",
                    {
                        "default": AUTO_TILE,
                        "min": AUTO_TILE,
                        "max": 16384,
                        "tooltip": "spatial tile in output pixels; -1: automatic (from the frame size, the backbone "
                        "and the device); 0: whole frames",
                    },
                ),
                "steps": (
                    "INT",
                    {"default": 0, "min": 0, "max": 1000, "tooltip": "sampler steps; 0: the adapter's recorded value"},
                ),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 2**64 - 1, "tooltip": "seed of the start noise of every window"},
                ),
                "color_fix": (
                    [RECORDED, *COLOR_FIXES],
                    {
                        "default": RECORDED,
                        "tooltip": "correct colours towards the bicubic upsampling of the input; default: the "
                        "adapter's recorded choice",
                    },
                ),
            }
        }

    def upscale(
        self,
        pipeline: LiteVSRPipeline,
        images: torch.Tensor,
        tile: int = AUTO_TILE,
        steps: int = 0,
        seed: int = 0,
        color_fix: str = RECORDED,
    ) -> tuple[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise LiteVSRError(f"images must be an IMAGE batch of RGB frames (frames, height, width, 3), got {got}")
        if not images.shape[0]:
            raise LiteVSRError("images holds no frames: the IMAGE batch is empty")
        if tile < AUTO_TILE:
            raise LiteVSRError(f"tile must be -1 (automatic), 0 (whole frames) or a size in output pixels, got {tile}")
        frames = pipeline(
            images.float(),  # half-precision IMAGE tensors occur, and bfloat16 has no numpy type
            num_inference_steps=steps or None,
            generator=torch.Generator().manual_seed(seed),
            tile=None if tile == AUTO_TILE else tile,
            color_fix=None if color_fix == RECORDED else color_fix,
            output_type="pt",
        ).frames[0]  # (frames, 3, H, W) on the CPU; IMAGE is channels-last
        return (frames.permute(0, 2, 3, 1).contiguous(),)


NODE_CLASS_MAPPINGS = {"LiteVSRLoader": LiteVSRLoader, "LiteVSRUpscale": LiteVSRUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"LiteVSRLoader": "LiteVSR Loader", "LiteVSRUpscale": "LiteVSR Upscale (video)"}
