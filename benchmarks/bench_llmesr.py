"""Training cost of LLM-ESR against its plain backbone at the same settings.

    .venv/bin/python benchmarks/bench_llmesr.py                   # Beauty, SASRec, paper settings
    .venv/bin/python benchmarks/bench_llmesr.py --backbone gru4rec --no-exact

Prints seconds per training epoch for: the plain backbone; LLM-ESR with the cached teacher (user
representations computed in bulk at the start of each epoch; the refresh is included in the
epoch time and also printed alone); LLM-ESR with the paper-exact teacher (the N similar users
re-encoded at every step); and LLM-ESR without self-distillation. The first epoch of each variant
is a warm-up and is not timed. Needs the semantic artifacts (run `llmesr embed` first, or the
first LLM-ESR variant computes them). The paper-exact teacher is too slow to time over a whole
epoch: it is timed on random batches and scaled up. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from llmesr.config import RunConfig, apply_overrides
from llmesr.runs import prepare_data
from llmesr.training import Trainer


def timed_epoch(cfg: RunConfig, data, warmup: bool = True) -> tuple[float, Trainer]:
    trainer = Trainer(cfg, data, "/tmp/llmesr-bench-unused")
    if warmup:
        trainer.train_epoch()
        trainer.epoch += 1
    t = time.perf_counter()
    trainer.train_epoch()
    return time.perf_counter() - t, trainer


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    """Mean seconds of ``steps`` optimisation steps on random training batches (forward, teacher,
    backward, Adam), for a variant too slow to time over a whole epoch."""
    cfg, model = trainer.cfg, trainer.model
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    model.start_epoch(0)
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        rows = rng.choice(trainer.train_rows, cfg.batch_size, replace=False)
        loss = model.loss(model.train_input(trainer.data.split.train, rows), gen, users=rows)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--backbone", default="sasrec")
    p.add_argument("--loss", default="bce")
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-exact", action="store_true", help="skip the (slow) paper-exact teacher")
    p.add_argument("--steps", type=int, default=20, help="random batches timed for the exact teacher")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = {
        "data": args.data,
        "loss": args.loss,
        "negatives": 1,
        "max_len": args.max_len,
        "batch_size": args.batch_size,
        "hidden_size": 64,
        "num_layers": 2,
        "progress": False,
    }
    plain_cfg = apply_overrides(RunConfig(), {**base, "model": args.backbone}, "benchmark")
    data = prepare_data(plain_cfg)
    plain, _ = timed_epoch(plain_cfg, data)
    llm = {**base, "model": "llmesr", "backbone": args.backbone}
    cached, trainer = timed_epoch(apply_overrides(RunConfig(), {**llm, "teacher": "cached"}, "b"), data)
    t = time.perf_counter()
    trainer.model.start_epoch(0)
    refresh = time.perf_counter() - t
    no_distill, _ = timed_epoch(apply_overrides(RunConfig(), {**llm, "distill_weight": 0.0}, "b"), data)

    print(
        f"settings            {args.backbone}, loss {args.loss}, hidden 64, 2 layers, "
        f"max_len {args.max_len}, batch {args.batch_size}, {torch.get_num_threads()} threads; "
        f"{data.dataset.n_users:,} users"
    )
    print(f"plain {args.backbone:<13} {plain:6.1f} s / epoch")
    print(
        f"LLM-ESR, cached     {cached:6.1f} s / epoch  (ratio {cached / plain:.2f}; "
        f"teacher refresh {refresh:.1f} s)"
    )
    print(f"LLM-ESR, no distill {no_distill:6.1f} s / epoch  (ratio {no_distill / plain:.2f})")
    if not args.no_exact:
        exact, _ = timed_epoch(
            apply_overrides(RunConfig(), {**llm, "teacher": "exact"}, "b"), data, warmup=False
        )
        print(f"LLM-ESR, exact      {exact:6.1f} s / epoch  (ratio {exact / plain:.2f})")


if __name__ == "__main__":
    main()
