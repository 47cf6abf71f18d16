"""FAST vs block training (BT(P), BT(F)) on SmolLM2-135M-Instruct: 3 layers x 3 data regimes, equal token budget.

    .venv/bin/python -m saes.experiments.fast_vs_bt                 # all stages; idempotent, resumes after a kill
    .venv/bin/python -m saes.experiments.fast_vs_bt --stage harvest # just the activation stores

Regimes (METHODS.md §1; everything else identical: SAE, budget, layer, seed, hyperparameters):
- BT(P): C4 + Wikipedia text, packed into blocks of ``block_size``;
- BT(F): Alpaca conversations rendered with the chat template, packed;
- FAST: the same conversations, one per row, truncated at ``block_size``.
Evaluation is on held-out Alpaca conversations (test split), one per row. Artifacts go to ``runs/fast_vs_bt/``
(git-ignored); the summary to ``bench/results/fast_vs_bt.json`` and plots to ``bench/results/fast_vs_bt.html``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from saes.config import SAEConfig, TrainConfig
from saes.evaluate import reconstruction_metrics, spliced_lm_metrics
from saes.features import inspect_features, sample_live_features
from saes.intervention import special_token_sweep
from saes.io import load_sae
from saes.pipeline import train_from_store
from saes.scoring import OfflineProxyScorer, score_features
from workbench import atomic, data
from workbench.chat import SPECIAL
from workbench.store import ActivationStore, StoreConfig, harvest

logger = logging.getLogger("fast_vs_bt")
REGIMES = ("BT(P)", "BT(F)", "FAST")
SLUG = {"BT(P)": "bt_p", "BT(F)": "bt_f", "FAST": "fast"}


@dataclass
class ExperimentConfig:
    model: str = "smollm2-135m-instruct"
    layers: tuple[int, ...] = (6, 15, 24)
    """Early / middle / late residual stream (resid_post) of the 30-layer model."""
    budget_tokens: int = 65_536
    """Training tokens per SAE, identical for every regime (paper: 40.96M; this is a CPU-sized run)."""
    block_size: int = 256
    """Packed block length for BT(P)/BT(F) and truncation length for FAST (paper: 2048)."""
    heldout_conversations: int = 64
    ce_conversations: int = 12
    architecture: str = "standard"
    k: int = 64
    """Active latents for the topk variant (fixes L0 across regimes, so MSE is compared at equal sparsity)."""
    expansion: int = 8
    batch_size: int = 512
    lr: float = 1e-3
    """Higher than the paper's 7e-5 because this run has ~128 steps instead of ~10k."""
    lr_end: float = 1e-4
    l1_coefficient: float = 5.0
    l0_coefficient: float = 0.01
    sparsity_warmup_steps: int = 20
    min_position: int = 1
    """Leave out position 0 of every row in training and in the headline metrics: it is an attention sink with a
    residual norm ~140x the median at layers 15/24 (~7x at layer 6); ``*_incl_pos0`` metrics keep it."""
    seed: int = 0
    threads: int = 1
    run_dir: str = "runs/fast_vs_bt"
    out_json: str = "bench/results/fast_vs_bt.json"
    chat_data: str | None = None
    """Local JSON/JSONL conversations (workbench.local_data) for BT(F)/FAST and the held-out set, instead of the
    offline Alpaca demo (999 conversations, ~130k FAST tokens): the way to reach millions of tokens per SAE."""
    text_data: str | None = None
    """Local documents for BT(P) instead of the offline C4 + Wikipedia demo (~400k tokens)."""
    intervention_prompts: int = 48
    alphas: tuple[float, ...] = (0, 10, 25, 50, 100, 200)
    notes: list[str] = field(default_factory=list)

    @property
    def sites(self) -> list[str]:
        return [f"blocks.{layer}.hook_resid_post" for layer in self.layers]


def chat_corpus(cfg: ExperimentConfig) -> tuple[list, list, list]:
    """(train, val, test) conversations: ``cfg.chat_data`` if given, else the offline Alpaca demo."""
    from workbench.local_data import load_conversations

    if cfg.chat_data is not None:
        conversations = load_conversations(cfg.chat_data)
    else:
        data.fetch()
        conversations = [data.to_chat(x, with_response=True) for x in data.load_alpaca()]
    return data.split(conversations, seed=cfg.seed)


