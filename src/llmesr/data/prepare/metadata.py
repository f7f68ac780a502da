"""Stream a metadata dump and keep the text of the items a prepared dataset holds.

Only the kept items' clean text fields are held, so memory follows the output, not the dump (the
2018 and 2023 metadata files run to many gigabytes). An item listed twice keeps its first line.

Most lines describe items outside the dataset: a line whose raw text names item ids, none of them
wanted, is skipped without being decoded (decoding is most of the cost, ``ast.literal_eval`` for
the 2014 files above all). A malformed line is therefore reported only if it may hold a wanted item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmesr.data.parsing import DataFormatError
from llmesr.data.prepare.rawfile import decode_record, field_values, numbered_lines
from llmesr.data.prepare.source import Source
from llmesr.progress import Progress


@dataclass
class ItemText:
    fields: dict[str, dict[str, Any]]  # original item id -> text fields, for the wanted items found
    lines: int  # metadata lines read
    repeated: int  # lines of wanted items already seen (ignored)


def read_item_text(source: Source, path: Path, wanted: set[str], progress: Progress) -> ItemText:
    """Text fields of each item of ``wanted`` found in ``path``; a bad line fails naming file and line."""
    found: dict[str, dict[str, Any]] = {}
    ids_on_line = field_values(source.meta_id_key)
    lines = repeated = 0
    for number, line in progress.over(numbered_lines(path), f"read {path.name}"):
        lines += 1
        named = ids_on_line(line)
        if named and not any(item in wanted for item in named):
            continue
        obj = decode_record(path, number, line, source.decode_meta)
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
