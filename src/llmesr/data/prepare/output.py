"""Write a prepared sequences folder so that it only ever appears complete.

Every file is written into a temporary sibling folder, which is then renamed onto the target: a
crash or a bad input leaves the target as it was (absent, empty, or the previous version).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmesr.data.parsing import DataFormatError
from llmesr.data.sequences import Sequences
from llmesr.io import atomic_write_text


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a target that is a file, or a non-empty folder without ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataFormatError(f"output {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataFormatError(f"output folder {out} is not empty; pass overwrite (--overwrite) to replace it")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataFormatError(f"output {out}: {parent} is a file, not a folder")
            break


def sequences_text(sequences: Sequences) -> str:
    """``sequences.txt``: user ``k + 1`` on line ``k + 1``, followed by its items."""
    words = sequences.items.astype(str)
    offsets = sequences.offsets
    return "".join(
        f"{user + 1} {' '.join(words[offsets[user] : offsets[user + 1]])}\n" for user in range(len(sequences))
    )


def jsonl_text(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_folder(out: Path, files: dict[str, str], overwrite: bool) -> None:
    """Write ``files`` (name -> text) as the folder ``out``, all at once."""
    out = Path(out)
    check_output_folder(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; give what mkdir would
        for name, text in files.items():
            atomic_write_text(staging / name, text)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, out: Path) -> None:
    """Rename ``staging`` onto ``out``; a previous non-empty ``out`` is moved aside, then removed."""
    if out.is_dir() and any(out.iterdir()):
        previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, previous / out.name)
        os.replace(staging, out)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(staging, out)  # onto nothing, or onto an empty folder
