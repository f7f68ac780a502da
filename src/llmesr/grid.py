"""``llmesr experiment grid.yaml``: every combination of a grid of settings, one run folder each.

    configs: [configs/sasrec_ce.yaml]        # base presets, applied in order (optional)
    set: {epochs: 20, patience: 5}           # fixed overrides for every run (optional)
    grid:                                    # every combination of these lists is one run
      data: [beauty]
      model: [sasrec, llminit, llmesr]
      seed: [42, 43, 44]
    out: runs/table1                         # run folders go under here

Each run is ``llmesr train`` in its own process (so ``--jobs N`` runs N at once, each with its
share of the CPU threads) writing ``OUT/<key=value__...>/``. A rerun skips runs whose
``metrics.json`` exists and resumes interrupted ones from their ``last.pt``. Finished runs are
collected into ``OUT/results.csv`` and ``results.parquet``: one row per run, split, protocol,
head/tail group and metric. Every run's configuration is resolved before anything starts, so a
typo in the grid fails at once, naming the key.

(Kept beside ``experiments.py``, which compares finished runs, so that each file stays small.)
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from llmesr.config import ConfigError, RunConfig, apply_overrides, read_json, read_yaml, resolve_config
from llmesr.experiments import GROUPS, PROTOCOLS
from llmesr.io import atomic_write_parquet, atomic_write_text


@dataclass
class GridRun:
    name: str
    folder: Path
    settings: dict  # the grid values of this run
    args: list[str]  # llmesr train arguments


def load_grid(path: Path) -> tuple[list[GridRun], Path]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such grid file: {path}")
    # An empty (e.g. truncated) file would otherwise launch one run with every default setting.
    spec = read_yaml(path, "grid file", allow_empty=False)
    unknown = set(spec) - {"configs", "set", "grid", "out"}
    if unknown:
        raise ConfigError(f"{path}: unknown grid key(s) {', '.join(sorted(map(str, unknown)))}")
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: 'grid' must map each key to a non-empty list of values")
    fixed = spec.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: 'set' must map config keys to values")
    config_list = spec.get("configs") or []
    if not (isinstance(config_list, list) and all(isinstance(c, str) for c in config_list)):
        raise ConfigError(f"{path}: 'configs' must be a list of YAML file names")
    if not isinstance(spec.get("out") or "", str):
        raise ConfigError(f"{path}: 'out' must be a folder name")
    # Checked here so that the error names the grid file and its section, not a --set option.
    apply_overrides(RunConfig(), fixed, f"{path}: set")
    for key, values in grid.items():
        for value in values:
            apply_overrides(RunConfig(), {key: value}, f"{path}: grid")
        texts = [_text(v) for v in values]
        if len(set(texts)) < len(texts):  # two runs would train into one folder
            raise ConfigError(f"{path}: grid key {key!r} lists a value twice: {values}")
    configs = []
    for c in config_list:  # relative to the working directory, else to the grid file
        found = next((p for p in (Path(c), path.parent / c) if p.exists()), None)
        if found is None:
            raise ConfigError(f"{path}: config file {c} not found")
        configs.append(found)
    out = Path(spec.get("out") or path.with_suffix(""))
    runs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values, strict=True))
        sets = [f"{k}={_text(v)}" for k, v in {**fixed, **settings}.items()]
        resolve_config(configs, sets)  # fail now, naming the key, rather than mid-grid
        name = "__".join(f"{k}={_text(v)}" for k, v in settings.items()) or "run"
        folder = out / name
        args = [*(a for c in configs for a in ("--config", str(c))), *(a for s in sets for a in ("--set", s))]
        runs.append(GridRun(name, folder, settings, ["--out", str(folder), *args]))
    return runs, out


def _text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run_grid(path: Path, jobs: int = 1, dry_run: bool = False) -> pd.DataFrame:
    runs, out = load_grid(path)
    todo = [r for r in runs if not (r.folder / "metrics.json").exists()]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to run -> {out}")
    if dry_run:
        for r in todo:
            print(f"  {r.name}: llmesr train {' '.join(r.args)}")
        return collect(runs, out)
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))

    def launch(run: GridRun) -> tuple[str, int]:
        run.folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "llmesr.cli", "train", *run.args, "--set", f"threads={threads}"]
        cmd += ["--set", "progress=false"]
        with open(run.folder / "train.log", "a") as log:
            return run.name, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        for name, code in pool.map(launch, todo):
            print(f"  {name}: {'done' if code == 0 else f'FAILED (exit {code}, see train.log)'}")
    return collect(runs, out)


def collect(runs: list[GridRun], out: Path) -> pd.DataFrame:
    """One row per finished run x split x protocol x group x metric; written to OUT/results.*."""
    rows = []
    for run in runs:
        path = run.folder / "metrics.json"
        if not path.exists():
            continue
        metrics = read_json(path, "metrics file")
        for split in ("valid", "test"):
            for protocol in PROTOCOLS:
                result = metrics[split].get(protocol)
                if result is None:
                    continue
                for group in GROUPS:
                    values = result["overall"] if group == "overall" else result["groups"][group]
                    for metric, value in values.items():
                        if metric == "count":
                            continue
                        rows.append(
                            {"run": run.name, **run.settings, "split": split, "protocol": protocol}
                            | {"group": group, "metric": metric, "value": value}
                        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        atomic_write_text(out / "results.csv", frame.to_csv(index=False))
        atomic_write_parquet(out / "results.parquet", frame)
    return frame
