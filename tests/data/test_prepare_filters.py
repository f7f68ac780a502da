"""Filters, presets, ids and the output folder of ``prepare``: the S3Rec 5-core reproduces a known
sequence set from a raw rendering of it, whatever the source, and bad input writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from raw_dumps import RENDERERS, Review, write_dump, write_lines

from conftest import SHARED_DATA
from llmesr.data.formats import DataFormatError
from llmesr.data.prepare import PRESETS, SOURCES, CoreStep, prepare, resolve_filters
from llmesr.data.prepare.filters import core_mask, first_of_repeated_pairs

DAY = 86_400


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def codes(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    users, items = zip(*pairs, strict=True)
    return np.array(users, dtype=np.int32), np.array(items, dtype=np.int32)


def test_an_iterated_core_cascades_and_one_pass_does_not():
    # User 2's only other item (3) has one interaction: dropping it leaves user 2 with one.
    users, items = codes([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 3)])
    assert core_mask(users, items, CoreStep(2, 2, iterate=True)).tolist() == [1, 1, 1, 1, 0, 0]
    assert core_mask(users, items, CoreStep(2, 2, iterate=False)).tolist() == [1, 1, 1, 1, 1, 0]


def test_the_llmesr_preset_is_one_pass_of_3_3_then_users_3(tmp_path):
    # Item I9 has 2 reviews: the first pass drops them, leaving user U3 with 2, which the second drops;
    # item I1 then has 2 reviews left, but no third pass removes it.
    rows = [("U1", "I1"), ("U1", "I2"), ("U1", "I3"), ("U2", "I1"), ("U2", "I2"), ("U2", "I3")]
    rows += [("U3", "I1"), ("U3", "I9"), ("U3", "I2"), ("U4", "I9"), ("U4", "I2"), ("U4", "I3"), ("U4", "I3")]
    reviews = [Review(u, i, t) for t, (u, i) in enumerate(rows)]
    review_file, _ = write_dump(tmp_path / "raw", "amazon2014", reviews, [])
    card = prepare("amazon2014", review_file, tmp_path / "out", preset="llmesr", progress=False)
    assert [(s["users"], s["items"], s["interactions"]) for s in card["stages"]] == [
        (4, 4, 13),
        (4, 3, 11),
        (3, 3, 9),
    ]
    assert (tmp_path / "out" / "sequences.txt").read_text() == "1 1 2 3\n2 1 2 3\n3 2 3 3\n"


def test_dedup_keeps_the_first_pair_by_time_then_by_file_order():
    users, items = codes([(0, 5), (0, 5), (0, 6), (0, 5), (1, 5)])
    times = np.array([30.0, 10.0, 10.0, 10.0, 1.0])
    # Rows 1 and 3 tie at time 10: row 1 (first in the file) is kept, and row 0 is later in time.
    assert first_of_repeated_pairs(users, items, times).tolist() == [False, True, True, False, True]


def test_min_rating_and_dedup_options_override_the_preset(tmp_path):
    reviews = [Review("U", "A", 1, 5.0), Review("U", "B", 2, 2.0), Review("U", "A", 3, 4.0)]
    review_file, _ = write_dump(tmp_path / "raw", "amazon2018", reviews, [])
    card = prepare(
        "amazon2018", review_file, tmp_path / "out", None, "none", min_rating=3, dedup=True, progress=False
    )
    assert (tmp_path / "out" / "sequences.txt").read_text() == "1 1\n"
    assert [s["stage"] for s in card["stages"]] == [
        "raw review lines",
        "rating/date filters",
        "repeated pairs removed",
    ]
    assert card["stages"][1]["note"] == "dropped 1 by rating, 0 by date"
    assert card["filter_steps"] == ["rating >= 3", "repeated (user, item) pairs: first by time kept"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"date_from": "2019-31-01"}, "date_from '2019-31-01' is not a date"),
        ({"date_from": "2020-01-01", "date_to": "2019-01-01"}, "is after date_to"),
        ({"kcore": -1}, "kcore must be >= 0"),
        ({"min_rating": float("nan")}, "min_rating must be a finite number"),
    ],
)
def test_bad_options_fail_before_reading(options, message):
    with pytest.raises(DataFormatError, match=message):
        resolve_filters("s3rec", **options)


def test_unknown_presets_and_sources_list_the_choices(tmp_path):
    with pytest.raises(DataFormatError, match="choose one of none, s3rec, s3rec_yelp, llmesr"):
        resolve_filters("nope")
    with pytest.raises(DataFormatError, match="unknown source 'amazon2099': choose one of amazon2014"):
        prepare("amazon2099", tmp_path / "r.json", tmp_path / "out")


def test_kcore_replaces_the_preset_core_steps():
    assert resolve_filters("llmesr", kcore=10).cores == (CoreStep(10, 10, iterate=True),)
    assert resolve_filters("s3rec", kcore=0).cores == ()
    assert PRESETS["s3rec"].dedup is False  # S3Rec kept repeated pairs (the shared Yelp has 11,830)


# ----------------------------------------------------------------------------------------------
# The 5-core reproduces a known sequence set
# ----------------------------------------------------------------------------------------------


def known_five_core(seed: int = 3) -> list[list[str]]:
    """30 users' histories over 12 items, every user and item with at least 5 interactions."""
    rng = np.random.default_rng(seed)
    rows = [
        [f"item{j:02d}" for j in rng.choice(12, size=int(rng.integers(5, 10)), replace=False)]
        for _ in range(30)
    ]
    counts = np.unique([i for r in rows for i in r], return_counts=True)[1]
    assert len(counts) == 12 and counts.min() >= 5
    return rows


