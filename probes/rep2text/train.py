"""Teacher-forced training of a Rep2Text inverter, checkpointed and resumable.

``out_dir`` holds ``checkpoint.safetensors`` (adapter, LoRA and AdamW moments) and ``train_state.json`` (step, losses,
both model fingerprints); a rerun with the same folder continues from the last checkpoint. Batch order is a function
of (seed, step), so a resumed run sees the same batches an uninterrupted one would. The finished inverter is saved
as ``cfg.json`` + ``adapter.safetensors`` (see ``Inverter.save``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from probes.rep2text.config import Rep2TextConfig
from probes.rep2text.inverter import Inverter
from workbench import atomic

if TYPE_CHECKING:
    from workbench.models import LoadedModel

logger = logging.getLogger(__name__)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the batch at ``step``: epochs are seeded permutations, so the order depends only on (seed, step)."""
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        take = perm[offset:offset + batch_size - len(out)]
        out += take
        pos += len(take)
    return out


def _save_checkpoint(out_dir: Path, inverter: Inverter, opt: torch.optim.Optimizer, step: int,
                     losses: list[float]) -> None:
    tensors = dict(inverter.trainable_state())
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    with atomic.atomic_path(out_dir / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic.write_json(out_dir / "train_state.json", {**inverter.manifest(), "step": step, "losses": losses})


def _load_checkpoint(out_dir: Path, inverter: Inverter, opt: torch.optim.Optimizer) -> tuple[int, list[float]]:
    state_path, ckpt_path = out_dir / "train_state.json", out_dir / "checkpoint.safetensors"
    if not state_path.exists() or not ckpt_path.exists():
        return 0, []
    meta = json.loads(state_path.read_text())
    mine = inverter.manifest()
    schedule_only = ("steps", "checkpoint_every")  # a resumed run may extend its schedule
    meta["config"] = {k: v for k, v in meta.get("config", {}).items() if k not in schedule_only}
    mine["config"] = {k: v for k, v in mine["config"].items() if k not in schedule_only}
    for key in ("target_fingerprint", "decoder_fingerprint", "config"):
        if meta.get(key) != mine[key]:
            raise ValueError(f"{out_dir} holds a checkpoint with a different {key} ({meta.get(key)!r} vs "
                             f"{mine[key]!r}); use a fresh out_dir or the same models and config")
    tensors = load_file(str(ckpt_path))
    inverter.load_trainable_state({k: v for k, v in tensors.items() if not k.startswith("opt.")})
    opt_state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = value
    groups = opt.state_dict()["param_groups"]
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    logger.info("resumed %s at step %d", out_dir, meta["step"])
    return int(meta["step"]), list(meta.get("losses", []))


def train(target: "LoadedModel", decoder: "LoadedModel", spans: Sequence[Sequence[int]], cfg: Rep2TextConfig, *,
          out_dir: str | Path | None = None, states: Tensor | None = None, progress: bool = True,
          max_seconds: float | None = None) -> Inverter:
    """Train an inverter on ``spans`` (target-tokenizer ids). ``states`` may hold precomputed last-token states.

    ``max_seconds`` stops early (after a checkpoint) when the wall-clock budget is spent; rerun to continue.
    """
    if not spans:
        raise ValueError("no training spans given")
    inverter = Inverter(target, decoder, cfg)
    if states is None:
        states = inverter.states(spans)
    if states.shape != (len(spans), target.d_model):
        raise ValueError(f"states must be [{len(spans)}, {target.d_model}], got {tuple(states.shape)}")
    targets = inverter.decoder_targets(spans)
    params = inverter.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(out_dir) if out_dir is not None else None
    step, losses = _load_checkpoint(out, inverter, opt) if out is not None else (0, [])
    done = step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + done + 1) / 20))  # short warm-up
    start = time.monotonic()
    inverter.adapter.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"rep2text L{inverter.layer}")
    with inverter.frozen_decoder():
        while step < cfg.steps:
            idx = batch_indices(len(spans), cfg.batch_size, step, cfg.seed)
            loss = inverter.loss(states[idx], [targets[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(round(float(loss.detach()), 5))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            out_of_time = max_seconds is not None and time.monotonic() - start > max_seconds
            if out is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time):
                _save_checkpoint(out, inverter, opt, step, losses)
            if out_of_time:
                logger.warning("time budget spent at step %d/%d; rerun with the same out_dir to resume", step,
                               cfg.steps)
                break
    bar.close()
    inverter.adapter.eval()
    inverter.train_steps, inverter.losses = step, losses
    if out is not None and step >= cfg.steps:
        inverter.save(out, extra={"steps_done": step, "final_loss": losses[-1] if losses else None})
    return inverter
