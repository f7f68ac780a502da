"""llmesr experiment: grid expansion, parallel runs, skip finished, resume interrupted, results."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import yaml

from llmesr.cli import main

FAST = {"max_len": 10, "hidden_size": 16, "batch_size": 16, "epochs": 2, "sampled_negatives": 5}


def write_grid(tmp_path, data, **extra) -> str:
    spec = {"set": {"data": str(data), **FAST}, "grid": {"model": ["sasrec", "gru4rec"], "seed": [1, 2]}}
    spec.update(extra)
    spec.setdefault("out", str(tmp_path / "runs"))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_grid_runs_every_combination_in_parallel_and_collects_results(patterned_dir, tmp_path, capsys):
    grid = write_grid(tmp_path, patterned_dir)
    assert main(["experiment", grid, "--jobs", "2"]) == 0
    runs = tmp_path / "runs"
    names = sorted(p.name for p in runs.iterdir() if p.is_dir())
    assert names == [
        "model=gru4rec__seed=1",
        "model=gru4rec__seed=2",
        "model=sasrec__seed=1",
        "model=sasrec__seed=2",
    ]
    results = pd.read_parquet(runs / "results.parquet")
    assert results["run"].nunique() == 4 and set(results["model"]) == {"sasrec", "gru4rec"}
    assert set(results["protocol"]) == {"full", "sampled"} and "tail_item" in set(results["group"])
    row = results.query("run == 'model=sasrec__seed=1' and split == 'test' and protocol == 'full'")
    stored = json.loads((runs / "model=sasrec__seed=1" / "metrics.json").read_text())
    assert (
        row.query("group == 'overall' and metric == 'NDCG@10'")["value"].item()
        == (stored["test"]["full"]["overall"]["NDCG@10"])
    )
    capsys.readouterr()

    # A rerun skips finished runs; a run with its metrics gone but last.pt kept is resumed.
    (runs / "model=gru4rec__seed=2" / "metrics.json").unlink()
    assert main(["experiment", grid]) == 0
    out = capsys.readouterr().out
    assert "4 runs in the grid, 3 finished, 1 to run" in out and "model=gru4rec__seed=2: done" in out
    log = (runs / "model=gru4rec__seed=2" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2  # resumed at its last epoch, not retrained


def test_grid_with_a_bad_key_fails_before_running_anything(patterned_dir, tmp_path, capsys):
    grid = write_grid(tmp_path, patterned_dir, grid={"modle": ["sasrec"]})
    assert main(["experiment", grid]) == 2
    assert "modle" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_when_overrides_matching_runs_and_a_dependent_run_waits_for_it(patterned_dir, tmp_path, capsys):
    # MELT fine-tunes the SASRec run of the same seed (the papers' protocol), from one grid file.
    grid = write_grid(
        tmp_path,
        patterned_dir,
        grid={"model": ["melt", "sasrec"], "seed": [1]},  # the dependent run is listed first
        when={"model=melt": {"init_from": "{out}/model=sasrec__seed={seed}", "melt_item_weight": 0.2}},
    )
    assert main(["experiment", grid, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert planned.index("model=sasrec__seed=1:") < planned.index("model=melt__seed=1:")
    assert main(["experiment", grid, "--jobs", "2"]) == 0
    runs = tmp_path / "runs"
    melt = yaml.safe_load((runs / "model=melt__seed=1" / "config.yaml").read_text())
    sasrec = yaml.safe_load((runs / "model=sasrec__seed=1" / "config.yaml").read_text())
    assert melt["init_from"] == str(runs / "model=sasrec__seed=1") and melt["melt_item_weight"] == 0.2
    assert sasrec["init_from"] is None and sasrec["melt_item_weight"] is None
    assert "init_from: the sasrec backbone from" in (runs / "model=melt__seed=1" / "train.log").read_text()


def test_bad_when_conditions_placeholders_and_cycles_fail_at_once(patterned_dir, tmp_path, capsys):
    grid = write_grid(tmp_path, patterned_dir, when={"model=melt": {"epochs": 1}})
    assert main(["experiment", grid]) == 2
    assert "when 'model=melt' names no value of the grid" in capsys.readouterr().err
    grid = write_grid(tmp_path, patterned_dir, when={"model=sasrec": {"init_from": "{out}/x={colour}"}})
    assert main(["experiment", grid]) == 2
    assert "cannot fill" in capsys.readouterr().err
    grid = write_grid(
        tmp_path,
        patterned_dir,
        grid={"model": ["sasrec"], "seed": [1, 2]},
        when={
            "seed=1": {"init_from": "{out}/model=sasrec__seed=2"},
            "seed=2": {"init_from": "{out}/model=sasrec__seed=1"},
        },
    )
    assert main(["experiment", grid]) == 2
    assert "cycle" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_run_aligning_with_another_run_of_the_grid_waits_for_it(patterned_dir, tmp_path, capsys):
    # LLMEmb aligns with the finished SASRec of its seed (align_from), as configs/grid_table1_* do.
    grid = write_grid(
        tmp_path,
        patterned_dir,
        set={"data": str(patterned_dir), **FAST, "similar_k": 5, "cache_dir": str(tmp_path / "cache")},
        grid={"model": ["llmemb", "sasrec"], "seed": [1]},  # the dependent run is listed first
        when={"model=llmemb": {"align_from": "{out}/model=sasrec__seed={seed}"}},
    )
    assert main(["experiment", grid, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert planned.index("model=sasrec__seed=1:") < planned.index("model=llmemb__seed=1:")
    assert main(["experiment", grid, "--jobs", "2"]) == 0
    runs = tmp_path / "runs"
    llmemb = yaml.safe_load((runs / "model=llmemb__seed=1" / "config.yaml").read_text())
    assert llmemb["align_from"] == str(runs / "model=sasrec__seed=1")
    log = (runs / "model=llmemb__seed=1" / "train.log").read_text()
    assert f"reference item table: {runs / 'model=sasrec__seed=1'}" in log
    assert (runs / "model=llmemb__seed=1" / "metrics.json").exists()


def test_a_run_waits_for_every_run_it_reads():
    from pathlib import Path

    from llmesr.experiments.grid import GridRun, _waves

    a, b = GridRun("a", Path("/g/a"), {}, []), GridRun("b", Path("/g/b"), {}, [], (Path("/g/a"),))
    c = GridRun("c", Path("/g/c"), {}, [], (Path("/g/b"), Path("/g/a"), Path("/elsewhere")))
    assert [[r.name for r in wave] for wave in _waves([c, b, a])] == [["a"], ["b"], ["c"]]