def canonical_text(rows: list[list[str]]) -> str:
    """The rows in S3Rec ids: users in order, items by first appearance."""
    ids: dict[str, int] = {}
    return "".join(
        f"{u} {' '.join(str(ids.setdefault(i, len(ids) + 1)) for i in row)}\n"
        for u, row in enumerate(rows, 1)
    )


def raw_rendering(rows: list[list[str]], seed: int = 4) -> list[Review]:
    """Reviews of ``rows`` in a shuffled file order (each user's first line in user order, equal-time
    pairs in history order), plus noise the 5-core removes: short users, rare items, and a user whose
    removal needs a second round."""
    rng = np.random.default_rng(seed)
    openers, rest = [], []
    for u, row in enumerate(rows):
        for pos, item in enumerate(row):
            day = pos - 1 if (u % 2 == 0 and pos == 3) else pos  # even users: positions 2 and 3 tie
            (openers if pos == 0 else rest).append(Review(f"user{u}", item, 1_300_000_000 + day * DAY + u))
    rest += [Review(f"short{k}", rows[k][0], 1_400_000_000 + k) for k in range(3)]
    rest += [Review(f"user{u}", f"rare{u % 2}", 1_200_000_000 + u) for u in range(6)]
    rest += [Review("cascade", f"rare{k}", 1_100_000_000 + k) for k in range(2, 5)]
    rest += [Review("cascade", f"item{k:02d}", 1_100_000_000 + k) for k in range(2)]
    rest = [rest[k] for k in rng.permutation(len(rest))]
    # Equal-time reviews of one user must appear in history order: reorder each tie group in place.
    history = {(f"user{u}", item): pos for u, row in enumerate(rows) for pos, item in enumerate(row)}
    groups: dict[tuple[str, int], list[int]] = {}
    for k, r in enumerate(rest):
        groups.setdefault((r.user, r.seconds), []).append(k)
    fixed = list(rest)
    for slots in groups.values():
        for slot, review in zip(
            slots,
            sorted((rest[k] for k in slots), key=lambda r: history.get((r.user, r.item), 0)),
            strict=True,
        ):
            fixed[slot] = review
    return openers + fixed


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_s3rec_preset_reproduces_a_known_five_core_set(source, tmp_path):
    rows = known_five_core()
    reviews = raw_rendering(rows)
    review_file, _ = write_dump(tmp_path / "raw", source, reviews, [], gz=True)
    card = prepare(source, review_file, tmp_path / "out", preset="s3rec", progress=False)
    assert (tmp_path / "out" / "sequences.txt").read_text() == canonical_text(rows)
    users = read_jsonl(tmp_path / "out" / "users.jsonl")
    assert [u[SOURCES[source].user_field] for u in users] == [f"user{u}" for u in range(30)]
    raw, core = card["stages"]
    assert (raw["users"], raw["items"], raw["interactions"]) == (34, 17, len(reviews))
    assert (core["users"], core["items"], core["interactions"]) == (30, 12, sum(map(len, rows)))


