"""Baseline A — static neuron attribution: the MLP neuron whose output weights decode most to "C++" tokens.

Score of neuron ``j`` in layer ``l``: its output direction ``w = W_down[:, j]``, passed through the final norm's gain
and the unembedding, minus the vocabulary mean: ``mean_t U[t]·(g⊙w) − mean_v U[v]·(g⊙w)`` over the target tokens
``t`` (single-token spellings of "C++"/"cpp"/"CPP"; all their tokens when none is a single token). The top neuron
is amplified during generation: its activation ``a`` becomes ``gain * a + boost``. The hook recomputes ``a`` from the
MLP input (``post_attention_layernorm(resid_pre + attn_out)``, Llama/Qwen-style gated MLP) and adds
``(new − a) * w`` to ``mlp_out`` — all through ``workbench.hooks`` (thread-scoped, removed on exit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from workbench import hooks

TARGET_STRINGS = {"cpp": ("C++", " C++", "cpp", " cpp", "CPP", " CPP", "Cpp"),
                  "python": ("Python", " Python", "python", " python"),
                  "java": ("Java", " Java", "java", " java"),
                  "julia": ("Julia", " Julia", "julia", " julia")}


def target_token_ids(tokenizer, strings: tuple[str, ...]) -> list[int]:
    encoded = [tokenizer.encode(s, add_special_tokens=False) for s in strings]
    single = sorted({ids[0] for ids in encoded if len(ids) == 1})
    return single or sorted({i for ids in encoded for i in ids})


def _mlp_parts(lm, layer: int):
    block, mlp = lm.layers[layer], lm.mlp(layer)
    needed = ("gate_proj", "up_proj", "down_proj", "act_fn")
    if not all(hasattr(mlp, n) for n in needed) or not hasattr(block, "post_attention_layernorm"):
        raise ValueError(f"{lm.name}: static neuron steering needs a gated MLP ({', '.join(needed)}) and "
                         "post_attention_layernorm (Llama/Qwen-style); this architecture has a different MLP")
    return block.post_attention_layernorm, mlp


@dataclass(frozen=True)
class Neuron:
    layer: int
    index: int
    score: float


@torch.no_grad()
def top_neurons(lm, target: str = "cpp", n: int = 5) -> list[Neuron]:
    """The ``n`` highest-scoring MLP neurons over all layers for ``target``'s tokens."""
    ids = target_token_ids(lm.tokenizer, TARGET_STRINGS[target])
    U_VD = lm.unembed.weight.float()
    gain_D = getattr(lm.final_norm, "weight", None)
    gain_D = torch.ones(lm.d_model) if gain_D is None else gain_D.float()
    probe_D = U_VD[ids].mean(0) - U_VD.mean(0)  # [d]: target tokens minus the vocabulary mean
    found = []
    for layer in range(lm.n_layers):
        _, mlp = _mlp_parts(lm, layer)
        W_DF = mlp.down_proj.weight.float()  # [d_model, d_mlp]
        scores_F = (probe_D * gain_D) @ W_DF
        top = scores_F.topk(min(n, scores_F.numel()))
        found += [Neuron(layer, int(i), float(s)) for s, i in zip(top.values, top.indices)]
    return sorted(found, key=lambda x: -x.score)[:n]


@dataclass
class StaticNeuron:
    neuron: Neuron
    gain: float = 1.0
    boost: float = 10.0
    """The neuron's activation becomes ``gain * a + boost``."""

    def steer(self, lm) -> hooks.HookSession:
        layer, j = self.neuron.layer, self.neuron.index
        norm, mlp = _mlp_parts(lm, layer)
        if j >= mlp.down_proj.weight.shape[1]:
            raise ValueError(f"neuron {j} does not exist in layer {layer} of {lm.name}")
        w_gate, w_up, w_out = mlp.gate_proj.weight[j], mlp.up_proj.weight[j], mlp.down_proj.weight[:, j]
        seen: dict[str, Tensor] = {}

        def keep(name: str):
            def run(acts: Tensor, ctx) -> None:
                seen[name] = acts
                return None
            return run

        def amplify(acts: Tensor, ctx) -> Tensor:
            x = norm(seen["pre"] + seen["attn"])
            a = mlp.act_fn(x @ w_gate) * (x @ w_up)  # [batch, pos]
            new = self.gain * a + self.boost
            return acts + ((new - a)[..., None] * w_out).to(acts.dtype)

        return hooks.intervene(lm, [hooks.Apply(site=f"blocks.{layer}.hook_resid_pre", fn=keep("pre")),
                                    hooks.Apply(site=f"blocks.{layer}.hook_attn_out", fn=keep("attn")),
                                    hooks.Apply(site=f"blocks.{layer}.hook_mlp_out", fn=amplify)])
