"""The dataset card of a prepared folder: ``card.json`` (for programs) and ``dataset.md`` (for
people). It records everything needed to rebuild the folder and to explain its counts: the source
files and their sha256, the filters, the counts after each stage, the order and id rules.

The card is a pure function of the inputs and options (no clock time, no absolute paths), so two
runs on the same files give byte-identical folders.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmesr.data.prepare.filters import Filters
from llmesr.data.prepare.ids import ID_RULE, TIE_RULE, StageCount
from llmesr.data.prepare.rawfile import sha256_of
from llmesr.data.prepare.source import Source


def file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def build_card(
    source: Source,
    files: dict[str, Path],
    preset: str,
    filters: Filters,
    stages: list[StageCount],
    items: dict[str, int],
) -> dict[str, Any]:
    """``files`` maps a role (``reviews``, ``meta``) to its path; ``items`` counts metadata coverage."""
    final = stages[-1]
    return {
        "source": {"name": source.name, "summary": source.summary},
        "files": {role: file_entry(path) for role, path in files.items()},
        "preset": preset,
        "filters": {**asdict(filters), "cores": [asdict(step) for step in filters.cores]},
        "filter_steps": filters.describe(),
        "stages": [stage.to_dict() for stage in stages],
        "counts": {"users": final.users, "items": final.items, "interactions": final.interactions},
        "item_text": items,
        "order_rule": TIE_RULE,
        "id_rule": ID_RULE,
        "fields": {
            "users.jsonl": ["user_id", source.user_field],
            "items.jsonl": ["item_id", source.item_field, *source.text_fields],
        },
    }


def card_markdown(card: dict[str, Any]) -> str:
    counts = card["counts"]
    lines = [
        f"# Dataset card: {card['source']['summary']}",
        "",
        f"{counts['users']:,} users, {counts['items']:,} items, {counts['interactions']:,} interactions, "
        f"prepared by `llmesr prepare --source {card['source']['name']}` from preset "
        f"`{card['preset']}` with the filters below.",
        "",
        "## Source files",
        "",
        "| role | file | bytes | sha256 |",
        "|---|---|---:|---|",
        *(
            f"| {role} | {f['name']} | {f['bytes']:,} | `{f['sha256']}` |"
            for role, f in card["files"].items()
        ),
        "",
        "## Filters, in the order applied",
        "",
        *(f"- {step}" for step in card["filter_steps"]),
        "",
        "## Counts after each stage",
        "",
        "| stage | users | items | interactions | note |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {s['stage']} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['note']} |"
            for s in card["stages"]
        ),
        "",
        "## Rules",
        "",
        f"- Order: {card['order_rule']}.",
        f"- Ids: {card['id_rule']}.",
        "- Item text: "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in card["item_text"].items())
        + ".",
        "",
        "## Files",
        "",
        "- `sequences.txt`: `user_id item_id item_id ...` per line, in time order.",
        *(f"- `{name}`: {', '.join(f'`{k}`' for k in keys)}." for name, keys in card["fields"].items()),
        "- `card.json`: this card, for programs.",
        "",
    ]
    return "\n".join(lines)
