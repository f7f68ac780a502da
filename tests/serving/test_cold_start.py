"""Optimistic scores of items added at serving time (llmesr.serving.cold_start)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmesr.data.sequences import Sequences
from llmesr.serving import Bundle
from llmesr.serving.cold_start import ColdItems, estimated_id_row


def test_bonus_is_beta_standard_deviations_of_the_neighbours_id_logits():
    gen = torch.Generator().manual_seed(0)
    drifts = [torch.randn(5, 4, generator=gen) for _ in range(3)]
    cold = ColdItems.empty(4)
    for i, drift in enumerate(drifts):
        cold = cold.add(10 + i, drift)
    users = torch.randn(6, 4, generator=gen)
    expected = torch.stack([(users @ d.T).std(dim=1) for d in drifts], dim=1)  # sample sd over neighbours
    torch.testing.assert_close(cold.bonus(users, 1.5), 1.5 * expected)
    assert cold.ids.tolist() == [10, 11, 12]
    assert torch.equal(cold.bonus(users, 0.0), torch.zeros(6, 3))


def test_adding_returns_a_new_set_and_keeps_the_old_one_intact():
    first = ColdItems.empty(3).add(7, torch.ones(4, 3))
    second = first.add(8, torch.zeros(4, 3))
    assert len(first) == 1 and len(second) == 2 and first.ids.tolist() == [7]
    with pytest.raises(ValueError, match="earlier items have 4"):
        second.add(9, torch.zeros(2, 3))
    # A single neighbour has no spread: no bonus, the point estimate is all there is.
    single = ColdItems.empty(3).add(1, torch.ones(1, 3))
    assert torch.equal(single.bonus(torch.ones(2, 3), 1.0), torch.zeros(2, 1))


def test_estimated_row_is_own_start_plus_mean_drift():
    gen = torch.Generator().manual_seed(1)
    start_map = torch.randn(6, 3, generator=gen)  # (d + 1, h): 5-d embeddings to 3-d start rows
    e, near_sem = torch.randn(1, 5, generator=gen), torch.randn(4, 5, generator=gen)
    near_rows = torch.randn(4, 3, generator=gen)
    row, drift = estimated_id_row(e, near_sem, near_rows, start_map)
    start = e @ start_map[:-1] + start_map[-1]
    torch.testing.assert_close(drift, near_rows - (near_sem @ start_map[:-1] + start_map[-1]))
    torch.testing.assert_close(row, start + drift.mean(0, keepdim=True))
    plain_row, plain_drift = estimated_id_row(e, near_sem, near_rows, None)  # no map: neighbours' mean
    torch.testing.assert_close(plain_row, near_rows.mean(0, keepdim=True))
    assert torch.equal(plain_drift, near_rows)


def scores_by_item(bundle: Bundle, history: list[str]) -> dict[str, float]:
    rec = bundle.recommend(history, k=100)
    return dict(zip(rec.items.tolist(), rec.scores.tolist(), strict=True))


def test_bundle_adds_the_bonus_to_new_items_only(bundles):
    history = ["3", "4", "5"]
    plain = Bundle(bundles / "llmesr_bundle", cold_start_neighbours=4, cold_start_optimism=0.0)
    hopeful = Bundle(bundles / "llmesr_bundle", cold_start_neighbours=4, cold_start_optimism=2.0)
    for bundle in (plain, hopeful):
        bundle.add_item("new-a", "item 9 deluxe", "Brand0")
        bundle.add_item("new-b", "item 2 travel size", "Brand1")
    a, b = scores_by_item(plain, history), scores_by_item(hopeful, history)
    assert a.keys() == b.keys() and {"new-a", "new-b"} <= a.keys()
    for item in a:
        if item.startswith("new-"):
            assert b[item] > a[item]  # four different neighbours: their logits spread
        else:
            assert b[item] == pytest.approx(a[item], rel=1e-6)
    # beta = 0 scores a new item by its table row (the point estimate); beta adds exactly the bonus.
    batch = plain.model.eval_input(Sequences.from_lists([plain.internal_ids(history).tolist()]), np.arange(1))
    with torch.no_grad():
        user = torch.cat([plain.model.user_vectors(batch), torch.ones(1, 1)], dim=1)
    internal = int(plain.internal_ids(["new-a"])[0])
    assert a["new-a"] == pytest.approx(float(user[0] @ plain.table[internal]), rel=1e-5)
    bonus = hopeful.state.cold.bonus(user[:, : hopeful.model.config.hidden_size], 2.0)[0, 0]
    assert b["new-a"] - a["new-a"] == pytest.approx(float(bonus), rel=1e-4)


def test_faiss_path_scores_new_items_like_the_exact_path(bundles):
    exact = Bundle(bundles / "llmesr_bundle", cold_start_neighbours=4)
    approx = Bundle(bundles / "llmesr_bundle", cold_start_neighbours=4, faiss_threshold=0)
    for bundle in (exact, approx):
        bundle.add_item("new-a", "item 9 deluxe", "Brand0")
    approx.recommend(["1"], k=3)  # the index is built here, before the next item: added to it live
    for bundle in (exact, approx):
        bundle.add_item("new-b", "item 2 travel size", "Brand1")
    histories = [["3", "4", "5"], ["12", "13"], ["1"]]
    for a, b in zip(exact.recommend_many(histories, 22), approx.recommend_many(histories, 22), strict=True):
        assert sorted(a.items.tolist()) == sorted(b.items.tolist())
        assert {"new-a", "new-b"} <= set(b.items.tolist())
        got = dict(zip(b.items.tolist(), b.scores.tolist(), strict=True))
        for item, score in zip(a.items.tolist(), a.scores.tolist(), strict=True):
            assert got[item] == pytest.approx(score, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_optimism_must_be_finite_and_non_negative(bundles, bad):
    with pytest.raises(ValueError, match="cold_start_optimism"):
        Bundle(bundles / "llmesr_bundle", cold_start_optimism=bad)
