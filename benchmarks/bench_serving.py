"""Latency and throughput of ``llmesr serve`` over loopback, driven like a real client.

    .venv/bin/llmesr export runs/beauty_ce_llmesr --out bundles/beauty_llmesr
    .venv/bin/python benchmarks/bench_serving.py bundles/beauty_llmesr --data beauty

Starts the server as a separate process (as deployed), waits for ``/health``, then sends
``POST /recommend`` (k = 10) for histories of real users (their training prefixes, up to the
model's max length): first one request at a time (p50 / p99 / max latency), then from several
concurrent clients (requests per second). Also times two cold-start ``POST /items`` (the first
loads the encoder). Run by hand.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def histories(data: str, n: int, max_len: int, seed: int = 0) -> list[list[str]]:
    from llmesr.data.dataset import load_dataset, resolve_data_path

    ds = load_dataset(resolve_data_path(data))
    rng = np.random.default_rng(seed)
    users = rng.choice(ds.n_users, n, replace=ds.n_users < n)
    seqs = ds.sequences
    out = []
    for u in users:
        row = seqs.items[seqs.offsets[u] : seqs.offsets[u + 1]][:-2][-max_len:]  # training prefix
        out.append(
            ds.item_ids[row].tolist()
            or ds.item_ids[seqs.items[seqs.offsets[u] : seqs.offsets[u] + 1]].tolist()
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", default="beauty", help="dataset the histories are drawn from")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()

    import json

    max_len = json.loads((args.bundle / "bundle.json").read_text())["model_config"]["max_len"]
    bodies = [{"history": h, "k": args.k} for h in histories(args.data, args.requests, max_len)]
    port = free_port()
    cmd = [sys.executable, "-m", "llmesr.cli", "serve", str(args.bundle), "--port", str(port)]
    server = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
                if time.perf_counter() - t0 > 120:
                    raise SystemExit("server did not come up in 120 s")
            startup = time.perf_counter() - t0
            for body in bodies[:50]:  # warm-up
                client.post("/recommend", json=body).raise_for_status()
            latencies = []
            for body in bodies:
                t = time.perf_counter()
                client.post("/recommend", json=body).raise_for_status()
                latencies.append(time.perf_counter() - t)
            cold = []
            for i, title in enumerate(["Rose petal lip balm", "Argan oil hair mask"]):
                t = time.perf_counter()
                r = client.post(
                    "/items", json={"item_id": f"bench-new-{i}", "title": title, "brand": "Bench"}
                )
                cold.append(time.perf_counter() - t)

        def worker(chunk: list[dict]) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                for body in chunk:
                    c.post("/recommend", json=body).raise_for_status()

        chunks = [bodies[i :: args.clients] for i in range(args.clients)]
        t = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(worker, chunks))
        concurrent = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = np.array(latencies) * 1e3
    print(f"bundle             {args.bundle} (k = {args.k}, {len(bodies):,} real histories)")
    print(f"server start       {startup:.1f} s until /health answers")
    print(
        f"sequential         p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
        f"max {ms.max():.1f} ms, {len(ms) / (ms.sum() / 1e3):.0f} req/s"
    )
    print(f"{args.clients} clients          {len(bodies) / concurrent:.0f} req/s")
    print(
        f"cold-start item    POST /items {cold[0] * 1e3:.0f} ms the first time (loads the encoder), "
        f"then {cold[1] * 1e3:.0f} ms (status {r.status_code})"
    )


if __name__ == "__main__":
    main()
