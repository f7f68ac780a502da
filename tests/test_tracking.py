"""Tracking and logs: TensorBoard event files read back with tensorboard's own reader, a run in a
real local MLflow store, resumes that continue them, and log files without progress-bar noise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import patterned_rows, write_sequences_dir
from llmesr.config import RunConfig, apply_overrides
from llmesr.errors import ConfigError
from llmesr.runs import prepare_data
from llmesr.training import Trainer
from llmesr.training.tracking import require

FAST = {
    "max_len": 10,
    "hidden_size": 8,
    "batch_size": 16,
    "sampled_negatives": 5,
    "progress": False,
    "threads": 1,
    "patience": 10,
}


def config(data: Path, **values) -> RunConfig:
    return apply_overrides(RunConfig(), {"data": str(data), **FAST, **values}, "test")


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def scalars(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def test_tensorboard_shows_the_curves_config_and_final_metrics_and_a_resume_continues_them(
    patterned_dir, tmp_path
):
    run = tmp_path / "run"
    cfg = config(patterned_dir, epochs=2, tracking="tensorboard")
    data = prepare_data(cfg)
    metrics = Trainer(cfg, data, run).fit()
    events = scalars(run / "tensorboard")
    log = log_of(run)
    assert [(e.step, e.value) for e in events.Scalars("valid/NDCG@10")] == [
        (r["epoch"], pytest.approx(r["valid"]["NDCG@10"])) for r in log
    ]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in log])
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([0.001, 0.001])
    assert len(events.Scalars("train/epoch_seconds")) == 2
    final = events.Scalars("final/test/full/tail_item/NDCG@10")
    assert final[0].value == pytest.approx(metrics["test"]["full"]["groups"]["tail_item"]["NDCG@10"])
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lr: 0.001" in config_text and "tracking: tensorboard" in config_text

    # A resumed run with a larger budget adds its epochs to the same curves, once each.
    cfg = config(patterned_dir, epochs=4, tracking="tensorboard")
    Trainer(cfg, data, run).fit()
    steps = [e.step for e in scalars(run / "tensorboard").Scalars("valid/NDCG@10")]
    assert steps == [1, 2, 3, 4]


def test_mlflow_run_in_a_local_store_holds_params_curves_and_final_metrics(patterned_dir, tmp_path):
    from mlflow import MlflowClient

    run = tmp_path / "runs" / "sas"
    cfg = config(patterned_dir, epochs=2, tracking="mlflow")
    data = prepare_data(cfg)
    metrics = Trainer(cfg, data, run).fit()
    record = json.loads((run / "tracking.json").read_text())
    assert record["uri"] == f"sqlite:///{(run / 'mlflow.db').resolve()}"
    client = MlflowClient(record["uri"])
    got = client.get_run(record["run_id"])
    assert got.info.status == "FINISHED" and got.info.run_name == "sas"
    assert client.get_experiment(got.info.experiment_id).name == "runs"
    assert got.data.params["lr"] == "0.001" and got.data.params["model"] == "sasrec"
    history = client.get_metric_history(record["run_id"], "valid/NDCG_at_10")
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"], pytest.approx(r["valid"]["NDCG@10"])) for r in log_of(run)
    ]
    overall = metrics["test"]["full"]["overall"]["NDCG@10"]
    assert got.data.metrics["final/test/full/overall/NDCG_at_10"] == pytest.approx(overall)

    # A resume logs into the same MLflow run.
    Trainer(config(patterned_dir, epochs=3, tracking="mlflow"), data, run).fit()
    assert json.loads((run / "tracking.json").read_text())["run_id"] == record["run_id"]
    steps = [m.step for m in client.get_metric_history(record["run_id"], "train/loss")]
    assert steps == [1, 2, 3]


def test_a_missing_tracking_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a module not installed
    with pytest.raises(
        ConfigError, match=r"tracking=mlflow needs the mlflow package: pip install 'llmesr\[tracking\]'"
    ):
        require("mlflow")
    require("none")


def test_logs_written_to_a_file_have_no_progress_bars_and_one_line_per_epoch_and_stage(tmp_path, capfd):
    from llmesr.cli import main

    # capfd points file descriptors 1 and 2 at files: what a log redirect or a job scheduler does.
    data = write_sequences_dir(tmp_path / "data", patterned_rows(24, 20))
    settings = {"max_len": 10, "hidden_size": 16, "threads": 1, "embed_batch_size": 8, "cache_dir": tmp_path}
    settings["sampled_negatives"] = 5  # no warning: a handler of an earlier test may hold a closed stream
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]  # progress stays on
    run = ["train", "--data", str(data), "--model", "sasrec", "--out", str(tmp_path / "run"), "--epochs", "3"]
    assert main([*run, *sets]) == 0
    train = "".join(capfd.readouterr())
    assert "\r" not in train
    assert sum(line.startswith("epoch ") for line in train.splitlines()) == 3
    assert len(train.splitlines()) <= 3 + 20  # the epochs and the two result tables
    assert main(["embed", "--data", str(data), "--out", str(tmp_path / "emb"), *sets]) == 0
    embed = "".join(capfd.readouterr())
    assert "\r" not in embed
    lines = embed.splitlines()
    assert sum(line.startswith(("embedding items:", "embedding users:")) for line in lines) == 2
    assert len(lines) <= 12, lines  # 24 users in 3 batches: one line per stage, not per batch


def test_tune_trials_track_into_the_tunes_store(patterned_dir, tmp_path):
    from llmesr.cli import main

    space = {
        "base": str(Path(__file__).resolve().parents[1] / "configs" / "sasrec_ce.yaml"),
        "fixed": {"data": str(patterned_dir), **FAST, "tracking": "tensorboard"},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
        "budget": {"trials": 2, "max_epochs": 2},
        "pruner": "none",
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["tune", str(path), "--out", str(tmp_path / "tune")]) == 0
    for n in (0, 1):  # tensorboard --logdir TUNE shows each trial's curves and the study's
        assert [
            e.step for e in scalars(tmp_path / "tune" / f"trial_{n}" / "tensorboard").Scalars("valid/NDCG@10")
        ] == [1, 2]
    assert len(scalars(tmp_path / "tune" / "tensorboard" / "study").Scalars("tune/value")) == 2
