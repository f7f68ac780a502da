"""llmesr.allocator: freed memory is kept for reuse on glibc, and results do not change."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from conftest import patterned_rows, set_args, write_sequences_dir

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates and frees a 64 MiB tensor 20 times and counts the page faults that cost.
_FAULTS = """
import resource, sys, torch
from llmesr.allocator import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
torch.empty(16 << 20).fill_(1.0)  # first use: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.empty(16 << 20).fill_(1.0)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_large_blocks_are_reused_instead_of_faulted_in_again():
    plain_applied, plain = _faults("plain")
    reuse_applied, reuse = _faults("reuse")
    assert (plain_applied, reuse_applied) == ("False", "True")
    # 20 fresh 64 MiB mappings fault in 20 x 16k small pages (20 x 32 huge pages at the least);
    # reused heap memory almost none.
    assert plain >= 20 * 32 and reuse < plain / 10, (plain, reuse)


def test_training_gives_the_same_weights_and_metrics_either_way(tmp_path):
    """Batches whose full-softmax logits exceed glibc's mmap threshold (about 60 MB here), trained
    once with freed memory reused and once without: bit-identical item tables and metrics."""
    data = write_sequences_dir(tmp_path / "data", patterned_rows(n_users=800, n_items=8000), titles=False)
    settings = {"model": "sasrec", "loss": "ce", "max_len": 12, "hidden_size": 16, "batch_size": 512}
    settings |= {"epochs": 1, "threads": 1, "progress": False}
    outputs = []
    for reuse in (True, False):
        out = tmp_path / f"reuse={reuse}"
        args = set_args({**settings, "reuse_freed_memory": reuse}, "sasrec")
        cmd = [sys.executable, "-m", "llmesr.cli", "train", "--data", str(data), "--out", str(out), *args]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        outputs.append(out)
    for name in ("item_table.npy", "metrics.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