def _examples(cfg: ExperimentConfig) -> dict[str, list]:
    """Training rows per regime plus the held-out conversations (test split of the same chat corpus)."""
    from workbench.local_data import load_texts

    train, _, test = chat_corpus(cfg)
    if cfg.text_data is not None:
        texts = load_texts(cfg.text_data)
    else:
        data.fetch()
        texts = list(data.load_c4()) + list(data.load_wikipedia())
    random.Random(cfg.seed).shuffle(texts)
    return {"BT(P)": texts, "BT(F)": train, "FAST": train, "heldout": test[:cfg.heldout_conversations]}


def stage_harvest(cfg: ExperimentConfig, lm, regimes: tuple[str, ...] = (*REGIMES, "heldout")
                  ) -> dict[str, ActivationStore]:
    run = Path(cfg.run_dir)
    examples = _examples(cfg)
    stores = {}
    for regime in regimes:
        formatting = "packed" if regime.startswith("BT") else "sequence"
        max_tokens = cfg.budget_tokens if regime != "heldout" else 10_000_000
        sc = StoreConfig(sites=cfg.sites, formatting=formatting, block_size=cfg.block_size, max_tokens=max_tokens,
                         batch_size=8, shard_tokens=16_384, dataset=regime)
        t0 = time.perf_counter()
        stores[regime] = harvest(lm, examples[regime], run / "stores" / SLUG.get(regime, regime), sc)
        logger.info("%s store: %d tokens (%.0f s)", regime, stores[regime].n_tokens, time.perf_counter() - t0)
    return stores


def _sae_dir(cfg: ExperimentConfig, regime: str, layer: int) -> Path:
    return Path(cfg.run_dir) / "saes" / f"{cfg.architecture}_L{layer}_{SLUG[regime]}"


def usable_tokens(store: ActivationStore, min_position: int) -> int:
    return store.n_tokens - store.manifest["n_units"] * min_position


def train_budget(cfg: ExperimentConfig, stores: dict[str, ActivationStore]) -> int:
    """Tokens per SAE: ``budget_tokens``, lowered to what the smallest regime store holds (one pass, whole
    batches) so every regime trains on the same number of tokens without repeating data. The offline chat corpus
    (999 Alpaca conversations) caps FAST at ~130k tokens."""
    regimes = [r for r in REGIMES if r in stores]
    smallest = min(regimes, key=lambda r: usable_tokens(stores[r], cfg.min_position))
    limit = usable_tokens(stores[smallest], cfg.min_position) // cfg.batch_size * cfg.batch_size
    if limit < cfg.budget_tokens:
        logger.warning("budget lowered from %d to %d tokens per SAE: the %s store holds only %d usable tokens "
                       "(same budget for every regime, no repeated data)", cfg.budget_tokens, limit, smallest,
                       usable_tokens(stores[smallest], cfg.min_position))
    if limit < cfg.batch_size * 4:
        raise ValueError(f"the {smallest} store is too small to train on ({limit} tokens); harvest more data")
    return min(cfg.budget_tokens, limit)


