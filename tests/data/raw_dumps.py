"""Small raw dumps in each source's real on-disk format, for the prepare tests.

``RENDERERS`` holds one entry per registered source (a test checks that it covers
:data:`llmesr.data.prepare.SOURCES`): how a review and a product look in that dump, written the way
the public files write them (Python ``repr`` for the 2014 metadata, milliseconds for 2023, a date
string and a comma-separated category string for Yelp).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Review:
    user: str
    item: str
    seconds: int
    rating: float = 5.0


@dataclass(frozen=True)
class Product:
    item: str
    title: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    description: str = ""
    price: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # raw fields laid over the rendered record


def _yelp_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _amazon_review(r: Review) -> dict[str, Any]:
    return {
        "reviewerID": r.user,
        "asin": r.item,
        "reviewerName": "A reviewer",
        "helpful": [0, 0],
        "reviewText": 'Works as described, "really" <b>good</b>.',
        "overall": r.rating,
        "summary": "Good",
        "unixReviewTime": r.seconds,
        "reviewTime": "01 29, 2014",
    }


def review_2014(r: Review) -> str:
    return json.dumps(_amazon_review(r))


def meta_2014(p: Product) -> str:
    record: dict[str, Any] = {
        "asin": p.item,
        "imUrl": "http://ecx.images-amazon.com/x.jpg",
        "salesRank": {"Beauty": 1},
    }
    record |= {"title": p.title} if p.title else {}
    record |= {"brand": p.brand} if p.brand else {}
    record |= {"categories": [list(p.categories)]} if p.categories else {}
    record |= {"description": p.description} if p.description else {}
    record |= {"price": p.price} if p.price is not None else {}
    return repr(record | p.extra)  # Python literal, single quotes: as the 2014 metadata is written


def review_2018(r: Review) -> str:
    return json.dumps(_amazon_review(r) | {"verified": True, "vote": "2", "style": {"Size:": " 1 oz"}})


def meta_2018(p: Product) -> str:
    record = {
        "asin": p.item,
        "title": p.title,
        "brand": p.brand,
        "category": list(p.categories),
        "description": [p.description] if p.description else [],
        "price": f"${p.price:,.2f}" if p.price is not None else "",
        "feature": [],
        "main_cat": "All Beauty",
    }
    return json.dumps(record | p.extra)


def review_2023(r: Review) -> str:
    record = {
        "rating": r.rating,
        "title": "Good",
        "text": "Works.",
        "images": [],
        "asin": r.item + "-variant",
        "parent_asin": r.item,
        "user_id": r.user,
        "timestamp": r.seconds * 1000,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    return json.dumps(record)


def meta_2023(p: Product) -> str:
    record = {
        "main_category": "All Beauty",
        "title": p.title,
        "average_rating": 4.5,
        "rating_number": 10,
        "features": [],
        "description": [p.description] if p.description else [],
        "price": p.price,
        "images": [],
        "videos": [],
        "store": p.brand or None,
        "categories": list(p.categories),
        "details": {},
        "parent_asin": p.item,
        "bought_together": None,
    }
    return json.dumps(record | p.extra)


def review_yelp(r: Review) -> str:
    record = {
        "review_id": f"{r.user}-{r.item}-{r.seconds}",
        "user_id": r.user,
        "business_id": r.item,
        "stars": r.rating,
        "useful": 0,
        "funny": 0,
        "cool": 0,
        "text": "Nice place.",
        "date": _yelp_date(r.seconds),
    }
    return json.dumps(record)


def meta_yelp(p: Product) -> str:
    record = {
        "business_id": p.item,
        "name": p.title,
        "city": "Las Vegas",
        "state": "NV",
        "stars": 4.0,
        "review_count": 10,
        "attributes": None,
        "categories": ", ".join(p.categories) if p.categories else None,
        "hours": None,
    }
    return json.dumps(record | p.extra)


RENDERERS: dict[str, tuple[Callable[[Review], str], Callable[[Product], str]]] = {
    "amazon2014": (review_2014, meta_2014),
    "amazon2018": (review_2018, meta_2018),
    "amazon2023": (review_2023, meta_2023),
    "yelp": (review_yelp, meta_yelp),
}


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def write_dump(
    folder: Path, source: str, reviews: list[Review], products: list[Product], gz: bool = False
) -> tuple[Path, Path]:
    """The review and metadata files of ``source`` for the given records, in this order."""
    render_review, render_product = RENDERERS[source]
    suffix = ".gz" if gz else ""
    return (
        write_lines(folder / f"reviews.json{suffix}", [render_review(r) for r in reviews], gz),
        write_lines(folder / f"meta.json{suffix}", [render_product(p) for p in products], gz),
    )


def expected_text(source_fields: tuple[str, ...], p: Product) -> dict[str, Any]:
    """The items.jsonl text fields ``prepare`` should write for ``p`` (clean inputs)."""
    full = {
        "title": p.title,
        "brand": p.brand,
        "categories": list(p.categories),
        "description": p.description,
        "price": p.price,
    }
    return {f: full[f] for f in source_fields}
