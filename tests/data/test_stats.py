"""``llmesr.data.stats``: exact figures on a small dataset, head/tail cuts from groups.py, and the
shared Beauty and Yelp folders' counts as their README states them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, write_sequences_dir
from llmesr.data import load_dataset
from llmesr.data.groups import groups_from_preset
from llmesr.data.stats import dataset_stats, describe_dataset

ROWS = [[1, 2, 3, 1], [2, 3], [1, 2, 4, 5, 6]]


@pytest.fixture
def small(tmp_path):
    folder = write_sequences_dir(tmp_path / "small", ROWS)
    lines = (folder / "items.jsonl").read_text().splitlines()
    lines[3] = '{"item_id": 4, "title": "", "attributes": ["Brand1"]}'
    lines[4] = '{"item_id": 5, "title": "", "attributes": []}'
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_exact_figures_on_a_small_dataset(small):
    stats = dataset_stats(load_dataset(small))
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 6, 11)
    assert stats["density"] == pytest.approx(11 / 18)
    assert stats["repeated_pairs"] == 1
    assert stats["history_length"] == {
        "min": 2.0,
        "mean": pytest.approx(11 / 3),
        "max": 5.0,
        **{f"p{q}": pytest.approx(np.percentile([4, 2, 5], q)) for q in (10, 25, 50, 75, 90, 99)},
    }
    assert stats["item_popularity"]["max"] == 3.0 and stats["item_popularity"]["min"] == 1.0
    assert stats["users_with_history_at_most"] == {5: 1.0, 9: 1.0, 20: 1.0, 50: 1.0}
    assert stats["text"] == {"items_without_title": 2, "items_without_text": 1}


def test_head_tail_cuts_are_the_ones_groups_py_gives(small):
    data = load_dataset(small)
    stats = dataset_stats(data)
    for rule in ("pareto", "beauty_paper"):
        groups = groups_from_preset(data.sequences, data.n_items, rule)
        got = stats["head_tail"][rule]
        assert got["tail_user_if_length_below"] == groups.user_cut
        assert got["tail_item_if_popularity_below"] == groups.item_cut
        assert got["tail_users"] == pytest.approx(groups.tail_user.mean())
    # beauty_paper: tail users have fewer than 9 interactions (all three here), tail items fewer than 4.
    assert stats["head_tail"]["beauty_paper"]["tail_users"] == 1.0
    assert stats["head_tail"]["beauty_paper"]["head_items_interaction_share"] == 0.0


def test_describe_writes_markdown_json_and_the_figure(small, tmp_path):
    text = describe_dataset(small, tmp_path / "stats")
    assert text.startswith("# Dataset statistics: small\n")
    assert "3 users, 6 items, 11 interactions" in text
    assert (tmp_path / "stats" / "stats.md").read_text() == text
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["users"] == 3
    assert (tmp_path / "stats" / "distributions.png").read_bytes()[:4] == b"\x89PNG"


# The figures of shared/data/README.md.
README = {
    "beauty": {"users": 22_363, "items": 12_101, "interactions": 198_502, "median_items": 9, "no_title": 7},
    "yelp": {"users": 30_431, "items": 20_033, "interactions": 316_354, "median_items": 9, "no_title": 0},
}


@pytest.mark.parametrize("name", sorted(README))
def test_the_shared_datasets_match_their_readme(name):
    if not (SHARED_DATA / name / "sequences.txt").exists():
        pytest.skip(f"real data not available at {SHARED_DATA / name}")
    stats = dataset_stats(load_dataset(SHARED_DATA / name))
    want = README[name]
    assert (stats["users"], stats["items"], stats["interactions"]) == (
        want["users"],
        want["items"],
        want["interactions"],
    )
    assert stats["history_length"]["min"] == 5 and stats["item_popularity"]["min"] == 5
    assert stats["item_popularity"]["p50"] == want["median_items"]
    assert stats["text"]["items_without_title"] == want["no_title"]
    history = stats["history_length"]
    if name == "beauty":  # median 6, mean 8.9; 77% of users have 9 or fewer interactions
        assert (history["p50"], round(history["mean"], 1)) == (6, 8.9)
        assert round(stats["users_with_history_at_most"][9], 2) == 0.77
    else:  # median 7, mean 10.4, longest 350
        assert (history["p50"], round(history["mean"], 1), history["max"]) == (7, 10.4, 350)
