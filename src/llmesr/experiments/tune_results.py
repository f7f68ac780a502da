"""What a tune leaves behind (:class:`~llmesr.experiments.tune_folder.TuneFolder` names the files):
``trials.csv`` for people, ``best.yaml`` and ``experiment.yaml`` for the final runs, and
``summary.json`` for ``llmesr report``'s appendix. Rewritten whole after every tune command, from
the study database alone, so a resumed or parallel tune leaves one consistent set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from llmesr.experiments.space import SearchSpace
from llmesr.experiments.tune_folder import TuneFolder
from llmesr.io import atomic_write_json, atomic_write_text


def trial_table(study: Any) -> pd.DataFrame:
    """One row per trial (trials that found the budget taken and never trained are left out)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        history = t.system_attrs.get("retry_history", [])
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "epochs": t.user_attrs.get("epochs"),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "folder": t.user_attrs.get("folder"),
                "retry_of": history[-1] if history else None,
                **t.params,
            }
        )
    return pd.DataFrame(rows, dtype=object)  # parameters keep their types (no 8 -> 8.0 for gaps)


def _best(study: Any) -> Any | None:
    try:
        return study.best_trial
    except ValueError:  # no trial completed (all pruned, failed or still running)
        return None


def write_results(study: Any, space: SearchSpace, tune: TuneFolder) -> dict[str, Any]:
    """Write trials.csv, best.yaml, experiment.yaml and summary.json; the summary."""
    table = trial_table(study)
    atomic_write_text(tune.file(TuneFolder.TRIALS), table.to_csv(index=False))
    states = table["state"].value_counts().to_dict() if not table.empty else {}
    best = _best(study)
    base = space.base_config()
    summary: dict[str, Any] = {
        "space_file": str(space.path),
        "study": study.study_name,
        "model": base.model,
        "metric": space.metric,
        "budget": {
            "trials": space.budget.trials,
            "max_epochs": space.budget.max_epochs,
            "timeout_s": space.budget.timeout_s,
        },
        "pruner": space.pruner,
        "sampler": space.sampler,
        "space": {p.name: p.describe() for p in space.params},
        "untuned": {p.name: getattr(base, p.name) for p in space.params},
        "trials": {
            name: int(states.get(name.upper(), 0)) for name in ("complete", "pruned", "failed", "running")
        },
        "best": None,
    }
    if best is not None:
        values = space.final_values(best.params)
        header = (
            f"# llmesr tune {space.path}: trial {best.number} of {len(table)}, valid {space.metric} "
            f"{best.value:.4f} (full ranking) at {best.user_attrs.get('epochs')} of at most "
            f"{space.budget.max_epochs} epochs\n"
        )
        atomic_write_text(tune.file(TuneFolder.BEST), header + yaml.safe_dump(values, sort_keys=False))
        grid = {
            "configs": [str(tune.file(TuneFolder.BEST).resolve())],
            "grid": {"seed": space.seeds},
            "out": str(tune.file(TuneFolder.FINAL).resolve()),
        }
        atomic_write_text(tune.file(TuneFolder.EXPERIMENT), yaml.safe_dump(grid, sort_keys=False))
        summary["best"] = {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "epochs": best.user_attrs.get("epochs"),
            "folder": best.user_attrs.get("folder"),
        }
    atomic_write_json(tune.file(TuneFolder.SUMMARY), summary)
    return summary


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What ``llmesr tune`` prints when it is done."""
    counts = summary["trials"]
    lines = [
        f"{summary['model']}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed trials of a budget of {summary['budget']['trials']}"
    ]
    best = summary["best"]
    if best is None:
        return lines + ["no trial completed: no best.yaml written"]
    lines.append(
        f"best: trial {best['trial']}, valid {summary['metric']} {best['value']:.4f}: {best['params']}"
    )
    lines.append(
        f"wrote {out}/{TuneFolder.BEST}, {TuneFolder.EXPERIMENT}, {TuneFolder.TRIALS}, {TuneFolder.SUMMARY}"
    )
    lines.append(f"final runs: llmesr experiment {out}/{TuneFolder.EXPERIMENT}")
    return lines
