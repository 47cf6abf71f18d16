"""Pause-tuning: a LoRA (peft) on synthetic long-context QA whose contexts carry pause markers (METHODS §5).

Training examples use a *different* needle template, key set and filler source (C4) from the NIAH evaluation
(Wikipedia, "special magic number"), so a gain is not just memorising the eval format. Loss is on the answer tokens.
The LoRA is trained on a copy of the model (the caller's model is never modified) and saved as
``cfg.json`` + ``lora.safetensors`` with the base model's fingerprint; ``load_pause_lora`` checks it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from probes.pause.insert import PauseConfig
from probes.pause.niah import NeedleTemplate, make_case
from workbench import atomic

if TYPE_CHECKING:
    from workbench.models import LoadedModel

logger = logging.getLogger(__name__)
FORMAT = "pause-lora-v1"
TRAIN_TEMPLATE = NeedleTemplate(
    needle="The access code for the {key} vault is {value}.",
    question="What is the access code for the {key} vault? Answer with the number only.",
    multi_question="What are the access codes for the {keys} vaults? Answer with the numbers only.",
    keys=("amber", "cobalt", "falcon", "granite", "harbor", "indigo", "juniper", "kestrel", "lantern", "meadow",
          "nickel", "orchid", "pepper", "quartz", "raven", "saffron", "tundra", "umber", "violet", "willow"),
)


@dataclass
class TuneConfig:
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    steps: int = 40
    lr: float = 2e-4
    lengths: tuple[int, ...] = (384, 512, 768)
    """Context lengths of the synthetic training examples (sampled uniformly)."""
    seed: int = 0
    pause: PauseConfig = field(default_factory=PauseConfig)
    distractors: int = 0
    """Decoy needles (other keys, not asked) in every training context: teaches retrieving the asked key, not the
    only number present."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.lr <= 0:
            raise ValueError("rank and steps must be >= 1 and lr > 0")
        if not 0 <= self.distractors < len(TRAIN_TEMPLATE.keys):
            raise ValueError(f"distractors must be in [0, {len(TRAIN_TEMPLATE.keys) - 1}], got {self.distractors}")
        if not self.lengths or min(self.lengths) < 64:
            raise ValueError("lengths must be non-empty and each >= 64 tokens")


def synthetic_examples(lm: "LoadedModel", texts: Sequence[str], n: int, cfg: TuneConfig) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs: a needle at a random depth in filler with pauses (and ``cfg.distractors`` decoy
    needles), and the asked number as answer."""
    rng = random.Random(cfg.seed)
    out = []
    for i in range(n):
        case = make_case(lm, texts, rng.choice(cfg.lengths), rng.random(), seed=10_000 + i, pause=cfg.pause,
                         distractors=cfg.distractors, template=TRAIN_TEMPLATE)
        out.append((case.prompt, case.needles[0][1]))
    return out


def _lora_model(lm: "LoadedModel", cfg: TuneConfig):
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in lm.model.named_modules()}
    targets = [t for t in cfg.target_modules if t in present]
    if not targets:
        raise ValueError(f"{lm.name} has none of the LoRA target modules {cfg.target_modules}")
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=targets, lora_dropout=0.0)
    return get_peft_model(copy.deepcopy(lm.model), lora)


def pause_tune(lm: "LoadedModel", examples: Sequence[tuple[str, str]], cfg: TuneConfig, *,
               out_dir: str | Path | None = None, progress: bool = True,
               max_seconds: float | None = None) -> tuple["LoadedModel", dict]:
    """Train the LoRA on ``examples`` (batch 1); return (merged copy of the model, training summary)."""
    from peft import get_peft_model_state_dict

    from workbench.models import wrap_model

    if not examples:
        raise ValueError("no training examples given")
    peft_model = _lora_model(lm, cfg)
    causal = peft_model.get_base_model()
    body = getattr(causal, causal.base_model_prefix)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    tok = lm.tokenizer
    eos = tok.eos_token_id
    losses: list[float] = []
    start = time.monotonic()
    peft_model.train()
    for step in tqdm(range(cfg.steps), disable=not progress, desc="pause-tune"):
        prompt, answer = examples[step % len(examples)]
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = torch.tensor([p_ids + a_ids], device=lm.device)
        hidden_BLD = body(input_ids=ids, use_cache=False).last_hidden_state
        logits_BAV = causal.get_output_embeddings()(hidden_BLD[:, len(p_ids) - 1:-1]).float()
        loss = torch.nn.functional.cross_entropy(logits_BAV[0], ids[0, len(p_ids):])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(round(float(loss.detach()), 4))
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            logger.warning("pause-tune time budget spent after %d/%d steps", step + 1, cfg.steps)
            break
    peft_model.eval()
    summary = {"format": FORMAT, "base_model": lm.name, "base_fingerprint": lm.fingerprint,
               "config": _cfg_dict(cfg), "steps_done": len(losses), "losses": losses,
               "seconds": round(time.monotonic() - start, 1)}
    if out_dir is not None:
        state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}
        with atomic.atomic_path(Path(out_dir) / "lora.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic.write_json(Path(out_dir) / "cfg.json", summary)
    merged = peft_model.merge_and_unload()
    return wrap_model(merged, tok, name=f"{lm.name}+pause-lora"), summary


def _cfg_dict(cfg: TuneConfig) -> dict:
    d = asdict(cfg)
    d["target_modules"] = list(cfg.target_modules)
    d["lengths"] = list(cfg.lengths)
    return d


def load_pause_lora(path: str | Path, lm: "LoadedModel") -> "LoadedModel":
    """A merged copy of ``lm`` with the saved pause LoRA; raises if it was trained on another model."""
    from peft import set_peft_model_state_dict

    from workbench.models import wrap_model

    path = Path(path)
    if not (path / "cfg.json").exists() or not (path / "lora.safetensors").exists():
        raise FileNotFoundError(f"{path} is not a pause LoRA folder (needs cfg.json + lora.safetensors)")
    meta = json.loads((path / "cfg.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}/cfg.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta["base_fingerprint"] != lm.fingerprint:
        raise ValueError(f"this LoRA was trained on {meta['base_model']!r} (fingerprint {meta['base_fingerprint']}) "
                         f"but got {lm.name!r} (fingerprint {lm.fingerprint}); load the model it was trained on")
    c = meta["config"]
    cfg = TuneConfig(rank=c["rank"], alpha=c["alpha"], target_modules=tuple(c["target_modules"]))
    peft_model = _lora_model(lm, cfg)
    set_peft_model_state_dict(peft_model, load_file(str(path / "lora.safetensors")))
    return wrap_model(peft_model.merge_and_unload(), lm.tokenizer, name=f"{lm.name}+pause-lora")
