"""The run configuration: one flat, typed dataclass, filled from YAML files and ``--set key=value``.

Flat so that ``--set loss=ce`` just works; typed so that a misspelt key or a wrong type fails with
a message naming the key instead of being silently ignored.

Each setting has one owner. The data, training, evaluation and semantic settings are declared
below, each with its section, its *effect* and its allowed range. The model settings are not
declared here at all: they are derived from the ``@dataclass`` configs of the registered models
(``llmesr.models``), so a model adds a field in its own module and it is settable from YAML and
``--set`` at once. In the run config every model setting defaults to ``None``, meaning "the
model's own default" (BERT4Rec and SASRec differ, for instance); the model config's own checks
judge the value. A field's effect says what changing it changes, and every list of keys other
modules need (what a resume must match, what tells two report methods apart, what shapes the
data) is derived from it:

- ``result``: what is trained or how it is ranked;
- ``budget``: how long training may run (a resume may extend it);
- ``seed``: the random seed (a report groups seeds into one method);
- ``report``: how results are grouped and which metrics are reported, not the ranks themselves;
- ``runtime``: where and how fast the work runs (threads, devices, caches), never its result.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmesr.errors import ConfigError
from llmesr.io import parse_yaml_value, read_json, read_yaml
from llmesr.models import MODELS, model_config

__all__ = ["ConfigError", "RunConfig", "read_json", "read_yaml", "resolve_config", "apply_overrides"]

Check = tuple[Callable[[Any], bool], str]
RESULT, BUDGET, SEED, REPORT, RUNTIME = "result", "budget", "seed", "report", "runtime"


def at_least(low: int) -> Check:
    return (lambda v: v >= low), f">= {low}"


def one_of(*choices: str) -> Check:
    return (lambda v: v in choices), " or ".join(repr(c) for c in choices)


FINITE_NON_NEGATIVE: Check = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
POSITIVE_INTS: Check = (lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of integers >= 1")


def setting(
    default: Any, section: str, effect: str = RESULT, check: Check | None = None, names_run: bool = False
) -> Any:
    """A declared run setting: its default, section, effect and range (checked on every read).
    ``names_run``: its value is the folder of another finished run that this one reads."""
    meta = {"section": section, "effect": effect, "check": check, "names_run": names_run}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class _DeclaredSettings:
    """The settings this module owns; the model settings are appended by :func:`_build_run_config`."""

    # data: what is read and how it is split
    data: str = setting("beauty", "data")
    data_format: str = setting("auto", "data")
    user_col: str = setting("user_id", "data")
    item_col: str = setting("item_id", "data")
    time_col: str | None = setting("timestamp", "data")
    kcore: int = setting(0, "data", check=at_least(0))
    split: str = setting("leave_one_out", "data", check=one_of("leave_one_out", "global_time"))
    # the model; its settings are derived from the model configs
    model: str = setting("sasrec", "model")  # a registered model (checked by validate)
    # training (the recommended settings: configs/*_ce.yaml restate them)
    epochs: int = setting(200, "train", BUDGET, at_least(1))
    batch_size: int = setting(256, "train", check=at_least(1))
    lr: float = setting(1e-3, "train", check=FINITE_NON_NEGATIVE)
    weight_decay: float = setting(0.0, "train", check=FINITE_NON_NEGATIVE)
    # Adam's second-moment decay; the original SASRec code uses 0.98 (PyTorch's default is 0.999).
    adam_beta2: float = setting(0.999, "train", check=(lambda v: 0 <= v < 1, "in [0, 1)"))
    patience: int = setting(20, "train", BUDGET, at_least(1))
    seed: int = setting(42, "train", SEED, at_least(0))
    # A finished run (folder or .pt) whose best weights start this one: the whole model, or a
    # wrapper's backbone (CITIES and MELT fine-tune a converged backbone, as in their papers).
    init_from: str | None = setting(None, "train", names_run=True)
    eval_every: int = setting(1, "train", check=at_least(1))
    bucket_batches: bool = setting(True, "train")
    # "position": each batch's mean loss is scaled by the batch's share of trained positions, so
    # every position weighs the same whatever batch it lands in. With length bucketing, batches of
    # short histories hold far fewer positions; "batch" (plain per-batch mean) over-weights them.
    loss_weighting: str = setting("position", "train", check=one_of("position", "batch"))
    threads: int | None = setting(None, "train", RUNTIME, at_least(1))
    # Keep freed memory in the process (glibc): less system time per batch, a higher resident peak
    # (llmesr.allocator). Results are the same either way.
    reuse_freed_memory: bool = setting(True, "train", RUNTIME)
    progress: bool = setting(True, "train", RUNTIME)  # progress bars; one line per step when not a TTY
    device: str = setting("cpu", "train", RUNTIME)  # cpu | cuda | cuda:N | auto (see training.accel)
    precision: str = setting("fp32", "train", check=one_of("fp32", "bf16", "fp16"))
    compile: bool = setting(False, "train", RUNTIME)  # torch.compile the backbone encoders
    # Experiment tracking (training.tracking): per-epoch curves, the config and the final metrics.
    tracking: str = setting("none", "train", RUNTIME, one_of("none", "tensorboard", "mlflow"))
    # tensorboard: the log folder (default RUN/tensorboard); mlflow: a tracking URI (default a
    # SQLite store RUN/mlflow.db; a server's http(s) URI when given).
    tracking_uri: str | None = setting(None, "train", RUNTIME)
    # evaluation
    select_metric: str = setting("NDCG@10", "eval")
    ks: list[int] = setting([5, 10, 20], "eval", REPORT, POSITIVE_INTS)
    sampled_negatives: int = setting(100, "eval", check=at_least(1))
    negatives_seed: int = setting(2024, "eval", check=at_least(0))
    exclude_history: bool = setting(True, "eval")
    # false: the final evaluation ranks the validation split only (tuning trials never read test).
    evaluate_test: bool = setting(True, "eval", REPORT)
    groups: str = setting("pareto", "eval", REPORT, one_of("pareto", "beauty_paper", "threshold"))
    tail_user_threshold: int | None = setting(None, "eval", REPORT, at_least(1))  # tail iff length < this
    tail_item_threshold: int | None = setting(None, "eval", REPORT, at_least(1))  # tail iff popularity < this
    eval_batch_size: int = setting(1024, "eval", RUNTIME, at_least(1))
    # semantic step (llmesr embed)
    encoder: str = setting("minilm", "semantic")  # minilm | st:<name_or_path> | hf:<path> | openai:<model>
    encoder_device: str = setting("cpu", "semantic", RUNTIME)
    encoder_batch_size: int | None = setting(None, "semantic", RUNTIME, at_least(1))
    encoder_pooling: str | None = setting(None, "semantic")  # hf: mean | last
    # minilm / st: eager PyTorch, or ONNX Runtime in float32 or int8 (the `fast` extra)
    encoder_backend: str = setting("torch", "semantic", check=one_of("torch", "onnx", "onnx-int8"))
    encoder_url: str | None = setting(None, "semantic")  # openai: base URL of an OpenAI-compatible server
    encoder_api_key_env: str | None = setting(None, "semantic")  # openai: variable holding the key
    item_embeddings_file: str | None = setting(None, "semantic")  # precomputed item embeddings instead
    item_template: str = setting("default", "semantic")  # a preset name or a template string
    prompt_domain: str = setting("beauty", "semantic")
    user_max_items: int | None = setting(None, "semantic", check=at_least(1))
    similar_k: int = setting(100, "semantic", check=at_least(1))
    retrieval: str = setting("auto", "semantic", check=one_of("auto", "exact", "hnsw", "ivf"))
    embed_batch_size: int = setting(256, "semantic", RUNTIME, at_least(1))
    cache_dir: str | None = setting(None, "semantic", RUNTIME)
    # A finished ``llmesr embed --out DIR`` folder to train from, instead of the keyed cache: lets
    # a machine without the encoder (a GPU box, a cluster node) train on embeddings made elsewhere.
    semantic_dir: str | None = setting(None, "semantic", RUNTIME)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_settings(self) -> dict[str, Any]:
        """Model hyper-parameters that were set explicitly (``None`` = model default)."""
        return {n: getattr(self, n) for n in MODEL_KEYS if getattr(self, n) is not None}


def _model_fields() -> dict[str, tuple[str, bool]]:
    """Every user-settable field of the registered model configs -> its type (as annotated) and
    whether it names another run (``metadata={"names_run": True}``, LLMEmb's ``align_from``).
    Fields the data sets (``metadata={"derived": True}``) are not settings."""
    types: dict[str, tuple[str, bool]] = {}
    declared = {f.name for f in fields(_DeclaredSettings)}
    for name, (_, config_cls) in MODELS.items():
        for f in fields(config_cls):
            if f.metadata.get("derived") or f.name in declared:
                continue
            kind = (str(f.type).replace(" | None", ""), bool(f.metadata.get("names_run")))
            if types.setdefault(f.name, kind) != kind:
                raise TypeError(f"model setting {f.name!r} is {types[f.name]} in one model, {kind} in {name}")
    return types


def _build_run_config() -> type:
    extra = [
        (
            name,
            f"{kind} | None",
            field(default=None, metadata={"section": "model", "effect": RESULT, "names_run": names_run}),
        )
        for name, (kind, names_run) in _model_fields().items()
    ]
    cls = dataclasses.make_dataclass("RunConfig", extra, bases=(_DeclaredSettings,))
    cls.__module__ = __name__
    cls.__doc__ = "Every setting of a run: the declared ones and, derived, every model's (None = default)."
    return cls


RunConfig = _build_run_config()
MODEL_KEYS = tuple(
    f.name for f in fields(RunConfig) if f.metadata["section"] == "model" and f.name != "model"
)
_FIELDS = {f.name: f for f in fields(RunConfig)}
# Settings whose value is the folder of another finished run this one reads (init_from, align_from):
# a grid starts a run after those it names, a report counts whether a run had one, not which.
RUN_KEYS = tuple(name for name, f in _FIELDS.items() if f.metadata.get("names_run"))


def keys_with(effect: str | None = None, section: str | None = None) -> tuple[str, ...]:
    """The run config keys of one effect and/or section, in declaration order."""
    return tuple(
        name
        for name, f in _FIELDS.items()
        if (effect is None or f.metadata["effect"] == effect)
        and (section is None or f.metadata["section"] == section)
    )


def default_of(name: str) -> Any:
    f = _FIELDS[name]
    return f.default_factory() if f.default is MISSING else f.default


def _coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the field's annotated type (ints accepted where floats are)."""
    kind = str(_FIELDS[key].type)
    optional = "None" in kind
    base = kind.replace(" | None", "")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} may not be null")
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }[base]
    if not ok:
        raise ConfigError(f"config key {key!r} expects {base}, got {value!r}")
    check, allowed = _FIELDS[key].metadata.get("check") or (None, "")
    if check is not None and not check(value):
        raise ConfigError(f"config key {key!r} must be {allowed}, got {value!r}")
    return float(value) if base == "float" else value


