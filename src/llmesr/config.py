"""The run configuration: one flat, typed dataclass, filled from YAML files and ``--set key=value``.

Flat so that ``--set loss=ce`` just works; typed so that a misspelt key or a wrong type fails
with a message naming the key instead of being silently ignored. Model hyper-parameters default
to ``None``, meaning "the model's own default" (BERT4Rec and SASRec differ, for instance).
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key or file."""


@dataclass
class RunConfig:
    # data
    data: str = "beauty"
    data_format: str = "auto"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str | None = "timestamp"
    kcore: int = 0
    split: str = "leave_one_out"
    # model
    model: str = "sasrec"
    max_len: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    inner_size: int | None = None
    dropout: float | None = None
    attn_dropout: float | None = None
    causal: bool | None = None
    loss: str | None = None
    negatives: int | None = None
    mask_prob: float | None = None
    init_std: float | None = None
    positions: str | None = None
    # LLM-ESR (model: llmesr); None = the model's default
    backbone: str | None = None
    use_collaborative: bool | None = None
    use_semantic: bool | None = None
    cross_attention: bool | None = None
    shared_encoder: bool | None = None
    adapter_layers: int | None = None
    id_init: str | None = None
    freeze_semantic: bool | None = None
    distill_weight: float | None = None
    distill_users: int | None = None
    distill_loss: str | None = None
    teacher: str | None = None
    teacher_refresh: int | None = None
    cross_heads: int | None = None
    # CITIES (model: cities); None = the model's default
    cities_weight: float | None = None
    cities_context: int | None = None
    cities_tail_threshold: int | None = None
    cities_warmup: int | None = None
    cities_distance: str | None = None
    cities_samples: int | None = None
    cities_layers: int | None = None
    cities_dropout: float | None = None
    # MELT (model: melt); None = the model's default
    melt_user_weight: float | None = None
    melt_item_weight: float | None = None
    melt_tail_user_threshold: int | None = None
    melt_tail_item_threshold: int | None = None
    melt_curriculum_epochs: int | None = None
    melt_warmup_epochs: int | None = None
    # RLMRec (model: rlmrec); None = the model's default
    rlmrec_variant: str | None = None
    rlmrec_weight: float | None = None
    rlmrec_temperature: float | None = None
    rlmrec_mask_ratio: float | None = None
    rlmrec_max_items: int | None = None
    # training  (every field above this line and below "# model" is a model setting)
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Adam's second-moment decay; the original SASRec code uses 0.98 (PyTorch's default is 0.999).
    adam_beta2: float = 0.999
    patience: int = 20
    seed: int = 42
    # A finished run (folder or .pt) whose best weights start this one: the whole model, or a
    # wrapper's backbone (CITIES and MELT fine-tune a converged backbone, as in their papers).
    init_from: str | None = None
    eval_every: int = 1
    bucket_batches: bool = True
    # "position": each batch's mean loss is scaled by the batch's share of trained positions, so
    # every position weighs the same whatever batch it lands in. With length bucketing, batches of
    # short histories hold far fewer positions; "batch" (plain per-batch mean) over-weights them.
    # On Beauty, "position" gave SASRec-CE validation NDCG@10 0.066 vs 0.0625 with "batch".
    loss_weighting: str = "position"
    threads: int | None = None
    progress: bool = True  # tqdm progress bars (--set progress=false for quiet logs)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (see llmesr.accel)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 on CUDA only)
    compile: bool = False  # torch.compile the backbone encoders
    # evaluation
    select_metric: str = "NDCG@10"
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    sampled_negatives: int = 100
    negatives_seed: int = 2024
    exclude_history: bool = True
    groups: str = "pareto"  # pareto | beauty_paper | threshold (uses the two thresholds below)
    tail_user_threshold: int | None = None  # tail user iff training length < this
    tail_item_threshold: int | None = None  # tail item iff training popularity < this
    eval_batch_size: int = 1024

    # semantic step (llmesr embed)
    encoder: str = "minilm"  # minilm | st:<name_or_path> | hf:<path> | openai:<model>
    encoder_device: str = "cpu"
    encoder_batch_size: int | None = None
    encoder_pooling: str | None = None  # hf: mean | last
    encoder_url: str | None = None  # openai: base URL of an OpenAI-compatible server
    encoder_api_key_env: str | None = None  # openai: environment variable holding the key
    item_embeddings_file: str | None = None  # precomputed item embeddings (.npy / Parquet) instead
    item_template: str = "default"  # a preset name (default | paper | title) or a template string
    prompt_domain: str = "beauty"
    user_max_items: int | None = None
    similar_k: int = 100
    retrieval: str = "auto"  # auto | exact | hnsw | ivf
    embed_batch_size: int = 256
    cache_dir: str | None = None
    # A finished ``llmesr embed --out DIR`` folder to train from, instead of the keyed cache: lets
    # a machine without the encoder (a GPU box, a cluster node) train on embeddings made elsewhere.
    semantic_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_settings(self) -> dict[str, Any]:
        """Model hyper-parameters that were set explicitly (``None`` = model default)."""
        return {n: getattr(self, n) for n in MODEL_KEYS if getattr(self, n) is not None}


