"""Benchmark: recording resid_post of layer 10 on SmolLM2, 8x128 tokens, against HF / TransformerLens / nnsight.

(a) ours: workbench.hooks.record (stops after layer 10)      (b) HF forward over the full model (with LM head)
(c) HF forward truncated at layer 10 (the floor for any recorder)    (d) TransformerLens bridge run_with_cache
(e) nnsight trace with .save() and tracer.stop()
Also: store writing throughput (harvest, bytes/s) and raw shard write bytes/s. Writes bench/results/harvest.json.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved, write  # noqa: E402
from workbench import data, hooks  # noqa: E402
from workbench.hooks.nnsight_backend import nnsight_model, record_nnsight  # noqa: E402
from workbench.models import load_model  # noqa: E402
from workbench.store import StoreConfig, harvest  # noqa: E402

LAYER, BATCH, LENGTH = 10, 8, 128


def truncated_base(lm, layer: int):
    """The base transformer with only layers 0..layer (a shallow copy; shares weights, no final norm or LM head)."""
    base = lm.model.model
    trunc = copy.copy(base)
    trunc._modules = dict(base._modules)
    trunc.layers = torch.nn.ModuleList(list(base.layers)[: layer + 1])
    trunc.norm = torch.nn.Identity()
    return trunc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    data.fetch(progress=False)
    lm = load_model(args.model)
    tl_copy = load_model(args.model, device=lm.device)  # the bridge wraps its own copy
    from transformer_lens.model_bridge.sources.transformers import boot

    bridge = boot(args.model, hf_model=tl_copy.model, tokenizer=tl_copy.tokenizer, device=str(lm.device))
    text = " ".join(data.load_c4())
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"][0, : BATCH * LENGTH].view(BATCH, LENGTH).to(lm.device)
    mask = torch.ones_like(ids)
    site = f"blocks.{LAYER}.hook_resid_post"
    trunc = truncated_base(lm, LAYER)
    nnsight_model(lm)

    def ours():
        return hooks.record(lm, ids, [site])

    def hf_full():
        with torch.no_grad():
            return lm.model(input_ids=ids, attention_mask=mask, use_cache=False)

    def hf_truncated():
        with torch.no_grad():
            return trunc(input_ids=ids, attention_mask=mask, use_cache=False)

    def tl():
        with torch.no_grad():
            return bridge.run_with_cache(ids, names_filter=lambda name: name == site)

    def nns():
        return record_nnsight(lm, ids, [site])

    # correctness first: every method records the same tensor
    reference = ours()[site]
    torch.testing.assert_close(hf_truncated().last_hidden_state, reference, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(nns()[site], reference, atol=1e-4, rtol=1e-5)
    seconds = interleaved({"ours": ours, "hf_full": hf_full, "hf_truncated": hf_truncated, "tl": tl, "nnsight": nns},
                          repeats=args.repeats)
    tokens = BATCH * LENGTH
    tok_s = {name: tokens / s for name, s in seconds.items()}

    # store writing: full harvest (forward + write) and the raw shard write speed
    with tempfile.TemporaryDirectory() as scratch:
        config = StoreConfig(sites=[site], block_size=LENGTH, batch_size=BATCH, max_tokens=16 * BATCH * LENGTH,
                             shard_tokens=4 * BATCH * LENGTH)
        start = time.perf_counter()
        store = harvest(lm, data.load_c4(), Path(scratch) / "store", config, progress=False)
        harvest_s = time.perf_counter() - start
        store_bytes = sum(s["bytes"] for s in store.manifest["shards"])
        from safetensors.torch import save_file

        shard = {site: torch.randn(65_536, lm.d_model), "token_ids": torch.zeros(65_536, dtype=torch.int32)}
        start = time.perf_counter()
        save_file(shard, str(Path(scratch) / "raw.safetensors"))
        raw_s = time.perf_counter() - start
        raw_bytes = (Path(scratch) / "raw.safetensors").stat().st_size

    result = {
        "model": args.model, "layer": LAYER, "batch": BATCH, "seq_len": LENGTH, "repeats": args.repeats,
        "device": str(lm.device),
        "ours_tok_s": tok_s["ours"], "hf_full_tok_s": tok_s["hf_full"], "hf_truncated_tok_s": tok_s["hf_truncated"],
        "tl_tok_s": tok_s["tl"], "nnsight_tok_s": tok_s["nnsight"],
        "ratio_vs_truncated": tok_s["ours"] / tok_s["hf_truncated"], "ratio_vs_tl": tok_s["ours"] / tok_s["tl"],
        "ratio_vs_nnsight": tok_s["ours"] / tok_s["nnsight"], "ratio_vs_hf_full": tok_s["ours"] / tok_s["hf_full"],
        "goals": {"ratio_vs_truncated": ">= 0.95", "ratio_vs_tl": ">= 2"},
        "store_harvest_tok_s": store.n_tokens / harvest_s, "store_harvest_bytes_s": store_bytes / harvest_s,
        "store_raw_write_bytes_s": raw_bytes / raw_s,
    }
    print(write("harvest.json", result))
    for key in ("ours_tok_s", "hf_truncated_tok_s", "hf_full_tok_s", "tl_tok_s", "nnsight_tok_s",
                "ratio_vs_truncated", "ratio_vs_tl", "store_harvest_bytes_s"):
        print(f"{key:24s} {result[key]:.3f}")


if __name__ == "__main__":
    main()