# ----------------------------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def dump(tmp_path: Path) -> tuple[Path, Path]:
    reviews = [Review(f"U{u}", f"I{(u + k) % 4}", k) for u in range(3) for k in range(3)]
    return write_dump(tmp_path / "raw", "amazon2014", reviews, [])


def test_a_non_empty_output_folder_is_refused_unless_overwritten(dump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataFormatError, match="is not empty; pass overwrite"):
        prepare("amazon2014", dump[0], out, preset="none", progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    prepare("amazon2014", dump[0], out, preset="none", overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "dataset.md",
        "items.jsonl",
        "sequences.txt",
        "users.jsonl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no staging folder left


def test_an_empty_output_folder_is_filled_and_two_runs_give_identical_bytes(dump, tmp_path):
    (tmp_path / "a").mkdir()
    prepare("amazon2014", dump[0], tmp_path / "a", dump[1], "none", progress=False)
    prepare("amazon2014", dump[0], tmp_path / "b", dump[1], "none", progress=False)
    for name in ("sequences.txt", "items.jsonl", "users.jsonl", "card.json", "dataset.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_missing_inputs_and_emptied_data_write_nothing(dump, tmp_path):
    with pytest.raises(DataFormatError, match="meta file .*nope.json does not exist"):
        prepare("amazon2014", dump[0], tmp_path / "out", tmp_path / "nope.json", progress=False)
    with pytest.raises(
        DataFormatError, match=r"no interactions left after core: users >= 5 .*; nothing written"
    ):
        prepare("amazon2014", dump[0], tmp_path / "out", preset="s3rec", progress=False)
    empty = write_lines(tmp_path / "empty.json", ["", "  "])
    with pytest.raises(DataFormatError, match="empty.json: no review lines"):
        prepare("amazon2014", empty, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_truncated_gzip_file_is_named(tmp_path):
    good, _ = write_dump(
        tmp_path / "raw", "yelp", [Review("U", f"B{k}", k) for k in range(2000)], [], gz=True
    )
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match=r"cut.json.gz:\d+: truncated or corrupt gzip data"):
        prepare("yelp", cut, tmp_path / "out", preset="none", progress=False)
    assert RENDERERS["yelp"]  # the renderer table is what the contract tests iterate


def test_the_shared_beauty_ids_come_back_from_an_asin_sorted_raw_file(tmp_path):
    """The 2014 review files are sorted by asin. Rendering the shared Beauty split that way (history
    order kept by the timestamps) and preparing it with the s3rec preset gives back its exact ids:
    users by first line, items by first appearance, as S3Rec numbered them."""
    beauty = SHARED_DATA / "beauty"
    if not (beauty / "sequences.txt").exists():
        pytest.skip(f"real data not available at {beauty}")
    asin = {r["item_id"]: r["asin"] for r in read_jsonl(beauty / "items.jsonl")}
    reviewer = {r["user_id"]: r["reviewer_id"] for r in read_jsonl(beauty / "users.jsonl")}
    rows = [list(map(int, line.split())) for line in (beauty / "sequences.txt").read_text().splitlines()]
    reviews = [
        (asin[item], user, Review(reviewer[user], asin[item], 1_000_000_000 + pos * DAY))
        for user, *items in rows
        for pos, item in enumerate(items)
    ]
    reviews.sort(key=lambda r: r[:2])
    render = RENDERERS["amazon2014"][0]
    review_file = write_lines(tmp_path / "reviews_Beauty_5.json", [render(r[2]) for r in reviews])
    prepare("amazon2014", review_file, tmp_path / "out", preset="s3rec", progress=False)
    assert (tmp_path / "out" / "sequences.txt").read_text() == (beauty / "sequences.txt").read_text()
    items = read_jsonl(tmp_path / "out" / "items.jsonl")
    assert all(asin[r["item_id"]] == r["asin"] for r in items) and len(items) == len(asin)
