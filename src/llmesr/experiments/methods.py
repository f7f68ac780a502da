"""Which runs make which method in ``llmesr report``: discovery, grouping by setting, labels, and the
dataset the runs were trained on (loaded once per dataset path).

A *method* is the runs that share the model, the backbone and every other setting except the seed.
Model settings left at ``None`` count as the model's default and keys the model does not read are
dropped, so ``distill_weight: null`` and ``distill_weight: 0.1`` are one method and a grid-wide
``distill_weight`` does not split SASRec. Keys that change neither what is trained nor how it is
ranked are ignored: threads, device, cache folders, the head/tail rule (``--groups`` regroups), and
the data path, which the dataset fingerprint replaces. Runs on two datasets, on other evaluated
users or under other evaluation settings (split, sampled negatives) are refused, naming two of them.

An LLM-ESR method's *variant* is the set of ablation switches, α (``distill_weight``) and N
(``distill_users``) it moves away from the model's defaults; an empty variant is the default method.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from llmesr.config import MODEL_KEYS, REPORT, RUN_KEYS, RUNTIME, SEED, keys_with
from llmesr.data.groups import groups_from_preset, named_groups
from llmesr.errors import ConfigError
from llmesr.experiments.compare import RunRanks
from llmesr.experiments.plots import value_text
from llmesr.experiments.tune_folder import TuneFolder
from llmesr.models import MODELS
from llmesr.models.base import WrapperConfig
from llmesr.runs import RunData, RunFolder, prepare_data

# The method the report is about: Table 1 tests it against the baselines, and ABLATIONS are its
# switches. A setting of the report, not a capability of the model.
OURS = "llmesr"
# Table 1's rows in the paper's order (backbones, then baselines, then ours), then its successors
# (AlphaFuse, SIGIR 2025; LLMEmb, AAAI 2025; EnsRec, arXiv 2512.17820, after its text member);
# other models follow.
PAPER_ORDER = (
    *("sasrec", "bert4rec", "gru4rec", "llminit", "cities", "melt", "rlmrec", OURS),
    *("alphafuse", "llmemb", "textrec", "ensrec", "esrfuse"),
)
# The methods Table 1 tests, last in their block in this order: each is marked * where it beats the
# best method of its block that is not tested after it (LLM-ESR: the best baseline or successor;
# ESR-Fuse, this project's method: the best of those and LLM-ESR), paired t-test over users.
TESTED = (OURS, "esrfuse")


def display_name(model: str) -> str:
    """How tables name a model: its class's ``display_name``, else its registry name."""
    cls = MODELS[model][0] if model in MODELS else None
    return (cls.display_name if cls else "") or model


def display_names() -> dict[str, str]:
    """Registered model -> display name, in Table 1's order."""
    order = [*PAPER_ORDER, *(m for m in MODELS if m not in PAPER_ORDER)]
    return {m: display_name(m) for m in order}
# The data path is replaced by the dataset fingerprint; seeds are what a method averages over.
IGNORED = {*keys_with(SEED), *keys_with(RUNTIME), *keys_with(REPORT), "data"}
ABLATIONS = {  # switch -> (ablated value, row label), in the paper's order
    "use_collaborative": (False, "w/o collaborative view"),
    "use_semantic": (False, "w/o semantic view"),
    "distill_weight": (0.0, "w/o self-distillation"),
    "cross_attention": (False, "w/o cross-attention"),
    "shared_encoder": (False, "separate encoders"),
    "adapter_layers": (1, "one-layer adapter"),
    "id_init": ("random", "random ID init"),
    "freeze_semantic": (False, "unfrozen semantic table"),
}
VARIANT_KEYS = (*ABLATIONS, "distill_users")
# Settings of the evaluation itself: runs that differ in one were ranked differently (other sampled
# negatives, history items allowed) and are never compared.
EVALUATION_KEYS = ("split", "sampled_negatives", "negatives_seed", "exclude_history")


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def ours_defaults() -> dict[str, Any]:
    return {f.name: _default(f) for f in fields(MODELS[OURS][1]) if f.name in VARIANT_KEYS}


