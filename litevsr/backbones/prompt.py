"""The fixed VSR prompt, embedded once with a local text encoder so that training never loads it."""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

DEFAULT_PROMPT = "a high quality, sharp, detailed video"


@torch.no_grad()
def compute_prompt_embeds(text_encoder: str, out_path: str, prompt: str = DEFAULT_PROMPT,
                          max_length: int = 512, subfolder: str = "text_encoder") -> torch.Tensor:
    """Embed `prompt` with Wan's UMT5 encoder (a local diffusers folder or hub id) and save it.

    Matches the Wan pipeline: tokens beyond the prompt are zeroed, then padded to `max_length`.
    Needs the optional `transformers` dependency (`pip install litevsr[text]`).
    """
    from transformers import AutoTokenizer, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(text_encoder, subfolder="tokenizer")
    encoder = UMT5EncoderModel.from_pretrained(text_encoder, subfolder=subfolder).eval()
    tokens = tokenizer([prompt], padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    hidden = encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
    length = int(tokens.attention_mask.sum())
    embeds = torch.zeros_like(hidden)
    embeds[:, :length] = hidden[:, :length]
    tmp = out_path + ".tmp"
    save_file({"prompt_embeds": embeds.float().contiguous()}, tmp, metadata={"prompt": prompt})
    os.replace(tmp, out_path)
    return embeds
