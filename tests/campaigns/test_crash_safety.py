"""Crash safety: ``llmesr train`` killed with SIGKILL at random moments, then rerun until it
finishes, ends with exactly the metrics of an uninterrupted run, and never leaves a truncated file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from conftest import patterned_rows, write_sequences_dir

SETTINGS = [
    "--set",
    "max_len=20",
    "--set",
    "hidden_size=32",
    "--set",
    "batch_size=8",
    "--set",
    "progress=false",
]
SETTINGS += ["--set", "threads=1", "--set", "sampled_negatives=10", "--epochs", "12", "--model", "sasrec"]


def train_command(data, out) -> list[str]:
    return [sys.executable, "-m", "llmesr.cli", "train", "--data", str(data), "--out", str(out), *SETTINGS]


def check_files_whole(run, killed: bool = False) -> None:
    """Every file a reader would open is whole. A kill during a write can leave that write's
    temporary file (nothing can clean up after SIGKILL); the resumed run must remove it."""
    if not killed:
        assert not list(run.glob(".*.tmp")), "a temporary file was left behind"
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            torch.load(run / name, weights_only=True)
    for name in ("metrics.json", "dataset.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())
    if (run / "log.jsonl").exists():
        for line in (run / "log.jsonl").read_text().splitlines():
            json.loads(line)


def logged_epochs(run) -> int:
    log = run / "log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def wait_for_progress(proc: subprocess.Popen, run, epochs: int, delay: float) -> bool:
    """Wait until ``run`` has logged ``epochs`` epochs, then ``delay`` seconds more; False when the
    process ends first."""
    while logged_epochs(run) < epochs:
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        return True


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(300, 40, seed=3))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    t0 = time.perf_counter()
    subprocess.run(train_command(data, tmp_path / "straight"), check=True, env=env, capture_output=True)
    duration = time.perf_counter() - t0
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())

    run = tmp_path / "killed"
    rng = np.random.default_rng(0)
    epoch_seconds = duration / 12
    kills = 0
    for _ in range(30):
        # Kill moments follow the run's own progress (a random number of further epochs, then a
        # random part of an epoch), not wall-clock guesses that a loaded machine would outrun.
        done_before = logged_epochs(run)
        target = done_before + int(rng.integers(0, 3))
        delay = float(rng.uniform(0.0, 1.0)) * epoch_seconds
        proc = subprocess.Popen(
            train_command(data, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if wait_for_progress(proc, run, target, delay):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            check_files_whole(run, killed=True)
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        break
    else:
        raise AssertionError("the run never finished")
    assert kills >= 2, "no kill landed: the test proved nothing"
    check_files_whole(run)
    got = json.loads((run / "metrics.json").read_text())
    assert got["test"] == expected["test"] and got["valid"] == expected["valid"]
    log = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 13))  # every epoch logged once, in order
