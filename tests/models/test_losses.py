"""The losses table: one function per name, whether it needs negatives, unknown names refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmesr.models import model_config
from llmesr.models.losses import LOSSES, get_loss, ranking_loss


def test_the_table_says_which_losses_need_sampled_negatives():
    assert {name: loss.sampled for name, loss in LOSSES.items()} == {
        "bce": True,
        "ce": False,
        "sampled_ce": True,
    }


def test_unknown_loss_is_rejected_listing_the_supported_ones():
    with pytest.raises(ValueError, match="unknown loss 'hinge': choose one of bce, ce, sampled_ce"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model_config("sasrec", {"n_items": 5, "loss": "hinge"})
    with pytest.raises(ValueError, match="needs sampled negatives"):
        ranking_loss(torch.zeros(2, 3), torch.tensor([1, 2]), lambda ids: torch.zeros(3, 3), None, "bce")


def test_losses_match_their_formulas():
    torch.manual_seed(0)
    table = torch.randn(6, 4)  # rows 1..5 are items
    bias = torch.randn(6)
    queries, targets, negs = (
        torch.randn(3, 4),
        torch.tensor([1, 4, 2]),
        torch.tensor([[3, 5], [2, 1], [4, 5]]),
    )

    def vectors(ids):
        return table[1:] if ids is None else table[ids]

    pos = (queries * table[targets]).sum(-1) + bias[targets]
    neg = torch.einsum("md,mnd->mn", queries, table[negs]) + bias[negs]
    expected = {
        "ce": F.cross_entropy(queries @ table[1:].T + bias[1:], targets - 1),
        "bce": (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean(),
        "sampled_ce": F.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(3, dtype=torch.long)),
    }
    for name, value in expected.items():
        got = ranking_loss(queries, targets, vectors, bias, name, None if name == "ce" else negs)
        torch.testing.assert_close(got, value)
