"""``LoadedModel``: one object holding a causal LM, its tokenizer and the facts every experiment needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workbench.models.arch import ArchSpec, arch_for, get_module
from workbench.models.fingerprint import fingerprint as compute_fingerprint


@dataclass(eq=False)
class LoadedModel:
    """A causal LM ready for hooks. Never mutated by workbench interventions (hooks are scoped to calls)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ---- facts ---------------------------------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config

    @functools.cached_property
    def arch(self) -> ArchSpec:
        return arch_for(self.config.model_type)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        """Hash of config + weights (see ``workbench.models.fingerprint``); computed once, on first use."""
        if self._fingerprint is None:
            self._fingerprint = compute_fingerprint(self.model, self.config)
        return self._fingerprint

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    # ---- modules by role -----------------------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        return get_module(self.model, self.arch.layers)  # type: ignore[return-value]

    def attn(self, layer: int) -> nn.Module:
        return getattr(self.layers[layer], self.arch.attn)

    def mlp(self, layer: int) -> nn.Module:
        return getattr(self.layers[layer], self.arch.mlp)

    @property
    def final_norm(self) -> nn.Module:
        return get_module(self.model, self.arch.final_norm)

    @property
    def embed(self) -> nn.Module:
        return get_module(self.model, self.arch.embed)

    @property
    def unembed(self) -> nn.Module:
        return get_module(self.model, self.arch.unembed)

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` normalised (negative counts from the end) or raise with the valid range."""
        if not isinstance(layer, int):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if not -self.n_layers <= layer < self.n_layers:
            raise IndexError(
                f"layer {layer} is out of range for {self.name} with {self.n_layers} layers; "
                f"use 0..{self.n_layers - 1} (or -1 for the last)."
            )
        return layer % self.n_layers

    # ---- text ----------------------------------------------------------------------------------------------------
    def tokenize(self, texts: str | list[str], *, max_length: int | None = None, padding_side: str = "left",
                 add_special_tokens: bool = True) -> dict[str, torch.Tensor]:
        """Batch-tokenise plain texts (left padding by default, as generation needs) onto the model's device."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or any(not isinstance(t, str) for t in texts):
            raise ValueError("tokenize() needs a non-empty list of strings")
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=max_length is not None,
                               max_length=max_length, add_special_tokens=add_special_tokens)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def generate(self, texts: str | list[str], *, max_new_tokens: int = 32, chat: bool | None = None,
                 **generate_kwargs: Any) -> list[str]:
        """Greedy (by default) generation; ``chat`` renders each text as a user turn with the chat template."""
        from workbench.chat import render_prompt  # local: chat imports models

        texts = [texts] if isinstance(texts, str) else list(texts)
        use_chat = self.has_chat_template if chat is None else chat
        prompts = [render_prompt(self.tokenizer, t) for t in texts] if use_chat else texts
        batch = self.tokenize(prompts, add_special_tokens=not use_chat)
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, **generate_kwargs)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, n_layers={self.n_layers}, d_model={self.d_model}, device={self.device})"
