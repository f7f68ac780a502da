"""EnsRec and its text member: what makes them themselves (their contracts on every backbone are
generated in test_contract.py). Ensembles of finished runs and their bundles: tests/test_ensrec_runs.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_contract import N_ITEMS, make_model, scores_of, synthetic_artifacts

from conftest import patterned_rows
from llmesr.checkpoint import CheckpointError, load_member, save_checkpoint
from llmesr.data.sequences import Sequences
from llmesr.evaluation import pessimistic_rank
from llmesr.models import EnsRec, TextRec, build_backbone, model_config
from llmesr.models.ensrec import fuse_scores

HISTORIES = [[1, 2, 3], [7, 8], [4, 9, 12, 13, 14]]


def fused_in_numpy(s_id: np.ndarray, s_text: np.ndarray, alpha: float, tau: float) -> np.ndarray:
    """The paper's fused score, directly: alpha exp(s_id / tau) + (1 - alpha) exp(s_text / tau)."""
    s_id, s_text = s_id.astype(np.float64), s_text.astype(np.float64)
    return alpha * np.exp(s_id / tau) + (1 - alpha) * np.exp(s_text / tau)


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("alpha, tau", [(0.5, 100.0), (0.3, 0.5)])
def test_scores_are_the_stated_function_of_the_members_scores(backbone, alpha, tau):
    """tau * log of the fused score (so exp(score / tau) is it), member scores from each member's own
    score_all; tau = 0.5 makes exp far from linear (and would overflow float32 for scores > 44)."""
    model = make_model("ensrec", backbone, ensrec_alpha=alpha, ensrec_tau=tau).eval()
    id_member, text_member = model.members()
    s_id, s_text = scores_of(id_member, HISTORIES).numpy(), scores_of(text_member, HISTORIES).numpy()
    scores = scores_of(model, HISTORIES).numpy()
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()
    expected = fused_in_numpy(s_id[:, 1:], s_text[:, 1:], alpha, tau)
    np.testing.assert_allclose(np.exp(scores[:, 1:].astype(np.float64) / tau), expected, rtol=1e-5)
    assert not np.allclose(s_id, s_text)  # two different members really are fused
    for row, f in zip(scores[:, 1:], expected, strict=True):  # the same ranking as the fused score
        np.testing.assert_array_equal(np.argsort(-row, kind="stable"), np.argsort(-f, kind="stable"))