def stage_train(cfg: ExperimentConfig, stores: dict[str, ActivationStore], d_model: int, budget: int) -> dict:
    timings = {}
    for layer, site in zip(cfg.layers, cfg.sites):
        for regime in [r for r in REGIMES if r in stores]:
            out = _sae_dir(cfg, regime, layer)
            if (out / "cfg.json").exists():
                continue
            sae_cfg = SAEConfig(d_in=d_model, d_sae=cfg.expansion * d_model, architecture=cfg.architecture, k=cfg.k)
            tc = TrainConfig(total_tokens=budget, batch_size=cfg.batch_size, lr=cfg.lr, lr_end=cfg.lr_end,
                             l1_coefficient=cfg.l1_coefficient, l0_coefficient=cfg.l0_coefficient,
                             sparsity_warmup_steps=cfg.sparsity_warmup_steps, seed=cfg.seed,
                             dead_window_tokens=budget // 4,
                             checkpoint_every_steps=max(32, budget // cfg.batch_size // 10))
            t0 = time.perf_counter()
            train_from_store(stores[regime], sae_cfg, tc, out, site=site, regime=regime,
                             checkpoint_dir=Path(cfg.run_dir) / "ckpt" / out.name, buffer_tokens=16_384,
                             min_position=cfg.min_position)
            timings[out.name] = round(time.perf_counter() - t0, 1)
            logger.info("trained %s in %.0f s", out.name, timings[out.name])
    return timings


def stage_eval(cfg: ExperimentConfig, stores: dict[str, ActivationStore], lm) -> dict:
    held = stores["heldout"]
    results: dict[str, dict[str, dict]] = {}
    saes = {}
    for layer, site in zip(cfg.layers, cfg.sites):
        results[f"layer_{layer}"] = {}
        for regime in REGIMES:
            sae, meta = load_sae(_sae_dir(cfg, regime, layer), expect_fingerprint=lm.fingerprint)
            saes[(layer, regime)] = (sae, site)
            skip = cfg.min_position
            m = reconstruction_metrics(sae, held.sequences(site), skip_first=skip)
            m_all = reconstruction_metrics(sae, held.sequences(site))
            m.update({f"{k}_incl_pos0": m_all[k] for k in ("mse", "special_mse", "content_mse", "fvu")})
            m_special = reconstruction_metrics(sae, held.sequences(site), special_bits=SPECIAL, skip_first=skip)
            m["special_token_only_mse"] = m_special["special_mse"]
            report = inspect_features(sae, held.sequences(site), top_k=5)
            feats = report.to_json(sample_live_features(report, n=128, seed=cfg.seed), tokenizer=lm.tokenizer)
            proxy = score_features(OfflineProxyScorer(), feats["features"])
            m["interp_proxy_mean"] = proxy["mean"]
            m["interp_proxy_top_range_frac"] = proxy["top_range_frac"]
            m["train_stats"] = {k: meta.stats.get(k) for k in ("tokens", "steps", "dead_frac_train", "l0_train")}
            results[f"layer_{layer}"][regime] = m
            logger.info("L%d %s: log2 mse %.3f special %.3f content %.3f fvu %.3f l0 %.1f", layer, regime,
                        m["log2_mse"], m["log2_special_mse"], m["log2_content_mse"], m["fvu"], m["l0"])
    seqs = [s.token_ids for _, s in zip(range(cfg.ce_conversations), held.sequences(cfg.sites[0]))]
    t0 = time.perf_counter()
    lm_metrics = spliced_lm_metrics(lm, {f"{layer}|{regime}": v for (layer, regime), v in saes.items()}, seqs,
                                    batch_size=4, scope=slice(cfg.min_position, None) if cfg.min_position else "all")
    logger.info("CE/KL for %d SAEs in %.0f s", len(saes), time.perf_counter() - t0)
    for key, m in lm_metrics.items():
        layer, regime = key.split("|")
        results[f"layer_{layer}"][regime].update(m)
    return results


def stage_intervene(cfg: ExperimentConfig, stores: dict[str, ActivationStore], lm) -> dict:
    _, val, _ = chat_corpus(cfg)
    prompts = [next(m["content"] for m in conv if m["role"] == "user") for conv in val]
    discover, test = prompts[:cfg.intervention_prompts], prompts[-3:]
    layer = cfg.layers[len(cfg.layers) // 2]
    out = {}
    for regime in REGIMES:
        sae, _ = load_sae(_sae_dir(cfg, regime, layer), expect_fingerprint=lm.fingerprint)
        out[regime] = special_token_sweep(lm, sae, f"blocks.{layer}.hook_resid_post", discover, test,
                                          alphas=cfg.alphas, max_new_tokens=24)
    return {"layer": layer, "by_regime": out}


def summarize(results: dict) -> dict:
    summary = {}
    for layer, by_regime in results.items():
        s = {r: by_regime[r]["special_mse"] for r in REGIMES}
        summary[layer] = {
            "fast_beats_btf_special_mse": s["FAST"] < s["BT(F)"],
            "fast_beats_btp_special_mse": s["FAST"] < s["BT(P)"],
            "fast_beats_btf_mse": by_regime["FAST"]["mse"] < by_regime["BT(F)"]["mse"],
            "fast_beats_btp_mse": by_regime["FAST"]["mse"] < by_regime["BT(P)"]["mse"],
            "log2_special_mse": {r: math.log2(v) for r, v in s.items()},
        }
        for variant in ("special_mse_incl_pos0", "special_token_only_mse"):
            if all(variant in by_regime[r] for r in REGIMES):
                v = {r: by_regime[r][variant] for r in REGIMES}
                summary[layer][f"fast_beats_btf_{variant}"] = v["FAST"] < v["BT(F)"]
                summary[layer][f"fast_beats_btp_{variant}"] = v["FAST"] < v["BT(P)"]
    return summary


def make_figure(results: dict, title_suffix: str = ""):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [("log2_special_mse", "log2 special-token MSE"), ("log2_content_mse", "log2 content MSE"),
               ("log2_mse", "log2 MSE (per conversation)"), ("fvu", "FVU"), ("ce_score", "CE-loss score"),
               ("l0", "L0")]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in metrics])
    layers = list(results)
    colors = {"BT(P)": "#636efa", "BT(F)": "#ef553b", "FAST": "#00cc96"}
    for i, (key, _) in enumerate(metrics):
        for regime in REGIMES:
            fig.add_trace(go.Bar(name=regime, x=layers, y=[results[l][regime].get(key) for l in layers],
                                 marker_color=colors[regime], showlegend=i == 0, legendgroup=regime),
                          row=i // 3 + 1, col=i % 3 + 1)
    fig.update_layout(barmode="group", height=700,
                      title=f"FAST vs BT(F) vs BT(P) on SmolLM2-135M-Instruct (held-out Alpaca){title_suffix}")
    return fig


def write_plots(results: dict, path: Path, title_suffix: str = "") -> None:
    with atomic.atomic_path(path) as tmp:
        make_figure(results, title_suffix).write_html(str(tmp), include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("harvest", "train", "eval", "all", "combine"), default="all")
    parser.add_argument("--budget-tokens", type=int, default=ExperimentConfig.budget_tokens)
    parser.add_argument("--architecture", default="standard", choices=("standard", "jumprelu", "topk"))
    parser.add_argument("--no-intervention", action="store_true")
    parser.add_argument("--run-dir", default=ExperimentConfig.run_dir,
                        help="stores, SAEs and checkpoints (a different budget needs its own folder)")
    parser.add_argument("--out-json", default=ExperimentConfig.out_json)
    parser.add_argument("--threads", type=int, default=ExperimentConfig.threads)
    parser.add_argument("--chat-data", default=None,
                        help="JSON/JSONL conversations (messages / ShareGPT / Alpaca rows) for BT(F), FAST and the "
                             "held-out set; default: the offline Alpaca demo")
    parser.add_argument("--text-data", default=None, help="documents (.txt lines or JSON/JSONL 'text') for BT(P)")
    parser.add_argument("--regimes", default=",".join((*REGIMES, "heldout")),
                        help="with --stage harvest/train: only these stores/SAEs (to pipeline stages across processes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = ExperimentConfig(budget_tokens=args.budget_tokens, architecture=args.architecture, run_dir=args.run_dir,
                           out_json=args.out_json, threads=args.threads, chat_data=args.chat_data,
                           text_data=args.text_data)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if args.stage == "combine":
        combine(cfg)
        return 0
    from workbench.models import load_model
    lm = load_model(cfg.model)
    t_start = time.perf_counter()
    timings = {}
    t0 = time.perf_counter()
    regimes = tuple(args.regimes.split(",")) if args.stage in ("harvest", "train") else (*REGIMES, "heldout")
    stores = stage_harvest(cfg, lm, regimes)
    timings["harvest_s"] = round(time.perf_counter() - t0, 1)
    if args.stage == "harvest":
        return 0
    t0 = time.perf_counter()
    budget = train_budget(cfg, stores)
    timings["train_s_per_sae"] = stage_train(cfg, stores, lm.d_model, budget)
    timings["train_s"] = round(time.perf_counter() - t0, 1)
    if args.stage == "train":
        return 0
    t0 = time.perf_counter()
    results = stage_eval(cfg, stores, lm)
    timings["eval_s"] = round(time.perf_counter() - t0, 1)
    intervention = None
    if not args.no_intervention:
        t0 = time.perf_counter()
        intervention = stage_intervene(cfg, stores, lm)
        timings["intervention_s"] = round(time.perf_counter() - t0, 1)
    timings["total_s_this_invocation"] = round(time.perf_counter() - t_start, 1)
    out = {
        "experiment": "FAST vs BT(F) vs BT(P) SAEs (METHODS.md §1)",
        "model": cfg.model, "model_fingerprint": lm.fingerprint,
        "budget_tokens_per_sae": budget,
        "budget_tokens_requested": cfg.budget_tokens,
        "store_tokens": {r: stores[r].n_tokens for r in stores},
        "config": {k: v for k, v in asdict(cfg).items() if k != "notes"},
        "metric_definitions": {
            "mse": "squared error per element, averaged over tokens within each held-out conversation, then over "
                   "conversations",
            "special_mse": "same, over chat-template tokens only (flag TEMPLATE: <|im_start|>, <|im_end|>, role "
                           "words, newlines, the injected default system prompt)",
            "content_mse": "same, over all other tokens",
            "fvu": "sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean(x)||^2 over all held-out tokens",
            "ce_score": "(CE_zero_ablated - CE_sae) / (CE_zero_ablated - CE_clean), SAE spliced in at the site",
            "kl": "mean over tokens of KL(p_clean || p_sae)",
            "special_token_only_mse": "special_mse restricted to tokenizer special tokens (<|im_start|>, "
                                      "<|im_end|>; flag SPECIAL), without role words or system-prompt text",
            "position_0": "all headline metrics leave out position 0 of each conversation (<|im_start|>, an "
                          "attention sink whose norm is ~140x the median); SAEs are trained without position 0 in "
                          "every regime; the LM metrics splice the SAE (and the zero ablation) in at positions >= 1",
            "*_incl_pos0": "the same metric including position 0",
            "interp_proxy_*": "OFFLINE PROXY, not an LLM judge: consistency of the top-5 contexts of 128 sampled "
                              "live features (saes.scoring.OfflineProxyScorer); not comparable to the paper",
        },
        "results": results,
        "summary": summarize(results),
        "intervention": intervention,
        "timings": timings,
        "threads": cfg.threads,
    }
    atomic.write_json(Path(cfg.run_dir) / f"results_{cfg.architecture}.json", out)
    combine(cfg)
    return 0


def combine(cfg: ExperimentConfig) -> Path:
    """Write bench/results/fast_vs_bt.json: this invocation's architecture as the headline (else the standard
    ReLU+L1 run), every ``results_*.json`` of the run folder under ``by_architecture``; plots per entry in the HTML
    next to it."""
    runs = {}
    for path in sorted(Path(cfg.run_dir).glob("results_*.json")):
        runs[path.stem.removeprefix("results_")] = json.loads(path.read_text())
    if not runs:
        raise FileNotFoundError(f"no results_*.json in {cfg.run_dir}; run the experiment first")
    head = runs.get(cfg.architecture) or runs.get("standard") or next(iter(runs.values()))
    out = {**head, "by_architecture": {arch: {"results": r["results"], "summary": r["summary"],
                                              "config": r["config"], "timings": r["timings"]}
                                       for arch, r in runs.items()}}
    out_path = Path(cfg.out_json)
    atomic.write_json(out_path, out)
    parts = [make_figure(r["results"], f" — {arch}").to_html(full_html=False,
                                                              include_plotlyjs="cdn" if i == 0 else False)
             for i, (arch, r) in enumerate(runs.items())]
    html = "<html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>"
    atomic.write_bytes(out_path.with_suffix(".html"), html.encode())
    logger.info("wrote %s", out_path)
    return out_path


if __name__ == "__main__":
    raise SystemExit(main())
