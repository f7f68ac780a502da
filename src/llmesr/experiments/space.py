"""A tuning search space (``llmesr tune SPACE.yaml``): the settings of one method that are searched,
their ranges, and the budget every trial gets. Read strictly: an unknown key, a setting the method
does not read or a value out of its range is one line naming the file and the key.

    base: configs/sasrec_ce.yaml          # presets, layered as llmesr train --config (one or a list)
    fixed: {data: beauty, patience: 5}    # settings every trial and the final runs share
    space:                                # searched settings, suggested in this order
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      num_layers: {type: int, low: 1, high: 3}
      loss: {type: categorical, choices: [ce, bce]}
      num_negatives: {type: int, low: 1, high: 64, log: true, when: {loss: bce}}
    budget: {trials: 12, max_epochs: 10, timeout_s: 3600}   # trials, epochs per trial, wall clock
    metric: NDCG@10                       # validation metric, full ranking, overall (maximised)
    pruner: median                        # median | hyperband | threshold | none, or {type: ..., <options>}
    sampler: tpe                          # tpe | random, or {type: tpe, <options>}
    seed: 0                               # the sampler's seed
    seeds: [42, 43, 44]                   # seeds of the final runs (experiment.yaml)
    out: runs/tune/sasrec                 # the tune folder (--out overrides)

Only settings that change what is trained can be searched: the data and evaluation settings
would change what is measured, the budget is the tune's, and seeds are what the final runs
average over. A key with ``when`` is searched only in trials whose earlier searched keys take one
of the listed values; elsewhere it keeps its base value. Trials train at most ``max_epochs``
epochs (``fixed: epochs`` is the final runs' budget) and evaluate the validation split only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmesr.config import (
    MODEL_KEYS,
    RESULT,
    RUNTIME,
    RunConfig,
    applicable_keys,
    apply_overrides,
    default_of,
    inapplicable,
    keys_with,
    resolve_config,
    validate,
)
from llmesr.errors import ConfigError
from llmesr.io import read_yaml

TOP_KEYS = {"base", "fixed", "space", "budget", "metric", "pruner", "sampler", "seed", "seeds", "out"}
PARAM_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}
BUDGET_KEYS = {"trials", "max_epochs", "timeout_s"}
PRUNERS = ("median", "hyperband", "threshold", "none")
SAMPLERS = ("tpe", "random")
UNSEARCHABLE_SECTIONS = ("data", "eval")
FINAL_SEEDS = [42, 43, 44]


@dataclass(frozen=True)
class Param:
    """One searched setting: a float or int range (``log``: sampled on a log scale; ``step``: a
    grid), or a list of choices; ``when``: earlier searched key -> the values it is searched under."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    when: dict[str, tuple] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial picks (a retried trial gets its first attempt's value back)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        suggest = trial.suggest_int if self.kind == "int" else trial.suggest_float
        grid = {"step": self.step} if self.step else {}
        return suggest(self.name, self.low, self.high, log=self.log, **grid)

    def describe(self) -> str:
        """``float 0.0001..0.01 (log)``, ``int 1..3 step 1``, ``one of ce, bce``; plus its condition."""
        if self.kind == "categorical":
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = f"{self.kind} {self.low:g}..{self.high:g}"
            text += " (log)" if self.log else (f" step {self.step:g}" if self.step else "")
        for key, values in self.when.items():
            text += f", when {key} in {', '.join(map(str, values))}"
        return text


@dataclass(frozen=True)
class Budget:
    trials: int  # trials that finish (complete or pruned); trials cut by a kill are retried
    max_epochs: int  # epochs per trial at most (pruning may stop one earlier)
    timeout_s: float | None = None  # no trial starts after this many seconds of one tune command


