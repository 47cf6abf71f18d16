"""Rep2Text layer sweep on SmolLM2-135M-Instruct (target = decoder), sized for a shared 2-core CPU.

For each layer: train an adapter (by default with a LoRA on the decoder, which learned ~8x faster per step than a
frozen decoder here) on 16-token Wikipedia/C4 spans, then evaluate on held-out spans of
8/16/32 tokens and on out-of-distribution text (HumanEval code, jailbreak prompts) against two baselines that read
the same state (untrained adapter, logit lens). Results go to bench/results/rep2text.json after every layer, so a
run cut short still leaves what it finished. Checkpoints live in runs/rep2text/ (git-ignored); rerun to resume.

    .venv/bin/python bench/rep2text.py                                   # the committed "layers" sweep
    .venv/bin/python bench/rep2text.py --decoder-mode frozen --steps 250 --n-train 800 --result-key frozen_decoder_layers
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from probes.rep2text import Rep2TextConfig, evaluate, last_token_states, load_spans, train
from workbench import atomic
from workbench import data as wdata
from workbench.models import load_model

RESULTS = Path(__file__).parent / "results" / "rep2text.json"
PAPER = {"source": "Rep2Text (3B-8B targets)", "token_recovery_16": "about 0.5", "rouge1_16": "0.45-0.52"}


def loss_curve(losses: list[float], every: int = 100) -> list[float]:
    """Mean training loss over each block of ``every`` steps (shows whether the adapter is still learning)."""
    return [round(sum(chunk) / len(chunk), 4) for chunk in (losses[i:i + every] for i in range(0, len(losses), every))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, nargs="+", default=[6, 12, 18, 24])
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-eval", type=int, default=32)
    parser.add_argument("--n-ood", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--soft-tokens", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--decoder-mode", default="lora", choices=["frozen", "lora"])
    parser.add_argument("--max-seconds-per-layer", type=float, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="runs/rep2text")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-ood", action="store_true")
    parser.add_argument("--result-key", default="layers",
                        help="top-level key for per-layer results (e.g. 'extended_training' for a longer run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    wdata.fetch()
    lm = load_model(args.model)
    tok = lm.tokenizer
    t0 = time.monotonic()
    train_spans = load_spans(tok, args.n_train, 16, source="mixed", split="train")
    eval_spans = {n: load_spans(tok, args.n_eval, n, source="mixed", split="test", seed=1) for n in args.lengths}
    ood_spans = {} if args.no_ood else {src: load_spans(tok, args.n_ood, 16, source=src, split="all", seed=2)
                                        for src in ("code", "jailbreak")}
    train_states = last_token_states(lm, train_spans, args.layers)
    eval_states = {n: last_token_states(lm, s, args.layers) for n, s in eval_spans.items()}
    ood_states = {src: last_token_states(lm, s, args.layers) for src, s in ood_spans.items()}
    harvest_s = time.monotonic() - t0
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    sizes_key = "sizes" if args.result_key == "layers" else f"sizes_{args.result_key}"
    report.update({
        "model": args.model, "target_fingerprint": lm.fingerprint, "decoder": args.model, "paper": PAPER,
        sizes_key: {"n_train_spans": len(train_spans), "train_span_tokens": 16, "n_eval_per_length": args.n_eval,
                  "n_ood_per_source": args.n_ood, "steps": args.steps, "batch_size": args.batch_size,
                  "soft_tokens": args.soft_tokens, "lr": args.lr, "decoder_mode": args.decoder_mode,
                  "max_seconds_per_layer": args.max_seconds_per_layer, "harvest_seconds": round(harvest_s, 1),
                  "torch_threads": torch.get_num_threads()},
        "notes": ("token_recovery = position-wise exact token match / reference length; baselines read the same "
                  "last-token state: untrained adapter (same init) and logit lens (top-n tokens of the final-norm "
                  "unembedding). Adapter trained on 16-token spans only; 8/32 are length generalisation."),
    })
    report.setdefault(args.result_key, {})
    for layer in args.layers:
        cfg = Rep2TextConfig(layer=layer, n_soft_tokens=args.soft_tokens, steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr, decoder_mode=args.decoder_mode,
                             checkpoint_every=25)
        t1 = time.monotonic()
        inverter = train(lm, lm, train_spans, cfg, out_dir=f"{args.runs}/{args.decoder_mode}/L{layer}",
                         states=train_states[layer], max_seconds=args.max_seconds_per_layer)
        train_s = time.monotonic() - t1
        last10 = inverter.losses[-10:]
        entry = {"train": {"steps_done": inverter.train_steps, "steps_planned": args.steps,
                           "first_loss": inverter.losses[0] if inverter.losses else None,
                           "final_loss_mean_last10": round(sum(last10) / max(1, len(last10)), 4),
                           "seconds_this_run": round(train_s, 1),
                           "loss_mean_per_100_steps": loss_curve(inverter.losses)},
                 "lengths": {}, "ood": {}}
        for n, spans in eval_spans.items():
            entry["lengths"][str(n)] = evaluate(inverter, spans, states=eval_states[n][layer])
        for src, spans in ood_spans.items():
            entry["ood"][src] = evaluate(inverter, spans, states=ood_states[src][layer])
        entry["eval_seconds"] = round(time.monotonic() - t1 - train_s, 1)
        r16 = entry["lengths"].get("16")
        if r16:
            entry["ratio_token_recovery_vs_untrained_16"] = round(
                r16["token_recovery"] / max(r16["untrained_adapter"]["token_recovery"], 1e-4), 2)
            entry["ratio_rouge1_vs_logit_lens_16"] = round(r16["rouge1"] / max(r16["logit_lens"]["rouge1"], 1e-4), 2)
        report[args.result_key][str(layer)] = entry
        atomic.write_json(out, report)
        logging.info("layer %d: %s", layer, {k: v for k, v in (r16 or {}).items() if k in ("token_recovery", "rouge1")})


if __name__ == "__main__":
    main()
