"""CITIES: what makes it CITIES (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_contract import TRAINER_SETTINGS, make_model, train_steps

from conftest import patterned_rows
from llmesr.config import RunConfig, apply_overrides, load_yaml
from llmesr.data.groups import item_popularity, pareto_cut
from llmesr.data.sequences import Sequences
from llmesr.models import CITIES, CITIESConfig, build_model, for_training, model_config

N_ITEMS = 20
BACKBONES = ["sasrec", "gru4rec", "bert4rec"]
NO_DROPOUT = {"dropout": 0.0, "attn_dropout": 0.0, "cities_dropout": 0.0}


def make_cities(
    backbone: str, n_items: int = N_ITEMS, seed: int = 0, train: Sequences | None = None, **settings
) -> CITIES:
    # Every item of the tiny data occurs more than 5 times: the Pareto cut gives it a tail.
    settings = {"cities_tail_threshold": 0, **settings}
    return make_model("cities", backbone, n_items, seed, train, **settings)


def trained(backbone: str = "sasrec", steps: int = 5, **settings) -> CITIES:
    """A model after a few joint steps and one ``end_epoch``, in eval mode."""
    model = make_cities(backbone, **settings)
    train_steps(model, model.train_histories, steps)
    model.end_epoch(0)
    return model.eval()


def test_tail_items_follow_training_popularity():
    rows = [[1, 2, 3]] * 6 + [[4, 5]] * 2 + [[6, 1]]
    train = Sequences.from_lists(rows)
    pop = item_popularity(train, 8)
    pareto = make_cities("sasrec", n_items=8, train=train).tail.numpy()  # threshold 0: Pareto
    np.testing.assert_array_equal(pareto[1:], pop[1:] < pareto_cut(pop[1:]))
    threshold = make_cities("sasrec", n_items=8, train=train, cities_tail_threshold=3).tail.numpy()
    assert threshold.tolist() == [False, False, False, False, True, True, True, True, True]


def test_default_tail_is_the_authors_items_seen_at_most_five_times():
    """The authors' code replaces items with count <= 5 (FREQ_LBOUND); the Pareto tail of a real
    catalogue holds 80% of the items, most of them well trained, and replacing those destroyed
    them (ML-100K, full ranking: tail-item NDCG@10 0.0000 against 0.0285 without replacement)."""
    assert CITIESConfig(n_items=5).cities_tail_threshold == 6
    rows = [[1, 2]] * 6 + [[3, 4]] * 5 + [[5, 1]]
    train = Sequences.from_lists(rows)
    torch.manual_seed(0)
    model = for_training(
        "cities", model_config("cities", {"n_items": 6, "max_len": 4, "hidden_size": 8}), train, None
    )
    assert model.tail.tolist() == [False, False, False, True, True, True, True]  # 6 unseen: tail, no row


@pytest.mark.parametrize("backbone", BACKBONES)
def test_only_tail_rows_are_replaced_and_only_at_inference(backbone):
    model = trained(backbone)
    trained_rows = model.backbone.item_emb.weight[: N_ITEMS + 1]
    tail = model.tail
    assert tail.any() and (~tail[1:]).any()
    changed = (model.item_table() != trained_rows).any(1)
    assert changed.tolist() == tail.tolist()  # every tail item occurs in training, no head row moves
    model.train()
    torch.testing.assert_close(model.item_table(), trained_rows, rtol=0, atol=0)
    # The inferred rows are the input embeddings too: a history of head items only is encoded as
    # by the backbone alone, one holding a tail item is not.
    model.eval()
    head = (~tail).nonzero().flatten()[1:3].tolist()  # [1:]: skip the padding row
    with torch.no_grad():
        for items, same in ((head, True), ([head[0], int(tail.nonzero()[0])], False)):
            seq = torch.tensor([items])
            ours, alone = model.hidden_states(seq), model.backbone.hidden_states(seq)
            assert torch.allclose(ours, alone) == same


def test_inference_function_learns_from_head_items_only():
    """Head items (1..6) and tail items (7..12) never share a history: if any tail occurrence were a
    target, moving the tail rows would change the inference loss."""
    rows = [[(s + k) % 6 + 1 for k in range(6)] for s in range(6)] * 3 + [[7, 8, 9, 10, 11, 12]]
    train = Sequences.from_lists(rows)
    settings = {"cities_tail_threshold": 4, "cities_samples": 10_000, "cities_dropout": 0.0}
    model = make_cities("sasrec", n_items=12, train=train, **settings)
    assert model.tail.nonzero().flatten().tolist() == [7, 8, 9, 10, 11, 12]
    batch = model.train_input(train, np.arange(len(rows)))

    def inference_loss() -> float:
        model.sampler.manual_seed(0)
        return model.inference_loss(batch).item()

    before = inference_loss()
    weight = model.backbone.item_emb.weight
    with torch.no_grad():
        weight[7:13] += 100.0
    assert inference_loss() == before
    with torch.no_grad():
        weight[1:7] += 1.0
    assert inference_loss() != before
    tail_only = model.train_input(train, np.array([len(rows) - 1]))
    assert model.inference_loss(tail_only).item() == 0.0


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_trains_exactly_as_it_does_alone(backbone):
    """The inference term reaches only f: parameter for parameter, the backbone's training is the
    plain backbone's (same init, same batches, same negatives)."""
    model = make_cities(backbone, loss="bce", **NO_DROPOUT)
    values = {k: v for k, v in model.config.to_dict().items() if k != "backbone"}
    alone = build_model(backbone, model_config(backbone, values))
    alone.load_state_dict(model.backbone.state_dict())
    f_before = [p.detach().clone() for p in model.infer.parameters()]
    train = model.train_histories
    train_steps(model, train, 4)
    train_steps(alone, train, 4)
    theirs = alone.state_dict()
    for name, ours in model.backbone.state_dict().items():
        torch.testing.assert_close(ours, theirs[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(f_before, model.infer.parameters(), strict=True))


def test_inferred_embeddings_of_held_out_items_match_the_table():
    """Items on a circle, histories walking it: an item's embedding is a function of its neighbours'.
    Trained on the other items only, f infers the two held-out ones from their contexts."""
    n, h = 24, 16
    train = Sequences.from_lists(patterned_rows(80, n, seed=1))
    model = make_cities("sasrec", n_items=n, train=train, hidden_size=h, cities_dropout=0.0)
    angle = 2 * math.pi * torch.arange(n + 1) / n
    table = torch.cat([torch.stack([(k * angle).cos(), (k * angle).sin()], 1) for k in range(1, 5)], 1)
    table = 0.5 * torch.cat([table, torch.zeros(n + 1, h - 8)], 1)
    table[0] = 0
    held_out = torch.tensor([5, 17])
    with torch.no_grad():
        model.backbone.item_emb.weight.copy_(table)
    model.tail.zero_()
    model.tail[held_out] = True
    optimizer = torch.optim.Adam(model.infer.parameters(), lr=3e-3)
    batch = model.train_input(train, np.arange(len(train)))
    losses = []
    for _ in range(300):
        loss = model.inference_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20
    model.end_epoch(0)
    assert model.replaced.nonzero().flatten().tolist() == held_out.tolist()
    inferred = model.inferred[held_out]
    assert (torch.nn.functional.cosine_similarity(inferred, table[held_out]) > 0.9).all()
    assert torch.cdist(inferred, table[1:]).argmin(1).add(1).tolist() == held_out.tolist()


def test_inferred_row_is_the_mean_over_all_training_contexts_within_each_history():
    """Item 9 occurs in two histories; its windows must stop at each history's ends (the flat
    training array runs on into the next user), and a one-item history is no context."""
    train = Sequences.from_lists([[1, 2, 9], [9, 3, 4], [5, 6, 7, 8], [10]])
    model = make_cities("sasrec", n_items=10, train=train, cities_tail_threshold=3, cities_context=2)
    model.eval()
    model.end_epoch(0)
    table = model.backbone.item_emb.weight.detach()
    with torch.no_grad():
        expected = model.infer(table, torch.tensor([[1, 2, 0, 0, 0], [0, 0, 0, 3, 4]])).mean(0)
    torch.testing.assert_close(model.inferred[9], expected)
    assert not model.replaced[10] and model.replaced[1:10].all()
    torch.testing.assert_close(model.item_table()[10], table[10], rtol=0, atol=0)


def test_checkpoint_round_trip_keeps_the_inferred_rows(tmp_path):
    model = trained("sasrec")
    state = model.state_dict()
    assert {"tail", "replaced", "inferred"} <= set(state)
    torch.save({"config": model.config.to_dict(), "state_dict": state}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    clone = build_model("cities", model_config("cities", saved["config"]))
    clone.load_state_dict(saved["state_dict"])
    clone.eval()
    seq = Sequences.from_lists([[1, 2, 3], [7, 8], [int(model.tail.nonzero()[0])]])
    inputs = model.eval_input(seq, np.arange(3))
    with torch.no_grad():
        ours = model.score_all(inputs)
        torch.testing.assert_close(clone.score_all(inputs), ours, rtol=0, atol=0)
        assert not torch.allclose(ours[:, 1:], model.backbone.score_all(inputs)[:, 1:])


def test_warmup_trains_the_backbone_alone_first():
    model = make_cities("sasrec", cities_warmup=2)
    model.train()
    batch = model.train_input(model.train_histories, np.arange(8))
    model.start_epoch(1)
    model.loss(batch).backward()
    assert all(p.grad is None for p in model.infer.parameters())
    model.end_epoch(1)
    assert not model.replaced.any()
    model.start_epoch(2)
    model.loss(batch).backward()
    assert all(p.grad is not None for p in model.infer.parameters())
    model.end_epoch(2)
    assert model.replaced.any()


def test_cosine_distance_puts_inferred_rows_on_the_head_rows_scale():
    model = trained("sasrec", cities_distance="cosine")
    head = model.backbone.item_emb.weight[1 : N_ITEMS + 1][~model.tail[1:]]
    norms = model.inferred[model.replaced].norm(dim=1)
    torch.testing.assert_close(norms, head.norm(dim=1).mean().expand_as(norms))


@pytest.mark.parametrize(
    "bad", [{"cities_distance": "l1"}, {"backbone": "llmesr"}, {"cities_context": 0}, {"cities_weight": -1.0}]
)
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        model_config("cities", {"n_items": 5, **bad})


def test_preset_builds_the_model():
    preset = Path(__file__).resolve().parents[2] / "configs" / "cities_sasrec_ce.yaml"
    cfg = apply_overrides(RunConfig(), load_yaml(preset), str(preset))
    mcfg = model_config(cfg.model, {"n_items": 10, **cfg.model_settings()})
    assert isinstance(mcfg, CITIESConfig) and mcfg.backbone == "sasrec" and mcfg.loss == "ce"
    assert (mcfg.max_len, mcfg.hidden_size, mcfg.dropout) == (50, 64, 0.5)


def test_trainer_run_writes_metrics_and_a_checkpoint_with_inferred_rows(patterned_dir, tmp_path):
    from llmesr.checkpoint import model_from_checkpoint
    from llmesr.runs import prepare_data
    from llmesr.training import Trainer

    values = {"data": str(patterned_dir), "model": "cities", **TRAINER_SETTINGS, "loss": "ce"}
    values["cities_tail_threshold"] = 0  # the tiny data has no item seen <= 5 times: Pareto
    cfg = apply_overrides(RunConfig(), values, "test")
    metrics = Trainer(cfg, prepare_data(cfg), tmp_path / "run").fit()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert np.isfinite(saved["test"]["full"]["overall"]["NDCG@10"])
    model = model_from_checkpoint(tmp_path / "run" / "best.pt")
    assert isinstance(model, CITIES) and model.replaced.any()