@dataclass
class SearchSpace:
    path: Path
    base: list[Path]
    fixed: dict[str, Any]
    params: list[Param]
    budget: Budget
    metric: str
    pruner: dict[str, Any]
    sampler: dict[str, Any]
    seed: int
    seeds: list[int]
    out: Path | None

    # ---- configurations ---------------------------------------------------------------------
    def config(self, values: dict[str, Any], source: str) -> Any:
        """The base presets, then ``fixed``, then ``values``, checked like ``llmesr train``'s."""
        cfg = resolve_config(self.base)
        changed = {**self.fixed, **values}
        cfg = apply_overrides(cfg, changed, source)
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        refused = inapplicable(cfg, set(changed))
        if refused:
            raise ConfigError(f"{source}: model {cfg.model!r} has no setting {refused[0]!r}")
        # Presets are shared between models: a model setting the chosen model does not read is dropped.
        dropped = inapplicable(cfg, set(MODEL_KEYS))
        return dataclasses.replace(cfg, **{k: None for k in dropped})

    def base_config(self) -> Any:
        """The untuned configuration: base presets and ``fixed``."""
        return self.config({}, f"{self.path}: fixed")

    def trial_config(self, params: dict[str, Any]) -> Any:
        """What one trial trains: the untuned configuration with ``params``, at the trial budget,
        selecting on ``metric`` and evaluating the validation split only."""
        budget = {"epochs": self.budget.max_epochs, "select_metric": self.metric, "evaluate_test": False}
        return self.config({**params, **budget}, f"{self.path}: trial {params}")

    def final_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """The settings of the final runs as a config file holds them: every setting of the untuned
        configuration that differs from the default (runtime settings left out), with ``params``."""
        cfg = self.config({**params, "select_metric": self.metric}, f"{self.path}: chosen {params}")
        runtime = set(keys_with(RUNTIME))
        return {
            k: v
            for k, v in cfg.to_dict().items()
            if k not in runtime and (v != default_of(k) or k in params or k == "model")
        }

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial's searched values, conditions respected, in the space's order."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if all(k in chosen and chosen[k] in values for k, values in p.when.items()):
                chosen[p.name] = p.suggest(trial)
        return chosen

    def to_spec(self) -> dict[str, Any]:
        """This space as a complete space file (base files as absolute paths, overrides merged)."""
        params = {}
        for p in self.params:
            raw: dict[str, Any] = {"type": p.kind}
            if p.kind == "categorical":
                raw["choices"] = list(p.choices)
            else:
                raw |= {"low": p.low, "high": p.high, "log": p.log} | ({"step": p.step} if p.step else {})
            params[p.name] = raw | ({"when": {k: list(v) for k, v in p.when.items()}} if p.when else {})
        return {
            "base": [str(b.resolve()) for b in self.base],
            "fixed": self.fixed,
            "space": params,
            "budget": {k: v for k, v in dataclasses.asdict(self.budget).items() if v is not None},
            "metric": self.metric,
            "pruner": self.pruner,
            "sampler": self.sampler,
            "seed": self.seed,
            "seeds": self.seeds,
        }

    def identity(self) -> dict[str, Any]:
        """What every trial of one study must share: a resumed study is checked against it (the
        trial count, the wall-clock budget, runtime settings and the final runs' epochs may change)."""
        ignored = {*keys_with(RUNTIME), "epochs"}
        base = {k: v for k, v in self.base_config().to_dict().items() if k not in ignored}
        return {
            "base": base,
            "space": [dataclasses.asdict(p) | {"choices": list(p.choices)} for p in self.params],
            "max_epochs": self.budget.max_epochs,
            "metric": self.metric,
            "pruner": self.pruner,
            "sampler": self.sampler,
            "seed": self.seed,
        }


