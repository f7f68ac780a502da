"""BERT4Rec: what makes it BERT4Rec (its contract is generated in test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_contract import N_ITEMS, make_model

from conftest import patterned_rows
from llmesr.data.sequences import Sequences
from llmesr.models.bert4rec import mask_items


def test_mask_token_is_appended_and_never_scored():
    model = make_model("bert4rec").eval()
    seq = model.eval_input(Sequences.from_lists([[1, 2, 3]]), np.array([0]))
    assert seq[0, -1].item() == N_ITEMS + 1 and seq[0, :-1].tolist() == [1, 2, 3]
    assert model.score_all(seq).shape[1] == N_ITEMS + 1  # the mask row is not a candidate


def test_masking_rate_and_at_least_one_mask():
    seq = torch.randint(1, 20, (400, 10))
    seq[:, :3] = 0
    inputs, labels = mask_items(seq, 0.3, 99, torch.Generator().manual_seed(0))
    masked = inputs == 99
    assert not masked[:, :3].any()  # padding is never masked
    assert masked.any(1).all()
    assert abs(masked[:, 3:].float().mean().item() - 0.3) < 0.03
    assert (labels[masked] == seq[masked]).all() and (labels[~masked] == 0).all()


def test_user_input_of_a_training_batch_is_the_eval_input_of_the_training_history():
    """What wrappers encode as a batch's users: the unmasked prefix + mask token, i.e. exactly what
    ``eval_input`` gives for the same training histories (also when rows exceed ``max_len``)."""
    model = make_model("bert4rec", max_len=6)
    train = Sequences.from_lists(patterned_rows(30, N_ITEMS))
    rows = np.arange(30)
    expected = model.eval_input(train, rows)
    assert torch.equal(model.user_input(model.train_input(train, rows)), expected)


def test_objective_trains_on_masked_items_and_encodes_users_only_when_asked():
    model = make_model("bert4rec").eval()
    batch = model.train_input(Sequences.from_lists(patterned_rows(8, N_ITEMS)), np.arange(8))
    loss, users = model.objective(model, batch, torch.Generator().manual_seed(0))
    assert users is None and torch.equal(loss, model.loss(batch, torch.Generator().manual_seed(0)))
    _, users = model.objective(model, batch, torch.Generator().manual_seed(0), want_user=True)
    torch.testing.assert_close(users, model.user_vectors(model.user_input(batch)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="masked-item"):
        model.objective(model, batch, None, hidden=torch.zeros(8, batch.shape[1], 32))
