"""Tests for CSR sequences, train/valid/test splits, head/tail groups, epoch batching and id remapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmesr.data.batching import epoch_batches
from llmesr.data.dataset import SequenceDataset, build_dataset, kcore_filter
from llmesr.data.formats import DataFormatError, InteractionLog
from llmesr.data.groups import groups_from_preset, head_tail_groups, item_popularity, pareto_cut
from llmesr.data.sequences import Sequences, ragged_index
from llmesr.data.split import global_time, leave_one_out, make_split


def make_data(rows: list[list[int]], timestamps: list[list[float]] | None = None) -> SequenceDataset:
    """A SequenceDataset in internal ids straight from per-user item lists."""
    n_items = max((i for r in rows for i in r), default=0)
    ts = None
    if timestamps is not None:
        ts = np.array([t for r in timestamps for t in r], dtype=np.float64)
    return SequenceDataset(
        name="hand",
        user_ids=np.array([f"u{u}" for u in range(len(rows))], dtype=object),
        item_ids=np.array([""] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object),
        sequences=Sequences.from_lists(rows),
        timestamps=ts,
        item_info=None,
    )


def obj(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=object)


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------

SEQ = Sequences.from_lists([[1, 2, 3], [], [4], [5, 6, 7, 8, 9]])


def test_from_lists_layout() -> None:
    assert SEQ.offsets.tolist() == [0, 3, 3, 4, 9]
    assert SEQ.items.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert SEQ.lengths.tolist() == [3, 0, 1, 5]
    assert len(SEQ) == 4
    assert SEQ.row(3).tolist() == [5, 6, 7, 8, 9]
    assert SEQ.tolist() == [[1, 2, 3], [], [4], [5, 6, 7, 8, 9]]
    assert SEQ.offsets.dtype == np.int64 and SEQ.items.dtype == np.int64


def test_pad_left_pads_on_the_left_to_the_batch_width() -> None:
    out = SEQ.pad_left(np.array([0, 2]), max_len=10)
    assert out.dtype == torch.int64
    # Width is the longest row of this batch (3), not max_len (10).
    assert out.tolist() == [[1, 2, 3], [0, 0, 4]]


def test_pad_left_truncation_keeps_the_last_items() -> None:
    assert SEQ.pad_left(np.array([3, 0]), max_len=4).tolist() == [[6, 7, 8, 9], [0, 1, 2, 3]]
    assert SEQ.pad_left(np.array([3]), max_len=2).tolist() == [[8, 9]]
    assert SEQ.pad_left(np.array([0, 3, 2]), max_len=2).tolist() == [[2, 3], [8, 9], [0, 4]]


def test_pad_left_extra_columns_are_zero() -> None:
    out = SEQ.pad_left(np.array([0, 2]), max_len=5, extra=2)
    assert out.tolist() == [[1, 2, 3, 0, 0], [0, 0, 4, 0, 0]]
    assert SEQ.pad_left(np.array([3]), max_len=3, extra=1).tolist() == [[7, 8, 9, 0]]


def test_pad_left_empty_rows() -> None:
    assert SEQ.pad_left(np.array([1, 2]), max_len=5).tolist() == [[0], [4]]
    # A batch of only empty rows still has width 1 (all zeros).
    assert SEQ.pad_left(np.array([1, 1]), max_len=5).tolist() == [[0], [0]]
    assert SEQ.pad_left(np.array([1]), max_len=5, extra=1).tolist() == [[0, 0]]
    assert tuple(SEQ.pad_left(np.array([], dtype=np.int64), max_len=5).shape) == (0, 1)


def test_pad_left_on_container_without_items() -> None:
    empty = Sequences.from_lists([[], []])
    assert empty.pad_left(np.array([0, 1]), max_len=5).tolist() == [[0], [0]]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(1, 30), max_size=8), min_size=1, max_size=6),
    data=st.data(),
    max_len=st.integers(1, 10),
    extra=st.integers(0, 2),
)
def test_pad_left_matches_reference(rows, data, max_len, extra) -> None:
    seqs = Sequences.from_lists(rows)
    picked = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=8))
    kept = [rows[r][-max_len:] for r in picked]
    width = max(1, max(len(k) for k in kept))
    expected = [[0] * (width - len(k)) + k + [0] * extra for k in kept]
    assert seqs.pad_left(np.array(picked), max_len, extra=extra).tolist() == expected


def test_take() -> None:
    taken = SEQ.take(np.array([3, 0, 0, 1]))
    assert taken.tolist() == [[5, 6, 7, 8, 9], [1, 2, 3], [1, 2, 3], []]
    assert taken.offsets.tolist() == [0, 5, 8, 11, 11]
    assert len(SEQ.take(np.array([], dtype=np.int64))) == 0


def test_drop_last() -> None:
    assert SEQ.drop_last(1).tolist() == [[1, 2], [], [], [5, 6, 7, 8]]
    assert SEQ.drop_last(2).tolist() == [[1], [], [], [5, 6, 7]]
    assert SEQ.drop_last(4).tolist() == [[], [], [], [5]]
    assert SEQ.drop_last(0).tolist() == SEQ.tolist()


def test_last() -> None:
    seqs = Sequences.from_lists([[1, 2, 3], [4], [5, 6]])
    assert seqs.last().tolist() == [3, 4, 6]
    assert Sequences.from_lists([[1, 2, 3], [5, 6]]).last(2).tolist() == [2, 5]


def test_ragged_index() -> None:
    idx = ragged_index(np.array([10, 3, 7]), np.array([2, 0, 3]))
    assert idx.tolist() == [10, 11, 7, 8, 9]
    empty = ragged_index(np.array([4, 5]), np.array([0, 0]))
    assert empty.tolist() == [] and empty.dtype == np.int64


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

LOO_ROWS = [[1], [2, 3], [4, 5, 6], [1, 2, 7, 8, 9]]


def test_leave_one_out_hand_example() -> None:
    split = leave_one_out(make_data(LOO_ROWS))
    assert split.protocol == "leave_one_out"
    # Users with < 3 interactions keep everything for training and are not evaluated.
    assert split.train.tolist() == [[1], [2, 3], [4], [1, 2, 7]]
    assert split.valid.users.tolist() == [2, 3]
    assert split.valid.inputs.tolist() == [[4], [1, 2, 7]]
    assert split.valid.targets.tolist() == [5, 8]
    assert split.test.users.tolist() == [2, 3]
    assert split.test.inputs.tolist() == [[4, 5], [1, 2, 7, 8]]
    assert split.test.targets.tolist() == [6, 9]
    assert len(split.valid) == 2 and len(split.test) == 2
    assert split.eval_split("valid") is split.valid and split.eval_split("test") is split.test
    with pytest.raises(ValueError, match="valid"):
        split.eval_split("train")


def test_leave_one_out_holds_out_the_last_two_positions() -> None:
    rng = np.random.default_rng(3)
    rows = [rng.integers(1, 20, size=n).tolist() for n in rng.integers(1, 9, size=30)]
    split = leave_one_out(make_data(rows))
    for r, u in enumerate(split.test.users):
        full = rows[u]
        assert split.train.row(u).tolist() == full[:-2]
        assert split.valid.inputs.row(r).tolist() == full[:-2]
        assert split.valid.targets[r] == full[-2]
        assert split.test.inputs.row(r).tolist() == full[:-1]
        assert split.test.targets[r] == full[-1]
    short = [u for u, r in enumerate(rows) if len(r) < 3]
    assert short and not set(short) & set(split.test.users.tolist())
    for u in short:
        assert split.train.row(u).tolist() == rows[u]


# Timestamps 1..12. valid_fraction=0.3, test_fraction=0.2 -> cuts at the 0.5 and 0.8 quantiles:
# 6.5 and 9.8. Training: ts <= 6; validation period: 7, 8, 9; test period: 10, 11, 12.
GT_ROWS = [[1, 2, 3, 4], [2, 5], [6], [7], [1, 3, 6, 2]]
GT_TIMES = [[1, 2, 7, 10], [3, 11], [8], [12], [4, 5, 6, 9]]


def test_global_time_hand_example() -> None:
    data = make_data(GT_ROWS, GT_TIMES)
    split = global_time(data, valid_fraction=0.3, test_fraction=0.2)
    assert split.protocol == "global_time"
    assert split.train.tolist() == [[1, 2], [2], [], [], [1, 3, 6]]
    # User 2's only interaction is in the validation period: nothing earlier, so not evaluated.
    assert split.valid.users.tolist() == [0, 4]
    assert split.valid.inputs.tolist() == [[1, 2], [1, 3, 6]]
    assert split.valid.targets.tolist() == [3, 2]
    # User 3's only interaction is in the test period: excluded. The test input includes the
    # validation-period interactions (user 0's item 3).
    assert split.test.users.tolist() == [0, 1]
    assert split.test.inputs.tolist() == [[1, 2, 3], [2]]
    assert split.test.targets.tolist() == [4, 5]


def test_global_time_training_precedes_every_target() -> None:
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 12, size=40)
    rows = [rng.integers(1, 30, size=n).tolist() for n in lengths]
    times = [np.sort(rng.uniform(0, 1000, size=n)).tolist() for n in lengths]
    data = make_data(rows, times)
    split = global_time(data)
    ts, offsets = data.timestamps, data.sequences.offsets
    train_times = ts[ragged_index(offsets[:-1], split.train.lengths)]
    for ev in (split.valid, split.test):
        assert len(ev) > 0
        target_times = ts[offsets[ev.users] + ev.inputs.lengths]
        assert train_times.max() < target_times.min()
        assert (ev.inputs.lengths > 0).all()
        for r, u in enumerate(ev.users):
            assert ev.inputs.row(r).tolist() == rows[u][: ev.inputs.lengths[r]]
            assert ev.targets[r] == rows[u][ev.inputs.lengths[r]]
            # The input is everything before the target in time.
            assert (ts[offsets[u] : offsets[u] + ev.inputs.lengths[r]] < target_times[r]).all()
    # Test targets come after validation targets.
    assert (
        ts[offsets[split.valid.users] + split.valid.inputs.lengths].max()
        < ts[offsets[split.test.users] + split.test.inputs.lengths].min()
    )


def test_global_time_errors() -> None:
    with pytest.raises(DataFormatError, match="timestamps"):
        global_time(make_data(LOO_ROWS))
    data = make_data(GT_ROWS, GT_TIMES)
    for valid, test in ((0.0, 0.1), (0.1, 0.0), (0.5, 0.5)):
        with pytest.raises(ValueError):
            global_time(data, valid, test)


def test_make_split() -> None:
    data = make_data(GT_ROWS, GT_TIMES)
    assert make_split(data, "leave_one_out").train.tolist() == leave_one_out(data).train.tolist()
    assert make_split(data, "global_time").test.targets.tolist() == global_time(data).test.targets.tolist()
    with pytest.raises(ValueError, match="unknown split"):
        make_split(data, "random")


# ----------------------------------------------------------------------------------------------
# Head / tail groups
# ----------------------------------------------------------------------------------------------


def test_pareto_cut_hand_values() -> None:
    # 10 values -> head of at most 2: values >= 9.
    assert pareto_cut(np.arange(10, 0, -1)) == 9.0
    # Tie at the boundary (two 9s for one remaining head slot): the head shrinks to {10}.
    assert pareto_cut(np.array([10, 9, 9, 7, 6, 5, 4, 3, 2, 1])) == 10.0
    # All equal: empty head.
    assert pareto_cut(np.full(10, 5)) == 6.0
    # Fewer than 5 values: 20% rounds down to an empty head.
    assert pareto_cut(np.array([4, 3, 2, 1])) == 5.0
    assert pareto_cut(np.array([4, 3, 2, 1]), head_share=0.5) == 3.0
    assert pareto_cut(np.array([], dtype=np.int64)) == 0.0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40))
def test_pareto_cut_head_is_at_most_20_percent_and_maximal(values) -> None:
    v = np.array(values)
    cut = pareto_cut(v)
    assert (v >= cut).sum() <= 0.2 * len(v)
    # One lower (integer) cut would put more than 20% in the head.
    assert (v >= cut - 1).sum() > 0.2 * len(v)


# Train popularity of items 1..10: [5, 4, 3, 2, 1, 1, 1, 1, 0, 0]; train lengths [5, 5, 4, 3, 1].
TRAIN_ROWS = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 7], [1, 2, 8], [1]]
N_ITEMS = 10


def test_item_popularity() -> None:
    pop = item_popularity(Sequences.from_lists(TRAIN_ROWS), N_ITEMS)
    assert pop.tolist() == [0, 5, 4, 3, 2, 1, 1, 1, 1, 0, 0]


def test_head_tail_groups_pareto_from_train_only() -> None:
    # Item 9 is every user's validation and test target: 10 interactions, none in training.
    data = make_data([r + [9, 9] for r in TRAIN_ROWS] + [[10]])
    split = leave_one_out(data)
    assert split.train.tolist() == TRAIN_ROWS + [[10]]
    groups = head_tail_groups(split.train, N_ITEMS)
    # Item popularity [5, 4, 3, 2, 1, 1, 1, 1, 0, 1]: 2 head slots -> cut = 3 + 1.
    assert groups.item_cut == 4.0
    assert groups.tail_item[1:].tolist() == [False, False] + [True] * 8
    assert groups.tail_item[9]  # its test popularity does not count
    # Lengths [5, 5, 4, 3, 1, 1]: one head slot but tied 5s -> empty head.
    assert groups.user_cut == 6.0
    assert groups.tail_user.tolist() == [True] * 6
    assert groups.rule == "pareto"
    desc = groups.describe()
    assert desc["tail_user_fraction"] == 1.0 and desc["tail_item_fraction"] == 0.8


def test_head_tail_groups_threshold_rule() -> None:
    train = Sequences.from_lists(TRAIN_ROWS)
    groups = head_tail_groups(
        train, N_ITEMS, user_rule="threshold", user_threshold=5, item_rule="threshold", item_threshold=2
    )
    # Tail iff value < threshold: length 5 and popularity 2 are head.
    assert groups.tail_user.tolist() == [False, False, True, True, True]
    assert groups.tail_item[1:].tolist() == [False] * 4 + [True] * 6
    assert groups.user_cut == 5.0 and groups.item_cut == 2.0
    assert groups.rule == "user:threshold,item:threshold"


def test_groups_from_preset() -> None:
    train = Sequences.from_lists(TRAIN_ROWS)
    paper = groups_from_preset(train, N_ITEMS, "beauty_paper")
    assert paper.tail_user.tolist() == [True] * 5  # all lengths < 9
    assert paper.tail_item[1:].tolist() == [False, False] + [True] * 8  # popularity < 4
    pareto = groups_from_preset(train, N_ITEMS, "pareto")
    assert pareto.item_cut == 4.0 and pareto.user_cut == 6.0
    with pytest.raises(ValueError, match="preset"):
        groups_from_preset(train, N_ITEMS, "nope")


def test_head_tail_groups_rule_errors() -> None:
    train = Sequences.from_lists(TRAIN_ROWS)
    with pytest.raises(ValueError, match="user_rule"):
        head_tail_groups(train, N_ITEMS, user_rule="median")
    with pytest.raises(ValueError, match="item_rule"):
        head_tail_groups(train, N_ITEMS, item_rule="median")
    with pytest.raises(ValueError, match="item_threshold"):
        head_tail_groups(train, N_ITEMS, item_rule="threshold")


# ----------------------------------------------------------------------------------------------
# Epoch batches
# ----------------------------------------------------------------------------------------------


def _spread(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    return float(np.mean([np.ptp(lengths[b]) for b in batches]))


@pytest.mark.parametrize("bucket", [True, False])
def test_epoch_batches_cover_every_row_once(bucket: bool) -> None:
    rows = np.arange(0, 2000, 2)  # row ids need not be 0..n-1
    lengths = np.random.default_rng(0).integers(1, 60, size=2000)
    batches = epoch_batches(rows, lengths, 32, np.random.default_rng(1), bucket=bucket, bucket_batches=5)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == rows.tolist()
    sizes = sorted(len(b) for b in batches)
    assert sizes == [1000 - 31 * 32] + [32] * 31
    assert rows.tolist() == list(range(0, 2000, 2))  # input untouched


def test_epoch_batches_deterministic() -> None:
    rows = np.arange(500)
    lengths = np.random.default_rng(0).integers(1, 60, size=500)
    for bucket in (True, False):
        a = epoch_batches(rows, lengths, 16, np.random.default_rng(5), bucket=bucket)
        b = epoch_batches(rows, lengths, 16, np.random.default_rng(5), bucket=bucket)
        c = epoch_batches(rows, lengths, 16, np.random.default_rng(6), bucket=bucket)
        assert [x.tolist() for x in a] == [x.tolist() for x in b]
        assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_epoch_batches_bucketing_reduces_length_spread() -> None:
    rows = np.arange(3000)
    lengths = np.random.default_rng(0).integers(1, 200, size=3000)
    rng = np.random.default_rng(2)
    bucketed = epoch_batches(rows, lengths, 32, rng, bucket=True)
    plain = epoch_batches(rows, lengths, 32, rng, bucket=False)
    assert _spread(plain, lengths) > 100
    assert _spread(bucketed, lengths) < 10


def test_epoch_batches_bucketing_hand_example() -> None:
    lengths = np.array([3, 1, 2, 1, 3, 2])
    orders = set()
    for seed in range(10):
        batches = epoch_batches(np.arange(6), lengths, 2, np.random.default_rng(seed))
        # One window holds everything: each batch has equal lengths.
        assert sorted(sorted(lengths[b].tolist()) for b in batches) == [[1, 1], [2, 2], [3, 3]]
        orders.add(tuple(int(lengths[b[0]]) for b in batches))
    # The batches themselves are shuffled, not always served shortest first.
    assert len(orders) > 1


# ----------------------------------------------------------------------------------------------
# k-core filtering and id remapping
# ----------------------------------------------------------------------------------------------


def test_kcore_filter_reaches_a_fixpoint() -> None:
    # k = 2. Pass 1 drops user c (1 interaction). Then item z has 1 interaction (pass 2), then user
    # d is left with 1 interaction (pass 3). Items x and y keep 2 each.
    log = InteractionLog(
        users=obj(["a", "a", "b", "b", "c", "d", "d"]),
        items=obj(["x", "y", "x", "y", "z", "z", "y"]),
        timestamps=np.arange(7, dtype=np.float64),
        item_info=None,
        source="hand",
    )
    out = kcore_filter(log, 2)
    assert out.users.tolist() == ["a", "a", "b", "b"]
    assert out.items.tolist() == ["x", "y", "x", "y"]
    assert out.timestamps.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert kcore_filter(log, 1) is log
    with pytest.raises(DataFormatError, match="no interactions"):
        build_dataset(log, "hand", kcore=3)


def _log(items: list[str] | None = None) -> InteractionLog:
    info = pd.DataFrame({"title": ["A", "Z", "B", "A2"]}, index=["a", "zzz", "b", "a"])
    return InteractionLog(
        users=obj(["u9", "u3", "u9", "u7", "u3"]),
        items=obj(items or ["b", "a", "a", "c", "b"]),
        timestamps=np.array([10.0, 20.0, 30.0, 40.0, 50.0]),
        item_info=info,
        source="hand",
    )


def test_build_dataset_remaps_ids() -> None:
    data = build_dataset(_log(), "hand")
    assert data.name == "hand"
    assert data.user_ids.tolist() == ["u9", "u3", "u7"]
    assert data.item_ids.tolist() == ["", "b", "a", "c"]
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 3, 5)
    assert data.sequences.tolist() == [[1, 2], [2, 1], [3]]
    assert data.timestamps.tolist() == [10.0, 30.0, 20.0, 50.0, 40.0]
    # Original ids recoverable for every interaction.
    restored = [[data.item_ids[i] for i in data.sequences.row(u)] for u in range(data.n_users)]
    assert restored == [["b", "a"], ["a", "b"], ["c"]]
    assert data.item_index(["a", "c", "b"]).tolist() == [2, 3, 1]
    with pytest.raises(KeyError, match="'q'"):
        data.item_index(["a", "q"])
    with pytest.raises(KeyError):
        data.item_index([""])  # the padding slot is not an item


def test_build_dataset_item_info_aligned() -> None:
    info = build_dataset(_log(), "hand").item_info
    assert info.index.tolist() == [0, 1, 2, 3]
    titles = info["title"].tolist()
    assert pd.isna(titles[0])  # padding row
    assert titles[1] == "B" and titles[2] == "A"  # first of duplicated "a" rows wins
    assert pd.isna(titles[3])  # item "c" has no info; unused info row "zzz" dropped


def test_fingerprint() -> None:
    base = build_dataset(_log(), "hand").fingerprint()
    assert len(base) == 16
    assert build_dataset(_log(), "other name").fingerprint() == base
    # One interaction changes item (b -> c): same id maps, different sequences.
    assert build_dataset(_log(["b", "a", "a", "c", "c"]), "hand").fingerprint() != base
    # Same structure, one original id renamed.
    assert build_dataset(_log(["b", "a", "a", "d", "b"]), "hand").fingerprint() != base
