"""LLM-ESR: what makes it LLM-ESR (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_contract import BASE_SETTINGS

from conftest import patterned_rows
from llmesr.data.sequences import Sequences
from llmesr.models import LLMESR, build_backbone, model_config

N_ITEMS, SEM_DIM = 20, 24


def tables(seed: int = 0, n_items: int = N_ITEMS):
    rng = np.random.default_rng(seed)
    sem = rng.normal(size=(n_items + 1, SEM_DIM)).astype(np.float32)
    sem[0] = 0
    pca = (rng.normal(size=(n_items + 1, 32)) * 0.05).astype(np.float32)
    pca[0] = 0
    return sem, pca


def make_llmesr(backbone: str, n_items: int = N_ITEMS, seed: int = 0, **settings) -> LLMESR:
    torch.manual_seed(seed)
    values = {"n_items": n_items, **BASE_SETTINGS, "backbone": backbone, "semantic_dim": SEM_DIM, **settings}
    sem, pca = tables(seed, n_items)
    return LLMESR(model_config("llmesr", values), sem, pca, build_backbone=build_backbone)


def test_id_table_starts_as_the_pca_table_and_semantic_table_is_frozen():
    model = make_llmesr("sasrec")
    sem, pca = tables()
    torch.testing.assert_close(model.item_emb.weight.detach(), torch.from_numpy(pca))
    assert not model.semantic.requires_grad
    model.loss(torch.tensor([[1, 2, 3, 4]]), torch.Generator().manual_seed(0)).backward()
    assert model.semantic.grad is None and model.adapter[0].weight.grad is not None
    assert make_llmesr("sasrec", freeze_semantic=False).semantic.requires_grad
    random_init = make_llmesr("sasrec", id_init="random").item_emb.weight.detach()
    assert not torch.allclose(random_init, torch.from_numpy(pca))


@pytest.mark.parametrize(
    ("settings", "width"),
    [
        ({}, 64),
        ({"use_semantic": False}, 32),
        ({"use_collaborative": False}, 32),
        ({"adapter_layers": 1}, 64),
    ],
)
def test_views_set_the_width_of_users_and_items(settings, width):
    model = make_llmesr("sasrec", **settings).eval()
    seq = Sequences.from_lists([[1, 2, 3]])
    assert model.user_vectors(model.eval_input(seq, np.array([0]))).shape == (1, width)
    assert model.item_table().shape == (N_ITEMS + 1, width)


def test_logit_fusion_is_the_sum_of_the_two_views():
    model = make_llmesr("sasrec").eval()
    seq = model.eval_input(Sequences.from_lists([[1, 2, 3]]), np.array([0]))
    u = model.user_vectors(seq)
    h_id, h_sem = u[:, :32], u[:, 32:]
    expected = (
        h_id @ model.item_emb.weight[: N_ITEMS + 1].T + h_sem @ model.adapter(model.semantic[: N_ITEMS + 1]).T
    )
    torch.testing.assert_close(model.score_all(seq)[:, 1:], expected[:, 1:])


def test_shared_encoder_switch():
    shared, separate = make_llmesr("sasrec"), make_llmesr("sasrec", shared_encoder=False)
    assert shared.sem_backbone is shared.backbone and separate.sem_backbone is not separate.backbone
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) > count(shared)


def test_without_cross_attention_its_weights_get_no_gradient():
    model = make_llmesr("sasrec", cross_attention=False)
    model.loss(torch.tensor([[1, 2, 3, 4]]), torch.Generator().manual_seed(0)).backward()
    assert model.cross_id.q.weight.grad is None
    with_cross = make_llmesr("sasrec")
    with_cross.loss(torch.tensor([[1, 2, 3, 4]]), torch.Generator().manual_seed(0)).backward()
    assert with_cross.cross_id.q.weight.grad is not None


def distill_model(**settings):
    model = make_llmesr("sasrec", distill_users=3, dropout=0.0, attn_dropout=0.0, **settings)
    train = Sequences.from_lists(patterned_rows(8, N_ITEMS))
    similar = np.array([[(u + 1) % 8, (u + 2) % 8, (u + 3) % 8, (u + 4) % 8] for u in range(8)])
    model.set_retrieval(similar, train)
    return model, train


def test_teacher_is_the_mean_of_the_first_n_similar_users():
    model, _ = distill_model()
    model.start_epoch(0)
    model.eval()
    with torch.no_grad():
        manual = torch.stack(
            [model.user_repr(np.array([(u + 1) % 8, (u + 2) % 8, (u + 3) % 8])).mean(0) for u in range(8)]
        )
        torch.testing.assert_close(model.teacher(np.arange(8)), manual, rtol=1e-5, atol=1e-6)
        exact, _ = distill_model(teacher="exact")
        exact.eval()
        torch.testing.assert_close(exact.teacher(np.arange(8)), manual, rtol=1e-5, atol=1e-6)


def test_distillation_adds_alpha_times_mse_and_never_trains_the_teacher():
    model, train = distill_model(distill_weight=0.5)
    model.start_epoch(0)
    model.eval()
    batch = model.train_input(train, np.arange(8))
    users = np.arange(8)
    rec = model.loss(batch, torch.Generator().manual_seed(1))
    total = model.loss(batch, torch.Generator().manual_seed(1), users=users)
    # The student is the last input column of the same forward pass: the history up to the item
    # the last training target follows.
    student = model.user_vectors(batch[:, :-1])
    mse = torch.nn.functional.mse_loss(student, model.teacher(users))
    torch.testing.assert_close(total, rec + 0.5 * mse)
    total.backward()
    assert model.teacher_table.grad is None and not model.teacher_table.requires_grad
    off, _ = distill_model(distill_weight=0.0)
    off.eval()
    torch.testing.assert_close(
        off.loss(batch, torch.Generator().manual_seed(1), users=users),
        off.loss(batch, torch.Generator().manual_seed(1)),
    )


def test_cached_teacher_is_refreshed_on_schedule():
    model, train = distill_model(teacher_refresh=2)
    model.start_epoch(0)
    first = model.teacher_table.clone()
    with torch.no_grad():
        model.item_emb.weight.add_(0.5)
    model.start_epoch(1)
    assert torch.equal(model.teacher_table, first)
    model.start_epoch(2)
    assert not torch.equal(model.teacher_table, first)


def test_contrastive_distillation_variant_trains():
    model, train = distill_model(distill_loss="contrastive")
    model.start_epoch(0)
    loss = model.loss(
        model.train_input(train, np.arange(8)), torch.Generator().manual_seed(0), users=np.arange(8)
    )
    loss.backward()
    assert torch.isfinite(loss)


def test_folded_adapter_equals_the_layers_applied_in_turn_and_trains_both():
    model = make_llmesr("sasrec")
    x = torch.randn(7, model.config.semantic_dim)
    stepwise = model.adapter[1](model.adapter[0](x))
    torch.testing.assert_close(model.adapter(x), stepwise, rtol=1e-5, atol=1e-6)
    model.adapter(x).sum().backward()
    assert model.adapter[0].weight.grad is not None and model.adapter[1].bias.grad is not None
