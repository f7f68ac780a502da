"""A grid's ``tune:`` section: tune every method with one budget before its runs, and train the runs
at the chosen settings.

    tune:
      spaces:                              # grid value of `by` -> its search space
        sasrec: configs/tune/sasrec.yaml
        llminit: configs/tune/llminit.yaml
        llmesr: configs/tune/llmesr.yaml
      budget: {trials: 12, max_epochs: 10} # one budget for every method (replaces each space's)
      by: model                            # the grid key whose value picks the space (default)
      out: runs/table1_tune                # tune folders OUT/<value>/ (default: the grid's out/tune)

``llmesr experiment`` first runs ``llmesr tune`` for each space (resuming its study; a finished tune
only rewrites its results), then trains the grid's runs of that value with the tune's ``best.yaml``
after the grid's ``configs``. The grid's ``set`` reaches the tunes too (the data, above all), so the
trials and the final runs see the same settings; a setting the grid fixes or varies may not also be
searched. ``llmesr report`` on the grid's out finds the tune folders (default place) and adds the
appendix of spaces, budgets and chosen values.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmesr.config import MODEL_KEYS, applicable_keys
from llmesr.errors import ConfigError
from llmesr.experiments.space import BUDGET_KEYS, load_space
from llmesr.experiments.tune_folder import TuneFolder

TUNE_KEYS = {"spaces", "budget", "by", "out"}


def _text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@dataclass
class GridTuning:
    by: str
    spaces: dict[str, Path]  # grid value text -> space file
    budget: dict[str, Any]
    out: Path
    sets: dict[str, dict[str, Any]]  # grid value text -> the grid settings its tune shares

    def folder(self, value: str) -> TuneFolder:
        return TuneFolder(self.out / value)

    def best_config(self, settings: dict[str, Any]) -> Path | None:
        """The best.yaml a grid run with these grid values trains with (None: not a tuned method)."""
        value = _text(settings.get(self.by))
        return self.folder(value).file(TuneFolder.BEST) if value in self.spaces else None

    def commands(self, jobs: int) -> list[tuple[str, list[str]]]:
        """One ``llmesr tune`` command line per space."""
        budget = {"trials": "--trials", "max_epochs": "--max-epochs", "timeout_s": "--timeout"}
        out = []
        for value, space in self.spaces.items():
            args = [str(space), "--out", str(self.folder(value).path), "--jobs", str(jobs)]
            args += [a for k, v in self.budget.items() for a in (budget[k], str(v))]
            args += [a for k, v in self.sets[value].items() for a in ("--set", f"{k}={_text(v)}")]
            out.append((value, args))
        return out

    def run(self, jobs: int, dry_run: bool = False) -> None:
        """Tune every space (each resumes its study); a failed tune stops the grid."""
        for value, args in self.commands(jobs):
            if dry_run:
                print(f"  tune {self.by}={value}: llmesr tune {' '.join(args)}")
                continue
            folder = self.folder(value).path
            folder.mkdir(parents=True, exist_ok=True)
            log = folder.with_suffix(".log")
            with open(log, "a") as handle:
                cmd = [sys.executable, "-m", "llmesr.cli", "tune", *args, "--set", "progress=false"]
                code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT).returncode
            if code != 0:
                raise ConfigError(
                    f"tune of {self.by}={value} failed (exit {code}, see {log}); no run started"
                )
            print(f"  tune {self.by}={value}: done -> {folder}")


def load_tuning(raw: Any, grid: dict, fixed: dict, out: Path, path: Path) -> GridTuning | None:
    """The grid's ``tune:`` section, checked against the grid and each space at once."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - TUNE_KEYS:
        raise ConfigError(f"{path}: 'tune' must map {', '.join(sorted(TUNE_KEYS))}")
    by = raw.get("by", "model")
    spaces = raw.get("spaces")
    if not isinstance(spaces, dict) or not spaces:
        raise ConfigError(f"{path}: tune: 'spaces' must map grid values of {by!r} to search space files")
    budget = raw.get("budget") or {}
    if not isinstance(budget, dict) or set(budget) - BUDGET_KEYS:
        raise ConfigError(f"{path}: tune: 'budget' may hold {', '.join(sorted(BUDGET_KEYS))}")
    if by not in grid and by not in fixed:
        raise ConfigError(f"{path}: tune: by {by!r} is no key of the grid")
    values = {_text(v) for v in grid.get(by, [fixed.get(by)])}
    shared = {k: v for k, v in fixed.items() if not (isinstance(v, str) and "{" in v)}  # no placeholders
    tuning = GridTuning(by, {}, budget, Path(raw.get("out") or out / "tune"), {})
    for value, name in spaces.items():
        value = _text(value)
        if value not in values:
            raise ConfigError(f"{path}: tune: {by}={value} is no value of the grid")
        found = next((p for p in (Path(str(name)), path.parent / str(name)) if p.exists()), None)
        if found is None:
            raise ConfigError(f"{path}: tune: search space file {name} not found")
        space = load_space(found, budget=budget)
        searched = {p.name for p in space.params}
        clash = sorted(searched & (set(fixed) | set(grid)))
        if clash:
            raise ConfigError(f"{path}: tune: {found} searches {clash[0]!r}, which the grid sets")
        reads = applicable_keys(space.base_config().model)
        sets = {k: v for k, v in shared.items() if k not in MODEL_KEYS or k in reads}
        load_space(found, sets, budget)  # the grid's settings are valid for the tune, too
        tuning.spaces[value], tuning.sets[value] = found, sets
    return tuning
