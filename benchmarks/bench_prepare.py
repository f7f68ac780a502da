"""End-to-end speed and memory of ``llmesr prepare`` on a synthetic Amazon-2014 dump.

    .venv/bin/python benchmarks/bench_prepare.py                  # 1M reviews, s3rec preset
    .venv/bin/python benchmarks/bench_prepare.py --reviews 200000 --preset llmesr

Writes ``reviews_Synthetic.json.gz`` (JSON lines with review text, as the 2014 release) and
``meta_Synthetic.json.gz`` (Python dict literals) under ``--work`` once, reusing them afterwards,
then runs ``prepare`` in a fresh child process and prints its wall-clock seconds and peak resident
memory (and the child's memory after imports, to separate the library's own footprint). Users and
items are drawn from power laws, so the 5-core removes a realistic share. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REVIEW_TEXT = (
    "I have been using this for a few weeks now and it does what it says. The texture is light, it "
    "absorbs quickly and the smell is pleasant without being strong. My skin feels softer and I have "
    "had no irritation at all, which is rare for me. The bottle is a bit small for the price, but a "
    "little goes a long way. Would buy again and would recommend it to friends with sensitive skin."
)


def power_law_ids(rng: np.random.Generator, n: int, population: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, population + 1) ** exponent
    return rng.choice(population, size=n, p=weights / weights.sum())


def write_reviews(path: Path, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    n_items = max(n // 12, 100)
    users = power_law_ids(rng, n, max(n // 6, 100), 0.6)
    items = power_law_ids(rng, n, n_items, 0.9)
    days = rng.integers(10_957, 16_071, size=n)  # 2000-01-01 .. 2014-01-01
    ratings = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=n, p=[0.05, 0.05, 0.1, 0.25, 0.55])
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
        for start in range(0, n, 10_000):
            stop = min(start + 10_000, n)
            f.write(
                "".join(
                    f'{{"reviewerID": "A{u:013d}", "asin": "B{i:09d}", "reviewerName": "Reviewer {u}", '
                    f'"helpful": [0, 0], "reviewText": "{REVIEW_TEXT}", "overall": {r}, "summary": "Nice", '
                    f'"unixReviewTime": {d * 86_400}, "reviewTime": "01 01, 2010"}}\n'
                    for u, i, r, d in zip(
                        users[start:stop],
                        items[start:stop],
                        ratings[start:stop],
                        days[start:stop],
                        strict=True,
                    )
                )
            )
    return n_items


def write_meta(path: Path, n_items: int) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
        for i in range(n_items):
            record = {
                "asin": f"B{i:09d}",
                "title": f"Product {i} &amp; Co. Cream, 1.7 oz",
                "price": round(5 + (i % 50) * 0.9, 2),
                "imUrl": f"http://ecx.images-amazon.com/images/I/{i}.jpg",
                "related": {"also_bought": [f"B{(i + 1) % n_items:09d}"]},
                "salesRank": {"Beauty": i},
                "categories": [["Beauty", "Skin Care", "Face"]],
                "description": "A light daily cream. " * 5,
            }
            if i % 3:
                record["brand"] = f"Brand{i % 97}"
            f.write(repr(record) + "\n")


CHILD = """
import json, resource, sys, time
from llmesr.data.prepare import prepare
after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
card = prepare("amazon2014", sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], overwrite=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
figures = {"seconds": seconds, "peak_mib": peak, "after_import_mib": after_import}
print(json.dumps(figures | {"stages": card["stages"]}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reviews", type=int, default=1_000_000)
    p.add_argument("--preset", default="s3rec")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "llmesr_bench_prepare")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    folder = args.work / f"{args.reviews}"
    folder.mkdir(parents=True, exist_ok=True)
    reviews, meta = folder / "reviews_Synthetic.json.gz", folder / "meta_Synthetic.json.gz"
    if not (reviews.exists() and meta.exists()):
        print(f"writing {args.reviews:,} synthetic reviews to {folder} ...", flush=True)
        write_meta(meta, write_reviews(reviews, args.reviews, args.seed))
    sizes = [f"{path.name} {path.stat().st_size / 2**20:.0f} MiB" for path in (reviews, meta)]
    print("inputs: " + ", ".join(sizes))

    out = folder / f"out_{args.preset}"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(reviews), str(out), str(meta), args.preset],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for stage in figures["stages"]:
        counts = f"{stage['users']:,} users, {stage['items']:,} items, {stage['interactions']:,} interactions"
        print(f"  {stage['stage']}: {counts}")
    print(
        f"prepare {args.reviews:,} reviews ({args.preset}): {figures['seconds']:.1f} s, "
        f"peak RSS {figures['peak_mib']:.0f} MiB ({figures['after_import_mib']:.0f} MiB after imports)"
    )


if __name__ == "__main__":
    main()
