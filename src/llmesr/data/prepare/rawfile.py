"""Raw dump files: plain or gzip (told apart by magic bytes), read line by line, decoded one line at
a time, with every failure reported as a one-line :class:`DataFormatError` naming file and line.

Reading one line at a time keeps memory independent of the file size: a multi-gigabyte review dump
is never held as text.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmesr.data.parsing import DataFormatError

GZIP_MAGIC = b"\x1f\x8b"

Decoder = Callable[[bytes], Any]


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, raw line)`` for every non-blank line, whether ``path`` is gzip or plain."""
    path = Path(path)
    opener = gzip.open if is_gzip(path) else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"{path}:{number + 1}: truncated or corrupt gzip data ({exc})") from None


def decode_json(line: bytes) -> Any:
    """Strict JSON (every source except the 2014 Amazon metadata)."""
    try:
        return json.loads(line)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte 0x{line[exc.start]:02x})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None


def decode_json_or_literal(line: bytes) -> Any:
    """JSON, or else a Python literal: the 2014 Amazon metadata is written with Python's ``repr``
    (single quotes), which JSON cannot read. ``ast.literal_eval`` evaluates literals only, never
    code, so a hostile line cannot run anything."""
    try:
        return json.loads(line)
    except ValueError:
        pass
    try:
        return ast.literal_eval(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte 0x{line[exc.start]:02x})") from None
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ValueError("neither a JSON object nor a Python dict literal") from None


def decode_record(path: Path, number: int, line: bytes, decode: Decoder) -> dict[str, Any]:
    """One line decoded to an object; anything else fails naming the file and line."""
    try:
        obj = decode(line)
    except ValueError as exc:
        raise DataFormatError(f"{path}:{number}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}:{number}: expected an object, got {type(obj).__name__}")
    return obj


def records(path: Path, decode: Decoder) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each line of ``path``; a line that is not an object fails naming it."""
    for number, line in numbered_lines(path):
        yield number, decode_record(path, number, line, decode)


def field_values(key: str) -> Callable[[bytes], list[str]]:
    """A quick reader of every ``"key": "value"`` (or single-quoted) pair written in a raw line.

    It lets a caller skip a line without decoding it. The pattern may also match text inside
    another field, so it over-reports but never misses a plainly written string value.
    """
    pattern = re.compile(rb"[\"']" + re.escape(key.encode()) + rb"[\"']\s*:\s*[\"']([^\"'\\]+)[\"']")

    def values(line: bytes) -> list[str]:
        return [v.decode("utf-8", "replace") for v in pattern.findall(line)]

    return values


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex digest of the bytes as stored (a .gz file's compressed bytes), to compare with a download."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
