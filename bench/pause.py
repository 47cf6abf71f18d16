"""Pause-token analysis on SmolLM2-135M-Instruct, staged to fit a shared 2-core CPU.

Stages (results are written to bench/results/pause.json after each, so a run cut short keeps what it finished):
 1. NIAH base vs pause-prompt at the short lengths;  2. attention mass (needle, pause tokens) with vs without pauses;
 3. LoRA pause-tuning on synthetic QA (C4 filler, a different needle template);  4. NIAH with the tuned model;
 5. longer lengths for all conditions;  6. multi-needle variant.  Stages after ``--stop-at`` (HH:MM, local) are skipped.
The comparison "in the same run" is pause_prompt / base and pause_tuned / base on identical haystacks and needles.

    .venv/bin/python bench/pause.py --stop-at 10:30      # defaults reproduce the committed pause.json
    .venv/bin/python bench/pause.py --distractors 0 --every 256 --depths 10 --trials 2 1  # single-needle (ceiling)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import torch

from probes.pause import PauseConfig, TuneConfig, case_attention, depths_grid, make_case, pause_tune, run_grid
from probes.pause import plots
from probes.pause.tune import synthetic_examples
from workbench import atomic
from workbench import data as wdata
from workbench.models import load_model

RESULTS = Path(__file__).parent / "results" / "pause.json"
PAPER = {"source": "pause-tuning (Llama-3.2-3B +10.6% avg NIAH, Llama-3.1-8B +3.6%; uneven: helps mid lengths, "
                   "hurts the longest, hurt 3B on multi-needle)"}


def mean_by_length(grid: dict) -> dict:
    out = {}
    for length, row in grid.items():
        vals = [v for v in row.values() if v is not None]
        out[length] = round(sum(vals) / len(vals), 4) if vals else None
    return out


GRID_KEYS = ("niah_base", "niah_pause_prompt", "niah_pause_tuned")


def summarise(report: dict) -> None:
    """Mean score per length per condition, and each pause condition's delta and ratio vs base (same haystacks)."""
    report["mean_by_length"] = {key: mean_by_length(report.get(key, {})) for key in GRID_KEYS}
    base = report["mean_by_length"]["niah_base"]
    report["delta_vs_base"], report["ratio_vs_base"] = {}, {}
    for key in GRID_KEYS[1:]:
        cond = report["mean_by_length"][key]
        common = [L for L in cond if base.get(L) is not None and cond[L] is not None]
        report["delta_vs_base"][key] = {L: round(cond[L] - base[L], 4) for L in common}
        report["ratio_vs_base"][key] = {L: round(cond[L] / base[L], 4) for L in common if base[L] > 0}


def write_grid_figs(report: dict, figs: Path) -> None:
    """NIAH heatmaps per condition and the lost-in-the-middle depth curves (plotly HTML)."""
    for key in GRID_KEYS:
        if report.get(key):
            plots.save_html(plots.niah_heatmap(report[key], title=key), figs / f"{key}.html")
    plots.save_html(plots.depth_curves({k: report[k] for k in GRID_KEYS if report.get(k)}),
                    figs / "depth_curves.html")


