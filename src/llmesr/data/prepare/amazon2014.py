"""Amazon product reviews, 2014 release (McAuley et al., SIGIR 2015), the release behind the
S3Rec/P5 Beauty split.

Files as distributed (assumed from the release page; each one record per line, gzip):

- ``reviews_<Category>_5.json.gz`` (5-core) or ``reviews_<Category>.json.gz`` (all reviews): JSON
  objects with ``reviewerID``, ``asin``, ``overall`` (1.0-5.0), ``unixReviewTime`` (seconds, day
  resolution), plus review text we do not read. Lines that are Python literals are accepted too.
- ``meta_<Category>.json.gz``: Python dict literals (single quotes, written with ``repr``), with
  ``asin`` and, when known, ``title``, ``brand``, ``categories`` (a list of category paths, each a
  list), ``description`` (a string) and ``price`` (a float).
"""

from __future__ import annotations

from typing import Any

from llmesr.data.prepare.rawfile import decode_json_or_literal
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
    return (
        text_id(obj, "reviewerID"),
        text_id(obj, "asin"),
        number(obj, "overall"),
        number(obj, "unixReviewTime"),
    )


def item_text(obj: dict[str, Any]) -> dict[str, Any]:
    return product_text(obj, brand="brand", categories="categories")


SOURCE = Source(
    name="amazon2014",
    summary="Amazon product reviews, 2014 release (McAuley et al.)",
    review_files="reviews_<Category>_5.json.gz or reviews_<Category>.json.gz",
    meta_files="meta_<Category>.json.gz (Python dict literals)",
    user_field="reviewer_id",
    **keyed_by("asin"),
    text_fields=PRODUCT_FIELDS,
    review=review,
    item_text=item_text,
    decode_review=decode_json_or_literal,
    decode_meta=decode_json_or_literal,
)
