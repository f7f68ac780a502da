"""The reader contract: what a raw-dump source must say so that :func:`llmesr.data.prepare.prepare`
can turn its files into a sequences folder.

A source is data, not a class hierarchy: two decoders (line bytes -> object), one function that
pulls ``(user, item, rating, seconds)`` out of a review object, and two that pull the item id and the
clean text fields out of a metadata object. Adding a source is one module defining a
:class:`Source` plus one entry in :data:`llmesr.data.prepare.sources.SOURCES`.

The extracting functions raise ``ValueError`` with a short reason for a bad row; the reader adds
the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmesr.data.prepare.rawfile import Decoder, decode_json
from llmesr.data.prepare.text import clean_list, clean_text, parse_price

# (original user id, original item id, rating, seconds since the Unix epoch)
ReviewRow = tuple[str, str, float, float]

# Every text field a source may write to items.jsonl, with its value for an item without metadata.
TEXT_DEFAULTS: dict[str, Any] = {"title": "", "brand": "", "categories": [], "description": "", "price": None}


@dataclass(frozen=True)
class Source:
    name: str  # the --source value
    summary: str  # which public dump, in one line
    review_files: str  # the review file names the dump ships, e.g. "reviews_<Category>_5.json.gz"
    meta_files: str  # the metadata file names
    user_field: str  # users.jsonl key holding the original user id
    item_field: str  # items.jsonl key holding the original item id
    meta_id_key: str  # the raw metadata key holding the item id (read off raw lines to skip them)
    text_fields: tuple[str, ...]  # items.jsonl text fields, in order (keys of TEXT_DEFAULTS)
    review: Callable[[dict[str, Any]], ReviewRow]
    item_id: Callable[[dict[str, Any]], str]
    item_text: Callable[[dict[str, Any]], dict[str, Any]]
    decode_review: Decoder = decode_json
    decode_meta: Decoder = decode_json

    def empty_text(self) -> dict[str, Any]:
        """The text fields of an item that has no metadata line."""
        return {
            f: (list(TEXT_DEFAULTS[f]) if f == "categories" else TEXT_DEFAULTS[f]) for f in self.text_fields
        }


def text_id(obj: dict[str, Any], key: str) -> str:
    """A required id field: a non-empty string (integers are accepted as their decimal text)."""
    if key not in obj:
        raise ValueError(f"no {key!r} field")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError(f"{key!r} is {value!r}, not an id")
    return str(value)


PRODUCT_FIELDS = ("title", "brand", "categories", "description", "price")


def keyed_by(key: str) -> dict[str, Any]:
    """The item-id settings of a source whose reviews and metadata both name items by ``key``."""
    return {"item_field": key, "meta_id_key": key, "item_id": lambda obj: text_id(obj, key)}


def number(obj: dict[str, Any], key: str) -> float:
    """A required finite number (a numeric string is accepted)."""
    if key not in obj:
        raise ValueError(f"no {key!r} field")
    value = obj[key]
    try:
        out = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise ValueError(f"{key!r} is {value!r}, not a number")
    return out


def product_text(obj: dict[str, Any], *, brand: str, categories: str) -> dict[str, Any]:
    """The five text fields of an Amazon product, whatever the release calls its brand and
    category fields; missing fields get their :data:`TEXT_DEFAULTS` value."""
    return {
        "title": clean_text(obj.get("title")),
        "brand": clean_text(obj.get(brand)),
        "categories": clean_list(obj.get(categories)),
        "description": clean_text(obj.get("description")),
        "price": parse_price(obj.get("price")),
    }
