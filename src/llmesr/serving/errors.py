"""The body of a 422 for a request that fails validation: small, strict JSON, one readable line.

FastAPI's default handler quotes every bad input back whole (a 5 MB string came back as 5 MB) and
cannot encode the non-finite numbers Python's JSON parser accepts (``1e400`` is ``inf``, ``NaN``
is NaN), so those requests were answered 500. Here each quoted value is JSON-safe and cut short,
and ``message`` says what is wrong in one line (``k: Input should be greater than or equal to 1
(got 0)``); ``detail`` keeps FastAPI's structured list for programs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder

from llmesr.serving.catalogue import quoted

QUOTE_LIMIT = 200  # characters of an input quoted in ``detail``
MESSAGE_ERRORS = 3  # errors spelled out in ``message``


def safe_value(value: Any, limit: int = QUOTE_LIMIT) -> Any:
    """``value`` if it is finite JSON of at most ``limit`` characters, else a string that shows it
    cut to ``limit`` characters (``inf``, ``nan`` and huge inputs become short strings)."""
    try:
        text = json.dumps(jsonable_encoder(value), allow_nan=False)
    except (TypeError, ValueError):  # non-finite numbers, or objects JSON has no form for
        return quoted(value, limit)
    return json.loads(text) if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any) -> str | None:
    """A short form of a scalar input for the message; None for containers (too long to read)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float, str)):
        return quoted(value, 40)
    return None


def _line(error: dict) -> str:
    where = [str(part) for part in error.get("loc", ())[1:]]  # drop "body" / "query" / "path"
    if error.get("type") == "json_invalid":
        return f"invalid JSON ({error.get('ctx', {}).get('error', 'cannot parse')})"
    text = f"{'.'.join(where) or 'body'}: {error.get('msg', 'invalid')}"
    shown = None if error.get("type") == "missing" else _shown(error.get("input"))
    return text if shown is None else f"{text} (got {shown})"


def validation_body(errors: Sequence[dict]) -> dict:
    """``{"message": one line, "detail": [errors with safe inputs]}`` for a 422 response."""
    lines = [_line(e) for e in errors[:MESSAGE_ERRORS]]
    more = len(errors) - MESSAGE_ERRORS
    message = "; ".join(lines) + (f"; and {more} more" if more > 0 else "")
    detail = [
        {
            "type": e.get("type"),
            "loc": [safe_value(part, 60) for part in e.get("loc", ())],
            "msg": e.get("msg"),
            "input": safe_value(e.get("input")),
            **({"ctx": safe_value(e["ctx"])} if "ctx" in e else {}),
        }
        for e in errors[:20]
    ]
    return {"message": " ".join(message.split()), "detail": detail}
