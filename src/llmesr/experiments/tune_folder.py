"""The files of a tune folder (``llmesr tune --out DIR``) and the report's appendix built from them.

    DIR/tune_space.yaml   the complete search space as tuned (its presence marks a tune folder)
    DIR/study.db          the Optuna study (SQLite; absent when --storage names another database)
    DIR/trial_<n>/        one ordinary run folder per trial (validation metrics only)
    DIR/trials.csv        one row per trial: number, state, value, epochs, seconds, parameters
    DIR/best.yaml         the best trial's settings: a config for llmesr train / experiment
    DIR/experiment.yaml   a grid of the final runs: best.yaml at each of the space's seeds
    DIR/summary.json      space, budget, counts, the chosen values and the untuned ones
    DIR/workers/          --jobs: one log per worker process (and the workers' liveness locks)

Read without Optuna, so that ``llmesr report`` needs no tuning package. Trial folders hold no test
metrics, so the report never counts them as runs of a method (``methods.find_runs`` skips tune
folders) and lists the tune folders in an appendix instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmesr.experiments.document import Heading, Note, Part, Table
from llmesr.experiments.plots import value_text
from llmesr.io import read_json


class TuneFolder:
    SPACE = "tune_space.yaml"
    STUDY_DB = "study.db"
    TRIALS = "trials.csv"
    BEST = "best.yaml"
    EXPERIMENT = "experiment.yaml"
    SUMMARY = "summary.json"
    WORKERS = "workers"
    FINAL = "final"  # experiment.yaml's out: the final runs

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TuneFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def trial(self, number: int) -> Path:
        return self.path / f"trial_{number}"

    def is_tune_folder(self) -> bool:
        return self.file(self.SPACE).exists()

    def summary(self) -> dict[str, Any]:
        return read_json(self.file(self.SUMMARY), "tune summary")


def find_tune_folders(root: Path) -> list[Path]:
    """Finished tune folders (with a summary) at any depth under ``root``."""
    markers = sorted(Path(root).rglob(TuneFolder.SPACE))
    return [m.parent for m in markers if (m.parent / TuneFolder.SUMMARY).exists()]


def tuning_appendix(folders: list[Path]) -> list[Part]:
    """Appendix: per tuned method its search space, the budget, and the chosen against the untuned
    values, so a reader can check that every method was tuned alike."""
    parts: list[Part] = [Heading(2, "Appendix: hyper-parameter tuning")]
    if not folders:
        return parts + [Note("No tune folders given: the methods were not tuned.")]
    summaries = [(folder, TuneFolder(folder).summary()) for folder in folders]
    budgets = [
        [
            folder.name,
            s["model"],
            str(s["budget"]["trials"]),
            str(s["budget"]["max_epochs"]),
            value_text(s["budget"].get("timeout_s") or "–"),
            s["pruner"]["type"],
            s["sampler"]["type"],
            f"{s['trials']['complete']} / {s['trials']['pruned']} / {s['trials']['failed']}",
            f"{s['metric']} {value_text(s['best']['value']) if s.get('best') else '–'}",
        ]
        for folder, s in summaries
    ]
    header = [
        "tune",
        "model",
        "trials",
        "max epochs",
        "timeout (s)",
        "pruner",
        "sampler",
        "complete / pruned / failed",
        "best valid",
    ]
    parts += [Heading(3, "Budgets"), Table(header, budgets, 2)]
    rows = []
    for folder, s in summaries:
        chosen = (s.get("best") or {}).get("params", {})
        for name, text in s["space"].items():
            picked = value_text(chosen[name]) if name in chosen else "– (not searched in the best trial)"
            rows.append([folder.name, name, text, value_text(s["untuned"].get(name)), picked])
    parts += [
        Heading(3, "Search spaces and chosen values"),
        Table(["tune", "setting", "searched over", "untuned", "chosen"], rows, 3),
        Note(
            "Trials select on the validation split only (full ranking, overall); the test split is "
            "never read during tuning. Untuned: the value of the method's base configuration "
            "(null = the model's default)."
        ),
    ]
    return parts
