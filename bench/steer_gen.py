"""Generation throughput with and without steering, and with 8 concurrent users sharing one model.

Writes ``bench/results/steer_gen.json``:

* ``single``: greedy generation of ``--new-tokens`` tokens (forced length) for one prompt, unsteered and steered
  (``SteeringVector.apply``, scope "all", at resid_post of the middle layer), interleaved trial by trial so load
  drift hits both alike; medians of tokens/s, and ``ratio`` = median over pairs of steered / unsteered tokens/s
  (issue goal >= 0.95).
* ``concurrent``: 8 threads on the shared model, each with its own steering vector, started together; aggregate
  tokens/s, against the same 8 requests served one after another, and against 8 unsteered threads. Also
  ``outputs_match_alone``: every concurrent output equals the same request run alone (the multi-user guarantee).

    .venv/bin/python bench/steer_gen.py [--model smollm2-135m-instruct] [--new-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

from steering.vector import SteeringVector
from workbench import atomic
from workbench.models import load_model

PROMPTS = ["Tell me about your favourite city.", "Explain how rainbows form.", "Write a short poem about tea.",
           "What should I cook tonight?", "Describe a walk in the forest.", "How do bicycles stay upright?",
           "Give me three tips for studying.", "What is the history of chess?"]


def generate_ids(lm, prompt: str, new_tokens: int) -> list[int]:
    from workbench.chat import render_prompt

    batch = lm.tokenize([render_prompt(lm.tokenizer, prompt)], add_special_tokens=False)
    with torch.no_grad():
        out = lm.model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id)
    return out[0, batch["input_ids"].shape[1]:].tolist()


def request(lm, prompt: str, vector: SteeringVector | None, new_tokens: int) -> list[int]:
    if vector is None:
        return generate_ids(lm, prompt, new_tokens)
    with vector.apply(lm):
        return generate_ids(lm, prompt, new_tokens)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def concurrent(lm, jobs, new_tokens: int) -> tuple[float, list]:
    """Run ``jobs`` [(prompt, vector)] in threads started together; returns (wall seconds, outputs)."""
    outputs: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs) + 1)

    def worker(i: int) -> None:
        barrier.wait()
        outputs[i] = request(lm, jobs[i][0], jobs[i][1], new_tokens)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: stable on a shared CPU; 0: leave torch's default)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "steer_gen.json"))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    layer = lm.n_layers // 2
    gen = torch.Generator().manual_seed(0)
    # Unit random directions scaled to a typical steering strength; the cost of a hook does not depend on its values.
    vectors = [SteeringVector(torch.randn(lm.d_model, generator=gen), f"resid_post.{layer}", model_fingerprint=lm.fingerprint)
               for _ in range(args.users)]
    vectors = [v * (args.scale / float(v.vector.norm())) for v in vectors]
    prompt = PROMPTS[0]

    request(lm, prompt, None, 4)  # warm-up
    request(lm, prompt, vectors[0], 4)
    plain_s, steered_s = [], []
    for r in range(args.repeats):
        order = [None, vectors[0]] if r % 2 == 0 else [vectors[0], None]
        for vec in order:
            seconds, _ = timed(lambda: request(lm, prompt, vec, args.new_tokens))
            (plain_s if vec is None else steered_s).append(seconds)
    plain_tps = args.new_tokens / statistics.median(plain_s)
    steered_tps = args.new_tokens / statistics.median(steered_s)
    # Each pair ran back to back, so the per-pair ratio cancels most of the load drift of a shared machine.
    pair_ratios = [p / s for p, s in zip(plain_s, steered_s)]

    jobs = [(PROMPTS[i % len(PROMPTS)], vectors[i]) for i in range(args.users)]
    alone = []
    start = time.perf_counter()
    for p, v in jobs:
        alone.append(request(lm, p, v, args.new_tokens))
    sequential_s = time.perf_counter() - start
    concurrent_s, together = concurrent(lm, jobs, args.new_tokens)
    unsteered_s, _ = concurrent(lm, [(p, None) for p, _ in jobs], args.new_tokens)
    total = args.users * args.new_tokens

    result = {
        "model": args.model, "device": str(lm.device), "dtype": str(lm.dtype), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()), "python": platform.python_version(),
        "site": f"blocks.{layer}.hook_resid_post", "new_tokens": args.new_tokens, "repeats": args.repeats,
        "single": {"unsteered_tok_s": round(plain_tps, 2), "steered_tok_s": round(steered_tps, 2),
                   "ratio_of_medians": round(steered_tps / plain_tps, 4),
                   "pair_ratios": [round(r, 4) for r in pair_ratios],
                   "unsteered_seconds": [round(s, 4) for s in plain_s],
                   "steered_seconds": [round(s, 4) for s in steered_s]},
        "ratio": round(statistics.median(pair_ratios), 4),
        "concurrent": {"users": args.users, "steered_tok_s": round(total / concurrent_s, 2),
                       "unsteered_tok_s": round(total / unsteered_s, 2),
                       "sequential_steered_tok_s": round(total / sequential_s, 2),
                       "speedup_vs_sequential": round(sequential_s / concurrent_s, 3),
                       "outputs_match_alone": together == alone},
        "note": "CPU timings on a machine shared with other jobs: compare numbers within this file only.",
    }
    atomic.write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
