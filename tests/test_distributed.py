"""DDP on CPU: ``torchrun`` with 2 gloo processes follows the single-process run with the same
global batch and seed.

Tolerance: dropout is off and the loss is full softmax (no sampled negatives), so the two runs do
the same arithmetic up to the order of floating-point reductions (gradients are summed across
ranks by all-reduce). Per-epoch training losses must agree to 1e-4 relative and the final
validation/test metrics to 1e-3 absolute.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import patterned_rows, set_args, write_sequences_dir

COMMON = {
    "max_len": 12,
    "hidden_size": 16,
    "batch_size": 32,
    "dropout": 0.0,
    "attn_dropout": 0.0,
    "loss": "ce",
    "threads": 1,
    "progress": False,
    "sampled_negatives": 10,
    "similar_k": 5,
    "distill_users": 3,
}


def train_args(data, out, model, cache) -> list[str]:
    sets = set_args({**COMMON, "cache_dir": cache}, model)
    return ["train", "--data", str(data), "--model", model, "--out", str(out), "--epochs", "4", *sets]


@pytest.mark.parametrize("model", ["sasrec", "llmesr"])
def test_two_gloo_ranks_match_one_process(tmp_path, model):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(200, 30, seed=5))
    cache = tmp_path / "cache"
    single = [sys.executable, "-m", "llmesr.cli", *train_args(data, tmp_path / "one", model, cache)]
    subprocess.run(single, check=True, capture_output=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = [*launcher, "-m", "llmesr.cli", *train_args(data, tmp_path / "two", model, cache)]
    done = subprocess.run([*ddp, "--set", "tracking=tensorboard"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("valid   protocol") == 1  # only rank 0 reports
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # ... and tracks

    logs = {}
    for name in ("one", "two"):
        logs[name] = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logs["two"]] == [1, 2, 3, 4]
    for a, b in zip(logs["one"], logs["two"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["valid"]["NDCG@10"] == pytest.approx(a["valid"]["NDCG@10"], abs=1e-3)
    one, two = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    for split in ("valid", "test"):
        for metric, value in one[split]["full"]["overall"].items():
            assert two[split]["full"]["overall"][metric] == pytest.approx(value, abs=1e-3), (split, metric)


def test_two_gloo_ranks_evaluate_exactly_as_one_process(tmp_path):
    """``torchrun ... llmesr evaluate``: each rank ranks its share of users and rank 0 gathers the
    ranks; the metrics (both protocols, every group, both splits) are those of one process, bitwise."""
    data = write_sequences_dir(tmp_path / "data", patterned_rows(150, 40, seed=3))
    run = tmp_path / "run"
    train = [*train_args(data, run, "sasrec", tmp_path / "cache"), "--epochs", "1"]  # the last --epochs wins
    subprocess.run([sys.executable, "-m", "llmesr.cli", *train], check=True, capture_output=True)
    evaluate = ["-m", "llmesr.cli", "evaluate", str(run), "--out"]
    subprocess.run([sys.executable, *evaluate, str(tmp_path / "one.json")], check=True, capture_output=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*launcher, *evaluate, str(tmp_path / "two.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"model"') == 1  # rank 0 alone prints
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert two == one


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity here")
def test_threads_per_job_counts_only_the_cpus_this_process_may_use():
    # A grid or tune started under `taskset -c 0` must not give each run every core of the machine.
    code = (
        "import os; from llmesr.parallel import threads_per_job, usable_cpus\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "print(usable_cpus(), threads_per_job(1), threads_per_job(4))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]
