"""Each dump's own quirks, checked on the exact output: the 2014 metadata's Python literals, the
2018 metadata's HTML and price text, the 2023 milliseconds and parent items, Yelp's dates and
category strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raw_dumps import Product, Review, meta_2014, meta_2018, meta_2023, meta_yelp, write_dump, write_lines

from llmesr.data.formats import DataFormatError
from llmesr.data.prepare import SOURCES, prepare
from llmesr.data.prepare.text import clean_list, clean_text, parse_price


def items_of(out: Path, source: str) -> dict[str, dict]:
    """items.jsonl by original item id, without the two id fields."""
    id_field = SOURCES[source].item_field
    records = [json.loads(line) for line in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r[id_field]: {k: v for k, v in r.items() if k not in ("item_id", id_field)} for r in records}


def run(tmp_path: Path, source: str, reviews: list[Review], meta_lines: list[str], **options) -> Path:
    review_file, _ = write_dump(tmp_path / "raw", source, reviews, [])
    meta = write_lines(tmp_path / "raw" / "meta.json", meta_lines)
    out = tmp_path / "out"
    prepare(source, review_file, out, meta, options.pop("preset", "none"), progress=False, **options)
    return out


def test_2014_metadata_python_literals_with_entities_and_missing_fields(tmp_path):
    lines = [
        meta_2014(
            Product(
                "A1",
                "L&#39;Or&eacute;al Serum",
                "L&#39;Oreal",
                ("Beauty", "Skin Care"),
                "Fine &amp; light",
                9.99,
            )
        ),
        # No brand, no price, no description; two category paths sharing "Beauty".
        meta_2014(Product("A2", "Clip", extra={"categories": [["Beauty", "Hair"], ["Beauty", "Tools"]]})),
        "{'asin': 'A3', 'title': \"Kid's \\u00e9t\\u00e9 set\", 'related': {'also_bought': ['A1']}}",
    ]
    reviews = [Review("U", "A1", 1), Review("U", "A2", 2), Review("U", "A3", 3)]
    items = items_of(run(tmp_path, "amazon2014", reviews, lines), "amazon2014")
    assert items["A1"] == {
        "title": "L'Oréal Serum",
        "brand": "L'Oreal",
        "categories": ["Beauty", "Skin Care"],
        "description": "Fine & light",
        "price": 9.99,
    }
    assert items["A2"] == {
        "title": "Clip",
        "brand": "",
        "categories": ["Beauty", "Hair", "Tools"],
        "description": "",
        "price": None,
    }
    assert items["A3"]["title"] == "Kid's été set"


def test_2014_metadata_is_parsed_as_literals_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    lines = [
        meta_2014(Product("A1", "ok")),
        f"{{'asin': 'A2', 'title': __import__('pathlib').Path('{marker}').touch()}}",
    ]
    with pytest.raises(
        DataFormatError, match=r"meta.json:2: neither a JSON object nor a Python dict literal$"
    ):
        run(tmp_path, "amazon2014", [Review("U", "A1", 1), Review("U", "A2", 2)], lines)
    assert not marker.exists()


def test_2018_metadata_html_prices_and_repeated_products(tmp_path):
    lines = [
        meta_2018(
            Product(
                "B1",
                extra={
                    "title": '<span class="a-size-medium">Soap &amp; Co.</span>',
                    "brand": "  Acme\n ",
                    "category": ["All Beauty", "</span></span></span>", "Bath &amp; Body", "All Beauty"],
                    "description": ["<b>Gentle</b> soap.<br>Made in 5 < 10 days", "", "Vegan."],
                    "price": "$1,299.99",
                },
            )
        ),
        meta_2018(Product("B2", "Range", extra={"price": "$10.00 - $20.00"})),
        meta_2018(Product("B1", "A later duplicate line of B1")),
        meta_2018(Product("B3", "Junk price", extra={"price": ".a-box-inner{background-color:#fff;}"})),
    ]
    reviews = [Review("U", "B1", 1), Review("U", "B2", 2), Review("U", "B3", 3)]
    out = run(tmp_path, "amazon2018", reviews, lines)
    items = items_of(out, "amazon2018")
    assert items["B1"] == {
        "title": "Soap & Co.",
        "brand": "Acme",
        "categories": ["All Beauty", "Bath & Body"],
        "description": "Gentle soap. Made in 5 < 10 days Vegan.",
        "price": 1299.99,
    }
    assert items["B2"]["price"] is None and items["B3"]["price"] is None
    card = json.loads((out / "card.json").read_text())
    assert card["item_text"]["repeated_metadata_lines_ignored"] == 1


def test_2023_milliseconds_parent_items_and_store(tmp_path):
    review_lines = [
        json.dumps(
            {
                "user_id": "U1",
                "asin": "C1-red",
                "parent_asin": "C1",
                "rating": 5.0,
                "timestamp": 1_600_000_000_500,
            }
        ),
        json.dumps(
            {
                "user_id": "U1",
                "asin": "C1-blue",
                "parent_asin": "C1",
                "rating": 4.0,
                "timestamp": 1_600_000_000_100,
            }
        ),
        json.dumps(
            {
                "user_id": "U1",
                "asin": "C2",
                "parent_asin": "C2",
                "rating": 3.0,
                "timestamp": 1_600_000_000_300,
            }
        ),
    ]
    reviews = write_lines(tmp_path / "reviews.jsonl.gz", review_lines, gz=True)
    meta = write_lines(
        tmp_path / "meta.jsonl",
        [
            meta_2023(Product("C1", "Cup", "Store A", ("Home",), "A cup.", None)),
            meta_2023(Product("C2", "Lid")),
        ],
    )
    out = tmp_path / "out"
    prepare("amazon2023", reviews, out, meta, "none", progress=False)
    # Sub-second order is kept: C1 (.100), C2 (.300), C1 again (.500); both variants are item C1.
    assert (out / "sequences.txt").read_text() == "1 1 2 1\n"
    items = items_of(out, "amazon2023")
    assert items["C1"] == {
        "title": "Cup",
        "brand": "Store A",
        "categories": ["Home"],
        "description": "A cup.",
        "price": None,
    }
    assert items["C2"]["brand"] == ""


def test_yelp_dates_category_strings_and_the_s3rec_window(tmp_path):
    def at(text: str) -> int:
        from llmesr.data.prepare.yelp import date_seconds

        return int(date_seconds(text))

    reviews = [
        Review("U1", "Y1", at("2018-12-31 23:59:59")),  # before the window
        Review("U1", "Y2", at("2019-01-01 00:00:00")),  # first instant kept
        Review("U1", "Y3", at("2019-12-31 00:00:00")),  # last instant kept
        Review("U1", "Y4", at("2019-12-31 00:00:01")),  # after it (S3Rec compared the text)
    ]
    lines = [
        meta_yelp(Product("Y2", "Caf&eacute; Rio", extra={"categories": "Cafes,  Coffee & Tea ,Cafes"})),
        meta_yelp(Product("Y3", "No Categories", extra={"categories": None})),
    ]
    out = run(
        tmp_path, "yelp", reviews, lines, preset="none", date_from="2019-01-01", date_to="2019-12-31 00:00:00"
    )
    assert (out / "sequences.txt").read_text() == "1 1 2\n"
    items = items_of(out, "yelp")
    assert items["Y2"] == {"title": "Café Rio", "categories": ["Cafes", "Coffee & Tea"]}
    assert items["Y3"] == {"title": "No Categories", "categories": []}
    card = json.loads((out / "card.json").read_text())
    assert card["stages"][1]["note"] == "dropped 0 by rating, 2 by date"


def test_a_bad_yelp_date_is_named(tmp_path):
    line = json.dumps({"user_id": "U", "business_id": "B", "stars": 5, "date": "yesterday"})
    reviews = write_lines(tmp_path / "review.json", [line])
    with pytest.raises(DataFormatError, match=r"review.json:1: 'date' is 'yesterday', not a"):
        prepare("yelp", reviews, tmp_path / "out", preset="none", progress=False)


@pytest.mark.parametrize(
    "value, text",
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("<p>Two<br/>lines</p>", "Two lines"),
        ("a < b and c > d", "a < b and c > d"),
        (["one", None, " two "], "one two"),
        (None, ""),
        (float("nan"), ""),
        (3, "3"),
    ],
)
def test_clean_text(value, text):
    assert clean_text(value) == text


def test_clean_list_flattens_and_keeps_first_occurrences():
    assert clean_list([["A", "B"], ["A", "C &amp; D"]]) == ["A", "B", "C & D"]
    assert clean_list("x, y ,, x", sep=",") == ["x", "y"]
    assert clean_list(None) == [] and clean_list(7) == []


@pytest.mark.parametrize(
    "value, price",
    [
        (12.5, 12.5),
        ("$12.99", 12.99),
        ("$1,299.00", 1299.0),
        ("12", 12.0),
        ("$1 - $2", None),
        ("", None),
        (True, None),
        (-1, None),
    ],
)
def test_parse_price(value, price):
    assert parse_price(value) == price


def test_metadata_lines_of_other_items_are_skipped_undecoded(tmp_path):
    lines = [
        '{"asin": "OTHER", "title": "broken line of an item outside the dataset", ',
        meta_2018(Product("B1", "Wanted")),
    ]
    items = items_of(run(tmp_path, "amazon2018", [Review("U", "B1", 1)], lines), "amazon2018")
    assert items["B1"]["title"] == "Wanted"