_NAMES = [f.name for f in fields(RunConfig)]
# The model section of RunConfig: from max_len up to the first training key.
MODEL_KEYS = tuple(_NAMES[_NAMES.index("max_len") : _NAMES.index("epochs")])
_TYPES: dict[str, Any] = {f.name: f.type for f in fields(RunConfig)}


def _at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f">= {low}"


# Value ranges of the data, training, evaluation and semantic keys (model keys are checked by each
# model's config class): a bad value fails while the config is read, naming the key, instead of
# as a crash mid-training with a half-written run folder.
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "kcore": _at_least(0),
    "split": (lambda v: v in ("leave_one_out", "global_time"), "'leave_one_out' or 'global_time'"),
    "epochs": _at_least(1),
    "batch_size": _at_least(1),
    "lr": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "patience": _at_least(1),
    "eval_every": _at_least(1),
    "threads": _at_least(1),
    "ks": (lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of integers >= 1"),
    "sampled_negatives": _at_least(0),
    "eval_batch_size": _at_least(1),
    "encoder_batch_size": _at_least(1),
    "user_max_items": _at_least(1),
    "similar_k": _at_least(1),
    "embed_batch_size": _at_least(1),
}


def _coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the field's annotated type (ints accepted where floats are)."""
    kind = _TYPES[key]
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
    check, allowed = _RANGES.get(key, (None, ""))
    if check is not None and not check(value):
        raise ConfigError(f"config key {key!r} must be {allowed}, got {value!r}")
    return float(value) if base == "float" else value


def apply_overrides(config: RunConfig, values: dict[str, Any], source: str) -> RunConfig:
    unknown = sorted(set(values) - set(_TYPES), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(_TYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{source}: unknown config key {unknown[0]!r}{hint}; known keys: {', '.join(sorted(_TYPES))}"
        )
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return dataclasses.replace(config, **coerced)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["loss=ce", "ks=[5,10]"]`` -> ``{"loss": "ce", "ks": [5, 10]}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {_yaml_problem(err)[1]}") from None
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    return read_yaml(path, "config file")


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping: PyYAML would silently keep the
    last one, so ``loss: ce`` followed later by ``loss: bce`` would train with BCE unnoticed."""


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *anchor" entries may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {first})", key_node.start_mark
            )
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _yaml_problem(err: yaml.YAMLError) -> tuple[int | None, str]:
    """(1-based line or None, the problem on one line) of a PyYAML error, whose text spans several
    lines with a quote of the input."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    text = " ".join(str(problem).split())
    if mark is None:
        return None, text
    return mark.line + 1, f"{text} (column {mark.column + 1})"


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file's content; a missing, unreadable or wrongly encoded file is a one-line
    :class:`ConfigError` naming it (and the line of the first undecodable byte)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); the {what} must be UTF-8 text"
        ) from None


def read_yaml(path: Path, what: str = "config file", allow_empty: bool = True) -> dict[str, Any]:
    """The top-level mapping of a YAML file. Every problem (missing, not UTF-8, invalid YAML, a key
    given twice, not a mapping, empty unless ``allow_empty``) is a one-line :class:`ConfigError`
    naming the file and, where there is one, the line."""
    text = read_text_file(path, what)
    try:
        values = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        line, problem = _yaml_problem(err)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: invalid YAML: {problem}") from None
    if values is None:
        if allow_empty:
            return {}
        raise ConfigError(f"{path}: the {what} is empty")
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a mapping of key: value at the top level, got a {type(values).__name__}"
        )
    return values


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; a missing, truncated or otherwise damaged file is a one-line
    :class:`ConfigError` naming it (and the line where parsing stopped)."""
    text = read_text_file(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno}); the {what} is damaged"
        ) from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise ConfigError(f"{path}: expected a JSON object, got {kind}; the {what} is damaged")
    return value


def resolve_config(config_files: list[Path] = (), overrides: list[str] = (), **explicit: Any) -> RunConfig:
    """Defaults <- each YAML file in order <- explicit CLI options <- ``--set`` overrides."""
    config = RunConfig()
    for path in config_files:
        config = apply_overrides(config, load_yaml(path), str(path))
    config = apply_overrides(config, {k: v for k, v in explicit.items() if v is not None}, "command line")
    return apply_overrides(config, parse_set(list(overrides)), "--set")
