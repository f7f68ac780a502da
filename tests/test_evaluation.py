"""Tests for ranking evaluation: pessimistic ranks, metrics, exclusion, sampled negatives, groups, top-k."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmesr.data.groups import HeadTailGroups
from llmesr.data.sequences import Sequences
from llmesr.data.split import EvalSplit
from llmesr.evaluation import (
    evaluate,
    exclude_items,
    history_pairs,
    metrics_from_ranks,
    pessimistic_rank,
    rank_targets,
    sampled_negatives,
    summarize,
    top_k,
)
from llmesr.ranking import top_in_blocks

INF = float("inf")


class TableModel:
    """Duck-typed recommender whose scores are a fixed table, one row per evaluation input.

    ``score_all`` finds the row by the (unpadded) history it is given, so the evaluation code's
    batching, reordering and padding are all exercised. Column 0 (padding) is always -inf.
    """

    def __init__(self, split: EvalSplit, table, max_len: int = 50) -> None:
        table = torch.as_tensor(np.asarray(table, dtype=np.float32)).clone()
        assert table.shape[0] == len(split)
        table[:, 0] = -INF
        self.table = table
        self.config = SimpleNamespace(n_items=table.shape[1] - 1, max_len=max_len)
        self.lookup = {tuple(split.inputs.row(r).tolist()): r for r in range(len(split))}
        assert len(self.lookup) == len(split), "histories must be unique to identify users"
        self.batch_widths: list[int] = []

    def eval(self) -> TableModel:
        return self

    def eval_input(self, history: Sequences, rows: np.ndarray) -> torch.Tensor:
        return history.pad_left(rows, self.config.max_len)

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        self.batch_widths.append(seq.shape[1])
        idx = [self.lookup[tuple(i for i in row if i)] for row in seq.tolist()]
        return self.table[idx].clone()


def make_split(inputs: list[list[int]], targets: list[int], users: list[int] | None = None) -> EvalSplit:
    users = list(range(len(inputs))) if users is None else users
    return EvalSplit(
        np.array(users, dtype=np.int64), Sequences.from_lists(inputs), np.array(targets, dtype=np.int64)
    )


def row(*item_scores: float) -> list[float]:
    """A score row with column 0 (padding) first."""
    return [-INF, *item_scores]


# ----------------------------------------------------------------------------------------------
# pessimistic_rank and metrics
# ----------------------------------------------------------------------------------------------


def test_pessimistic_rank_ties_count_against_the_target() -> None:
    scores = torch.tensor([row(5.0, 5.0, 5.0, 1.0), row(2.0, 3.0, 3.0, 0.0), row(4.0, 1.0, 2.0, 3.0)])
    # Row 0: target item 1 tied with items 2 and 3 at the top -> rank 2.
    # Row 1: target item 2 tied with item 3 -> rank 1. Row 2: target item 1 strictly best -> 0.
    ranks = pessimistic_rank(scores, torch.tensor([5.0, 3.0, 4.0]))
    assert ranks.tolist() == [2, 1, 0]


def test_pessimistic_rank_constant_scores() -> None:
    n = 7
    scores = torch.full((3, n), 0.25)
    assert pessimistic_rank(scores, torch.full((3,), 0.25)).tolist() == [n - 1] * 3


def test_pessimistic_rank_nan_target_is_not_a_hit() -> None:
    nan = float("nan")
    scores = torch.tensor([[-INF, nan, nan, nan, nan]])
    assert pessimistic_rank(scores, scores[:, 1]).tolist() == [4]


def test_metrics_from_ranks_hand_values() -> None:
    m = metrics_from_ranks(np.array([0, 1, 3, 10]), [1, 5, 10])
    assert set(m) == {f"{name}@{k}" for name in ("HR", "NDCG", "MRR") for k in (1, 5, 10)}
    assert m["HR@1"] == 0.25 and m["NDCG@1"] == 0.25 and m["MRR@1"] == 0.25
    assert m["HR@5"] == 0.75
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4, abs=1e-12)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 4, abs=1e-12)
    # Rank 10 is the 11th place: still a miss at K = 10.
    assert m["HR@10"] == 0.75
    assert m["NDCG@10"] == m["NDCG@5"] and m["MRR@10"] == m["MRR@5"]


def test_metrics_from_ranks_empty_is_none() -> None:
    m = metrics_from_ranks(np.array([], dtype=np.int64), [1, 5])
    assert m == {"HR@1": None, "NDCG@1": None, "MRR@1": None, "HR@5": None, "NDCG@5": None, "MRR@5": None}


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n_rows=st.integers(1, 6), n_cols=st.integers(2, 9))
def test_pessimistic_rank_property(data, n_rows: int, n_cols: int) -> None:
    cells = st.integers(0, 3)
    scores = np.array(
        data.draw(
            st.lists(st.lists(cells, min_size=n_cols, max_size=n_cols), min_size=n_rows, max_size=n_rows)
        ),
        dtype=np.float32,
    )
    targets = data.draw(st.lists(st.integers(0, n_cols - 1), min_size=n_rows, max_size=n_rows))
    t = scores[np.arange(n_rows), targets]
    ranks = pessimistic_rank(torch.from_numpy(scores), torch.from_numpy(t)).numpy()
    brute = [sum(1 for s in scores[r] if s >= t[r]) - 1 for r in range(n_rows)]
    assert ranks.tolist() == brute
    ks = list(range(1, n_cols + 1))
    m = metrics_from_ranks(ranks, ks)
    for name in ("HR", "NDCG", "MRR"):
        values = [m[f"{name}@{k}"] for k in ks]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    for k in ks:
        assert m[f"MRR@{k}"] <= m[f"NDCG@{k}"] + 1e-12 <= m[f"HR@{k}"] + 2e-12
    assert m[f"HR@{n_cols}"] == 1.0  # every rank is < n_cols


# ----------------------------------------------------------------------------------------------
# Full-ranking evaluation with a table model
# ----------------------------------------------------------------------------------------------


def test_tied_target_through_evaluate() -> None:
    split = make_split([[4], [3]], [1, 2])
    model = TableModel(split, [row(5, 5, 5, 1), row(1, 9, 2, 3)])
    assert rank_targets(model, split)["full"].tolist() == [2, 0]
    full = evaluate(model, split, ks=(1, 3))["full"]
    assert full["protocol"] == "full" and full["exclude_history"] is True and full["users"] == 2
    m = full["overall"]
    assert m["HR@1"] == 0.5 and m["HR@3"] == 1.0
    assert m["NDCG@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["MRR@3"] == pytest.approx((1 / 3 + 1.0) / 2)
    assert "sampled" not in evaluate(model, split)


def test_constant_model_scores_zero() -> None:
    n_items = 6
    split = make_split([[1, 2], [3], [5, 6, 4]], [3, 4, 1])
    model = TableModel(split, np.ones((3, n_items + 1)))
    ranks = rank_targets(model, split, exclude_history=False)["full"]
    assert ranks.tolist() == [n_items - 1] * 3
    m = evaluate(model, split, ks=(1, 5), exclude_history=False)["full"]["overall"]
    assert m["HR@1"] == m["NDCG@1"] == m["HR@5"] == m["NDCG@5"] == 0.0
    # With the history excluded only the remaining candidates tie with the target.
    assert rank_targets(model, split)["full"].tolist() == [3, 4, 2]


def test_history_exclusion_moves_targets_and_misses_repeated_items() -> None:
    n_items = 5
    split = make_split([[1, 2], [3], [5]], [2, 4, 1])
    table = [
        row(1, 9, 3, 2, 0),  # target 2 is in the history and is the top score
        row(0, 1, 10, 9, 2),  # history item 3 is above target 4
        row(9, 1, 2, 3, 4),  # target 1 strictly best
    ]
    model = TableModel(split, table)
    on = rank_targets(model, split)["full"]
    off = rank_targets(model, split, exclude_history=False)["full"]
    assert off.tolist() == [0, 1, 0]
    assert on[1:].tolist() == [0, 0]
    assert on[0] >= n_items - 1  # behind every real candidate: a miss for any K < n_items
    m_on = evaluate(model, split, ks=(1, 2))["full"]["overall"]
    m_off = evaluate(model, split, ks=(1, 2), exclude_history=False)["full"]["overall"]
    assert m_on["HR@1"] == pytest.approx(2 / 3) and m_on["HR@2"] == pytest.approx(2 / 3)
    assert m_off["HR@1"] == pytest.approx(2 / 3) and m_off["HR@2"] == 1.0


def test_exclude_items_in_place() -> None:
    hist = Sequences.from_lists([[1, 3], [], [2, 2, 4]])
    scores = torch.arange(10, dtype=torch.float32).reshape(2, 5)
    exclude_items(scores, hist, np.array([2, 0]))
    assert scores.tolist() == [[0.0, 1.0, -INF, 3.0, -INF], [5.0, -INF, 7.0, -INF, 9.0]]


def test_batches_are_padded_to_their_own_width() -> None:
    inputs = [[1, 2, 3, 4], [5], [6, 7], [8]]
    split = make_split(inputs, [9, 9, 9, 9])
    model = TableModel(split, np.random.default_rng(0).permutation(40).reshape(4, 10))
    ranks = rank_targets(model, split, batch_size=2)["full"]
    ranks_one = rank_targets(model, split, batch_size=100)["full"]
    assert ranks.tolist() == ranks_one.tolist()
    # Shortest histories first: batches {[5], [8]} (width 1) then {[6, 7], [1..4]} (width 4).
    assert model.batch_widths[:2] == [1, 4]


# ----------------------------------------------------------------------------------------------
# top_k
# ----------------------------------------------------------------------------------------------


def test_top_k_excludes_padding_and_history() -> None:
    split = make_split([[1, 2], [6]], [3, 5])
    model = TableModel(split, [row(9, 8, 7, 6, 5, 4), row(1, 2, 3, 4, 5, 6)])
    items, values = top_k(model, split, 3)
    assert items.tolist() == [[3, 4, 5], [5, 4, 3]]
    assert values.tolist() == [[7, 6, 5], [5, 4, 3]]
    items, values = top_k(model, split, 3, exclude_history=False)
    assert items.tolist() == [[1, 2, 3], [6, 5, 4]]
    assert values.tolist() == [[9, 8, 7], [6, 5, 4]]
    items, _ = top_k(model, split, 6, exclude_history=False)
    assert 0 not in items.tolist()[0] and 0 not in items.tolist()[1]


def test_top_k_fills_missing_candidates_with_padding() -> None:
    split = make_split([[1, 2]], [3])
    model = TableModel(split, [row(5, 4, 3)])
    items, values = top_k(model, split, 10)  # k is capped at n_items = 3
    assert items.tolist() == [[3, 0, 0]]
    assert values.tolist() == [[3.0, -INF, -INF]]


def _random_split(seed: int, n_users: int = 40, n_items: int = 50):
    rng = np.random.default_rng(seed)
    inputs = [
        rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 10), replace=False).tolist()
        for _ in range(n_users)
    ]
    targets = rng.integers(1, n_items + 1, size=n_users).tolist()
    split = make_split(inputs, targets, users=rng.permutation(n_users).tolist())
    # A distinct score per item (a permutation): no ties anywhere.
    table = np.stack([np.concatenate([[0.0], rng.permutation(n_items)]) for _ in range(n_users)])
    return split, TableModel(split, table)


@pytest.mark.parametrize("exclude_history", [True, False])
def test_top_k_agrees_with_full_ranking(exclude_history: bool) -> None:
    split, model = _random_split(11)
    items, values = top_k(model, split, 10, exclude_history=exclude_history, batch_size=7)
    assert items.shape == (40, 10) and (items > 0).all()
    hits, gains = [], []
    for r in range(len(split)):
        if exclude_history:
            assert not set(items[r].tolist()) & set(split.inputs.row(r).tolist())
        # Reference: numpy sort of the (masked) score row.
        ref = model.table[r].numpy().copy()
        if exclude_history:
            ref[split.inputs.row(r)] = -np.inf
        assert items[r].tolist() == np.argsort(-ref, kind="stable")[:10].tolist()
        assert (np.diff(values[r]) < 0).all()
        pos = np.flatnonzero(items[r] == split.targets[r])
        hits.append(1.0 if len(pos) else 0.0)
        gains.append(1.0 / math.log2(pos[0] + 2) if len(pos) else 0.0)
    m = evaluate(model, split, ks=(10,), exclude_history=exclude_history, batch_size=7)["full"]["overall"]
    assert 0.0 < m["HR@10"] < 1.0
    assert m["HR@10"] == pytest.approx(np.mean(hits), abs=1e-12)
    assert m["NDCG@10"] == pytest.approx(np.mean(gains), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Sampled negatives and the sampled protocol
# ----------------------------------------------------------------------------------------------

FULL = Sequences.from_lists([[1, 2, 3], [4, 5], [1, 2, 3, 4, 5, 6, 7, 8], [10], [2, 9, 4]])


def test_sampled_negatives_avoid_the_whole_sequence() -> None:
    users = np.array([2, 0, 4, 1, 3])
    negs = sampled_negatives(FULL, users, n=50, n_items=10, seed=3, chunk=2)
    assert negs.shape == (5, 50) and negs.dtype == torch.int64
    for r, u in enumerate(users):
        drawn = set(negs[r].tolist())
        assert not drawn & set(FULL.row(u).tolist())
        assert drawn <= set(range(1, 11))
    # User 2 touched 8 of the 10 items: all 50 negatives are items 9 and 10.
    assert set(negs[0].tolist()) == {9, 10}


def test_sampled_negatives_seeded() -> None:
    users = np.array([0, 1, 2, 3, 4])
    a = sampled_negatives(FULL, users, n=20, n_items=10, seed=0)
    b = sampled_negatives(FULL, users, n=20, n_items=10, seed=0)
    c = sampled_negatives(FULL, users, n=20, n_items=10, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    empty = sampled_negatives(FULL, np.array([], dtype=np.int64), n=4, n_items=10, seed=0)
    assert tuple(empty.shape) == (0, 4)


def test_sampled_protocol_ranks_pessimistically() -> None:
    split = make_split([[5], [6]], [1, 2])
    model = TableModel(split, [row(5, 5, 3, 7, 0, 0), row(1, 9, 2, 3, 0, 0)])
    negatives = torch.tensor([[2, 3, 4], [1, 3, 4]])
    ranks = rank_targets(model, split, negatives=negatives)
    # User 0: target 5.0 vs negatives [5.0 (tie), 3.0, 7.0] -> 2. User 1: 9.0 beats all -> 0.
    assert ranks["sampled"].tolist() == [2, 0]
    assert ranks["full"].tolist() == [2, 0]
    out = evaluate(model, split, negatives=negatives, ks=(1, 3))
    assert out["sampled"]["protocol"] == "sampled" and out["sampled"]["sampled_negatives"] == 3
    assert out["sampled"]["overall"]["HR@1"] == 0.5
    assert out["sampled"]["overall"]["NDCG@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert "sampled_negatives" not in out["full"]


def test_sampled_protocol_aligns_negatives_with_split_positions() -> None:
    # Users are visited shortest history first (position 1 before 0); negatives must still follow
    # split positions: swapping the two rows of negatives would give [0, 2].
    split = make_split([[5, 6, 7], [8]], [1, 2])
    model = TableModel(split, [row(4, 0, 5, 6, 0, 0, 0, 0), row(0, 4, 9, 9, 0, 0, 0, 0)])
    negatives = torch.tensor([[3, 4], [5, 6]])
    # Position 0: target 4 below both negatives (5, 6) -> 2. Position 1: target 4 above (0, 0) -> 0.
    assert rank_targets(model, split, negatives=negatives)["sampled"].tolist() == [2, 0]
    assert rank_targets(model, split, negatives=negatives.flip(0))["sampled"].tolist() == [0, 2]


# ----------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------


def _groups() -> HeadTailGroups:
    tail_user = np.array([True, False, True, False, False, False])
    tail_item = np.zeros(7, dtype=bool)  # no tail items at all: an empty group
    return HeadTailGroups(tail_user, tail_item, user_cut=3.0, item_cut=1.0, rule="pareto")


def test_summarize_with_groups() -> None:
    # Split positions -> internal users [5, 0, 2, 1]: tail users are 0 and 2 (positions 1, 2).
    split = make_split([[6], [6, 5], [6, 4], [3]], [1, 2, 3, 4], users=[5, 0, 2, 1])
    ranks = np.array([2, 0, 7, 1])
    out = summarize(ranks, split, _groups(), ks=(1, 3))
    assert out["users"] == 4
    overall = out["overall"]
    assert overall["HR@1"] == 0.25 and overall["HR@3"] == 0.75
    assert overall["NDCG@3"] == pytest.approx((0.5 + 1.0 + 1 / math.log2(3)) / 4)
    assert overall["MRR@3"] == pytest.approx((1 / 3 + 1.0 + 0.5) / 4)
    g = out["groups"]
    assert g["tail_user"] == {
        "count": 2,
        "HR@1": 0.5,
        "NDCG@1": 0.5,
        "MRR@1": 0.5,
        "HR@3": 0.5,
        "NDCG@3": 0.5,
        "MRR@3": 0.5,
    }
    head = g["head_user"]
    assert head["count"] == 2 and head["HR@1"] == 0.0 and head["HR@3"] == 1.0
    assert head["NDCG@3"] == pytest.approx((0.5 + 1 / math.log2(3)) / 2)
    assert head["MRR@3"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert g["head_item"] == {"count": 4, **overall}
    assert g["tail_item"] == {
        "count": 0,
        "HR@1": None,
        "NDCG@1": None,
        "MRR@1": None,
        "HR@3": None,
        "NDCG@3": None,
        "MRR@3": None,
    }
    assert "groups" not in summarize(ranks, split, None, ks=(1,))


def test_evaluate_reports_groups() -> None:
    split = make_split([[6], [6, 5]], [1, 2], users=[5, 0])
    model = TableModel(split, [row(1, 9, 0, 0, 0, 0), row(0, 9, 0, 0, 0, 0)])
    out = evaluate(model, split, groups=_groups(), ks=(1,))["full"]
    # User 5 (head): target 1 below item 2 -> rank 1. User 0 (tail): target 2 on top -> rank 0.
    assert out["groups"]["tail_user"] == {"count": 1, "HR@1": 1.0, "NDCG@1": 1.0, "MRR@1": 1.0}
    assert out["groups"]["head_user"] == {"count": 1, "HR@1": 0.0, "NDCG@1": 0.0, "MRR@1": 0.0}
    assert out["groups"]["tail_item"]["count"] == 0 and out["groups"]["tail_item"]["HR@1"] is None


# ----------------------------------------------------------------------------------------------
# Column-block ranking (models whose scores are one product) against the full score matrix
# ----------------------------------------------------------------------------------------------


class FactorModel(TableModel):
    """A table model whose table is ``users @ items.T + bias``, offered as ``score_factors`` too:
    evaluation then ranks in column blocks; the inherited ``score_all`` is the full-matrix path."""

    def __init__(self, split: EvalSplit, users: torch.Tensor, items: torch.Tensor, bias: torch.Tensor):
        scores = users @ items.T + bias
        scores[:, 0] = -INF
        super().__init__(split, scores)
        self.factors = users, items, bias

    def score_factors(self, seq: torch.Tensor):
        idx = [self.lookup[tuple(i for i in row if i)] for row in seq.tolist()]
        users, items, bias = self.factors
        return users[idx], items, bias


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("exclude_history", [True, False])
def test_block_ranks_equal_full_matrix_ranks(seed: int, exclude_history: bool) -> None:
    """Small integer factors make many exact ties; a NaN user, targets inside the history and
    blocks narrower than the catalogue exercise every rule of the pessimistic rank."""
    split, _ = _random_split(seed, n_users=60, n_items=700)
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(-2, 3, (len(split), 4), generator=gen).float()
    users[5, 1] = float("nan")
    items = torch.randint(-2, 3, (701, 4), generator=gen).float()
    bias = torch.randint(0, 2, (701,), generator=gen).float()
    split.targets[:3] = split.inputs.row(0)[0], split.inputs.row(1)[-1], split.inputs.row(2)[0]
    blocks = FactorModel(split, users, items, bias)
    rows = TableModel(split, blocks.table)
    negatives = torch.randint(1, 701, (len(split), 9), generator=gen)
    for batch_size in (7, 1024):
        options = {"negatives": negatives, "exclude_history": exclude_history, "batch_size": batch_size}
        got, want = rank_targets(blocks, split, **options), rank_targets(rows, split, **options)
        assert got.keys() == want.keys()
        for protocol in want:
            np.testing.assert_array_equal(got[protocol], want[protocol])
    assert blocks.batch_widths == []  # the block path never asked for whole score rows


@pytest.mark.parametrize("exclude_history", [True, False])
def test_block_top_k_equals_the_top_k_of_whole_rows(exclude_history: bool) -> None:
    """``top_k`` of a factor model never builds whole rows and returns the same best scores as a
    top-k of the masked full matrix, through blocks of any width; every returned item carries the
    score it is listed with, and padding and (when excluded) history items never appear."""
    split, _ = _random_split(3, n_users=40, n_items=300)
    gen = torch.Generator().manual_seed(3)
    users = torch.randint(-2, 3, (len(split), 4), generator=gen).float()  # exact products, many ties
    items = torch.randint(-2, 3, (301, 4), generator=gen).float()
    bias = torch.randint(0, 2, (301,), generator=gen).float()
    blocks = FactorModel(split, users, items, bias)
    rows = TableModel(split, blocks.table)
    got_items, got_values = top_k(blocks, split, 12, exclude_history=exclude_history, batch_size=7)
    want_items, want_values = top_k(rows, split, 12, exclude_history=exclude_history, batch_size=7)
    assert blocks.batch_widths == []
    np.testing.assert_array_equal(got_values, want_values)
    masked = _history_masked(blocks.table.clone(), split) if exclude_history else blocks.table
    listed = masked.gather(1, torch.from_numpy(got_items)).numpy()
    np.testing.assert_array_equal(listed[got_items > 0], got_values[got_items > 0])
    assert (got_items > 0).all()  # 300 items, at most 9 in a history: every slot is a real item
    excluded = history_pairs(split.inputs, np.arange(len(split)), torch.device("cpu"))
    want = torch.topk(_history_masked(users @ items.T + bias, split), 12).values
    for columns in (301, 50, 7):
        values, cols = top_in_blocks(users, items, bias, 12, excluded=excluded, columns=columns)
        assert torch.equal(values, want), columns
        assert (cols > 0).all()


def _history_masked(scores: torch.Tensor, split: EvalSplit) -> torch.Tensor:
    scores[:, 0] = -INF
    for r in range(len(split)):
        scores[r, split.inputs.row(r)] = -INF
    return scores