def merge(into: Path, other: Path, figs: Path | None = None) -> None:
    """Fold the grids, records and stage list of a parallel run (e.g. the 4k lengths) into ``into``."""
    report, extra = json.loads(into.read_text()), json.loads(other.read_text())
    for key in GRID_KEYS:
        for suffix in ("", "_fuzzy"):
            report.setdefault(key + suffix, {}).update(extra.get(key + suffix, {}))
        report.setdefault("records", {}).setdefault(key, []).extend(extra.get("records", {}).get(key, []))
    if "niah_multi" in extra:
        report["niah_multi"] = extra["niah_multi"]
    report["stages_done"] += [s for s in extra.get("stages_done", []) if s not in report["stages_done"]]
    report["seconds"].update(extra.get("seconds", {}))
    summarise(report)
    atomic.write_json(into, report)
    if figs is not None:
        write_grid_figs(report, figs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--short", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--long", type=int, nargs="*", default=[2048, 4096])
    parser.add_argument("--depths", type=int, default=15, help="needle depths, evenly 1/n..1 (paper: 15)")
    parser.add_argument("--trials", type=int, nargs=2, default=[3, 2], metavar=("SHORT", "LONG"),
                        help="trials per cell at lengths <= 1024 and above")
    parser.add_argument("--distractors", type=int, default=4,
                        help="needles for other keys in every haystack (harder: single-needle NIAH is at ceiling)")
    parser.add_argument("--every", type=int, default=400, help="pause every N tokens (paper: ~400-450)")
    parser.add_argument("--tune-steps", type=int, default=300)
    parser.add_argument("--tune-lengths", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--tune-distractors", type=int, default=None,
                        help="decoy needles in the tuning data (default: --distractors)")
    parser.add_argument("--tune-seconds", type=float, default=3600)
    parser.add_argument("--attn-length", type=int, default=1024)
    parser.add_argument("--multi-length", type=int, default=1024)
    parser.add_argument("--stop-at", default=None, help="HH:MM; later stages are skipped")
    parser.add_argument("--only", nargs="*", default=None, help="run only these stages (e.g. niah_4096_base)")
    parser.add_argument("--lora", default=None, help="use this saved pause LoRA instead of tuning")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="runs/pause")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--figs", default=str(RESULTS.parent / "pause_figs"), help="folder for the plotly figures")
    parser.add_argument("--merge", default=None, help="merge this parallel run's JSON into --out, then exit")
    args = parser.parse_args()
    if args.merge:
        merge(Path(args.out), Path(args.merge), Path(args.figs))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    stop = None
    if args.stop_at:
        h, m = map(int, args.stop_at.split(":"))
        stop = dt.datetime.now().replace(hour=h, minute=m, second=0)

    def time_left() -> bool:
        return stop is None or dt.datetime.now() < stop

    wdata.fetch()
    lm = load_model(args.model)
    hay = wdata.load_wikipedia()
    pause = PauseConfig(every_n_tokens=args.every)
    depths = depths_grid(args.depths)
    trials = {L: (args.trials[0] if L <= 1024 else args.trials[1]) for L in args.short + args.long}
    tune_distractors = args.distractors if args.tune_distractors is None else args.tune_distractors
    out = Path(args.out)
    figs = Path(args.figs)
    report: dict = {"model": args.model, "fingerprint": lm.fingerprint, "paper": PAPER,
                    "pause_config": {"marker": pause.marker, "every_n_tokens": pause.every_n_tokens},
                    "sizes": {"depths": depths, "trials_per_cell": trials, "haystack": "wikipedia",
                              "distractors": args.distractors,
                              "judge": "exact = digits verbatim; fuzzy = best difflib ratio of digit runs",
                              "torch_threads": args.threads},
                    "stages_done": [], "seconds": {}}
    for key in ("niah_base", "niah_pause_prompt", "niah_pause_tuned"):
        report[key], report[key + "_fuzzy"] = {}, {}

    def save() -> None:
        summarise(report)
        atomic.write_json(out, report)

    def grids(model, lengths, cond_pause, key) -> None:
        g = run_grid(model, hay, lengths, depths, trials, pause=cond_pause, distractors=args.distractors)
        report[key].update(g["exact"])
        report[key + "_fuzzy"].update(g["fuzzy"])
        kept = [r for r in report.setdefault("records", {}).get(key, []) if r["length"] not in lengths]
        report["records"][key] = kept + g["records"]  # a re-run stage replaces its lengths' records

    def stage(name, fn) -> None:
        if args.only is not None and name not in args.only:
            return
        if not time_left():
            logging.warning("skipping stage %s (past --stop-at)", name)
            report.setdefault("stages_skipped", []).append(name)
            save()
            return
        t0 = time.monotonic()
        fn()
        report["seconds"][name] = round(time.monotonic() - t0, 1)
        report["stages_done"].append(name)
        save()
        logging.info("stage %s done in %.0fs", name, report["seconds"][name])

    stage("niah_short_base", lambda: grids(lm, args.short, None, "niah_base"))
    stage("niah_short_pause", lambda: grids(lm, args.short, pause, "niah_pause_prompt"))

    def attention() -> None:
        acc: dict = {}
        for depth in (0.1, 0.5, 0.9):
            for cond, cfg in (("base", None), ("pause", pause)):
                case = make_case(lm, hay, args.attn_length, depth, seed=0, pause=cfg)
                a = case_attention(lm, case, pause.marker if cfg else None)
                for k in ("needle", "pause"):
                    acc.setdefault(f"{k}_{cond}", []).append(a[k])
                acc.setdefault(f"uniform_needle_{cond}", []).append(a["uniform_needle"])
                acc.setdefault(f"uniform_pause_{cond}", []).append(a["uniform_pause"])
        per_head = {k: torch.stack(v).mean(0) for k, v in acc.items() if not k.startswith("uniform")}
        report["attn_mass_pause"] = {str(layer): round(float(v), 5)
                                     for layer, v in enumerate(per_head["pause_pause"].mean(-1))}
        report["attn_mass_needle_base"] = {str(layer): round(float(v), 5)
                                           for layer, v in enumerate(per_head["needle_base"].mean(-1))}
        report["attn_mass_needle_pause"] = {str(layer): round(float(v), 5)
                                            for layer, v in enumerate(per_head["needle_pause"].mean(-1))}
        report["attn_uniform"] = {k: round(sum(v) / len(v), 5) for k, v in acc.items() if k.startswith("uniform")}
        report["attn_per_head"] = {k: [[round(float(x), 5) for x in row] for row in v] for k, v in per_head.items()
                                   if k in ("pause_pause", "needle_base", "needle_pause")}
        report["attn_setup"] = {"length": args.attn_length, "depths": [0.1, 0.5, 0.9],
                                "queries": "question tokens through the generation prompt",
                                "mass": "sum over key set of attention prob, mean over queries, mean over heads"}
        fig = plots.mass_by_layer({"needle, no pauses": list(report["attn_mass_needle_base"].values()),
                                   "needle, with pauses": list(report["attn_mass_needle_pause"].values()),
                                   "pause tokens": list(report["attn_mass_pause"].values())},
                                  reference={"pause": report["attn_uniform"]["uniform_pause_pause"]})
        plots.save_html(fig, figs / "attention_by_layer.html")

    stage("attention", attention)

    tuned = {}

    def tune() -> None:
        cfg = TuneConfig(steps=args.tune_steps, lengths=tuple(args.tune_lengths), pause=pause,
                         distractors=tune_distractors)
        examples = synthetic_examples(lm, wdata.load_c4(), args.tune_steps, cfg)
        model, summary = pause_tune(lm, examples, cfg, out_dir=Path(args.runs) / "lora",
                                    max_seconds=args.tune_seconds)
        tuned["lm"] = model
        report["tune"] = {k: v for k, v in summary.items() if k != "config"} | {
            "config": summary["config"],
            "data": f"synthetic access-code QA on C4 filler with pauses and {tune_distractors} decoy codes, batch 1, "
                    "one fresh example per step"}

    if args.lora:
        from probes.pause import load_pause_lora

        tuned["lm"] = load_pause_lora(args.lora, lm)
    else:
        stage("pause_tune", tune)
    if "lm" in tuned:
        stage("niah_short_tuned", lambda: grids(tuned["lm"], args.short, pause, "niah_pause_tuned"))

    def multi() -> None:
        res = {}
        conds = [("base", lm, None), ("pause_prompt", lm, pause)] + ([("pause_tuned", tuned["lm"], pause)]
                                                                     if "lm" in tuned else [])
        for name, model, cfg in conds:
            g = run_grid(model, hay, [args.multi_length], depths, 1, pause=cfg, n_needles=3)
            res[name] = {"exact": g["exact"], "fuzzy": g["fuzzy"], "mean": mean_by_length(g["exact"])}
        report["niah_multi"] = res | {"n_needles": 3, "length": args.multi_length,
                                      "score": "fraction of the 3 numbers recovered verbatim"}

    def long(length: int) -> None:
        stage(f"niah_{length}_base", lambda: grids(lm, [length], None, "niah_base"))
        stage(f"niah_{length}_pause", lambda: grids(lm, [length], pause, "niah_pause_prompt"))
        if "lm" in tuned:
            stage(f"niah_{length}_tuned", lambda: grids(tuned["lm"], [length], pause, "niah_pause_tuned"))

    for length in args.long[:1]:
        long(length)
    stage("multi_needle", multi)
    for length in args.long[1:]:
        long(length)
    write_grid_figs(report, figs)
    save()


if __name__ == "__main__":
    main()
