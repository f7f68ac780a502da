"""Comparing runs: per-user metrics, seed aggregation, the paired test, tables, chart and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from llmesr.cli import main
from llmesr.config import ConfigError, RunConfig, apply_overrides
from llmesr.data.groups import named_groups
from llmesr.evaluation import metrics_from_ranks
from llmesr.experiments.compare import GROUPS, RunRanks, compare, markdown_table, per_user
from llmesr.runs import prepare_data
from llmesr.training import Trainer

FAST = {"max_len": 10, "hidden_size": 16, "batch_size": 16, "epochs": 2, "progress": False}


def fake_run(ranks: np.ndarray, tail_user: np.ndarray, tail_item: np.ndarray, seed: int = 0) -> RunRanks:
    members = {"overall": np.ones(len(ranks), dtype=bool), **named_groups(tail_user, tail_item)}
    return RunRanks(None, np.arange(len(ranks)), {"full": ranks}, members, seed)


def test_per_user_metrics_average_to_the_reported_ones():
    ranks = np.array([0, 1, 4, 9, 10, 50, 3])
    expected = metrics_from_ranks(ranks, [5, 10])
    for metric in ("HR@5", "NDCG@5", "MRR@5", "HR@10", "NDCG@10", "MRR@10"):
        assert per_user(ranks, metric).mean() == pytest.approx(expected[metric])


def test_compare_aggregates_seeds_and_runs_a_paired_test_per_group():
    rng = np.random.default_rng(0)
    n = 400
    tail_user, tail_item = rng.random(n) < 0.7, rng.random(n) < 0.4
    base = [fake_run(rng.integers(0, 40, n), tail_user, tail_item, s) for s in range(3)]
    # The better method ranks every user's target 3 places higher (floored at 0).
    better = [
        fake_run(np.maximum(r.ranks["full"] - 3, 0), tail_user, tail_item, s) for s, r in enumerate(base)
    ]
    frame = compare({"base": base, "better": better})
    row = frame.set_index(["method", "group", "metric"]).loc[("better", "tail_item", "NDCG@10")]
    per_seed = [per_user(r.ranks["full"][tail_item], "NDCG@10").mean() for r in better]
    assert row["mean"] == pytest.approx(np.mean(per_seed))
    assert row["sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["users"] == tail_item.sum() and row["seeds"] == 3
    a = np.mean([per_user(r.ranks["full"], "NDCG@10") for r in better], axis=0)[tail_item]
    b = np.mean([per_user(r.ranks["full"], "NDCG@10") for r in base], axis=0)[tail_item]
    assert row["p_value"] == pytest.approx(ttest_rel(a, b).pvalue)
    assert row["p_value"] < 1e-6
    assert frame[frame.method == "base"].p_value.isna().all()
    assert set(frame.group) == set(GROUPS)
    table = markdown_table(frame, "full")
    better_line = next(line for line in table.splitlines() if line.startswith("| better"))
    assert better_line.count("*") >= len(GROUPS) * 2  # bold markers and significance stars
    assert "±" in better_line and "%)" in better_line


def test_compare_refuses_runs_on_different_users():
    a = fake_run(np.arange(10), np.zeros(10, bool), np.zeros(10, bool))
    b = fake_run(np.arange(10), np.zeros(10, bool), np.zeros(10, bool))
    b.users = b.users + 1
    with pytest.raises(ConfigError, match="other users"):
        compare({"a": [a], "b": [b]})


def test_compare_command_on_real_runs(patterned_dir, tmp_path, capsys):
    # Folder names as `llmesr experiment` writes them, with "=" inside: labelled and bare.
    runs = []
    for seed in (1, 2):
        cfg = apply_overrides(RunConfig(), {"data": str(patterned_dir), **FAST, "seed": seed}, "t")
        Trainer(cfg, prepare_data(cfg), tmp_path / f"model=sasrec__seed={seed}").fit()
        runs.append(tmp_path / f"model=sasrec__seed={seed}")
    gru = apply_overrides(RunConfig(), {"data": str(patterned_dir), **FAST, "model": "gru4rec"}, "t")
    gru_run = tmp_path / "model=gru4rec__seed=42"
    Trainer(gru, prepare_data(gru), gru_run).fit()
    out = tmp_path / "cmp"
    rc = main(["compare", f"sasrec={runs[0]},{runs[1]}", str(gru_run), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "full ranking" in text and "sampled ranking" in text and f"| {gru_run.name} |" in text
    frame = pd.read_csv(out / "comparison.csv")
    assert set(frame.method) == {"sasrec", gru_run.name} and set(frame.protocol) == {"full", "sampled"}
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "comparison.md").read_text().count("| sasrec |") == 2
    # Another head/tail rule regroups the same ranks.
    assert main(["compare", str(gru_run), "--groups", "beauty_paper", "--out", str(out)]) == 0
    regrouped = pd.read_csv(out / "comparison.csv")
    cfg = apply_overrides(RunConfig(), {"data": str(patterned_dir), "groups": "beauty_paper"}, "t")
    data = prepare_data(cfg)
    tail_items = int(data.groups.tail_item[data.split.test.targets].sum())
    assert (regrouped[regrouped.group == "tail_item"]["users"] == tail_items).all()


def test_compare_command_rejects_unfinished_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "is not a run folder (no config.yaml)" in capsys.readouterr().err
