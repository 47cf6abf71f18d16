"""``Inverter``: a target model + layer, an adapter and a decoder, with save/load that checks both fingerprints."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from probes.rep2text.adapter import Rep2TextAdapter
from probes.rep2text.config import Rep2TextConfig
from probes.rep2text.data import as_id_batch, check_ids, last_token_states
from workbench import atomic

if TYPE_CHECKING:
    from workbench.models import LoadedModel

logger = logging.getLogger(__name__)
FORMAT = "rep2text-v1"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _embed_rms(causal_lm: nn.Module) -> float:
    weight_VD = causal_lm.get_input_embeddings().weight.detach().float()
    return float(weight_VD.pow(2).mean(-1).sqrt().mean())


class Inverter(nn.Module):
    """Maps target states to soft tokens and decodes them. Never mutates the caller's models (LoRA wraps a copy)."""

    def __init__(self, target: "LoadedModel", decoder: "LoadedModel", cfg: Rep2TextConfig):
        super().__init__()
        self.target, self.decoder, self.cfg = target, decoder, cfg
        self.layer = target.check_layer(cfg.layer)
        torch.manual_seed(cfg.seed)
        if cfg.decoder_mode == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            self.causal_lm = copy.deepcopy(decoder.model)
            present = {name.rsplit(".", 1)[-1] for name, _ in self.causal_lm.named_modules()}
            targets = [t for t in LORA_TARGETS if t in present]
            if not targets:
                raise ValueError(f"decoder {decoder.name} has none of {LORA_TARGETS}; LoRA mode cannot attach")
            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets, lora_dropout=0.0)
            self.causal_lm = inject_adapter_in_model(lora, self.causal_lm)
            for name, param in self.causal_lm.named_parameters():
                param.requires_grad_("lora_" in name)
        else:
            self.causal_lm = decoder.model  # shared, frozen: only read
        self.adapter = Rep2TextAdapter(target.d_model, decoder.d_model, cfg.n_soft_tokens, cfg.d_hidden,
                                       embed_rms=_embed_rms(decoder.model)).to(decoder.device)
        prefix, suffix = cfg.prompt.split("{soft}")
        tok = decoder.tokenizer
        self.prefix_ids = tok(prefix, add_special_tokens=True)["input_ids"]
        self.suffix_ids = tok(suffix, add_special_tokens=False)["input_ids"]
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.eos_id or 0)

    # ---- parameters ----------------------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, Tensor]:
        """Adapter weights (``adapter.*``) plus LoRA weights (``lora.*``) in LoRA mode."""
        state = {f"adapter.{k}": v for k, v in self.adapter.state_dict().items()}
        if self.cfg.decoder_mode == "lora":
            state.update({f"lora.{k}": v for k, v in self.causal_lm.state_dict().items() if "lora_" in k})
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def load_trainable_state(self, state: dict[str, Tensor]) -> None:
        adapter = {k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")}
        self.adapter.load_state_dict(adapter)
        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        if bool(lora) != (self.cfg.decoder_mode == "lora"):
            raise ValueError(f"weights do not match decoder_mode={self.cfg.decoder_mode!r} (LoRA weights present: "
                             f"{bool(lora)})")
        if lora:
            missing = self.causal_lm.load_state_dict(lora, strict=False)
            if missing.unexpected_keys:
                raise ValueError(f"unexpected LoRA weights {missing.unexpected_keys[:3]}...")

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.adapter.parameters())
        if self.cfg.decoder_mode == "lora":
            params += [p for n, p in self.causal_lm.named_parameters() if "lora_" in n]
        return params

    @contextlib.contextmanager
    def frozen_decoder(self) -> Iterator[None]:
        """Stop gradients into the decoder's own weights for the duration (restored afterwards)."""
        saved = [(p, p.requires_grad) for n, p in self.causal_lm.named_parameters() if "lora_" not in n]
        try:
            for p, _ in saved:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in saved:
                p.requires_grad_(flag)

    # ---- forward -------------------------------------------------------------------------------------------------
    def states(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> Tensor:
        """The target's last-token state at ``cfg.layer`` for texts or token-id lists -> [n, d_target]."""
        return last_token_states(self.target, inputs, [self.layer])[self.layer]

    def _embed(self, ids: Sequence[int], n: int) -> Tensor:
        ids_NL = torch.tensor([list(ids)] * n, device=self.decoder.device, dtype=torch.long)
        return self.causal_lm.get_input_embeddings()(ids_NL)

    def prompt_embeds(self, states_BD: Tensor) -> Tensor:
        """[prefix][k soft tokens][suffix] input embeddings -> [batch, len, d_decoder]."""
        states_BD = states_BD.to(self.decoder.device, torch.float32)
        soft_BKE = self.adapter(states_BD).to(self.decoder.dtype)
        n = states_BD.shape[0]
        return torch.cat([self._embed(self.prefix_ids, n), soft_BKE, self._embed(self.suffix_ids, n)], dim=1)

    def decoder_targets(self, spans: Sequence[Sequence[int]]) -> list[list[int]]:
        """Target spans (target-tokenizer ids) re-tokenised for the decoder (identical when tokenizers match)."""
        if self.target.tokenizer is self.decoder.tokenizer or self.target.name == self.decoder.name:
            return [list(s) for s in spans]
        texts = self.target.tokenizer.batch_decode([list(s) for s in spans])
        return [self.decoder.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def loss(self, states_BD: Tensor, target_ids: Sequence[Sequence[int]]) -> Tensor:
        """Teacher-forced cross-entropy of the target tokens (+ EOS) given the soft prompt."""
        prompt_BPE = self.prompt_embeds(states_BD)
        n, p = prompt_BPE.shape[:2]
        ends = [list(t) + ([self.eos_id] if self.eos_id is not None else []) for t in target_ids]
        width = max(len(t) for t in ends)
        ids_BT = torch.tensor([t + [self.pad_id] * (width - len(t)) for t in ends], device=self.decoder.device)
        mask_BT = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in ends], device=self.decoder.device)
        embeds = torch.cat([prompt_BPE, self.causal_lm.get_input_embeddings()(ids_BT)], dim=1)
        attn = torch.cat([torch.ones(n, p, dtype=mask_BT.dtype, device=mask_BT.device), mask_BT], dim=1)
        check_ids(self.decoder, attn)
        body = getattr(self.causal_lm, self.causal_lm.base_model_prefix)
        hidden_BLE = body(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state
        # position p-1+i predicts target token i: only those positions go through the (large) LM head
        logits_BTV = self.causal_lm.get_output_embeddings()(hidden_BLE[:, p - 1:p - 1 + width]).float()
        labels_BT = ids_BT.masked_fill(mask_BT == 0, -100)
        return nn.functional.cross_entropy(logits_BTV.flatten(0, 1), labels_BT.flatten(), ignore_index=-100)

    @torch.no_grad()
    def generate_ids(self, states_BD: Tensor, max_new_tokens: int = 20) -> list[list[int]]:
        """Greedy decoding from the soft prompt; returns decoder token ids, cut at EOS."""
        prompt_BPE = self.prompt_embeds(states_BD)
        attn = torch.ones(prompt_BPE.shape[:2], dtype=torch.long, device=prompt_BPE.device)
        out = self.causal_lm.generate(inputs_embeds=prompt_BPE, attention_mask=attn, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.pad_id, eos_token_id=self.eos_id)
        out = out[:, -max_new_tokens:] if out.shape[1] > max_new_tokens else out
        result = []
        for row in out.tolist():
            if self.eos_id is not None and self.eos_id in row:
                row = row[:row.index(self.eos_id)]
            result.append(row)
        return result

    def invert(self, inputs: Sequence[str] | str, max_new_tokens: int | None = None) -> list[str]:
        """Texts -> the decoder's reconstruction of each from the target's state."""
        id_lists = as_id_batch(self.target, inputs)
        max_new = max_new_tokens or max(len(ids) for ids in id_lists) + 4
        ids = self.generate_ids(self.states(id_lists), max_new)
        return self.decoder.tokenizer.batch_decode(ids, skip_special_tokens=True)

    # ---- disk ----------------------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        return {"format": FORMAT, "config": self.cfg.to_dict(), "layer": self.layer,
                "target_model": self.target.name, "target_fingerprint": self.target.fingerprint,
                "decoder_model": self.decoder.name, "decoder_fingerprint": self.decoder.fingerprint,
                "d_in": self.target.d_model, "d_out": self.decoder.d_model}

    def save(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """``cfg.json`` + ``adapter.safetensors`` (adapter and LoRA weights); atomic."""
        out_dir = Path(out_dir)
        with atomic.atomic_path(out_dir / "adapter.safetensors") as tmp:
            save_file(self.trainable_state(), str(tmp))
        atomic.write_json(out_dir / "cfg.json", {**self.manifest(), **(extra or {})})
        return out_dir

    @classmethod
    def load(cls, path: str | Path, target: "LoadedModel", decoder: "LoadedModel | None" = None) -> "Inverter":
        """Load a saved inverter; raise if it was trained for other models (fingerprints differ)."""
        path = Path(path)
        if not (path / "cfg.json").exists() or not (path / "adapter.safetensors").exists():
            raise FileNotFoundError(f"{path} is not a Rep2Text inverter folder (needs cfg.json + adapter.safetensors)")
        meta = json.loads((path / "cfg.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}/cfg.json has format {meta.get('format')!r}, expected {FORMAT!r}")
        decoder = decoder or target
        for role, lm in (("target", target), ("decoder", decoder)):
            if meta[f"{role}_fingerprint"] != lm.fingerprint:
                raise ValueError(
                    f"this adapter was trained with {role} model {meta[f'{role}_model']!r} (fingerprint "
                    f"{meta[f'{role}_fingerprint']}) but got {lm.name!r} (fingerprint {lm.fingerprint}); "
                    f"load the {role} model it was trained with")
        inverter = cls(target, decoder, Rep2TextConfig.from_dict(meta["config"]))
        inverter.load_trainable_state(load_file(str(path / "adapter.safetensors")))
        return inverter