def test_fusion_is_stable_keeps_minus_inf_and_reduces_to_one_member():
    s_id = torch.tensor([[float("-inf"), 5000.0, 1.0, float("-inf")]])
    s_text = torch.tensor([[float("-inf"), 4990.0, float("-inf"), 2.0]])
    fused = fuse_scores(s_id, s_text, 0.5, 1.0)  # exp(5000) overflows even float64
    assert torch.isneginf(fused[0, 0]) and torch.isfinite(fused[0, 1:]).all()
    expected = 5000.0 + np.log(0.5 + 0.5 * np.exp(-10.0))
    torch.testing.assert_close(fused[0, 1], torch.tensor(expected, dtype=torch.float32), rtol=0, atol=1e-3)
    torch.testing.assert_close(fused[0, 2:], torch.tensor([1.0, 2.0]) + float(np.log(0.5)))
    scores = torch.randn(3, 7) * 10
    other = torch.randn(3, 7) * 10
    torch.testing.assert_close(fuse_scores(scores, other, 1.0, 100.0), scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(fuse_scores(scores, other, 0.0, 100.0), other, rtol=0, atol=1e-5)
    assert fuse_scores(scores, other, 0.5, 100.0).dtype == torch.float32


def test_items_equal_in_both_members_tie_and_rank_pessimistically():
    """Items 3 and 5 with the same rows in both members get bitwise-equal fused scores, and the
    evaluation's pessimistic rank counts the other one ahead of each."""
    model = make_model("ensrec", "sasrec").eval()
    with torch.no_grad():
        model.backbone.item_emb.weight[5] = model.backbone.item_emb.weight[3]
        model.text.text_table[5] = model.text.text_table[3]
    scores = scores_of(model, HISTORIES)
    assert torch.equal(scores[:, 3], scores[:, 5])
    f = fused_in_numpy(*(scores_of(m, HISTORIES).numpy()[:, 1:] for m in model.members()), 0.5, 100.0)
    expected = (f >= f[:, [2]]).sum(1) - 1  # column 2 of the real items is item 3
    np.testing.assert_array_equal(pessimistic_rank(scores, scores[:, 3]).numpy(), expected)
    assert (expected >= 1).all()  # item 5 is counted ahead of item 3


def test_the_loss_is_the_sum_of_the_members_own_and_their_gradients_are_their_own():
    """Training 'together' is training each member on its own loss: the ensemble's gradient of each
    member's parameters is that member's own loss gradient (full softmax, no dropout: no random draws)."""
    model = make_model("ensrec", "gru4rec", dropout=0.0)
    train = Sequences.from_lists(patterned_rows(20, N_ITEMS))
    batch = model.train_input(train, np.arange(len(train)))
    model.loss(batch).backward()
    together = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total = 0.0
    for name, member in (("backbone", model.backbone), ("text", model.text)):
        loss = member.loss(batch)
        loss.backward()
        total += loss.item()
        for n, p in member.named_parameters():
            torch.testing.assert_close(p.grad, together[f"{name}.{n}"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.tensor(model.loss(batch).item()), torch.tensor(total))


def test_text_member_items_are_a_linear_map_of_the_frozen_text_table():
    model = make_model("textrec", "sasrec")
    text = torch.from_numpy(synthetic_artifacts(hidden=32).item_embeddings)
    table = model.item_table()
    torch.testing.assert_close(table[1:], model.proj(text[1:]))
    assert torch.equal(table[0], torch.zeros_like(table[0]))
    assert not model.text_table.requires_grad and "text_table" in model.state_dict()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"ensrec_alpha": 1.5}, "ensrec_alpha must be in"),
        ({"ensrec_tau": 0.0}, "ensrec_tau must be a finite number > 0"),
        ({"ensrec_id_run": "runs/a"}, "give both"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        model_config("ensrec", {"n_items": 5, **settings})


def test_a_member_checkpoint_must_fit_the_member(tmp_path):
    """Class, settings and fixed inputs (the text table) of a finished member run are all checked."""
    trained = make_model("textrec", "sasrec")  # the same synthetic text table as the members below
    with torch.no_grad():
        trained.proj.weight.add_(1.0)  # weights the member does not start with
    path = tmp_path / "best.pt"
    meta = {"model_config": trained.config.to_dict(), "dataset": {"name": "d", "fingerprint": "f"}}
    save_checkpoint(path, model_name="textrec", state_dict=trained.state_dict(), **meta)
    member = make_model("ensrec", "sasrec").text
    load_member(member, path, "f", "ensrec_text_run")
    torch.testing.assert_close(member.proj.weight, trained.proj.weight, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="ensrec_id_run: .* trained textrec; this member is a SASRec"):
        load_member(make_model("ensrec", "sasrec").backbone, path, "f", "ensrec_id_run")
    wider = make_model("ensrec", "sasrec", hidden_size=16).text
    with pytest.raises(CheckpointError, match="other settings \\(hidden_size 32, here 16\\)"):
        load_member(wider, path, "f", "ensrec_text_run")
    config = model_config("ensrec", {**trained.config.to_dict(), "backbone": "sasrec"})
    other_text = synthetic_artifacts(hidden=32, seed=5).item_embeddings
    with pytest.raises(CheckpointError, match="other fixed inputs \\(text_table\\)"):
        load_member(EnsRec(config, other_text, build_backbone=build_backbone).text, path, "f", "x")
    with pytest.raises(CheckpointError, match="x: .*not the dataset given"):
        load_member(member, path, "another", "x")
    assert isinstance(member, TextRec)
