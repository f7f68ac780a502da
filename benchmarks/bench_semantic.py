"""The offline semantic step on a real dataset: encode throughput, similar-user retrieval, and a
sanity check that the embeddings carry signal (a semantic-neighbour recommender vs popularity).

    .venv/bin/python benchmarks/bench_semantic.py                 # Beauty, MiniLM
    .venv/bin/python benchmarks/bench_semantic.py --items 2000    # time a subset only

Encoding is timed without the cache (a fresh temporary cache folder). Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from llmesr.config import RunConfig, apply_overrides
from llmesr.evaluation import evaluate
from llmesr.models.heuristics import Popularity, SemanticNeighbour
from llmesr.runs import prepare_data
from llmesr.semantic import embed_texts, item_prompts, make_encoder, recall_at_k, similar_users
from llmesr.semantic.pipeline import FILES, artifact_dir, default_cache_root, settings_from_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="beauty")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--items", type=int, default=None, help="encode only the first N items")
    args = p.parse_args()

    cfg = apply_overrides(
        RunConfig(), {"data": args.data, "encoder": args.encoder, "progress": False}, "bench"
    )
    data = prepare_data(cfg)
    t = time.perf_counter()
    encoder = make_encoder(cfg.encoder)
    print(f"encoder            {encoder.identity} (load {time.perf_counter() - t:.1f} s)")
    texts = item_prompts(data.dataset.item_info, data.dataset.item_ids).texts[: args.items]
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        item_emb = embed_texts(texts, encoder, Path(cache), progress=False)
        enc_s = time.perf_counter() - t
    print(f"encode items       {len(texts):,} in {enc_s:.1f} s = {len(texts) / enc_s:.0f} items/s")

    # Retrieval timing on the real user embeddings when `llmesr embed` has produced them.
    folder = artifact_dir(
        default_cache_root(), data.dataset, data.split, encoder, settings_from_config(cfg, 64)
    )
    if all((folder / f).exists() for f in FILES):
        users = np.load(folder / "user_embeddings.npy")
        t = time.perf_counter()
        exact = similar_users(users, k=100, method="exact")
        print(f"similar users      exact top-100 for {len(users):,} users: {time.perf_counter() - t:.1f} s")
        for method in ("hnsw", "ivf"):
            t = time.perf_counter()
            approx = similar_users(users, k=100, method=method)
            print(
                f"                   {method}: {time.perf_counter() - t:.1f} s, recall@100 vs exact "
                f"{recall_at_k(approx, exact):.3f}"
            )
        item_emb = np.load(folder / "item_embeddings.npy")[1:]
    else:
        print(f"similar users      skipped: run `llmesr embed --data {args.data}` first ({folder})")
    if len(item_emb) != data.dataset.n_items:
        return
    table = np.vstack([np.zeros((1, item_emb.shape[1]), np.float32), item_emb])
    for name, model in (
        ("popularity", Popularity(data.split.train, data.dataset.n_items)),
        ("semantic neighbour", SemanticNeighbour(table)),
    ):
        res = evaluate(model, data.split.test, groups=data.groups)["full"]
        o, tail = res["overall"], res["groups"]["tail_item"]
        print(
            f"{name:<19}full ranking HR@10 {o['HR@10']:.4f} NDCG@10 {o['NDCG@10']:.4f} | tail items "
            f"HR@10 {tail['HR@10']:.4f} NDCG@10 {tail['NDCG@10']:.4f}"
        )


if __name__ == "__main__":
    main()
