"""Clean text out of raw metadata fields: HTML tags and entities removed, whitespace collapsed,
lists flattened, prices parsed. Shared by every source so that each reader states only which raw
field becomes which output field.

The 2018 Amazon metadata carries markup in titles, descriptions and categories (``&amp;``,
``<span ...>``, ``</span></span>``); the other dumps are mostly clean but go through the same steps.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

# A tag starts with a letter (or "/" and a letter) so that "5 < 10 and 20 > 3" is kept.
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_PRICE = re.compile(r"\$?\s*(\d[\d,]*(?:\.\d+)?)")


def clean_text(value: Any) -> str:
    """One clean string from a raw scalar (``None`` and non-text become ``""``), lists joined by spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in map(clean_text, value) if t)
    if value is None or isinstance(value, (bool, dict)):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    text = _TAG.sub(" ", str(value))
    return " ".join(html.unescape(text).split())


def clean_list(value: Any, sep: str | None = None) -> list[str]:
    """Clean, non-empty, first-occurrence-unique strings from a list, a list of lists (2014
    ``categories``), or a ``sep``-separated string (Yelp ``categories``)."""
    if value is None:
        return []
    if isinstance(value, str):
        parts: list[Any] = value.split(sep) if sep is not None else [value]
    elif isinstance(value, (list, tuple)):
        parts = [p for v in value for p in (v if isinstance(v, (list, tuple)) else [v])]
    else:
        return []
    return list(dict.fromkeys(t for t in map(clean_text, parts) if t))


def parse_price(value: Any) -> float | None:
    """A price as a float: a number, or text holding one amount such as ``"$1,299.99"``.

    Ranges (``"$10.00 - $20.00"``), empty strings and markup give ``None``: no single price exists.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str):
        match = _PRICE.fullmatch(value.strip())
        if match:
            return float(match.group(1).replace(",", ""))
    return None
