"""Item text fields, the prompt template language, item prompts and user prompts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmesr.data.sequences import Sequences
from llmesr.semantic.prompts import (
    ITEM_TEMPLATES,
    PromptTemplate,
    item_fields,
    item_prompts,
    item_template,
    item_titles,
    user_prompts,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def beauty_info() -> pd.DataFrame:
    """Beauty layout: row 0 is all-NaN padding, ``attributes`` = [brand?, categories...]."""
    return pd.DataFrame(
        {
            "asin": [np.nan, "A1", "A2", "A3", "A4", "A5"],
            "title": [np.nan, "Nail  Polish\tRed", "", "BB Cream", "Shampoo", np.nan],
            "attributes": [
                np.nan,
                ["OPI", "Makeup", "Nails"],
                ["L&#39;Oreal Paris", "Makeup"],
                ["Unknown", "Skin Care", "Face"],
                ["Skin Care", "Hair Care"],  # no brand slot: "Skin Care" is a category elsewhere
                np.nan,
            ],
        }
    )


def test_item_fields_beauty_layout() -> None:
    f = item_fields(beauty_info())
    assert list(f.columns) == ["title", "brand", "categories", "asin"]
    assert f["title"].tolist() == ["", "Nail Polish Red", "", "BB Cream", "Shampoo", ""]
    assert f["brand"].tolist() == ["", "OPI", "L'Oreal Paris", "", "", ""]
    assert f["categories"].tolist() == [
        "",
        "Makeup, Nails",
        "Makeup",
        "Skin Care, Face",
        "Skin Care, Hair Care",
        "",
    ]
    assert f["asin"].tolist() == ["", "A1", "A2", "A3", "A4", "A5"]


def test_item_fields_movielens_layout() -> None:
    info = pd.DataFrame(
        {
            "movie_title": [np.nan, "Kolya", "English Patient, The"],
            "release_year": [np.nan, "1996", "1996"],
            "class": [np.nan, "Comedy", "Drama Romance War"],
        }
    )
    f = item_fields(info)
    assert list(f.columns) == ["title", "brand", "categories", "year"]
    assert f.to_dict("list") == {
        "title": ["", "Kolya", "English Patient, The"],
        "brand": ["", "", ""],
        "categories": ["", "Comedy", "Drama, Romance, War"],
        "year": ["", "1996", "1996"],
    }


FIELDS = pd.DataFrame(
    {
        "title": ["Red Polish", "BB Cream", "", ""],
        "brand": ["OPI", "", "OPI", ""],
        "categories": ["Makeup, Nails", "Skin Care", "Makeup", ""],
    }
)


def test_default_template_drops_empty_optional_segments() -> None:
    out = item_template("default").render(FIELDS)
    assert out == [
        "Red Polish. Brand: OPI. Categories: Makeup, Nails.",
        "BB Cream. Categories: Skin Care.",
        "Brand: OPI. Categories: Makeup.",  # empty leading title: no dangling ". "
        "",  # render() is literal; item_prompts() replaces such rows
    ]


def test_paper_template_with_domain() -> None:
    assert item_template("paper").render(FIELDS.iloc[:2]) == [
        "The beauty item has following attributes: name is Red Polish; brand is OPI; "
        "categories are Makeup, Nails.",
        "The beauty item has following attributes: name is BB Cream; categories are Skin Care.",
    ]
    movie = item_template("paper", domain="movie").render(FIELDS.iloc[1:2])
    assert movie == ["The movie item has following attributes: name is BB Cream; categories are Skin Care."]
    assert item_template("title").render(FIELDS) == ["Red Polish", "BB Cream", "", ""]


def test_escaped_brackets_and_braces() -> None:
    t = PromptTemplate("[[{title}]][ ({brand})] {{x}}")
    assert t.render(FIELDS.iloc[:2]) == ["[Red Polish] (OPI) {x}", "[BB Cream] {x}"]
    # "]]]" is a literal "]" that then closes the segment.
    assert PromptTemplate("[<{brand}]]]!").render(FIELDS.iloc[:2]) == ["<OPI]!", "!"]
    assert PromptTemplate("[[no fields]]").fields == []


def test_unknown_field_names_the_field_and_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown field \{colour\}; available: brand, categories, title"):
        PromptTemplate("{title} in {colour}").render(FIELDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[a [b]]]", "nested"),
        ("a ]b", "unmatched"),
        ("[{title}", "never closed"),
        ("{ti tle}", "bad placeholder"),
        ("{title", "bad placeholder"),
        ("title}", "unmatched"),
    ],
)
def test_malformed_templates_fail_at_construction(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PromptTemplate(text)


def test_item_prompts_are_never_empty(caplog: pytest.LogCaptureFixture) -> None:
    ids = np.array(["", "i1", "i2", "i3", "i4", "i5"], dtype=object)
    with caplog.at_level(logging.WARNING, logger="llmesr.semantic.prompts"):
        p = item_prompts(beauty_info(), ids, template="title")
    assert p.texts == [
        "Nail Polish Red",
        "brand: L'Oreal Paris; categories: Makeup",  # empty title: rendered from the other fields
        "BB Cream",
        "Shampoo",
        "item i5",  # no text at all
    ]
    assert (p.n_fallback, p.n_placeholder) == (1, 1)
    assert "1 items had empty template fields" in caplog.text and "item" in caplog.text
    default = item_prompts(beauty_info(), ids).texts
    assert default[1] == "Brand: L'Oreal Paris. Categories: Makeup."
    assert default[4] == "item i5"
    assert item_titles(beauty_info(), ids).tolist() == [""] + p.texts


def test_item_prompts_without_item_table() -> None:
    p = item_prompts(None, np.array(["", "x", "y"], dtype=object), template="paper")
    assert p.texts == ["item x", "item y"]
    assert p.n_placeholder == 2


TITLES = np.array(["", "A", "B", "C", "D"], dtype=object)


def test_user_prompts_list_training_items_newest_first() -> None:
    train = Sequences.from_lists([[1, 2, 3], [], [4], [2, 4, 1, 3]])
    assert user_prompts(train, TITLES) == [
        "The user bought, most recent first: C; B; A.",
        "The user has no purchases yet.",
        "The user bought, most recent first: D.",
        "The user bought, most recent first: C; A; D; B.",
    ]
    capped = user_prompts(train, TITLES, template="Recent: {items}", sep=" | ", max_items=2)
    assert capped == ["Recent: C | B", "The user has no purchases yet.", "Recent: D", "Recent: C | A"]


def test_user_prompts_bad_arguments() -> None:
    train = Sequences.from_lists([[1]])
    with pytest.raises(ValueError, match="must contain"):
        user_prompts(train, TITLES, template="no placeholder")
    with pytest.raises(ValueError, match="max_items"):
        user_prompts(train, TITLES, max_items=0)
    assert user_prompts(Sequences.from_lists([]), TITLES) == []


def test_real_beauty_prompts() -> None:
    if not (SHARED_DATA / "beauty" / "items.jsonl").exists():
        pytest.skip(f"real Beauty data not available at {SHARED_DATA / 'beauty'}")
    from llmesr.data.dataset import load_dataset

    data = load_dataset(SHARED_DATA / "beauty")
    f = item_fields(data.item_info)
    assert int((f["brand"].iloc[1:] != "").sum()) == 12101 - 4609 - 20 - 18  # 20 "Unknown", 18 ""
    p = item_prompts(data.item_info, data.item_ids, template="paper")
    assert len(p.texts) == 12101 and (p.n_fallback, p.n_placeholder) == (0, 0)
    assert p.texts[0] == (
        "The beauty item has following attributes: name is OPI Nail Lacquer, Simmer and Shimmer, "
        "0.5-Fluid Ounce; brand is OPI; categories are Makeup, Nails, Nail Polish."
    )
    # Item 4 has no brand entry: its attribute list starts with a category.
    assert item_prompts(data.item_info.iloc[:5], data.item_ids[:5]).texts[3] == (
        "WAWO 15 Color Professionl Makeup Eyeshadow Camouflage Facial Concealer Neutral Palette. "
        "Categories: Makeup, Face, Concealers & Neutralizers."
    )
    titles = item_titles(data.item_info, data.item_ids)
    assert (titles[1:] != "").all() and ITEM_TEMPLATES["title"] == "{title}"
