"""Stream a metadata dump and keep the text of the items a prepared dataset holds.

Only the kept items' clean text fields are held, so memory follows the output, not the dump (the
2018 and 2023 metadata files run to many gigabytes). An item listed twice keeps its first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmesr.data.parsing import DataFormatError
from llmesr.data.prepare.progress import Progress
from llmesr.data.prepare.rawfile import records
from llmesr.data.prepare.source import Source


@dataclass
class ItemText:
    fields: dict[str, dict[str, Any]]  # original item id -> text fields, for the wanted items found
    lines: int  # metadata lines read
    repeated: int  # lines of wanted items already seen (ignored)


def read_item_text(source: Source, path: Path, wanted: set[str], progress: Progress) -> ItemText:
    """Text fields of each item of ``wanted`` found in ``path``; a bad line fails naming file and line."""
    found: dict[str, dict[str, Any]] = {}
    lines = repeated = 0
    for number, obj in progress.over(records(path, source.decode_meta), f"read {path.name}"):
        lines += 1
        try:
            item = source.item_id(obj)
            if item not in wanted:
                continue
            if item in found:
                repeated += 1
                continue
            found[item] = source.item_text(obj)
        except ValueError as exc:
            raise DataFormatError(f"{path}:{number}: {exc}") from None
    return ItemText(found, lines, repeated)
