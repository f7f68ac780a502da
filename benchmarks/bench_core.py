"""Speed of the core library on a real dataset: load, one training epoch, full-ranking evaluation.

    .venv/bin/python benchmarks/bench_core.py                      # Beauty, SASRec at paper settings
    .venv/bin/python benchmarks/bench_core.py --model gru4rec --epochs 2
    .venv/bin/python benchmarks/bench_core.py --no-bucket          # per-batch padding without bucketing

Prints seconds per epoch, seconds for a full-ranking evaluation of every test user (both
protocols in one pass), and the process's peak resident memory. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from llmesr.config import RunConfig, apply_overrides
from llmesr.runs import evaluate_split, prepare_data
from llmesr.training import Trainer


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--model", default="sasrec")
    p.add_argument("--loss", default="bce")
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2, help="timed training epochs")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-bucket", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    cfg = apply_overrides(
        RunConfig(),
        {
            "data": args.data,
            "model": args.model,
            "loss": args.loss,
            "negatives": 1,
            "max_len": args.max_len,
            "hidden_size": 64,
            "num_layers": 2,
            "batch_size": args.batch_size,
            "progress": False,
            "bucket_batches": not args.no_bucket,
        },
        "benchmark",
    )
    data = prepare_data(cfg)
    load_s = time.perf_counter() - t0
    trainer = Trainer(cfg, data, "/tmp/llmesr-bench-unused")
    epochs = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        trainer.train_epoch()
        trainer.epoch += 1
        epochs.append(time.perf_counter() - t)
    t = time.perf_counter()
    result = evaluate_split(trainer.model, data, cfg, "test")[0]
    eval_s = time.perf_counter() - t

    print(
        f"dataset            {data.dataset.name}: {data.dataset.n_users:,} users, "
        f"{data.dataset.n_items:,} items, {data.dataset.n_interactions:,} interactions"
    )
    print(
        f"settings           {args.model}, loss {args.loss}, hidden 64, 2 layers, max_len {args.max_len}, "
        f"batch {args.batch_size}, bucketing {'off' if args.no_bucket else 'on'}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"load + split       {load_s:.2f} s (incl. fixed sampled-protocol negatives)")
    print(f"train epoch        {' / '.join(f'{e:.1f}' for e in epochs)} s  (best {min(epochs):.1f} s)")
    print(
        f"full-rank eval     {eval_s:.2f} s for {result['full']['users']:,} test users (full + sampled-100)"
    )
    print(f"peak memory (RSS)  {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
