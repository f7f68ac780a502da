"""The ``llmesr`` command end to end: train, evaluate, recommend, and clean failures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import write_sequences_dir
from llmesr.cli import main

FAST = [
    "--set",
    "max_len=10",
    "--set",
    "hidden_size=16",
    "--set",
    "batch_size=16",
    "--set",
    "progress=false",
    "--set",
    "sampled_negatives=5",
]


@pytest.fixture
def trained_run(patterned_dir, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(patterned_dir),
                "--model",
                "sasrec",
                "--out",
                str(run),
                "--epochs",
                "3",
                *FAST,
            ]
        )
        == 0
    )
    return run


def test_recommendations_reproduce_the_reported_full_ranking_metrics(trained_run, patterned_dir, tmp_path):
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(trained_run), "--split", "test", "--k", "10", "--out", str(out)]) == 0
    recs = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert recs.groupby("user_id")["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1))).all()

    # Recompute HR@10 / NDCG@10 from the file and the raw data alone (original ids throughout).
    lines = (patterned_dir / "sequences.txt").read_text().split("\n")
    history = {parts[0]: parts[1:] for parts in (line.split() for line in lines if line)}
    target = {u: items[-1] for u, items in history.items() if len(items) >= 3}
    for user, items in history.items():  # history items are never recommended by default
        assert not set(recs.loc[recs.user_id == user, "item_id"]) & set(items[:-1])
    hit = recs[recs.item_id == recs.user_id.map(target)]
    hr = len(hit) / len(target)
    ndcg = float((1 / np.log2(hit["rank"] + 1)).sum() / len(target))
    metrics = json.loads((trained_run / "metrics.json").read_text())["test"]["full"]["overall"]
    assert hr == pytest.approx(metrics["HR@10"])
    assert ndcg == pytest.approx(metrics["NDCG@10"])


def test_evaluate_recomputes_the_stored_metrics(trained_run, capsys):
    stored = json.loads((trained_run / "metrics.json").read_text())
    assert main(["evaluate", str(trained_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"] == stored["test"]


def test_set_loss_ce_from_the_command_line(patterned_dir, tmp_path):
    run = tmp_path / "ce"
    assert (
        main(
            [
                "train",
                "--data",
                str(patterned_dir),
                "--out",
                str(run),
                "--epochs",
                "1",
                *FAST,
                "--set",
                "loss=ce",
            ]
        )
        == 0
    )
    assert "loss: ce" in (run / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "lossy=ce"], "unknown config key 'lossy'"),
        (["--set", "epochs=many"], "config key 'epochs' expects int"),
        (["--set", "loss=hinge"], "unknown loss 'hinge'"),
        (["--model", "transformer9000"], "unknown model 'transformer9000'"),
    ],
)
def test_bad_config_fails_cleanly_and_writes_nothing(patterned_dir, tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    code = main(["train", "--data", str(patterned_dir), "--out", str(run), *FAST, *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 1 2 3\n2\n", "empty history"),
        ("1 1 2 3\n1 4 5 6\n", "duplicate user"),
    ],
)
def test_bad_data_fails_cleanly_and_writes_nothing(tmp_path, capsys, content, message):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "sequences.txt").write_text(content)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and "sequences.txt:2" in err
    assert not run.exists()


def test_missing_dataset_and_missing_run_are_clear_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["recommend", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_recommend_refuses_a_run_whose_data_changed(trained_run, patterned_dir, capsys, tmp_path):
    write_sequences_dir(patterned_dir, [[1, 2, 3, 4, 5]] * 3)  # same path, different content
    assert main(["recommend", str(trained_run), "--out", str(tmp_path / "r.csv")]) == 2
    assert "not the dataset given" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_explicit_group_thresholds(trained_run, capsys):
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--set",
                "groups=threshold",
                "--set",
                "tail_user_threshold=6",
                "--set",
                "tail_item_threshold=1000",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    groups = printed["test"]["full"]["groups"]
    assert groups["head_item"]["count"] == 0 and groups["head_item"]["HR@10"] is None  # empty, not zero
    assert groups["tail_item"]["count"] == printed["test"]["full"]["users"]
    assert printed["dataset"]["groups"]["tail_user_if_train_length_below"] == 6
    assert main(["evaluate", str(trained_run), "--set", "groups=threshold"]) == 2
    assert "needs tail_user_threshold and tail_item_threshold" in capsys.readouterr().err


def test_real_movielens_atomic_files_train_end_to_end(shared_data, tmp_path):
    run = tmp_path / "ml"
    assert (
        main(["train", "--data", str(shared_data / "ml-100k"), "--out", str(run), "--epochs", "1", *FAST])
        == 0
    )
    info = json.loads((run / "dataset.json").read_text())
    assert (info["users"], info["items"], info["interactions"]) == (943, 1682, 100000)
