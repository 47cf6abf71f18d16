"""Refusal interventions (Arditi et al. 2024, §2.4 and §3):

- ``ablation(lm, r)``: project r̂ out of every layer's block input, attention output and MLP output, at all positions.
- ``addition(lm, r, layer)``: add ``coeff · r`` (unnormalised) to the block input of one layer at all positions.
- ``orthogonalize(lm, r)``: a *copy* of the model whose embedding, attention-out and MLP-down weights write nothing
  along r̂ (``W ← W − r̂ r̂ᵀ W``), equivalent to ablation without hooks. The user's model is never touched.
- ``rank1_delta`` / ``save_delta`` / ``apply_delta``: the same edit as a small file — per matrix ``ΔW = r̂ ⊗ u`` with
  ``u = −Wᵀ r̂`` — which reproduces the orthogonalised model from the original weights.

Tied embeddings (Qwen2.5-0.5B): the copy gets its own LM head first, so only the embedding is orthogonalised and the
result matches hook-based ablation exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from workbench import atomic, hooks
from workbench.models import wrap_model

if TYPE_CHECKING:
    from workbench.models import LoadedModel

DELTA_FORMAT = "workbench.rank1_delta"
OUTPUT_PROJECTIONS = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h")


def _unit(direction: Tensor, lm: "LoadedModel") -> Tensor:
    direction = torch.as_tensor(direction).detach().float().cpu()
    if direction.ndim != 1 or direction.shape[0] != lm.d_model:
        raise ValueError(f"direction has shape {tuple(direction.shape)}; {lm.name} needs ({lm.d_model},)")
    if not torch.isfinite(direction).all() or direction.norm() == 0:
        raise ValueError("direction must be finite and non-zero")
    return direction / direction.norm()


def ablation(lm: "LoadedModel", direction: Tensor) -> hooks.HookSession:
    """Directional ablation at every layer and position (context manager, thread-scoped)."""
    return hooks.ablate(lm, _unit(direction, lm))


def addition(lm: "LoadedModel", direction: Tensor, layer: int, coeff: float = 1.0,
             scope: hooks.ScopeLike = "all") -> hooks.HookSession:
    """Activation addition of the unnormalised direction at one layer's block input (``coeff=-1`` subtracts)."""
    return hooks.steer(lm, hooks.Site(lm.check_layer(layer), "resid_pre"), direction, scale=coeff, scope=scope)


def _output_weights(lm: "LoadedModel") -> dict[str, nn.Linear]:
    """Matrices that write into the residual stream: each layer's attention-out and MLP-down projections."""
    found: dict[str, nn.Linear] = {}
    names = {id(m): n for n, m in lm.model.named_modules()}
    for layer in range(lm.n_layers):
        for parent in (lm.attn(layer), lm.mlp(layer)):
            last = [getattr(parent, n) for n in OUTPUT_PROJECTIONS if isinstance(getattr(parent, n, None), nn.Linear)]
            if len(last) != 1 or last[0].out_features != lm.d_model:
                raise ValueError(f"expected one output projection ({' or '.join(OUTPUT_PROJECTIONS)}) writing "
                                 f"d_model in {names[id(parent)]}; this architecture is not supported for "
                                 "orthogonalisation (use hook-based ablation instead)")
            found[names[id(last[0])]] = last[0]
    return found


@torch.no_grad()
def rank1_delta(lm: "LoadedModel", direction: Tensor) -> dict[str, Tensor]:
    """``u`` vectors of the rank-1 edits: embedding rows get ``−(E r̂) r̂ᵀ``, output matrices ``−r̂ (r̂ᵀ W)``."""
    unit = _unit(direction, lm)
    embed_w = lm.embed.weight.detach().float().cpu()  # [vocab, d]
    delta = {"direction": unit, "embed.u": -(embed_w @ unit)}  # ΔE = u ⊗ r̂ : [vocab] x [d]
    for name, linear in _output_weights(lm).items():
        weight = linear.weight.detach().float().cpu()  # [d, d_in]
        delta[f"{name}.u"] = -(unit @ weight)  # ΔW = r̂ ⊗ u : [d] x [d_in]
        if linear.bias is not None:
            delta[f"{name}.bias_u"] = -(linear.bias.detach().float().cpu() @ unit).reshape(1)
    return delta


