"""Atomic file writes: a temp file in the target folder, fsync, then ``os.replace``.

A reader (or a resumed run after a kill) therefore sees either the old file or the new one, never
a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
