"""Trainable parameters and training seconds per epoch of every Table-1 method at the same settings.

    .venv/bin/python benchmarks/bench_methods.py --sasrec-run runs/table1_sasrec/model=sasrec__seed=42
    .venv/bin/python benchmarks/bench_methods.py --data yelp --config configs/yelp.yaml --sasrec-run ...

Every method is built from the Table-1 grid's layered config (``configs/llmesr_sasrec_ce.yaml``
plus any ``--config``) on the SASRec backbone, as the grid trains it; MELT fine-tunes and LLMEmb
aligns with the finished SASRec run given by ``--sasrec-run``, as in the grid. Each method trains
whole epochs exactly as ``llmesr train`` does (bucketed batches, its per-epoch work such as
LLM-ESR's teacher refresh or MELT's tail-row rebuild included; validation not included), the
methods taking turns ``--repeats`` times so that other load hits them alike; the median is printed.
EnsRec trains nothing (its members are the SASRec and text-only runs): its cost is theirs. Run by
hand, not in CI.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmesr.config import resolve_config
from llmesr.runs import prepare_data
from llmesr.training import Trainer

METHODS = ["sasrec", "llminit", "cities", "melt", "rlmrec", "llmesr", "alphafuse", "llmemb", "textrec"]


def timed_epoch(trainer: Trainer) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of the trainer's next training epoch,
    validation not included. On a shared machine the CPU seconds are the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train_epoch()
    trainer.state.epoch += 1
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--config", action="append", default=None, help="layered config files")
    p.add_argument("--sasrec-run", required=True, help="finished SASRec run (MELT, LLMEmb)")
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [Path(c) for c in (args.config or [])]
    configs = [Path("configs/llmesr_sasrec_ce.yaml"), *configs]
    extra = {"melt": [f"init_from={args.sasrec_run}"], "llmemb": [f"align_from={args.sasrec_run}"]}
    trainers, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.methods:
            overrides = [f"data={args.data}", f"model={m}", "progress=false"]
            overrides += [] if m == "sasrec" else ["backbone=sasrec"]
            cfg = resolve_config(configs, overrides + extra.get(m, []), warn=lambda _: None)
            trainers[m] = Trainer(cfg, prepare_data(cfg), Path(tmp) / m)
            params[m] = trainers[m].model.trainable_parameters()
        times: dict[str, list[tuple[float, float]]] = {m: [] for m in args.methods}
        for _ in range(args.repeats):
            for m in args.methods:
                times[m].append(timed_epoch(trainers[m]))
    first = next(iter(trainers.values()))
    print(
        f"{args.data}: {len(first.train_rows):,} training users, batch {first.cfg.batch_size}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} epoch(s) per method"
    )
    base = None
    for m in args.methods:
        wall, cpu = np.median(np.array(times[m]), axis=0)
        base = base or cpu
        print(
            f"  {m:10s} {params[m]:>11,} trainable  {wall:7.1f} s / epoch  "
            f"{cpu:7.1f} CPU-s / epoch  (x{cpu / base:4.2f} in CPU)"
        )


if __name__ == "__main__":
    main()
