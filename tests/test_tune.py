"""``llmesr tune``: strict search spaces, a real SQLite study, validation-only trials, pruning that
leaves resumable folders, a killed tune that resumes its study, two workers sharing one study,
and the grid's and the report's use of tune folders."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main
from llmesr.config import resolve_config
from llmesr.data.split import EvalSplit
from llmesr.experiments.document import to_markdown
from llmesr.experiments.grid import load_grid
from llmesr.experiments.methods import find_runs
from llmesr.experiments.space import load_space
from llmesr.experiments.tune import run_tune
from llmesr.experiments.tune_folder import TuneFolder, tuning_appendix
from llmesr.runs import evaluate_splits, prepare_data
from llmesr.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "max_len": 10,
    "hidden_size": 8,
    "num_layers": 1,
    "batch_size": 16,
    "sampled_negatives": 5,
    "progress": False,
    "threads": 1,
}


def write_space(tmp_path: Path, data: Path, **extra) -> Path:
    spec = {
        "base": str(ROOT / "configs" / "sasrec_ce.yaml"),
        "fixed": {"data": str(data), **TINY},
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
            "loss": {"type": "categorical", "choices": ["ce", "bce"]},
            "negatives": {"type": "int", "low": 1, "high": 4, "when": {"loss": "bce"}},
        },
        "budget": {"trials": 3, "max_epochs": 2},
        "pruner": "none",
    }
    spec.update(extra)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / TuneFolder.STUDY_DB}")


def log_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"spaec": {}}, "unknown key(s) spaec"),
        ({"space": {"lrr": {"type": "float", "low": 0.1, "high": 0.2}}}, "did you mean 'lr'"),
        ({"space": {"kcore": {"type": "int", "low": 1, "high": 5}}}, "changes what is measured"),
        ({"space": {"seed": {"type": "int", "low": 1, "high": 5}}}, "not searchable"),
        (
            {"space": {"distill_weight": {"type": "float", "low": 0.1, "high": 1}}},
            "has no setting 'distill_weight'",
        ),
        ({"space": {"dropout": {"type": "float", "low": 0.1, "high": 1.5}}}, "dropout"),
        (
            {"space": {"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
            "log range needs low > 0",
        ),
        ({"space": {"lr": {"type": "float", "low": 0.1, "high": 0.2, "lo": 1}}}, "unknown key(s) lo"),
        (
            {"space": {"negatives": {"type": "int", "low": 1, "high": 4, "when": {"loss": "bce"}}}},
            "listed before",
        ),
        ({"space": {"loss": {"type": "categorical", "choices": ["ce", "ce"]}}}, "distinct"),
        ({"budget": {"max_epochs": 2}}, "trials is required"),
        ({"fixed": {"lr": 0.1}}, "fixed or searched"),
        ({"metric": "NDCG@7"}, "select_metric 'NDCG@7' is not computed"),
        ({"pruner": "sometimes"}, "pruner must be one of"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_key_and_nothing_is_written(
    patterned_dir, tmp_path, capsys, change, message
):
    space = write_space(tmp_path, patterned_dir, **change)
    assert main(["tune", str(space), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def poisoned_test_split(data):
    """The run data with every test target out of the catalogue: ranking the test split fails."""
    test = data.split.test
    bad = EvalSplit(test.users, test.inputs, np.full_like(test.targets, data.dataset.n_items + 1000))
    return dataclasses.replace(data, split=dataclasses.replace(data.split, test=bad))


def test_trials_select_on_validation_and_never_read_the_test_split(patterned_dir, tmp_path):
    space = load_space(
        write_space(
            tmp_path, patterned_dir, fixed={"data": str(patterned_dir), **TINY, "tracking": "tensorboard"}
        )
    )
    data = poisoned_test_split(prepare_data(space.base_config()))
    trial_cfg = space.trial_config({})
    model = Trainer(trial_cfg, data, tmp_path / "probe").model
    with pytest.raises((IndexError, RuntimeError)):  # the poison works: ranking test fails
        evaluate_splits(model, data, dataclasses.replace(trial_cfg, evaluate_test=True))

    out = tmp_path / "out"
    summary = run_tune(space, data, out)
    trials = pd.read_csv(out / TuneFolder.TRIALS)
    assert list(trials.number) == [0, 1, 2] and set(trials.state) == {"COMPLETE"}
    for row in trials.itertuples():
        metrics = json.loads((out / row.folder / "metrics.json").read_text())
        assert "test" not in metrics and row.value == metrics["valid"]["full"]["overall"]["NDCG@10"]
        assert sorted(np.load(out / row.folder / "ranks.npz").files) == sorted(
            f"valid_{k}" for k in ("users", "tail_user", "tail_item", "full", "sampled")
        )
    best = trials.loc[trials.value.idxmax()]
    assert summary["best"]["trial"] == best.number and summary["best"]["value"] == best.value
    # best.yaml is a config for llmesr train: the untuned settings with the chosen values.
    cfg = resolve_config([out / TuneFolder.BEST])
    assert cfg.lr == pytest.approx(best.lr) and cfg.loss == best.loss and cfg.hidden_size == 8
    assert cfg.evaluate_test and cfg.epochs == 200 and cfg.threads is None
    runs, final, _ = load_grid(out / TuneFolder.EXPERIMENT)
    assert [r.settings for r in runs] == [{"seed": 42}, {"seed": 43}, {"seed": 44}] and final == out / "final"
    # The study's own curve in TensorBoard, one point per completed trial.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard" / "study"))
    events.Reload()
    assert [e.step for e in events.Scalars("tune/value")] == [0, 1, 2]
    assert events.Scalars("tune/best")[-1].value == pytest.approx(best.value)
    # The report lists the tune in an appendix and never counts its trials as runs.
    text = to_markdown(tuning_appendix([out]), out)
    assert "float 0.001..0.05 (log)" in text and "int 1..4, when loss in bce" in text
    assert f"| {out.name} | lr | float 0.001..0.05 (log) | 0.001 | {best.lr:g} |" in text
    assert find_runs(out) == []


def test_pruned_trials_stop_early_and_their_folders_resume(patterned_dir, tmp_path, capsys):
    # A floor no NDCG reaches: every trial is pruned after its first epoch, and none is best.
    space = write_space(
        tmp_path,
        patterned_dir,
        pruner={"type": "threshold", "lower": 2.0},
        budget={"trials": 2, "max_epochs": 3},
    )
    out = tmp_path / "out"
    assert main(["tune", str(space), "--out", str(out)]) == 0
    assert "no trial completed" in capsys.readouterr().out
    trials = pd.read_csv(out / TuneFolder.TRIALS)
    assert list(trials.state) == ["PRUNED", "PRUNED"] and list(trials.epochs) == [1, 1]
    assert not (out / TuneFolder.BEST).exists()
    run = out / "trial_0"
    assert (run / "last.pt").exists() and not (run / "metrics.json").exists()
    cfg = resolve_config([run / "config.yaml"])
    Trainer(cfg, prepare_data(cfg), run).fit()  # resumes at epoch 2
    assert log_epochs(run) == [1, 2, 3] and (run / "metrics.json").exists()


def start_tune(space: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llmesr.cli", "tune", str(space), "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_tune_resumes_its_study_in_the_same_trial_folder(tmp_path):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(400, 30))
    fixed = {"data": str(data), **TINY, "hidden_size": 32, "num_layers": 2}
    space = write_space(tmp_path, data, fixed=fixed, budget={"trials": 2, "max_epochs": 4})
    out = tmp_path / "out"
    proc = start_tune(space, out)
    log = out / "trial_0" / "log.jsonl"
    deadline = time.monotonic() + 60
    # Two epochs logged: the first is in last.pt for sure (saved before the second is trained).
    while not (log.exists() and log.read_text().count("\n") >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_epoch = log.read_text().splitlines()[0]
    [killed] = study(out).trials
    assert killed.state.name == "RUNNING"

    assert main(["tune", str(space), "--out", str(out)]) == 0
    failed, retry, new = study(out).trials
    assert [t.state.name for t in (failed, retry, new)] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert retry.params == killed.params and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["folder"] == "trial_0" and not (out / "trial_1").exists()
    assert new.user_attrs["folder"] == "trial_2"
    assert log_epochs(out / "trial_0") == [1, 2, 3, 4]
    assert log.read_text().splitlines()[0] == first_epoch  # continued, not trained again
    table = pd.read_csv(out / TuneFolder.TRIALS)
    assert list(table.number) == [0, 1, 2] and table.retry_of.tolist()[1] == 0


def test_ctrl_c_re_queues_the_trial_and_the_next_tune_continues_its_folder(patterned_dir, tmp_path):
    fixed = {"data": str(patterned_dir), **TINY, "patience": 100}
    space = load_space(
        write_space(tmp_path, patterned_dir, fixed=fixed, budget={"trials": 1, "max_epochs": 12})
    )
    data, out = prepare_data(space.base_config()), tmp_path / "out"
    log = out / "trial_0" / "log.jsonl"

    def press_ctrl_c() -> None:  # a real SIGINT, once the trial has logged two epochs
        while not (log.exists() and log.read_text().count("\n") >= 2):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises((KeyboardInterrupt, RuntimeError)):  # torch.save turns it into a RuntimeError
        run_tune(space, data, out)
    first = log.read_text().splitlines()[0]
    assert [t.state.name for t in study(out).trials] == ["FAIL", "WAITING"]
    run_tune(space, data, out)
    failed, retry = study(out).trials
    assert retry.state.name == "COMPLETE" and retry.params == failed.params
    assert retry.user_attrs["folder"] == "trial_0" and log.read_text().splitlines()[0] == first
    assert log_epochs(out / "trial_0") == list(range(1, 13))


def test_two_workers_share_one_sqlite_study_without_lost_or_duplicated_trials(tmp_path):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(300, 20))
    space = write_space(tmp_path, data, budget={"trials": 4, "max_epochs": 2})
    out = tmp_path / "out"
    assert main(["tune", str(space), "--out", str(out), "--jobs", "2"]) == 0
    trials = [t for t in study(out).trials if not t.user_attrs.get("surplus")]
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 4
    folders = [t.user_attrs["folder"] for t in trials]
    assert sorted(folders) == [f"trial_{t.number}" for t in sorted(trials, key=lambda t: t.number)]
    for folder in folders:  # each trial trained once, by one worker
        assert log_epochs(out / folder) == [1, 2]
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert len(pd.read_csv(out / TuneFolder.TRIALS)) == 4
    assert sorted(p.name for p in (out / TuneFolder.WORKERS).glob("*.log")) == [
        "worker_0.log",
        "worker_1.log",
    ]


def test_a_resumed_study_refuses_another_space(patterned_dir, tmp_path, capsys):
    space = write_space(tmp_path, patterned_dir, budget={"trials": 1, "max_epochs": 1})
    out = tmp_path / "out"
    assert main(["tune", str(space), "--out", str(out)]) == 0
    assert main(["tune", str(space), "--out", str(out), "--trials", "2"]) == 0  # a larger budget
    assert len(study(out).trials) == 2
    assert main(["tune", str(space), "--out", str(out), "--max-epochs", "3"]) == 2
    assert "made from another search space (max_epochs differ)" in capsys.readouterr().err


def test_grid_tunes_each_method_with_one_budget_then_trains_at_the_choice(patterned_dir, tmp_path, capsys):
    space = write_space(tmp_path, patterned_dir, budget={"trials": 5, "max_epochs": 5})
    grid = {
        "set": {"data": str(patterned_dir), **TINY, "epochs": 1},
        "grid": {"model": ["sasrec"], "seed": [1]},
        "out": str(tmp_path / "runs"),
        "tune": {"spaces": {"sasrec": str(space)}, "budget": {"trials": 1, "max_epochs": 1}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["experiment", str(path)]) == 0
    tune = tmp_path / "runs" / "tune" / "sasrec"
    assert len(pd.read_csv(tune / TuneFolder.TRIALS)) == 1  # the grid's budget, not the space's
    chosen = json.loads((tune / TuneFolder.SUMMARY).read_text())["best"]["params"]
    run = tmp_path / "runs" / "model=sasrec__seed=1"
    cfg = resolve_config([run / "config.yaml"])
    assert cfg.lr == pytest.approx(chosen["lr"]) and cfg.epochs == 1 and cfg.evaluate_test
    assert "test" in json.loads((run / "metrics.json").read_text())
    grid["set"]["lr"] = 0.01  # a setting the grid fixes may not also be searched
    path.write_text(yaml.safe_dump(grid))
    assert main(["experiment", str(path)]) == 2
    assert "searches 'lr', which the grid sets" in capsys.readouterr().err
