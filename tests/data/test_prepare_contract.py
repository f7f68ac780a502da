"""The promises every registered raw-dump source keeps, run for each entry of ``SOURCES``: a new
source gets the whole contract by adding its renderer to ``raw_dumps.RENDERERS``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raw_dumps import RENDERERS, Product, Review, expected_text, write_dump, write_lines

from llmesr.data import load_dataset
from llmesr.data.formats import DataFormatError
from llmesr.data.prepare import SOURCES, prepare

# File order matters: UB's first line comes first, so UB is user 1. UA reviews P3 and P2 at the same
# time, and UB reviews P2 and P5 at the same time: file order decides.
REVIEWS = [
    Review("UB", "P2", 300),
    Review("UA", "P1", 100),
    Review("UB", "P1", 100),
    Review("UA", "P3", 200),
    Review("UA", "P2", 200),
    Review("UC", "P4", 50),
    Review("UB", "P5", 300),
]
EXPECTED_SEQUENCES = "1 1 2 3\n2 1 4 2\n3 5\n"
EXPECTED_ITEMS = ["P1", "P2", "P5", "P3", "P4"]  # original id of item 1, 2, ...
EXPECTED_USERS = ["UB", "UA", "UC"]
PRODUCTS = [
    Product("P1", "Rose Water Toner", "Acme", ("Skin Care", "Face"), "A toner.", 12.5),
    Product("P2", "Night Cream", "Beta", ("Skin Care",), "Rich.", 30.0),
    Product("P3", "Red Lipstick", "Acme", ("Makeup", "Lips"), "Red.", 8.0),
    Product("P4", "Hair Oil", "Gamma", ("Hair Care",), "Oil.", 5.25),
    Product("P6", "Never Reviewed", "Delta", ("Other",), "", 1.0),
]  # P5 has no metadata line


def test_every_registered_source_has_a_renderer():
    assert set(RENDERERS) == set(SOURCES)


@pytest.fixture(params=sorted(SOURCES))
def source(request) -> str:
    return request.param


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_prepare_writes_the_exact_folder(source, gz, tmp_path):
    reviews, meta = write_dump(tmp_path / "raw", source, REVIEWS, PRODUCTS, gz=gz)
    out = tmp_path / "out"
    card = prepare(source, reviews, out, meta, preset="none", progress=False)

    assert (out / "sequences.txt").read_text() == EXPECTED_SEQUENCES
    spec = SOURCES[source]
    by_id = {p.item: p for p in PRODUCTS}
    expected_items = [
        {"item_id": k, spec.item_field: item}
        | (expected_text(spec.text_fields, by_id[item]) if item in by_id else spec.empty_text())
        for k, item in enumerate(EXPECTED_ITEMS, start=1)
    ]
    assert read_jsonl(out / "items.jsonl") == expected_items
    assert read_jsonl(out / "users.jsonl") == [
        {"user_id": k, spec.user_field: user} for k, user in enumerate(EXPECTED_USERS, start=1)
    ]
    assert card["counts"] == {"users": 3, "items": 5, "interactions": 7}
    assert card["item_text"]["items_with_metadata"] == 4
    assert card["files"]["reviews"]["name"] == reviews.name
    assert json.loads((out / "card.json").read_text()) == card
    assert "| raw review lines | 3 | 5 | 7 |" in (out / "dataset.md").read_text()


def test_output_loads_with_the_library_loader(source, tmp_path):
    reviews, meta = write_dump(tmp_path / "raw", source, REVIEWS, PRODUCTS)
    prepare(source, reviews, tmp_path / "out", meta, preset="none", progress=False)
    data = load_dataset(tmp_path / "out")
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 5, 7)
    # The file's ids are already the loader's ids: first appearance order.
    assert data.item_ids[1:].tolist() == ["1", "2", "3", "4", "5"]
    assert data.sequences.tolist() == [[1, 2, 3], [1, 4, 2], [5]]
    assert data.item_info.loc[1, "title"] == "Rose Water Toner"


def test_a_malformed_review_line_is_named_and_nothing_is_written(source, tmp_path):
    render_review = RENDERERS[source][0]
    lines = [render_review(r) for r in REVIEWS[:2]] + ['{"broken": '] + [render_review(REVIEWS[2])]
    reviews = write_lines(tmp_path / "raw" / "reviews.json", lines)
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=rf"^{reviews}:3: ") as err:
        prepare(source, reviews, out, preset="none", progress=False)
    assert "\n" not in str(err.value)
    assert_nothing_written(out)


def test_a_review_without_its_fields_is_named(source, tmp_path):
    render_review = RENDERERS[source][0]
    reviews = write_lines(tmp_path / "reviews.json", [render_review(REVIEWS[0]), "{}"])
    with pytest.raises(DataFormatError, match=rf"^{reviews}:2: no '\w+' field$"):
        prepare(source, reviews, tmp_path / "out", preset="none", progress=False)


def test_a_malformed_metadata_line_is_named_and_nothing_is_written(source, tmp_path):
    reviews, _ = write_dump(tmp_path / "raw", source, REVIEWS, PRODUCTS)
    meta = write_lines(tmp_path / "raw" / "bad_meta.json", [RENDERERS[source][1](PRODUCTS[0]), "[1, 2]"])
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=rf"^{meta}:2: expected an object, got list$"):
        prepare(source, reviews, out, meta, preset="none", progress=False)
    assert_nothing_written(out)


def test_without_metadata_every_item_gets_empty_text(source, tmp_path):
    reviews, _ = write_dump(tmp_path / "raw", source, REVIEWS, PRODUCTS)
    card = prepare(source, reviews, tmp_path / "out", preset="none", progress=False)
    items = read_jsonl(tmp_path / "out" / "items.jsonl")
    assert [
        {k: v for k, v in item.items() if k not in ("item_id", SOURCES[source].item_field)} for item in items
    ] == [SOURCES[source].empty_text()] * 5
    assert card["item_text"]["items_without_metadata"] == 5
