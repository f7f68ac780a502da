"""SASRec: what makes it SASRec (its contract is generated in test_contract.py)."""

from __future__ import annotations

import torch
from test_contract import make_model


def test_non_causal_switch_leaks_the_future():
    """``causal=False`` (the authors' code) lets earlier positions see later items."""
    model = make_model("sasrec", causal=False).eval()
    with torch.no_grad():
        ha = model.hidden_states(torch.tensor([[1, 2, 3, 4]]))
        hb = model.hidden_states(torch.tensor([[1, 2, 3, 9]]))
    assert not torch.allclose(ha[:, :3], hb[:, :3])


def test_objective_is_next_item_prediction_whose_users_are_the_last_column():
    model = make_model("sasrec", loss="ce").eval()
    batch = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    loss, users = model.objective(model, batch)
    hidden = model.hidden_states(batch[:, :-1])
    logits = hidden.flatten(0, 1)[batch[:, :-1].flatten() > 0] @ model.item_table()[1:].T
    expected = torch.nn.functional.cross_entropy(
        logits, batch[:, 1:].flatten()[batch[:, :-1].flatten() > 0] - 1
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(users, model.user_vectors(batch[:, :-1]), rtol=0, atol=0)
