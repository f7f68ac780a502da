"""Amazon review data, 2018 release (Ni, Li and McAuley, EMNLP 2019).

Files as distributed (assumed from the release page; JSON lines, gzip):

- ``<Category>.json.gz`` (all reviews) or ``<Category>_5.json.gz`` (5-core): ``reviewerID``,
  ``asin``, ``overall``, ``unixReviewTime`` (seconds), as in 2014, plus ``verified``, ``vote``, ...
- ``meta_<Category>.json.gz``: ``asin``, ``title``, ``brand``, ``category`` (a flat list),
  ``description`` (a list of paragraphs), ``price`` (text such as ``"$12.99"``, or empty). Titles,
  descriptions and categories may hold HTML tags and entities; they are cleaned. The release lists
  some products more than once; the first line of an asin is used.
"""

from __future__ import annotations

from typing import Any

from llmesr.data.prepare.amazon2014 import review
from llmesr.data.prepare.source import PRODUCT_FIELDS, Source, keyed_by, product_text


def item_text(obj: dict[str, Any]) -> dict[str, Any]:
    return product_text(obj, brand="brand", categories="category")


SOURCE = Source(
    name="amazon2018",
    summary="Amazon review data, 2018 release (Ni, Li and McAuley)",
    review_files="<Category>.json.gz or <Category>_5.json.gz",
    meta_files="meta_<Category>.json.gz",
    user_field="reviewer_id",
    **keyed_by("asin"),
    text_fields=PRODUCT_FIELDS,
    review=review,
    item_text=item_text,
)
