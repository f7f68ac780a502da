"""Amazon Reviews 2023 (Hou et al., 2024; the McAuley lab's "Amazon Reviews'23").

Files as distributed (assumed from the release page; JSON lines, gzip):

- ``<Category>.jsonl.gz``: ``user_id``, ``asin``, ``parent_asin``, ``rating`` (1.0-5.0),
  ``timestamp`` (**milliseconds** since the epoch), plus review text. Items are ``parent_asin``
  (product families, as in the release's own benchmark splits), not the variant ``asin``.
- ``meta_<Category>.jsonl.gz``: ``parent_asin``, ``title``, ``store`` (written as ``brand``),
  ``categories`` (a list, often empty), ``description`` (a list of paragraphs), ``price`` (a number
  or null).
"""

from __future__ import annotations

from typing import Any

from llmesr.data.prepare.source import (
    PRODUCT_FIELDS,
    ReviewRow,
    Source,
    keyed_by,
    number,
    product_text,
    text_id,
)


def review(obj: dict[str, Any]) -> ReviewRow:
    milliseconds = number(obj, "timestamp")
    return text_id(obj, "user_id"), text_id(obj, "parent_asin"), number(obj, "rating"), milliseconds / 1000.0


def item_text(obj: dict[str, Any]) -> dict[str, Any]:
    return product_text(obj, brand="store", categories="categories")


SOURCE = Source(
    name="amazon2023",
    summary="Amazon Reviews 2023 (Hou et al.), items by parent_asin",
    review_files="<Category>.jsonl.gz",
    meta_files="meta_<Category>.jsonl.gz",
    user_field="reviewer_id",
    **keyed_by("parent_asin"),
    text_fields=PRODUCT_FIELDS,
    review=review,
    item_text=item_text,
)