def _copy_untied(lm: "LoadedModel") -> nn.Module:
    model = copy.deepcopy(lm.model)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and head.weight is embed.weight:
        head.weight = nn.Parameter(embed.weight.detach().clone())  # keep the unembedding unedited
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    return model


@torch.no_grad()
def _apply_delta_tensors(lm: "LoadedModel", delta: dict[str, Tensor], name: str) -> "LoadedModel":
    model = _copy_untied(lm)
    copy_lm = wrap_model(model, lm.tokenizer, name)
    unit = delta["direction"]
    embed = copy_lm.embed.weight
    embed += torch.outer(delta["embed.u"], unit).to(embed)
    modules = dict(model.named_modules())
    for key, u in delta.items():
        if key.endswith(".bias_u"):
            bias = modules[key[: -len(".bias_u")]].bias
            bias += (unit * u).to(bias)
        elif key.endswith(".u") and key != "embed.u":
            weight = modules[key[: -len(".u")]].weight
            weight += torch.outer(unit, u).to(weight)
    return copy_lm


def orthogonalize(lm: "LoadedModel", direction: Tensor) -> "LoadedModel":
    """A new ``LoadedModel`` (deep copy) with r̂ orthogonalised out of every residual-writing weight."""
    return _apply_delta_tensors(lm, rank1_delta(lm, direction), f"{lm.name}+orthogonalized")


@dataclass
class DeltaInfo:
    path: Path
    n_matrices: int
    bytes: int


def save_delta(lm: "LoadedModel", direction: Tensor, path: str | Path, **metadata) -> DeltaInfo:
    """Write ``path.safetensors`` (r̂ and one ``u`` per matrix) + ``path.json`` (format, fingerprint, metadata)."""
    base = Path(path).with_suffix("")
    delta = rank1_delta(lm, direction)
    with atomic.atomic_path(base.with_suffix(".safetensors")) as tmp:
        save_file({k: v.contiguous() for k, v in delta.items()}, str(tmp))
    atomic.write_json(base.with_suffix(".json"), {
        "format": DELTA_FORMAT, "version": 1, "model_fingerprint": lm.fingerprint, "model_name": lm.name,
        "d_model": lm.d_model, "matrices": sorted(k for k in delta if k != "direction"), "metadata": metadata})
    tensor_path = base.with_suffix(".safetensors")
    return DeltaInfo(tensor_path, len(delta) - 1, tensor_path.stat().st_size)


def apply_delta(lm: "LoadedModel", path: str | Path) -> "LoadedModel":
    """Rebuild the orthogonalised model from ``lm`` and a saved delta (checked against ``lm``)."""
    meta, meta_path, tensor_path = atomic.read_artifact_manifest(path, DELTA_FORMAT, "a rank-1 weight delta")
    if meta.get("model_fingerprint") != lm.fingerprint:
        raise ValueError(f"{meta_path} was made for model fingerprint {meta.get('model_fingerprint')}, but "
                         f"{lm.name} has {lm.fingerprint}; export the delta from this model")
    delta = load_file(str(tensor_path))
    if delta.get("direction") is None or delta["direction"].shape != (lm.d_model,):
        raise ValueError(f"{tensor_path}: 'direction' must have shape ({lm.d_model},)")
    if not all(torch.isfinite(t).all() for t in delta.values()):
        raise ValueError(f"{tensor_path} contains NaN or inf values")
    expected = set(rank1_delta_names(lm))
    if set(delta) != expected:
        raise ValueError(f"{tensor_path} does not match {lm.name}'s weights (missing "
                         f"{sorted(expected - set(delta))[:3]}, unexpected {sorted(set(delta) - expected)[:3]})")
    return _apply_delta_tensors(lm, delta, f"{lm.name}+delta")


def rank1_delta_names(lm: "LoadedModel") -> list[str]:
    names = ["direction", "embed.u"]
    for name, linear in _output_weights(lm).items():
        names.append(f"{name}.u")
        if linear.bias is not None:
            names.append(f"{name}.bias_u")
    return names
