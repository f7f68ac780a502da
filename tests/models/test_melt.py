"""MELT: what makes it MELT (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_contract import TRAINER_SETTINGS, make_model, train_steps

from conftest import patterned_rows
from llmesr.config import RunConfig, apply_overrides
from llmesr.data.groups import item_popularity
from llmesr.data.sequences import Sequences
from llmesr.models import MELT, build_model, model_config
from llmesr.models.melt import ItemContexts, curriculum_weight
from llmesr.runs import prepare_data
from llmesr.training import Trainer

N_ITEMS = 20
MAX_LEN = 12
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]


def make_melt(backbone: str, n_items: int = N_ITEMS, seed: int = 0, rows=None, **settings) -> MELT:
    train = Sequences.from_lists(rows if rows is not None else patterned_rows(60, n_items))
    return make_model("melt", backbone, n_items, seed, train, max_len=MAX_LEN, **settings)


def skewed_rows(seed: int = 0) -> list[list[int]]:
    """Zipf-like popularity over items 1..18 (19 and 20 never occur: tail items without contexts),
    lengths 2..14 so that head users exist on both sides of ``max_len``."""
    rng = np.random.default_rng(seed)
    probs = 1.0 / np.arange(1, 19)
    probs /= probs.sum()
    return [list(rng.choice(18, size=int(rng.integers(2, 15)), p=probs) + 1) for _ in range(50)]


def reference_contexts(rows: list[list[int]], item: int, max_len: int) -> list[list[int]]:
    """C_i written out plainly: per occurrence, the history up to it and the rest read backwards."""
    out = []
    for row in rows:
        for p, x in enumerate(row):
            if x == item:
                out.append(row[max(0, p - max_len + 1) : p + 1])
                if len(row) > 1:
                    out.append(list(reversed(row[p : p + max_len])))
    return out


def test_contexts_are_the_authors_item_contexts():
    rows = skewed_rows()
    contexts = ItemContexts.build(Sequences.from_lists(rows), N_ITEMS, 5)
    for item in (1, 7, 18, 19):
        ids, _ = contexts.of(np.array([item]))
        got = sorted(contexts.sequences(ids).tolist())
        assert got == sorted(reference_contexts(rows, item, 5)), item


def test_head_tail_follow_pareto_or_the_thresholds():
    rows = skewed_rows()
    train = Sequences.from_lists(rows)
    pop = item_popularity(train, N_ITEMS)
    model = make_melt("sasrec", rows=rows)
    assert model.head_users.tolist() == np.flatnonzero(train.lengths >= float(model.tail_user_cut)).tolist()
    assert len(model.head_users) <= 0.2 * len(rows)
    set_by_hand = make_melt("sasrec", rows=rows, melt_tail_user_threshold=6, melt_tail_item_threshold=10)
    assert float(set_by_hand.tail_user_cut) == 6.0
    expected = pop < 10
    expected[0] = False
    assert set_by_hand.tail_items.tolist() == expected.tolist()


# (1) the user branch changes only tail users' representations
@pytest.mark.parametrize("backbone", BACKBONES)
def test_user_branch_enhances_only_tail_length_histories(backbone):
    model = make_melt(backbone).eval()
    with torch.no_grad():
        model.user_transfer.weight.normal_(std=0.3)  # make W_U's effect visible
    cut = int(model.tail_user_cut)
    # an unseen user is tail or head by the length of what is scored, not by the training data
    rows = [list(range(1, cut)), list(range(1, cut + 1)), list(range(2, cut + 2)), [5]]
    seq = model.eval_input(Sequences.from_lists(rows), np.arange(len(rows)))
    head = torch.tensor([False, True, True, False])
    with torch.no_grad():
        ours, plain = model.user_vectors(seq), model.backbone.user_vectors(seq)
        scores, plain_scores = model.score_all(seq), model.backbone.score_all(seq)
        torch.testing.assert_close(ours[~head], model.enhance(plain[~head]))
    assert torch.equal(ours[head], plain[head]) and torch.equal(scores[head], plain_scores[head])
    assert not torch.allclose(scores[~head], plain_scores[~head])


# (2) the item branch changes only tail-item rows, to W_I of the mean enhanced context
@pytest.mark.parametrize("backbone", BACKBONES)
def test_rebuild_sets_exactly_the_tail_item_rows(backbone):
    rows = skewed_rows()
    model = make_melt(backbone, rows=rows)
    with torch.no_grad():
        model.item_transfer.weight.normal_(std=0.05)  # a W_I that has learned something
    tail = model.tail_items.numpy()
    has_contexts = item_popularity(Sequences.from_lists(rows), N_ITEMS) > 0
    assert (tail & has_contexts).any() and (tail & ~has_contexts).any()
    model.eval()
    with torch.no_grad():
        expected = {
            i: model.item_transfer(
                model.enhance(
                    model.represent(Sequences.from_lists(reference_contexts(rows, i, MAX_LEN)))
                ).mean(0)
            )
            for i in np.flatnonzero(tail & has_contexts)
        }
    before = model.item_table().detach().clone()
    others = {k: v.clone() for k, v in model.state_dict().items() if "item_emb" not in k}
    model.train()
    model.start_epoch(1)  # the start of every branch epoch but the first
    assert model.training  # the mode is restored
    after = model.item_table().detach()
    changed = (before != after).any(1).numpy()
    assert changed.tolist() == (tail & has_contexts).tolist()
    for i, row in expected.items():
        torch.testing.assert_close(after[i], row, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in others.items())


def test_tail_rows_are_rebuilt_before_an_epoch_once_w_i_has_trained():
    """As the authors, the rebuild comes before an epoch's updates (so the validated model's tail rows
    have had an epoch of backbone training), never with an untrained W_I, never after the updates."""
    rows = skewed_rows()
    model = make_melt("sasrec", rows=rows, melt_warmup_epochs=1)
    with torch.no_grad():
        model.item_transfer.weight.normal_(std=0.05)
    tail = model.tail_items & torch.as_tensor(item_popularity(Sequences.from_lists(rows), N_ITEMS) > 0)
    table = model.backbone.item_emb.weight

    def rebuilt_at(hook, epoch) -> bool:
        before = table.detach().clone()
        hook(epoch)
        return not torch.equal(before[tail], table.detach()[tail])

    assert not rebuilt_at(model.start_epoch, 0)  # warm-up: the plain backbone
    assert not rebuilt_at(model.start_epoch, 1)  # first branch epoch: W_I has not trained yet
    assert not rebuilt_at(model.end_epoch, 1)
    assert rebuilt_at(model.start_epoch, 2)


def test_untrained_item_transfer_writes_no_oversized_rows():
    """W_I reads layer-normed states (norm ~sqrt(d)); xavier-initialised it wrote tail rows ~40x the
    table's norm (6.8 against 0.16 on ML-100K), so tail items topped every ranking (validation
    NDCG@10 0.001). Starting at zero, a rebuild can only bring rows W_I has learned."""
    rows = skewed_rows()
    model = make_melt("sasrec", rows=rows)
    rebuilt = model.tail_items & torch.as_tensor(item_popularity(Sequences.from_lists(rows), N_ITEMS) > 0)
    head = ~model.tail_items
    head[0] = False
    model.rebuild_tail_items()
    table = model.backbone.item_emb.weight.detach()
    assert rebuilt.any() and table[rebuilt].norm(dim=1).max() <= table[head].norm(dim=1).mean()


# (3) the curriculum weight follows its schedule over epochs
def test_curriculum_weight_follows_the_schedule():
    x = torch.tensor([0.0, 0.5, 1.0])
    s = math.sqrt(0.5)
    torch.testing.assert_close(curriculum_weight(x, 0, 100), torch.tensor([0.0, s, 1.0]))
    torch.testing.assert_close(curriculum_weight(x, 50, 100), torch.tensor([s, 1.0, s]))
    torch.testing.assert_close(curriculum_weight(x, 100, 100), torch.tensor([1.0, s, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(curriculum_weight(x, 250, 100), curriculum_weight(x, 100, 100))
    over = torch.stack([curriculum_weight(x, e, 100) for e in range(0, 101, 10)])
    assert (over[1:, 0] >= over[:-1, 0]).all() and (over[1:, 2] <= over[:-1, 2]).all()


def test_branch_losses_use_the_epoch_after_warmup():
    rows = skewed_rows()
    model = make_melt(
        "sasrec", rows=rows, melt_curriculum_epochs=10, melt_warmup_epochs=2, melt_tail_user_threshold=8
    )
    lengths = model.train_histories.lengths
    at_cut = np.flatnonzero(lengths == int(model.tail_user_cut))
    assert len(at_cut) and int(model.tail_user_cut) < MAX_LEN
    batch = model.train_input(model.train_histories, np.arange(8))

    def losses(epoch):
        model.start_epoch(epoch)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        total = model.loss(batch, gen)
        torch.manual_seed(0)
        plain = model.backbone.loss(batch, torch.Generator().manual_seed(0))
        return total, plain, model.user_branch_loss(at_cut, gen)

    total, plain, _ = losses(1)  # warm-up: the plain backbone
    assert torch.equal(total, plain)
    total, plain, at_cut_loss = losses(2)  # curriculum epoch 0: users at the cut weigh nothing
    assert total > plain and at_cut_loss.item() == 0.0
    assert losses(12)[2].item() > 0  # curriculum end: they weigh most


# (4) the user-branch module learns from head users only
@pytest.mark.parametrize("backbone", BACKBONES)
def test_user_branch_is_trained_from_head_users_only(backbone):
    rng = np.random.default_rng(0)
    heads = [list(rng.integers(1, 11, size=12)) for _ in range(10)]  # items 1..10 only
    tails = [list(rng.integers(11, 19, size=int(rng.integers(2, 4)))) for _ in range(40)]  # 11..18
    model = make_melt(backbone, rows=heads + tails)
    assert model.head_users.tolist() == list(range(10))
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):  # two passes over the head users
        drawn = model.next_heads("user", 0.5, gen)
        assert set(drawn.tolist()) <= set(range(10))
        model.user_branch_loss(drawn, gen).backward()
    grad = model.backbone.item_emb.weight.grad
    assert grad[1:11].abs().sum() > 0  # head users' items moved ...
    assert torch.equal(grad[11:19], torch.zeros_like(grad[11:19]))  # ... tail users' never did
    assert model.user_transfer.weight.grad.abs().sum() > 0
    # The item branch reads contexts from every user, tail users included: it must not train W_U.
    model.zero_grad()
    model.item_branch_loss(model.next_heads("item", 1.0, gen), gen).backward()
    assert model.user_transfer.weight.grad is None or not model.user_transfer.weight.grad.any()
    assert model.item_transfer.weight.grad.abs().sum() > 0


# (5) a model rebuilt from its checkpoint scores identically
@pytest.mark.parametrize("backbone", BACKBONES)
def test_checkpoint_round_trip_scores_identically(backbone, tmp_path):
    rows = skewed_rows()
    model = make_melt(backbone, rows=rows)
    train_steps(model, Sequences.from_lists(rows), 3)
    model.end_epoch(0)
    model.eval()
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    clone = build_model("melt", model_config("melt", saved["config"]))
    clone.load_state_dict(saved["state_dict"])
    clone.eval()
    assert clone.train_histories is None  # everything it scores with came from the state_dict
    history = Sequences.from_lists([[1], [2, 3], rows[0], list(range(1, 15)), [19, 20, 4]])
    seq = model.eval_input(history, np.arange(len(history)))
    with torch.no_grad():
        assert torch.equal(model.score_all(seq), clone.score_all(seq))


# (6) end to end through the trainer
def test_trainer_runs_melt_end_to_end(patterned_dir, tmp_path):
    values = {
        "data": str(patterned_dir),
        "model": "melt",
        "backbone": "sasrec",
        **TRAINER_SETTINGS,
        "melt_curriculum_epochs": 2,
    }
    cfg = apply_overrides(RunConfig(), values, "test")
    Trainer(cfg, prepare_data(cfg), tmp_path / "run").fit()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "melt" and metrics["epochs_trained"] == 2
    assert set(metrics["test"]["full"]["groups"]) == {"tail_user", "head_user", "tail_item", "head_item"}
