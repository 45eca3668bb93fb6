"""Baselines that feed the LQ latent as extra input channels of the backbone (SeedVR/STAR-style concatenation,
finetrainers' control-LoRA), and train backbone weights: LoRA layers (`LoRAAdapter`) or all of the transformer
(`FullFinetuneAdapter`, the upper reference). The State-Aware Adapter is compared against them in one harness.

Concatenating the condition to the latent before a patch embedding is the same as adding a second patch projection
of the condition to the embedded tokens. That projection starts at zero, so training starts from the bare backbone
exactly, and it is exported merged with the backbone's as the widened patch embedding (`patch_embedding.safetensors`,
a full weight over latent + condition channels, not a delta).
"""

from __future__ import annotations

import os

import torch
from diffusers.configuration_utils import register_to_config
from safetensors.torch import load_file, save_file
from torch import nn

from litevsr.adapters.base import Adapter, register_adapter
from litevsr.errors import LiteVSRError
from litevsr.injections import Injections

PATCH_EMBEDDING_FILE = "patch_embedding.safetensors"
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name: load_lora_adapter reads it
TRANSFORMER_FILE = "transformer.safetensors"
LORA_NAME = "litevsr"


class InputConcatAdapter(Adapter):
    """The condition enters as extra input channels; subclasses choose which backbone weights train."""

    edits_backbone = True

    def _build_input_projection(self, dims: dict) -> None:
        patch = tuple(dims["patch_size"])
        self.input_projection = nn.Conv3d(dims["latent_channels"], dims["hidden_dim"], patch, stride=patch, bias=False)
        nn.init.zeros_(self.input_projection.weight)

    def forward(self, cond: torch.Tensor, state: torch.Tensor, sigma: torch.Tensor) -> Injections:
        return Injections(input_tokens=self.input_projection(cond).flatten(2).transpose(1, 2))

    def _backbone(self):
        if self.edited_backbone is None:
            raise LiteVSRError(f"this {type(self).__name__} is not attached to a backbone yet")
        return self.edited_backbone

    def save_extra(self, folder: str) -> None:
        embedding = self._backbone().patch_embedding  # a Conv3d (Wan) or a per-frame Conv2d (CogVideoX)
        extension = (
            self.input_projection.weight.detach()
            .float()
            .reshape(embedding.weight.shape[0], -1, *embedding.weight.shape[2:])
        )
        weight = torch.cat([embedding.weight.detach().float(), extension], dim=1)
        save_file(
            {"weight": weight.contiguous(), "bias": embedding.bias.detach().float().contiguous()},
            os.path.join(folder, PATCH_EMBEDDING_FILE),
        )


def _load_file(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise LiteVSRError(f"{folder}: {name} is missing (the backbone weights this method trained)")
    return load_file(path)


def _check_fit(stored: dict, expected: dict, what: str) -> None:
    """A one-line error unless `stored` holds exactly the tensors of `expected`, shape for shape."""
    problems = sorted(set(expected) ^ set(stored)) + [
        k for k in expected if k in stored and stored[k].shape != expected[k].shape
    ]
    if problems:
        raise LiteVSRError(f"{what}: {len(problems)} tensors differ, e.g. {problems[0]}")


@register_adapter
class LoRAAdapter(InputConcatAdapter):
    @register_to_config
    def __init__(
        self,
        *,
        backbone_dims: dict,
        rank: int = 16,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
    ):
        """LoRA (peft) on the frozen backbone's attention and FFN projections; the LQ latent enters as input
        channels.

        Args:
            backbone_dims: The backbone's dimensions (see StateAwareAdapter).
            rank: LoRA rank.
            alpha: LoRA scaling numerator (the update is scaled by alpha / rank). Default: rank.
            target_modules: Module names (suffixes) that get LoRA layers. Default: the backbone family's attention
                projections and both FFN layers (`spec.lora_targets`).
        """
        super().__init__()
        if rank < 1:
            raise LiteVSRError(f"the LoRA rank must be >= 1, got {rank}")
        self._build_input_projection(backbone_dims)

    def edit_backbone(self, backbone) -> None:
        from peft import LoraConfig

        targets = self.config.target_modules or list(backbone.spec.lora_targets)
        backbone.transformer.add_adapter(
            LoraConfig(r=self.config.rank, lora_alpha=self.config.alpha or self.config.rank, target_modules=targets),
            adapter_name=LORA_NAME,
        )
        for name, param in backbone.named_parameters():
            param.requires_grad_(".lora_" in name)

    def trained_backbone_parameters(self) -> list[str]:
        return [k for k, _ in self.edited_backbone.named_parameters() if ".lora_" in k]

    def save_extra(self, folder: str) -> None:
        super().save_extra(folder)
        self._backbone().transformer.save_lora_adapter(folder, adapter_name=LORA_NAME, weight_name=LORA_WEIGHTS_FILE)

    def load_extra(self, folder: str) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import get_peft_model_state_dict

        transformer = self._backbone().transformer
        stored = _load_file(folder, LORA_WEIGHTS_FILE)
        expected = get_peft_model_state_dict(transformer, adapter_name=LORA_NAME)
        stored = {k.removeprefix("transformer."): v for k, v in stored.items()}
        _check_fit(stored, expected, f"{folder}: {LORA_WEIGHTS_FILE} does not fit this LoRA (rank {self.config.rank})")
        set_peft_model_state_dict(transformer, stored, adapter_name=LORA_NAME)


@register_adapter
class FullFinetuneAdapter(InputConcatAdapter):
    @register_to_config
    def __init__(self, *, backbone_dims: dict):
        """Full fine-tuning of the transformer, with the LQ latent as input channels: the upper reference.

        Args:
            backbone_dims: The backbone's dimensions (see StateAwareAdapter).
        """
        super().__init__()
        self._build_input_projection(backbone_dims)

    def edit_backbone(self, backbone) -> None:
        backbone.transformer.requires_grad_(True)

    def trained_backbone_parameters(self) -> list[str]:
        return [f"transformer.{k}" for k, _ in self._backbone().transformer.named_parameters()]

    def save_extra(self, folder: str) -> None:
        super().save_extra(folder)
        state = {k: v.detach().contiguous() for k, v in self._backbone().transformer.state_dict().items()}
        save_file(state, os.path.join(folder, TRANSFORMER_FILE))

    def load_extra(self, folder: str) -> None:
        transformer = self._backbone().transformer
        stored, expected = _load_file(folder, TRANSFORMER_FILE), transformer.state_dict()
        _check_fit(stored, expected, f"{folder}: {TRANSFORMER_FILE} does not fit this backbone")
        transformer.load_state_dict(stored)
