"""Benchmark: SAE training throughput, ours (saes.trainer) vs sae-lens's SAETrainer, same activations, same run.

Both trainers get the same in-memory batches of stored SmolLM2 activations (layer 15 resid_post; the BT(P) store of
saes/experiments/fast_vs_bt.py when present, else a small store harvested here), the same architecture, d_sae, batch
size, learning rate and step count. Each timed call builds a fresh trainer and runs ``--steps`` steps; calls run
round-robin (bench.common.interleaved) so machine noise hits both alike. Our timing includes our initialisation
(input-scale estimate + geometric-median b_dec on the first batch); sae-lens's SAETrainer does neither.

Writes bench/results/sae_train.json: ``ours_tok_s``, ``saelens_tok_s``, ``ratio`` for the headline architecture
(TopK) and the same keys per architecture under ``per_architecture``.
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


def ours(arch: str, batches: list[torch.Tensor], d_sae: int, k: int, lr: float):
    d = batches[0].shape[1]
    bs = batches[0].shape[0]
    sae_cfg = SAEConfig(d_in=d, d_sae=d_sae, architecture=arch, k=k)
    tc = TrainConfig(total_tokens=bs * len(batches), batch_size=bs, lr=lr, lr_end=lr / 10, init_batches=1)

    def run():
        SAETrainer(sae_cfg, tc, progress=False).fit(batches)
    return run


def saelens(arch: str, batches: list[torch.Tensor], d_sae: int, k: int, lr: float):
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
    head = args.architectures.split(",")[0]
    payload = {"ours_tok_s": per_arch[head]["ours_tok_s"], "saelens_tok_s": per_arch[head]["saelens_tok_s"],
               "ratio": per_arch[head]["ratio"], "architecture": head, "per_architecture": per_arch,
               "steps_per_call": args.steps, "batch_size": args.batch_size, "d_in": d, "d_sae": d_sae, "k": args.k,
               "repeats": args.repeats, "activations": f"{source} [{SITE}]",
               "notes": "same batches, architecture, d_sae, batch size, lr; our time includes our b_dec/scale init; "
                        "ours: TopK decodes only the k active rows (embedding_bag), sae-lens decodes densely; "
                        "sae-lens clips grad norm, we renormalise decoder rows"}
    path = write("sae_train.json", payload)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
