"""Item and user prompts: the text that the LLM encoder turns into item and user embeddings.

Item prompts come from an item's text fields through a small template language; user prompts list
the titles of the items in the user's *training prefix* only, newest first.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmesr.data.sequences import Sequences

log = logging.getLogger(__name__)

ITEM_TEMPLATES: dict[str, str] = {
    "default": "{title}[. Brand: {brand}][. Categories: {categories}].",
    "paper": "The {domain} item has following attributes: "
    "[name is {title}; ][brand is {brand}; ][categories are {categories}].",
    "title": "{title}",
    # Businesses (Yelp): a name and categories, no brand; the paper's wording with a business noun.
    "business": "The business has following attributes: [name is {title}; ][categories are {categories}].",
}

# Fields that carry item text; an item whose template fields are all empty is rendered from these
# instead. Other columns (e.g. Beauty's ``asin``) are ids, not text a language model can use.
TEXT_FIELDS = ("title", "brand", "categories", "year")

USER_TEMPLATE = "The user bought, most recent first: {items}."
EMPTY_USER_TEXT = "The user has no purchases yet."

_UNKNOWN_BRANDS = {"", "unknown"}
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Stripped from the front of a prompt whose leading field is empty (". Brand: X" -> "Brand: X").
_LEADING_SEPARATORS = " .,;:-"


def item_fields(item_info: pd.DataFrame) -> pd.DataFrame:
    """Normalise known item-table layouts into string columns ``title``, ``brand``, ``categories``
    (and ``year`` for MovieLens), plus every other column as text. Missing values become ``""``.

    - Beauty: ``attributes`` is a list ``[brand, category, ...]``. Brand is dropped when it is
      ``"Unknown"``; and 4,609 of the 12,101 Beauty items have no brand entry at all (their list
      starts with a category), so the first element counts as a brand only if it never appears as
      a category anywhere in the table.
    - MovieLens atomic files: ``movie_title`` -> title, ``class`` (space-separated genres) ->
      categories joined by ``", "``, ``release_year`` -> year.
    """
    out: dict[str, pd.Series] = {}
    cols = set(item_info.columns)
    if "attributes" in cols:
        out["brand"], out["categories"] = _split_attributes(item_info["attributes"])
    if "movie_title" in cols and "title" not in cols:
        out["title"] = _text(item_info["movie_title"])
    if "class" in cols:
        out["categories"] = _text(item_info["class"]).str.split().str.join(", ").fillna("")
    if "release_year" in cols:
        out["year"] = _text(item_info["release_year"])
    consumed = {"attributes", "movie_title", "class", "release_year"}
    for col in item_info.columns:
        if col not in consumed and col not in out:
            out[str(col)] = _text(item_info[col])
    for col in ("title", "brand", "categories"):
        out.setdefault(col, pd.Series("", index=item_info.index, dtype=object))
    order = [c for c in TEXT_FIELDS if c in out] + [c for c in out if c not in TEXT_FIELDS]
    return pd.DataFrame({c: out[c] for c in order}, index=item_info.index)


def _text(col: pd.Series) -> pd.Series:
    """Strings with HTML entities decoded (Beauty has ``L&#39;Oreal``) and whitespace collapsed;
    lists are joined with ``", "``; missing values become ``""``."""
    values = [_scalar_text(v) for v in col.tolist()]
    return pd.Series(values, index=col.index, dtype=object)


def _scalar_text(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(t for t in (_scalar_text(v) for v in value) if t)
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return " ".join(html.unescape(str(value)).split())


def _split_attributes(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    lists = [
        [_scalar_text(a) for a in v] if isinstance(v, (list, tuple, np.ndarray)) else [] for v in col.tolist()
    ]
    category_vocab = {a for attrs in lists for a in attrs[1:]}
    brands, cats = [], []
    for attrs in lists:
        has_brand_slot = bool(attrs) and attrs[0] not in category_vocab
        brand = attrs[0] if has_brand_slot and attrs[0].lower() not in _UNKNOWN_BRANDS else ""
        rest = attrs[1:] if has_brand_slot else attrs
        brands.append(brand)
        cats.append(", ".join(a for a in rest if a))
    return pd.Series(brands, index=col.index, dtype=object), pd.Series(cats, index=col.index, dtype=object)


@dataclass(frozen=True)
class _Part:
    literal: str = ""
    field: str | None = None


@dataclass(frozen=True)
class PromptTemplate:
    """``{field}`` placeholders; ``[...]`` marks an optional segment, dropped for an item when any
    field inside it is empty. ``[[``, ``]]``, ``{{`` and ``}}`` are literal brackets and braces
    (escapes win: ``"]]]"`` is a literal ``]`` that then closes a segment).

    ``params`` are constants filled in for every item (the ``paper`` preset's ``domain``).
    """

    text: str
    params: dict[str, str] = field(default_factory=dict)
    _segments: list[tuple[bool, list[_Part]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parse once, at construction, so a malformed template fails where it is written.
        object.__setattr__(self, "_segments", _parse(self.text))

    @property
    def fields(self) -> list[str]:
        """Item fields the template reads (params excluded), in order of appearance."""
        names = [p.field for _, parts in self._segments for p in parts if p.field is not None]
        return [n for n in dict.fromkeys(names) if n not in self.params]

    def render(self, fields: pd.DataFrame) -> list[str]:
        """One prompt per row of ``fields`` (as made by :func:`item_fields`). Fully vectorised over rows."""
        available = set(map(str, fields.columns)) | set(self.params)
        for name in self.fields:
            if name not in available:
                raise ValueError(
                    f"prompt template {self.text!r} uses unknown field {{{name}}}; "
                    f"available: {', '.join(sorted(available))}"
                )
        n = len(fields)
        values = {
            name: np.array([self.params[name]] * n, dtype=object)
            if name in self.params
            else fields[name].fillna("").astype(str).to_numpy(dtype=object)
            for name in {p.field for _, parts in self._segments for p in parts if p.field}
        }
        out = np.full(n, "", dtype=object)
        for optional, parts in self._segments:
            seg = np.full(n, "", dtype=object)
            present = np.ones(n, dtype=bool)
            for p in parts:
                if p.field is None:
                    seg = seg + p.literal
                else:
                    seg = seg + values[p.field]
                    present &= values[p.field] != ""
            out = out + (np.where(present, seg, "") if optional else seg)
        first = self._segments[0][1][0] if self._segments and self._segments[0][1] else None
        if first is not None and not self._segments[0][0] and first.field is not None:
            # A leading required field that is empty would leave the prompt starting with the
            # next segment's separator.
            empty = values[first.field] == ""
            out[empty] = [s.lstrip(_LEADING_SEPARATORS) for s in out[empty]]
        return out.tolist()


_TOKEN = re.compile(r"\[\[|\]\]|\{\{|\}\}|\{[^{}\[\]]*\}?|[\[\]}]|[^\[\]{}]+")
_ESCAPES = {"[[": "[", "]]": "]", "{{": "{", "}}": "}"}


def _parse(text: str) -> list[tuple[bool, list[_Part]]]:
    """Split a template into ``(optional, parts)`` segments."""
    segments: list[tuple[bool, list[_Part]]] = [(False, [])]
    for m in _TOKEN.finditer(text):
        tok, at = m.group(), m.start()
        optional, parts = segments[-1]
        if tok in _ESCAPES:
            parts.append(_Part(literal=_ESCAPES[tok]))
        elif tok == "[":
            if optional:
                raise ValueError(f"prompt template {text!r}: nested '[' at position {at} (use '[[')")
            segments.append((True, []))
        elif tok == "]":
            if not optional:
                raise ValueError(f"prompt template {text!r}: unmatched ']' at position {at} (use ']]')")
            segments.append((False, []))
        elif tok == "}":
            raise ValueError(f"prompt template {text!r}: unmatched '}}' at position {at} (use '}}}}')")
        elif tok[0] == "{":
            if not (tok.endswith("}") and _FIELD_NAME.fullmatch(tok[1:-1])):
                raise ValueError(f"prompt template {text!r}: bad placeholder at position {at} (use '{{{{')")
            parts.append(_Part(field=tok[1:-1]))
        else:
            parts.append(_Part(literal=tok))
    if segments[-1][0]:
        raise ValueError(f"prompt template {text!r}: '[' is never closed")
    return [(optional, parts) for optional, parts in segments if parts]


def item_template(template: str | PromptTemplate = "default", domain: str = "beauty") -> PromptTemplate:
    """A preset name from :data:`ITEM_TEMPLATES`, a template string, or a ready template."""
    if isinstance(template, PromptTemplate):
        return template
    text = ITEM_TEMPLATES.get(template, template)
    return PromptTemplate(text, {"domain": domain} if "{domain}" in text else {})


@dataclass(frozen=True)
class ItemPrompts:
    texts: list[str]  # texts[i - 1] is internal item i: the padding row 0 has no prompt
    n_fallback: int  # items whose template fields were all empty, rendered from other text fields
    n_placeholder: int  # items with no text at all, prompted as "item <original id>"


def item_prompts(
    item_info: pd.DataFrame | None,
    item_ids: np.ndarray,
    template: str | PromptTemplate = "default",
    domain: str = "beauty",
) -> ItemPrompts:
    """One prompt per real item (internal ids ``1..N``); never an empty string.

    An item whose template fields are all empty is rendered as ``"field: value; ..."`` from its
    other text fields; one with no text at all gets ``"item <original id>"``. Both are counted
    and logged, because such items get an uninformative embedding.
    """
    tmpl = item_template(template, domain)
    ids = np.asarray(item_ids, dtype=object)[1:]
    if item_info is None:
        fields = pd.DataFrame({c: [""] * len(ids) for c in ("title", "brand", "categories")})
    else:
        fields = item_fields(item_info.iloc[1:]).reset_index(drop=True)
    texts = np.array(tmpl.render(fields), dtype=object)

    def nonempty(cols: list[str]) -> np.ndarray:
        cols = [c for c in cols if c in fields.columns]
        if not cols:
            return np.zeros(len(fields), dtype=bool)
        return (fields[cols].to_numpy(dtype=object) != "").any(axis=1)

    own = nonempty(tmpl.fields) if tmpl.fields else np.ones(len(fields), dtype=bool)
    other = nonempty(list(TEXT_FIELDS))
    fallback = ~own & other
    placeholder = ~own & ~other
    text_cols = [c for c in TEXT_FIELDS if c in fields.columns]
    for r in np.flatnonzero(fallback):  # rare: a handful of items at most
        texts[r] = "; ".join(f"{c}: {fields.at[r, c]}" for c in text_cols if fields.at[r, c])
    texts[placeholder] = ["item " + str(i) for i in ids[placeholder]]
    if fallback.any() or placeholder.any():
        log.warning(
            "item prompts (template %r): %d items had empty template fields and were rendered from "
            "their other text; %d had no text at all and were prompted by id (e.g. %s)",
            tmpl.text,
            int(fallback.sum()),
            int(placeholder.sum()),
            ", ".join(map(str, ids[placeholder][:5])) or "-",
        )
    return ItemPrompts(texts.tolist(), int(fallback.sum()), int(placeholder.sum()))


def item_titles(item_info: pd.DataFrame | None, item_ids: np.ndarray) -> np.ndarray:
    """Object array of a short name per internal item (row 0 = padding ``""``), for user prompts:
    the title, else the item's other text fields, else ``"item <original id>"``."""
    names = item_prompts(item_info, item_ids, template="title").texts
    return np.array([""] + names, dtype=object)


def user_prompts(
    train: Sequences,
    item_titles: np.ndarray,
    template: str = USER_TEMPLATE,
    sep: str = "; ",
    max_items: int | None = None,
    empty_text: str = EMPTY_USER_TEXT,
) -> list[str]:
    """One prompt per user from the **training prefix** ``train`` (``Split.train``) only.

    Items are listed newest first, so an encoder that truncates at its token window cuts the
    oldest ones; ``max_items`` keeps only the most recent ``max_items``. ``template`` must contain
    ``{items}`` (its only placeholder). Users with an empty prefix get ``empty_text``.
    """
    if "{items}" not in template:
        raise ValueError(f"user prompt template {template!r} must contain '{{items}}'")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1 or None, got {max_items}")
    titles = np.asarray(item_titles, dtype=object)
    lengths = train.lengths
    keep = lengths if max_items is None else np.minimum(lengths, max_items)
    total = int(keep.sum())
    starts = np.cumsum(keep) - keep
    # Position of the j-th newest kept item of each row: end - 1 - j.
    within = np.arange(total) - np.repeat(starts, keep)
    pos = np.repeat(train.offsets[1:] - 1, keep) - within
    names = titles[train.items[pos]] if total else np.zeros(0, dtype=object)
    per_user = np.split(names, np.cumsum(keep)[:-1]) if len(keep) else []
    return [template.replace("{items}", sep.join(row)) if len(row) else empty_text for row in per_user]
