"""``llmesr experiment grid.yaml``: every combination of a grid of settings, one run folder each.

    configs: [configs/sasrec_ce.yaml]        # base presets, applied in order (optional)
    set: {epochs: 20, patience: 5}           # fixed overrides for every run (optional)
    grid:                                    # every combination of these lists is one run
      data: [beauty]
      model: [sasrec, llminit, llmesr]
      seed: [42, 43, 44]
    out: runs/table1                         # run folders go under here
    when:                                    # overrides for the runs with one grid value (optional)
      model=melt: {init_from: "{out}/model=sasrec__seed={seed}"}
    tune:                                    # tune each method with one budget first (optional)
      spaces: {sasrec: configs/tune/sasrec.yaml, llmesr: configs/tune/llmesr.yaml}
      budget: {trials: 12, max_epochs: 10}

String values of ``set`` and ``when`` may name ``{out}`` and any grid key (``{seed}``), filled in
per run. A run that reads another run of the grid (``init_from``, LLMEmb's ``align_from``: the
settings that name a run) starts after that run has finished.

Each run is ``llmesr train`` in its own process (so ``--jobs N`` runs N at once, each with its
share of the CPU threads) writing ``OUT/<key=value__...>/``. A rerun skips runs whose
``metrics.json`` exists and resumes interrupted ones from their ``last.pt``. Finished runs are
collected into ``OUT/results.csv`` and ``results.parquet``: one row per run, split, protocol,
head/tail group and metric. Every run's configuration is resolved before anything starts, so a
typo in the grid fails at once, naming the key.

With ``tune:`` (see :mod:`llmesr.experiments.grid_tune`) each listed method is tuned by
``llmesr tune`` before its runs start, all with the same budget, and its runs train with the
tune's ``best.yaml`` after ``configs``.

``set`` and ``when`` are shared by every run of the grid: a model setting that a run's model does
not read (``distill_weight`` on a SASRec run) is left out of that run, not refused.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from llmesr.config import RUN_KEYS, RunConfig, apply_overrides, inapplicable, resolve_config
from llmesr.errors import ConfigError
from llmesr.evaluation import EVAL_SPLITS, GROUPS, PROTOCOLS
from llmesr.experiments.grid_tune import GridTuning, load_tuning
from llmesr.io import atomic_write_parquet, atomic_write_text, read_yaml
from llmesr.parallel import threads_per_job
from llmesr.runs import RunFolder


@dataclass
class GridRun:
    name: str
    folder: Path
    settings: dict  # the grid values of this run
    args: list[str]  # llmesr train arguments
    sources: tuple[Path, ...] = ()  # the run folders it reads (init_from, align_from), resolved


def load_grid(path: Path) -> tuple[list[GridRun], Path, GridTuning | None]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such grid file: {path}")
    # An empty (e.g. truncated) file would otherwise launch one run with every default setting.
    spec = read_yaml(path, "grid file", allow_empty=False)
    unknown = set(spec) - {"configs", "set", "grid", "out", "when", "tune"}
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
    when = _conditions(spec.get("when") or {}, grid, path)
    tuning = load_tuning(spec.get("tune"), grid, fixed, out, path)
    runs = []
    keys = list(grid)
    presets = resolve_config(configs)  # what the config files alone set (which model, for one)
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values, strict=True))
        chosen = dict(fixed)
        for (key, text), extra in when.items():
            if _text(settings[key]) == text:
                chosen.update(extra)
        chosen = {k: _fill(v, settings, out, path) for k, v in chosen.items()}
        overrides = {**chosen, **settings}
        model = apply_overrides(presets, overrides, f"{path}: grid run {settings}")
        unread = set(inapplicable(model, set(overrides)))
        overrides = {k: v for k, v in overrides.items() if k not in unread}
        sets = [f"{k}={_text(v)}" for k, v in overrides.items()]
        best = tuning.best_config(settings) if tuning else None
        run_configs = [*configs, best] if best else configs
        # Fail now, naming the key, rather than mid-grid (a tune's best.yaml once it is written).
        resolve_config([c for c in run_configs if c.exists()], sets)
        name = "__".join(f"{k}={_text(v)}" for k, v in settings.items()) or "run"
        folder = out / name
        args = [a for c in run_configs for a in ("--config", str(c))]
        args += [a for s in sets for a in ("--set", s)]
        sources = tuple(Path(str(overrides[k])).resolve() for k in RUN_KEYS if overrides.get(k))
        runs.append(GridRun(name, folder, settings, ["--out", str(folder), *args], sources))
    return runs, out, tuning


def _conditions(when, grid: dict, path: Path) -> dict[tuple[str, str], dict]:
    """``when:`` as {(grid key, value text): overrides}, each condition checked against the grid."""
    if not isinstance(when, dict):
        raise ConfigError(f"{path}: 'when' must map 'key=value' to config overrides")
    parsed = {}
    for condition, extra in when.items():
        key, _, value = str(condition).partition("=")
        key, value = key.strip(), value.strip()
        if key not in grid or value not in {_text(v) for v in grid[key]}:
            raise ConfigError(f"{path}: when {condition!r} names no value of the grid")
        if not isinstance(extra, dict) or not extra:
            raise ConfigError(f"{path}: when {condition!r} must map config keys to values")
        apply_overrides(RunConfig(), extra, f"{path}: when")  # keys and types; filled values later
        parsed[(key, value)] = extra
    return parsed


def _fill(value, settings: dict, out: Path, path: Path):
    """A string setting with ``{out}`` / ``{grid key}`` placeholders filled in for one run."""
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return value.format(out=out, **{k: _text(v) for k, v in settings.items()})
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"{path}: cannot fill {value!r} ({type(err).__name__}: {err})") from None


def _text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run_grid(path: Path, jobs: int = 1, dry_run: bool = False) -> pd.DataFrame:
    runs, out, tuning = load_grid(path)
    if tuning is not None:
        tuning.run(jobs, dry_run)
        if not dry_run:
            runs, out, _ = load_grid(path)  # now with the tunes' best settings, checked
    todo = [r for r in runs if not RunFolder(r.folder).is_finished()]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to run -> {out}")
    waves = _waves(todo)  # runs that read another run of the grid wait for it
    if dry_run:
        for r in (r for wave in waves for r in wave):
            print(f"  {r.name}: llmesr train {' '.join(r.args)}")
        return collect(runs, out)
    threads = threads_per_job(jobs)
    failed: set[Path] = set()

    def launch(run: GridRun) -> tuple[str, int]:
        run.folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "llmesr.cli", "train", *run.args, "--set", f"threads={threads}"]
        cmd += ["--set", "progress=false"]
        with open(RunFolder(run.folder).file(RunFolder.TRAIN_LOG), "a") as log:
            return run.name, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max(jobs, 1)) as pool:
        for wave in waves:
            ready = [r for r in wave if failed.isdisjoint(r.sources)]
            for r in wave:
                if r not in ready:
                    print(f"  {r.name}: SKIPPED (a run it reads failed)")
                    failed.add(r.folder.resolve())
            for run, (name, code) in zip(ready, pool.map(launch, ready), strict=True):
                failure = f"FAILED (exit {code}, see {RunFolder.TRAIN_LOG})"
                print(f"  {name}: {'done' if code == 0 else failure}")
                if code != 0:
                    failed.add(run.folder.resolve())
    return collect(runs, out)


def _waves(todo: list[GridRun]) -> list[list[GridRun]]:
    """``todo`` in waves: a run that reads other pending runs comes a wave after the last of them."""
    folder_of = {r.folder.resolve(): r for r in todo}
    depth: dict[str, int] = {}

    def level(run: GridRun, seen: tuple[str, ...] = ()) -> int:
        if run.name in seen:
            raise ConfigError(f"grid runs start from each other in a cycle: {' -> '.join((*seen, run.name))}")
        if run.name not in depth:
            sources = [folder_of[s] for s in run.sources if s in folder_of]
            depth[run.name] = max((level(s, (*seen, run.name)) + 1 for s in sources), default=0)
        return depth[run.name]

    for run in todo:
        level(run)
    return [[r for r in todo if depth[r.name] == d] for d in range(max(depth.values(), default=-1) + 1)]


def collect(runs: list[GridRun], out: Path) -> pd.DataFrame:
    """One row per finished run x split x protocol x group x metric; written to OUT/results.*."""
    rows = []
    for run in runs:
        folder = RunFolder(run.folder)
        if not folder.is_finished():
            continue
        metrics = folder.metrics()
        for split in EVAL_SPLITS:
            for protocol in PROTOCOLS:
                result = metrics.get(split, {}).get(protocol)
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
