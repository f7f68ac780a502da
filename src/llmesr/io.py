"""Atomic file writes and checked reads.

Writes go to a temp file in the target folder, fsync, then ``os.replace``: a reader (or a resumed
run after a kill) sees either the old file or the new one, never a truncated one. Reads of YAML,
JSON and matrices refuse a damaged file with one line naming it (and the line where parsing
stopped), so no caller repeats those checks.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch
import yaml

from llmesr.errors import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_by_path(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` writes a temp path in the target folder, which then replaces ``path`` (synced, with
    the permissions a plain open() gives) or is removed on failure. Writers that only take a file
    name (ONNX export, ONNX quantisation) call it directly; the others go through a file object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    def through_file(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)

    atomic_write_by_path(path, through_file)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, "w", lambda f: f.write(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    _atomic(path, "wb", lambda f: np.save(f, array, allow_pickle=False))


def atomic_torch_save(path: Path, obj: Any) -> None:
    _atomic(path, "wb", lambda f: torch.save(obj, f))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; each line is written with a single ``write`` call and flushed."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    _atomic(path, "wb", lambda f: frame.to_parquet(f, index=False))


def atomic_write_png(path: Path, figure: Any, dpi: int = 120) -> None:
    """Save a matplotlib figure."""
    _atomic(path, "wb", lambda f: figure.savefig(f, format="png", dpi=dpi))


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _atomic(path, "wb", lambda f: np.savez(f, **arrays))


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
# YAML 1.2 floats: PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string, so ``lr: 1e-3``
# would be refused as a string although every other YAML reader calls it a number.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml_value(text: str) -> Any:
    """One value written as YAML (``--set key=VALUE``), read by the same rules as config files."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


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


def load_matrix(path: Path, what: str = "float matrix", kinds: str = "f") -> np.ndarray:
    """A 2-D ``.npy`` matrix whose dtype kind is in ``kinds`` (``"f"`` floats, ``"iu"`` integers),
    with no NaN or Inf; a missing, truncated, pickled or wrongly shaped file is a one-line
    :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        detail = " ".join(str(err).split())[:200]
        raise ConfigError(f"{path}: unreadable .npy file ({type(err).__name__}: {detail})") from None
    finite = matrix.dtype.kind != "f" or np.isfinite(matrix).all()
    if matrix.dtype.kind not in kinds or matrix.ndim != 2 or not finite:
        found = f"dtype {matrix.dtype}, shape {matrix.shape}"
        raise ConfigError(f"{path}: expected a finite {what}, found {found}")
    return matrix


def check_writable(path: Path | None, folder: bool, flag: str = "--out") -> None:
    """Refuse an output path that cannot be written before any work is done: an empty path, a file
    where a folder is wanted or the reverse, a file in the way of the folders leading to it, or a
    folder this process may not write in."""
    if path is None:
        return
    if str(path).strip() in ("", "."):
        raise ConfigError(f"{flag} is empty; give a {'folder' if folder else 'file name'}")
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; give a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                raise ConfigError(f"{flag} {path}: {existing} is a file, not a folder")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: no permission to write in {existing}")
            return
