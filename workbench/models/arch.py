"""Where the pieces of a decoder-only transformers model live, per architecture family.

Everything that hooks into a model asks this module for modules by role (decoder layers, attention, MLP, final norm,
embedding, unembedding) instead of hard-coding ``model.model.layers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    layers: str
    """Dotted path from the CausalLM to the ``ModuleList`` of decoder layers."""
    attn: str
    """Attribute of one decoder layer holding the attention module."""
    mlp: str
    final_norm: str
    embed: str
    unembed: str = "lm_head"


_LLAMA_LIKE = ArchSpec(layers="model.layers", attn="self_attn", mlp="mlp", final_norm="model.norm",
                       embed="model.embed_tokens")
_GPT2 = ArchSpec(layers="transformer.h", attn="attn", mlp="mlp", final_norm="transformer.ln_f", embed="transformer.wte")

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA_LIKE, "qwen2": _LLAMA_LIKE, "qwen3": _LLAMA_LIKE, "mistral": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE, "gemma2": _LLAMA_LIKE, "gemma3_text": _LLAMA_LIKE, "phi3": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE, "granite": _LLAMA_LIKE, "gpt2": _GPT2,
}


def arch_for(model_type: str) -> ArchSpec:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise ValueError(
            f"model_type {model_type!r} has no hook-site mapping; supported: {sorted(ARCHITECTURES)}. "
            "Add an ArchSpec for it in workbench/models/arch.py."
        ) from None


def get_module(root: nn.Module, dotted: str) -> nn.Module:
    module = root
    for part in dotted.split("."):
        module = getattr(module, part)
    return module
