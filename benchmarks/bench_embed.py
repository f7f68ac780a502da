"""Encoding throughput of the semantic step's user prompts, per encoder backend, at equal quality.

    .venv/bin/python benchmarks/bench_embed.py --data beauty --users 1000 --repeats 3

A fixed random sample of the dataset's user prompts (training prefixes, as the semantic step
builds them) is encoded by each variant, the variants taking turns ``--repeats`` times so that
other load on the machine hits them alike; the median seconds are scaled to all users:

- ``positional-bs64``: the cache's batches as they were before length sorting (consecutive users,
  256 per cache batch; sentence-transformers sorts within the batch, sub-batches of 64);
- ``sorted-torch``: the library's cache plan (all prompts sorted by length) with eager PyTorch;
- ``sorted-onnx`` / ``sorted-onnx-int8``: the same plan run by ONNX Runtime in float32 / int8.

Quality, against ``sorted-torch``: the cosine of each user's vector, and the semantic-neighbour
proxy, the share of each user's 10 nearest users (exact cosine, within the sample) that stay
among its 10 nearest. Run by hand.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from llmesr.config import RunConfig, apply_overrides
from llmesr.runs import prepare_data
from llmesr.semantic import embed_texts, make_encoder
from llmesr.semantic.prompts import item_titles, user_prompts


def positional(texts: list[str], encoder) -> np.ndarray:
    """The pre-sorting plan: consecutive cache batches of 256 users, encoded in sub-batches of 64."""
    encoder.batch_size = 64
    try:
        return np.concatenate([encoder.encode(texts[s : s + 256]) for s in range(0, len(texts), 256)])
    finally:
        encoder.batch_size = 32


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    def top(x):
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    ta, tb = top(a), top(b)
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(ta, tb, strict=True)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["positional-bs64", "sorted-torch", "sorted-onnx", "sorted-onnx-int8"],
    )
    args = p.parse_args()

    cfg = apply_overrides(RunConfig(), {"data": args.data, "progress": False}, "bench")
    data = prepare_data(cfg)
    titles = item_titles(data.dataset.item_info, data.dataset.item_ids)
    users = user_prompts(data.split.train, titles, max_items=cfg.user_max_items)
    rng = np.random.default_rng(0)
    sample = [users[i] for i in np.sort(rng.choice(len(users), min(args.users, len(users)), replace=False))]
    scale = len(users) / len(sample)
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {
            "positional-bs64": make_encoder("minilm"),
            "sorted-torch": make_encoder("minilm"),
            "sorted-onnx": make_encoder("minilm", backend="onnx", onnx_dir=f"{tmp}/onnx"),
            "sorted-onnx-int8": make_encoder("minilm", backend="onnx-int8", onnx_dir=f"{tmp}/onnx"),
        }
        times: dict[str, list[float]] = {v: [] for v in args.variants}
        vectors: dict[str, np.ndarray] = {}
        for rep in range(args.repeats):
            for variant in args.variants:
                enc = encoders[variant]
                t = time.perf_counter()
                if variant == "positional-bs64":
                    out = positional(sample, enc)
                else:
                    out = embed_texts(sample, enc, Path(tmp) / f"cache{rep}", progress=False)
                times[variant].append(time.perf_counter() - t)
                vectors[variant] = out
    print(
        f"{args.data}: {len(sample):,} of {len(users):,} user prompts, {args.repeats} rounds"
    )
    ref_name = "sorted-torch" if "sorted-torch" in vectors else args.variants[0]
    ref, base = vectors[ref_name], np.median(times[args.variants[0]])
    for variant in args.variants:
        med = float(np.median(times[variant]))
        cos = (vectors[variant] * ref).sum(1)
        print(
            f"{variant:18s} {med * scale:8.1f} s  x{base / med:4.2f} vs {args.variants[0]}  "
            f"cos min {cos.min():.4f} mean {cos.mean():.5f}  top-10 neighbours kept "
            f"{neighbour_overlap(vectors[variant], ref):.3f}"
        )


if __name__ == "__main__":
    main()