def normalise(values: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(model, backbone, settings that define the method) from a run's config.yaml."""
    model = values.get("model", "sasrec")
    cls = MODELS[model][1] if model in MODELS else None
    declared = {f.name: f for f in fields(cls)} if cls else None
    settings = {}
    for key, value in values.items():
        if key in IGNORED:
            continue
        if key in RUN_KEYS:  # each seed reads its own run (init_from, align_from): whether it did counts
            value = value is not None
        if key in MODEL_KEYS and declared is not None:
            if key not in declared:
                continue  # the model never reads it: e.g. distill_weight set grid-wide on SASRec
            value = _default(declared[key]) if value is None else value
        settings[key] = value
    if cls is not None and not issubclass(cls, WrapperConfig):
        settings["backbone"] = model  # a plain backbone is its own backbone
    backbone = settings.get("backbone") or model
    settings["backbone"] = backbone
    return model, backbone, settings


def settings_key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass
class Method:
    label: str
    model: str
    backbone: str
    settings: dict[str, Any]
    runs: list[RunRanks]
    variant: dict[str, Any]  # LLM-ESR keys away from the model default (empty: default)

    @property
    def name(self) -> str:
        return display_name(self.model)


def find_runs(root: Path) -> list[Path]:
    """Finished run folders at any depth under ``root``. Symbolic links are followed, so a report
    can gather runs from several grids; a run folder is not searched further, and each real folder
    is visited once (no link cycles). Tune folders (``llmesr tune``) are not searched: their trials
    are no runs of a method."""
    found, seen = [], set()
    for folder, subfolders, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        if TuneFolder(folder).is_tune_folder():  # trials: validation only, listed in the appendix
            subfolders.clear()
            continue
        if RunFolder(folder).is_finished():
            found.append(Path(folder))
            subfolders.clear()
    return sorted(found)


class DataUnavailable(ConfigError):
    """The runs' dataset cannot be loaded here (moved, changed): data-based sections are skipped."""


class DataCache:
    """Each dataset loaded once (by data path and the settings that shape it), checked against the
    runs' fingerprint so that per-user lengths and popularity are the ones the runs saw."""

    def __init__(self) -> None:
        self._data: dict[tuple, Any] = {}

    def get(self, run: Path) -> RunData:
        try:
            cfg = RunFolder(run).load_config()
            key = tuple(getattr(cfg, k) for k in keys_with(section="data"))
            if key not in self._data:
                self._data[key] = prepare_data(cfg)
        except (FileNotFoundError, ValueError) as err:
            raise DataUnavailable(f"cannot load the dataset of {run}: {err}") from None
        data, expected = self._data[key], RunFolder(run).fingerprint()
        if expected and data.dataset.fingerprint() != expected:
            raise DataUnavailable(f"the dataset {cfg.data} changed since {run} was trained (fingerprint)")
        return data


def load_methods(
    paths: list[Path], split: str, groups: str | None, cache: DataCache, baseline_free: bool
) -> list[Method]:
    """Group runs into methods; refuse runs on different datasets or evaluated users, naming them."""
    by_key: dict[tuple, list[RunRanks]] = defaultdict(list)
    info: dict[tuple, tuple[str, str, dict]] = {}
    first: tuple[Path, str | None, np.ndarray, dict] | None = None
    for path in paths:
        folder = RunFolder(path)
        folder.metrics()  # the finished-run marker: refused if damaged
        values = folder.config_values()
        model, backbone, settings = normalise(values)
        if baseline_free and model != OURS:
            continue
        ranks = RunRanks.load(path, split)
        if groups is not None:  # regroup from the cached dataset instead of reloading it per run
            data = cache.get(path)
            ev = data.split.eval_split(split)
            if not np.array_equal(ev.users, ranks.users):
                raise ConfigError(f"{path}: its evaluated users differ from the dataset's {split} split")
            hg = groups_from_preset(data.split.train, data.dataset.n_items, groups)
            ranks.members = {
                "overall": ranks.members["overall"],
                **named_groups(*hg.tails(ev.users, ev.targets)),
            }
        fp, evaluation = folder.fingerprint(), {k: settings.get(k) for k in EVALUATION_KEYS}
        if first is None:
            first = (path, fp, ranks.users, evaluation)
        elif fp != first[1]:
            raise ConfigError(
                f"runs on different datasets are not mixed: {first[0]} ({first[1]}) vs {path} ({fp})"
            )
        elif not np.array_equal(ranks.users, first[2]):
            raise ConfigError(f"{path} was evaluated on other users than {first[0]}: not mixed in one report")
        elif evaluation != first[3]:
            diff = ", ".join(f"{k} {first[3][k]} vs {v}" for k, v in evaluation.items() if v != first[3][k])
            raise ConfigError(f"{first[0]} and {path} were evaluated differently ({diff}): not mixed")
        key = (model, backbone, settings_key(settings))
        by_key[key].append(ranks)
        info[key] = (model, backbone, settings)
    defaults = ours_defaults()
    methods = []
    for key, runs in by_key.items():
        model, backbone, settings = info[key]
        variant = (
            {} if model != OURS else {k: settings[k] for k in defaults if settings.get(k) != defaults[k]}
        )
        runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.run)))
        methods.append(Method("", model, backbone, settings, runs, variant))
    _label(methods)
    return methods


def _label(methods: list[Method]) -> None:
    """Readable, unique labels: the model's name, plus the settings that tell apart methods of the
    same model and backbone (variants are named by what they change)."""
    same: dict[tuple, list[Method]] = defaultdict(list)
    for m in methods:
        same[(m.model, m.backbone, bool(m.variant))].append(m)
    for group in same.values():
        keys = sorted({k for m in group for k in m.settings})
        differ = [
            k for k in keys if len({repr(m.settings.get(k)) for m in group}) > 1 and k not in VARIANT_KEYS
        ]
        for m in group:
            shown = {**{k: m.settings.get(k) for k in differ}, **m.variant}
            m.label = m.name + (
                f" ({', '.join(f'{k}={value_text(v)}' for k, v in shown.items())})" if shown else ""
            )
