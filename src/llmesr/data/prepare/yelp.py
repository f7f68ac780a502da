"""Yelp Open Dataset (the JSON release, as used by S3Rec and the LLM-ESR paper).

Files as distributed (assumed from the dataset's documentation; plain JSON lines inside the
download's tar, gzip accepted too):

- ``yelp_academic_dataset_review.json``: ``user_id``, ``business_id``, ``stars``, ``date`` as
  ``"YYYY-MM-DD HH:MM:SS"`` (local time without a zone; read as UTC, which keeps the order and
  makes date bounds compare exactly as the text does).
- ``yelp_academic_dataset_business.json``: ``business_id``, ``name`` (written as ``title``),
  ``categories`` (a comma-separated string, or null; a list in some older releases).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from llmesr.data.prepare.source import ReviewRow, Source, keyed_by, number, text_id
from llmesr.data.prepare.text import clean_list, clean_text


def date_seconds(text: str) -> float:
    """Seconds since the epoch of ``"YYYY-MM-DD[ HH:MM:SS]"`` read as UTC."""
    return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc).timestamp()


def review(obj: dict[str, Any]) -> ReviewRow:
    user, item, stars = text_id(obj, "user_id"), text_id(obj, "business_id"), number(obj, "stars")
    if "date" not in obj:
        raise ValueError("no 'date' field")
    date = obj["date"]
    try:
        return user, item, stars, date_seconds(date)
    except (AttributeError, ValueError):
        raise ValueError(f"'date' is {date!r}, not a 'YYYY-MM-DD HH:MM:SS' string") from None


def item_text(obj: dict[str, Any]) -> dict[str, Any]:
    return {"title": clean_text(obj.get("name")), "categories": clean_list(obj.get("categories"), sep=",")}


SOURCE = Source(
    name="yelp",
    summary="Yelp Open Dataset (JSON release)",
    review_files="yelp_academic_dataset_review.json",
    meta_files="yelp_academic_dataset_business.json",
    user_field="yelp_user_id",
    **keyed_by("business_id"),
    text_fields=("title", "categories"),
    review=review,
    item_text=item_text,
)