def load_space(
    path: Path, fixed: dict[str, Any] | None = None, budget: dict[str, Any] | None = None
) -> SearchSpace:
    """Read and check ``path``; ``fixed`` and ``budget`` (from the command line or a grid) are laid
    over the file's own."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such search space file: {path}")
    spec = read_yaml(path, "search space file", allow_empty=False)
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: "
            f"{', '.join(sorted(TOP_KEYS))}"
        )
    own_fixed = _mapping(spec.get("fixed"), path, "fixed")
    space = SearchSpace(
        path=path,
        base=_base_files(spec.get("base"), path),
        fixed={**own_fixed, **(fixed or {})},
        params=[],
        budget=_budget({**_mapping(spec.get("budget"), path, "budget"), **(budget or {})}, path),
        metric=_text(spec.get("metric", "NDCG@10"), path, "metric"),
        pruner=_choice(spec.get("pruner", "median"), PRUNERS, path, "pruner"),
        sampler=_choice(spec.get("sampler", "tpe"), SAMPLERS, path, "sampler"),
        seed=_count(spec.get("seed", 0), path, "seed", low=0),
        seeds=_seeds(spec.get("seeds", FINAL_SEEDS), path),
        out=Path(spec["out"]) if spec.get("out") else None,
    )
    for key in ("select_metric", "evaluate_test"):
        if key in space.fixed:
            raise ConfigError(f"{path}: fixed: {key} is set by the tune (use 'metric:')")
    base = space.base_config()  # base and fixed: keys, types, ranges, the model
    params = _mapping(spec.get("space"), path, "space")
    if not params:
        raise ConfigError(f"{path}: 'space' names no setting to search")
    for name, raw in params.items():
        space.params.append(_param(str(name), raw, space, base))
    space.trial_config({})  # the metric is one the runs compute
    return space


def _param(name: str, raw: Any, space: SearchSpace, base: Any) -> Param:
    where = f"{space.path}: space: {name}"
    fields = {f.name: f.metadata for f in dataclasses.fields(RunConfig)}
    if name not in fields:
        apply_overrides(RunConfig(), {name: None}, f"{space.path}: space")  # the did-you-mean error
    meta = fields[name]
    if name == "model" or meta["effect"] != RESULT or meta["section"] in UNSEARCHABLE_SECTIONS:
        why = "changes what is measured" if meta["section"] in UNSEARCHABLE_SECTIONS else "is not searchable"
        raise ConfigError(
            f"{where}: a {meta['section']} setting ({meta['effect']}) {why}; search "
            "settings of the model and its training"
        )
    if name in MODEL_KEYS and name not in applicable_keys(base.model):
        raise ConfigError(f"{where}: model {base.model!r} has no setting {name!r}")
    if name in space.fixed:
        raise ConfigError(f"{where}: also in 'fixed'; a setting is fixed or searched, not both")
    raw = _mapping(raw, space.path, f"space: {name}")
    kind = raw.get("type")
    if kind not in PARAM_KEYS:
        raise ConfigError(f"{where}: type must be one of {', '.join(PARAM_KEYS)}, got {kind!r}")
    unknown = set(raw) - PARAM_KEYS[kind]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} for a {kind} "
            f"range; known: {', '.join(sorted(PARAM_KEYS[kind]))}"
        )
    when = _conditions(raw.get("when"), where, space.params)
    if kind == "categorical":
        choices = raw.get("choices")
        if not (isinstance(choices, list) and choices) or len({repr(c) for c in choices}) < len(choices):
            raise ConfigError(f"{where}: choices must be a non-empty list of distinct values")
        param = Param(name, kind, choices=tuple(choices), when=when)
        values = choices
    else:
        param = _range(name, kind, raw, where, when)
        values = [param.low, param.high]
    for value in values:  # the setting's own type and range, and the model's checks
        space.config({name: value}, where)
    return param


def _range(name: str, kind: str, raw: dict, where: str, when: dict) -> Param:
    number = int if kind == "int" else (int, float)
    low, high, step, log = raw.get("low"), raw.get("high"), raw.get("step"), raw.get("log", False)
    for key, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not isinstance(value, number) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(
                f"{where}: {key} must be a{'n integer' if kind == 'int' else ' number'}, got {value!r}"
            )
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be > 0 and cannot be combined with log")
    if kind == "float":
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Param(name, kind, low, high, log, step, when=when)


def _conditions(raw: Any, where: str, earlier: list[Param]) -> dict[str, tuple]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: when must map earlier searched keys to a value or a list of values")
    known = {p.name: p for p in earlier}
    out = {}
    for key, values in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: when {key!r} is not a searched key listed before it")
        values = tuple(values) if isinstance(values, list) else (values,)
        choices = known[key].choices
        if choices and any(v not in choices for v in values):
            raise ConfigError(f"{where}: when {key}: {list(values)} are not all choices of {key}")
        out[str(key)] = values
    return out


def _base_files(raw: Any, path: Path) -> list[Path]:
    names = [] if raw is None else [raw] if isinstance(raw, str) else raw
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ConfigError(f"{path}: base must be a YAML file name or a list of them")
    found = []
    for name in names:  # relative to the working directory, else to the space file
        hit = next((p for p in (Path(name), path.parent / name) if p.exists()), None)
        if hit is None:
            raise ConfigError(f"{path}: base config file {name} not found")
        found.append(hit)
    return found


def _budget(raw: dict, path: Path) -> Budget:
    unknown = set(raw) - BUDGET_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: budget: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"known: {', '.join(sorted(BUDGET_KEYS))}"
        )
    for key in ("trials", "max_epochs"):
        if key not in raw:
            raise ConfigError(f"{path}: budget: {key} is required (the same budget for every method)")
    timeout = raw.get("timeout_s")
    if timeout is not None and not (
        isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0
    ):
        raise ConfigError(f"{path}: budget: timeout_s must be a number of seconds > 0, got {timeout!r}")
    trials = _count(raw["trials"], path, "budget: trials", low=1)
    return Budget(trials, _count(raw["max_epochs"], path, "budget: max_epochs", low=1), timeout)


def _choice(raw: Any, names: tuple[str, ...], path: Path, key: str) -> dict[str, Any]:
    """``median`` or ``{type: median, n_startup_trials: 3}`` -> ``{"type": "median", ...}``; the
    options are checked by Optuna's own constructor when the study starts."""
    spec = {"type": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict) or spec.get("type") not in names:
        raise ConfigError(f"{path}: {key} must be one of {', '.join(names)} (or a mapping with 'type')")
    return dict(spec)


def _mapping(raw: Any, path: Path, key: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: '{key}' must be a mapping")
    return raw


def _text(raw: Any, path: Path, key: str) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{path}: {key} must be text, got {raw!r}")
    return raw


def _count(raw: Any, path: Path, key: str, low: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < low:
        raise ConfigError(f"{path}: {key} must be an integer >= {low}, got {raw!r}")
    return raw


def _seeds(raw: Any, path: Path) -> list[int]:
    if not (isinstance(raw, list) and raw and all(isinstance(s, int) and s >= 0 for s in raw)):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers >= 0")
    return list(raw)
