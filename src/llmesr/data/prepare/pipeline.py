"""``prepare``: a raw public review dump -> a sequences folder (``sequences.txt``, ``items.jsonl``,
``users.jsonl``) plus its dataset card (``card.json``, ``dataset.md``).

Stages: read the review file once (per-line rating and date filters applied as it streams), drop
repeated (user, item) pairs if asked, apply the core steps, renumber, then stream the metadata file
keeping only the kept items' text. Every option is checked and the output folder vetted before the
first line is read; the folder is written all at once at the end, so bad input writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llmesr.data.parsing import DataFormatError
from llmesr.data.prepare.card import build_card, card_markdown
from llmesr.data.prepare.filters import Filters, core_mask, first_of_repeated_pairs, resolve_filters
from llmesr.data.prepare.ids import Numbered, StageCount, count_stage, number_ids
from llmesr.data.prepare.metadata import ItemText, read_item_text
from llmesr.data.prepare.output import check_output_folder, jsonl_text, sequences_text, write_folder
from llmesr.data.prepare.reviews import RawInteractions, read_reviews
from llmesr.data.prepare.source import Source
from llmesr.data.prepare.sources import get_source
from llmesr.progress import Progress


def prepare(
    source: str,
    reviews: str | Path,
    out: str | Path,
    meta: str | Path | None = None,
    preset: str = "s3rec",
    *,
    min_rating: float | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    dedup: bool | None = None,
    kcore: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare ``reviews`` (and the item text of ``meta``) from ``source`` into the folder ``out``.

    ``preset`` names the filters (see :data:`llmesr.data.prepare.filters.PRESETS`); the keyword
    options override it. Returns the dataset card. Raises :class:`DataFormatError` for bad options
    or input, naming the file and line, with nothing written.
    """
    raw_source = get_source(source)
    filters = resolve_filters(
        preset, min_rating=min_rating, date_from=date_from, date_to=date_to, dedup=dedup, kcore=kcore
    )
    files = {"reviews": Path(reviews)} | ({"meta": Path(meta)} if meta is not None else {})
    for role, path in files.items():
        if not path.is_file():
            raise DataFormatError(f"{role} file {path} does not exist")
    out = Path(out)
    check_output_folder(out, overwrite)
    report = Progress(progress)

    raw = read_reviews(raw_source, files["reviews"], filters, report)
    keep, stages = apply_filters(raw, filters)
    numbered = number_ids(raw.users, raw.items, raw.times, keep)
    item_ids = [raw.item_ids[code] for code in numbered.item_codes]
    text = read_item_text(raw_source, files["meta"], set(item_ids), report) if "meta" in files else None
    coverage = item_coverage(item_ids, text)
    card = build_card(raw_source, files, preset, filters, stages, coverage)
    write_folder(out, folder_files(raw_source, raw, numbered, item_ids, text, card), overwrite)
    report.note(f"wrote {out}: {card['counts']['users']:,} users, {card['counts']['items']:,} items")
    return card


def apply_filters(raw: RawInteractions, filters: Filters) -> tuple[np.ndarray, list[StageCount]]:
    """Mask of the rows kept by dedup and the core steps, and the counts after every stage."""
    stages = [StageCount("raw review lines", len(raw.user_ids), len(raw.item_ids), raw.lines)]
    keep = np.ones(len(raw.users), dtype=bool)
    if filters.has_line_filters():
        note = f"dropped {raw.dropped_by_rating:,} by rating, {raw.dropped_by_date:,} by date"
        _record(stages, "rating/date filters", raw, keep, note)
    if filters.dedup:
        keep = first_of_repeated_pairs(raw.users, raw.items, raw.times)
        _record(stages, "repeated pairs removed", raw, keep)
    for step in filters.cores:
        kept = np.flatnonzero(keep)
        keep = np.zeros_like(keep)
        keep[kept[core_mask(raw.users[kept], raw.items[kept], step)]] = True
        _record(stages, f"core: {step.describe()}", raw, keep)
    return keep, stages


def _record(
    stages: list[StageCount], stage: str, raw: RawInteractions, keep: np.ndarray, note: str = ""
) -> None:
    stages.append(count_stage(stage, raw.users[keep], raw.items[keep], note))
    if not keep.any():
        raise DataFormatError(f"no interactions left after {stage}; nothing written")


def item_coverage(item_ids: list[str], text: ItemText | None) -> dict[str, int]:
    if text is None:
        return {"items_with_metadata": 0, "items_without_metadata": len(item_ids), "metadata_lines": 0}
    with_text = sum(1 for item in item_ids if item in text.fields)
    return {
        "items_with_metadata": with_text,
        "items_without_metadata": len(item_ids) - with_text,
        "metadata_lines": text.lines,
        "repeated_metadata_lines_ignored": text.repeated,
    }


def folder_files(
    source: Source,
    raw: RawInteractions,
    numbered: Numbered,
    item_ids: list[str],
    text: ItemText | None,
    card: dict[str, Any],
) -> dict[str, str]:
    """The text of every file of the prepared folder."""
    found = text.fields if text is not None else {}
    items = (
        {"item_id": k, source.item_field: item, **found.get(item, source.empty_text())}
        for k, item in enumerate(item_ids, start=1)
    )
    users = (
        {"user_id": k, source.user_field: raw.user_ids[code]}
        for k, code in enumerate(numbered.user_codes, start=1)
    )
    return {
        "sequences.txt": sequences_text(numbered.sequences),
        "items.jsonl": jsonl_text(items),
        "users.jsonl": jsonl_text(users),
        "card.json": json_text(card),
        "dataset.md": card_markdown(card),
    }


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