def _unknown_key_error(key: Any, source: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown config key {key!r}{hint}; known keys: {', '.join(sorted(known))}")


def apply_overrides(config: Any, values: dict[str, Any], source: str) -> Any:
    unknown = sorted(set(values) - set(_FIELDS), key=str)
    if unknown:
        raise _unknown_key_error(unknown[0], source, list(_FIELDS))
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return dataclasses.replace(config, **coerced)


def _is_text_setting(key: str) -> bool:
    return key in _FIELDS and str(_FIELDS[key].type).startswith("str")


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["loss=ce", "ks=[5,10]"]`` -> ``{"loss": "ce", "ks": [5, 10]}``. Values are YAML, except
    that a text setting takes an unquoted value verbatim (``item_template={title} by {brand}`` is
    a template, not a YAML mapping); ``null`` / ``~`` / nothing is null."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        text = raw.strip()
        if _is_text_setting(key) and text not in ("", "null", "~", "Null", "NULL") and text[:1] not in "'\"":
            out[key] = raw
            continue
        try:
            out[key] = parse_yaml_value(raw) if text else None
        except Exception as err:  # yaml.YAMLError; one line whatever it says
            problem = " ".join(str(err).split())
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {problem}") from None
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    return read_yaml(path, "config file")


def applicable_keys(model: str) -> set[str]:
    """The model settings ``model`` reads: the fields of its config class."""
    return {f.name for f in fields(MODELS[model][1])}


def inapplicable(config: Any, keys: set[str]) -> list[str]:
    """Which of ``keys`` are model settings, set, that the configured model does not read."""
    reads = applicable_keys(config.model)
    return sorted(k for k in keys if k in MODEL_KEYS and getattr(config, k) is not None and k not in reads)


def validate(config: Any) -> None:
    """Checks across settings (each setting's own range is checked as it is read), and the model
    settings by the model config's own checks, before any work starts."""
    if config.model not in MODELS:
        raise ConfigError(f"unknown model {config.model!r}: choose one of {', '.join(MODELS)}")
    try:
        model_config(config.model, {"n_items": 2, **config.model_settings()})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {config.model!r}: {err}") from None
    computed = {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in config.ks}
    if config.select_metric not in computed:
        raise ConfigError(
            f"select_metric {config.select_metric!r} is not computed: choose one of "
            f"{', '.join(sorted(computed))} (HR, NDCG or MRR at one of ks={config.ks})"
        )
    thresholds = (config.tail_user_threshold, config.tail_item_threshold)
    if config.groups == "threshold" and None in thresholds:
        raise ConfigError("groups: threshold needs tail_user_threshold and tail_item_threshold")


def resolve_config(
    config_files: list[Path] = (), overrides: list[str] = (), *, warn: Callable[[str], None] | None = None,
    **explicit: Any,
) -> Any:
    """Defaults <- each YAML file in order <- explicit CLI options <- ``--set`` overrides.

    A model setting given on the command line that the chosen model does not read is refused;
    one from a config file (presets are shared between models, e.g. by a grid) is dropped, and
    ``warn`` is told which."""
    config = RunConfig()
    from_files: set[str] = set()
    for path in config_files:
        values = load_yaml(path)
        config = apply_overrides(config, values, str(path))
        from_files |= set(values)
    given = {k: v for k, v in explicit.items() if v is not None}
    config = apply_overrides(config, given, "command line")
    sets = parse_set(list(overrides))
    config = apply_overrides(config, sets, "--set")
    validate(config)  # the model config ignores settings it does not read; they are judged below
    refused = inapplicable(config, set(given) | set(sets))
    if refused:
        raise ConfigError(
            f"--set {refused[0]}: model {config.model!r} has no setting {refused[0]!r} "
            f"(its settings: {', '.join(sorted(applicable_keys(config.model) & set(MODEL_KEYS)))})"
        )
    dropped = inapplicable(config, from_files)
    if dropped and warn is not None:
        warn(f"config files: {', '.join(dropped)} ignored: model {config.model!r} does not read them")
    return dataclasses.replace(config, **{k: None for k in dropped})
