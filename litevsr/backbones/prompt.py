"""The fixed VSR prompt, embedded once with a local text encoder so that training never loads it."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from litevsr.atomic import atomic_path
from litevsr.errors import LiteVSRError

DEFAULT_PROMPT = "a high quality, sharp, detailed video"


@torch.no_grad()
def compute_prompt_embeds(
    text_encoder: str,
    out_path: str,
    prompt: str = DEFAULT_PROMPT,
    max_length: int = 512,
    subfolder: str = "text_encoder",
) -> torch.Tensor:
    """Embed `prompt` with a checkpoint's T5-family text encoder (Wan's UMT5, CogVideoX's and LTX-Video's T5; a
    local diffusers folder or hub id) and save it.

    As the Wan pipeline does: tokens beyond the prompt are zeroed, then padded to `max_length`.
    Needs the optional `transformers` dependency (`pip install litevsr[text]`).
    """
    try:
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            T5EncoderModel,
            UMT5EncoderModel,
        )
    except ImportError as err:
        raise LiteVSRError("embedding the prompt needs transformers: pip install 'litevsr[text]'") from err

    encoders = {"umt5": UMT5EncoderModel, "t5": T5EncoderModel}  # by the config's model_type, never by a stored name
    kind = AutoConfig.from_pretrained(text_encoder, subfolder=subfolder).model_type
    if kind not in encoders:
        raise LiteVSRError(f"{text_encoder}/{subfolder} holds a {kind!r} text encoder; known: {', '.join(encoders)}")
    tokenizer = AutoTokenizer.from_pretrained(text_encoder, subfolder="tokenizer")
    encoder = encoders[kind].from_pretrained(text_encoder, subfolder=subfolder).eval()
    tokens = tokenizer(
        [prompt],
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    hidden = encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
    length = int(tokens.attention_mask.sum())
    embeds = torch.zeros_like(hidden)
    embeds[:, :length] = hidden[:, :length]
    with atomic_path(out_path) as tmp:
        save_file({"prompt_embeds": embeds.float().contiguous()}, tmp, metadata={"prompt": prompt})
    return embeds
