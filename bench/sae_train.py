"""Benchmark: SAE training throughput, ours (saes.trainer) vs sae-lens's SAETrainer, same activations, same run.

Both trainers get the same in-memory batches of stored SmolLM2 activations (layer 15 resid_post; the BT(P) store of
saes/experiments/fast_vs_bt.py when present, else a small store harvested here), the same architecture, d_sae, batch
size, learning rate and step count. Each timed call builds a fresh trainer and runs ``--steps`` steps; calls run
round-robin (bench.common.interleaved) so machine noise hits both alike. Our timing includes our initialisation
(input-scale estimate + geometric-median b_dec on the first batch); sae-lens's SAETrainer does neither.

Writes bench/results/sae_train.json: ``ours_tok_s``, ``saelens_tok_s``, ``ratio`` for the headline architecture
(TopK) and the same keys per architecture under ``per_architecture``.

``--warm-start DIR`` (a trained ReLU SAE in SAELens layout) also times *steady-state* ReLU training: both trainers
start from the same trained weights, with the encoder bias shifted to give each active fraction in
``--densities`` (a from-init run is ~50% active for its first steps, a trained one a few percent or less; our
trainer switches to its sparse path below ``TrainConfig.sparse_below_density``). Reported under
``standard_steady_state``, one entry per density.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved, write  # noqa: E402
from saes.config import SAEConfig, TrainConfig  # noqa: E402
from saes.trainer import SAETrainer  # noqa: E402

SITE = "blocks.15.hook_resid_post"
EXPERIMENT_STORE = Path("runs/fast_vs_bt/stores/bt_p")


def load_batches(n_batches: int, batch_size: int) -> tuple[list[torch.Tensor], str]:
    from workbench.store import ActivationStore, StoreConfig, harvest
    if (EXPERIMENT_STORE / "manifest.json").exists():
        try:
            store = ActivationStore.open(EXPERIMENT_STORE)
        except ValueError:
            store = None
    else:
        store = None
    if store is None or SITE not in store.sites or store.n_tokens < n_batches * batch_size:
        from workbench import data
        from workbench.models import load_model
        data.fetch()
        lm = load_model("smollm2-135m-instruct")
        folder = Path(tempfile.mkdtemp(prefix="sae_bench_store_"))
        store = harvest(lm, data.load_c4(), folder, StoreConfig(sites=[SITE], formatting="packed",
                                                                max_tokens=n_batches * batch_size))
    batches = [b.clone() for _, b in zip(range(n_batches), store.batches(SITE, batch_size=batch_size, seed=0))]
    if len(batches) < n_batches:
        raise ValueError(f"store {store.folder} is too small for {n_batches} batches of {batch_size}")
    return batches, str(store.folder)


def warm_state(sae_dir: str, batch: torch.Tensor, density: float) -> tuple[dict[str, torch.Tensor], float]:
    """Trained ReLU weights with b_enc shifted so that ~``density`` of the latents fire on ``batch``."""
    from saes.io import load_sae

    sae, _ = load_sae(sae_dir)
    if sae.cfg.architecture != "standard":
        raise ValueError(f"--warm-start needs a ReLU ('standard') SAE; {sae_dir} is {sae.cfg.architecture}")
    state = sae.saelens_state_dict()
    with torch.no_grad():
        pre = sae.pre_acts(batch)
        shift = float(torch.quantile(pre.flatten()[:2_000_000], 1.0 - density))
    state["b_enc"] = state["b_enc"] - shift
    with torch.no_grad():
        actual = float(((batch - state["b_dec"]) @ state["W_enc"] + state["b_enc"] > 0).float().mean())
    return state, actual


def ours(arch: str, batches: list[torch.Tensor], d_sae: int, k: int, lr: float, state=None, density: float = 1.0):
    d = batches[0].shape[1]
    bs = batches[0].shape[0]
    sae_cfg = SAEConfig(d_in=d, d_sae=d_sae, architecture=arch, k=k)
    tc = TrainConfig(total_tokens=bs * len(batches), batch_size=bs, lr=lr, lr_end=lr / 10, init_batches=1,
                     normalize_activations=state is None)

    def run():
        trainer = SAETrainer(sae_cfg, tc, progress=False)
        if state is not None:  # as a resumed run: trained weights, raw inputs, the code's density known
            trainer.sae.load_saelens_state_dict(state)
            trainer.scale, trainer.last_density = 1.0, density
        trainer.fit(batches)
    return run


def saelens(arch: str, batches: list[torch.Tensor], d_sae: int, k: int, lr: float, state=None):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer as SLTrainer

    d = batches[0].shape[1]
    bs = batches[0].shape[0]
    cfg_cls, sae_cls, extra = {
        "standard": (StandardTrainingSAEConfig, StandardTrainingSAE, {"l1_coefficient": 5.0}),
        "topk": (TopKTrainingSAEConfig, TopKTrainingSAE, {"k": k}),
        "jumprelu": (JumpReLUTrainingSAEConfig, JumpReLUTrainingSAE, {"l0_coefficient": 0.01}),
    }[arch]
    trainer_cfg = SAETrainerConfig(total_training_samples=bs * len(batches), train_batch_size_samples=bs, lr=lr,
                                   lr_end=lr / 10, lr_scheduler_name="cosineannealing", device="cpu",
                                   logger=LoggingConfig(log_to_wandb=False))

    def run():
        sae = sae_cls(cfg_cls(d_in=d, d_sae=d_sae, **extra))
        if state is not None:
            missing = set(state) - set(sae.state_dict())
            if missing:
                raise ValueError(f"sae-lens SAE has no parameters {sorted(missing)}")
            sae.load_state_dict(state, strict=False)
        trainer = SLTrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(batches))
        trainer.fit()
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--architectures", default="topk,standard")
    parser.add_argument("--warm-start", default=None, help="trained ReLU SAE folder for steady-state timings")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.07, 0.02, 0.005])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    batches, source = load_batches(args.steps, args.batch_size)
    d = batches[0].shape[1]
    d_sae = args.expansion * d
    lr = 7e-5
    per_arch = {}
    for arch in args.architectures.split(","):
        secs = interleaved({"ours": ours(arch, batches, d_sae, args.k, lr),
                            "saelens": saelens(arch, batches, d_sae, args.k, lr)}, repeats=args.repeats, warmup=1)
        tokens = args.steps * args.batch_size
        per_arch[arch] = {"ours_tok_s": tokens / secs["ours"], "saelens_tok_s": tokens / secs["saelens"],
                          "ratio": secs["saelens"] / secs["ours"], "ours_steps_s": args.steps / secs["ours"],
                          "saelens_steps_s": args.steps / secs["saelens"], "median_s": secs}
        print(arch, per_arch[arch])
    steady = {}
    if args.warm_start:
        for density in args.densities:
            state, actual = warm_state(args.warm_start, batches[0], density)
            secs = interleaved({"ours": ours("standard", batches, d_sae, args.k, lr, state, actual),
                                "saelens": saelens("standard", batches, d_sae, args.k, lr, state)},
                               repeats=args.repeats, warmup=1)
            tokens = args.steps * args.batch_size
            steady[str(density)] = {"active_fraction": actual, "ours_tok_s": tokens / secs["ours"],
                                    "saelens_tok_s": tokens / secs["saelens"], "ratio": secs["saelens"] / secs["ours"],
                                    "median_s": secs}
            print("standard steady state", density, steady[str(density)])
    head = args.architectures.split(",")[0]
    payload = {"ours_tok_s": per_arch[head]["ours_tok_s"], "saelens_tok_s": per_arch[head]["saelens_tok_s"],
               "ratio": per_arch[head]["ratio"], "architecture": head, "per_architecture": per_arch,
               "steps_per_call": args.steps, "batch_size": args.batch_size, "d_in": d, "d_sae": d_sae, "k": args.k,
               "repeats": args.repeats, "activations": f"{source} [{SITE}]",
               "standard_steady_state": steady or None, "warm_start": args.warm_start,
               "sparse_below_density": TrainConfig.sparse_below_density,
               "notes": "same batches, architecture, d_sae, batch size, lr; our time includes our b_dec/scale init; "
                        "ours: TopK decodes only the k active rows (embedding_bag), sae-lens decodes densely; "
                        "sae-lens clips grad norm, we renormalise decoder rows"}
    path = write("sae_train.json", payload)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
