"""ESR-Fuse: its score is the stated function of its members' scores (standardised per user over
the catalogue, then weighted), from two finished runs that keep their own settings, and a bundle
of it serves what the run ranks. Its contract on every backbone is generated in
tests/models/test_contract.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from models.test_contract import make_model, scores_of

from conftest import patterned_rows, write_sequences_dir
from llmesr.checkpoint import model_from_checkpoint
from llmesr.cli import main
from llmesr.evaluation import top_k
from llmesr.runs import RunFolder, prepare_data
from llmesr.serving import Bundle

HISTORIES = [[1, 2, 3], [7, 8], [4, 9, 12, 13, 14]]
FAST = {"max_len": 10, "hidden_size": 16, "batch_size": 16, "progress": "false", "loss": "ce", "lr": 0.01}
FAST |= {"threads": 1, "sampled_negatives": 5}


def fused_in_numpy(esr: np.ndarray, init: np.ndarray, weight: float) -> np.ndarray:
    """The fusion written out: each member's scores over items 1..N standardised per user
    (population sd), the LLM-ESR member weighted ``weight`` and LLMInit ``1 - weight``."""

    def z(s: np.ndarray) -> np.ndarray:
        s = s[:, 1:].astype(np.float64)
        return (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True)

    return weight * z(esr) + (1 - weight) * z(init)


@pytest.mark.parametrize("weight", [0.5, 0.8])
def test_scores_are_the_weighted_sum_of_the_members_standardised_scores(weight):
    model = make_model("esrfuse", "sasrec", fusion_weight=weight).eval()
    esr, init = (scores_of(m, HISTORIES).numpy() for m in model.members())
    scores = scores_of(model, HISTORIES).numpy()
    assert np.isneginf(scores[:, 0]).all()
    np.testing.assert_allclose(scores[:, 1:], fused_in_numpy(esr, init, weight), rtol=1e-4, atol=1e-4)
    assert not np.allclose(esr, init)  # two different members really are fused


def test_weight_one_ranks_as_the_llmesr_member_alone():
    model = make_model("esrfuse", "gru4rec", fusion_weight=1.0).eval()
    alone = scores_of(model.esr, HISTORIES)
    fused = scores_of(model, HISTORIES)
    assert torch.equal(fused[:, 1:].argsort(dim=1, stable=True), alone[:, 1:].argsort(dim=1, stable=True))


def train(root, model: str, out: str, epochs: int, *extra: str) -> int:
    sets = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    sets += ["--set", f"cache_dir={root / 'cache'}"]
    args = ["train", "--data", str(root / "data"), "--model", model, "--out", str(root / out)]
    return main([*args, "--epochs", str(epochs), *sets, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An LLM-ESR run and an LLMInit run with settings of their own (as two tunes would leave
    them), fused by an ESR-Fuse run with other settings, and its bundle."""
    root = tmp_path_factory.mktemp("esrfuse")
    write_sequences_dir(root / "data", patterned_rows(60, 20))
    own = ["--set", "dropout=0.2", "--set", "distill_weight=0.3", "--set", "adapter_layers=1"]
    assert train(root, "llmesr", "esr", 2, *own) == 0
    assert train(root, "llminit", "init", 2, "--set", "dropout=0.1") == 0
    members = ["--set", f"fusion_esr_run={root / 'esr'}", "--set", f"fusion_init_run={root / 'init'}"]
    assert train(root, "esrfuse", "fused", 3, *members, "--set", "fusion_weight=0.7") == 0
    assert main(["export", str(root / "fused"), "--out", str(root / "bundle")]) == 0
    return root


def test_a_fusion_of_finished_runs_keeps_their_settings_and_scores_their_fusion(runs):
    metrics = json.loads((runs / "fused" / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 0 and metrics["best_epoch"] == 0  # evaluated, not trained
    fused, esr, init = (model_from_checkpoint(runs / n / "best.pt") for n in ("fused", "esr", "init"))
    assert fused.esr.config.dropout == 0.2 and fused.esr.config.adapter_layers == 1
    assert fused.init.config.dropout == 0.1
    split = prepare_data(RunFolder(runs / "fused").load_config()).split.test
    seq = fused.eval_input(split.inputs, np.arange(len(split)))
    with torch.no_grad():
        got, s_esr, s_init = (m.score_all(seq).numpy() for m in (fused, esr, init))
    np.testing.assert_allclose(got[:, 1:], fused_in_numpy(s_esr, s_init, 0.7), rtol=1e-4, atol=1e-4)


def test_an_exported_fusion_recommends_what_the_run_ranks(runs):
    """One table: served by a matrix product, and by the inner-product index as well."""
    model = model_from_checkpoint(runs / "fused" / "best.pt")
    data = prepare_data(RunFolder(runs / "fused").load_config())
    split = data.split.test
    items, _ = top_k(model, split, 5)
    users = np.arange(8)
    offsets, seqs = split.inputs.offsets, split.inputs.items
    histories = [data.dataset.item_ids[seqs[offsets[u] : offsets[u + 1]]].tolist() for u in users]
    for threshold in (200_000, 1):
        recs = Bundle(runs / "bundle", faiss_threshold=threshold).recommend_many(histories, k=5)
        for u, rec in zip(users, recs, strict=True):
            assert rec.items.tolist() == data.dataset.item_ids[items[u]].tolist()


def test_member_runs_that_do_not_fit_are_refused(runs, capsys):
    esr, init = f"fusion_esr_run={runs / 'esr'}", f"fusion_init_run={runs / 'init'}"
    swapped = ["--set", f"fusion_esr_run={runs / 'init'}", "--set", f"fusion_init_run={runs / 'esr'}"]
    assert train(runs, "esrfuse", "bad1", 1, *swapped) == 2
    assert "fusion_esr_run: " in capsys.readouterr().err
    assert train(runs, "esrfuse", "bad2", 1, "--set", esr) == 2
    assert "give both" in capsys.readouterr().err
    assert train(runs, "esrfuse", "bad3", 1, "--set", esr, "--set", init, "--set", "hidden_size=8") == 2
    assert "hidden_size 16, this run 8" in capsys.readouterr().err
    assert train(runs, "esrfuse", "bad4", 1, "--set", esr, "--set", f"fusion_init_run={runs / 'none'}") == 2
    err = capsys.readouterr().err
    assert "fusion_init_run: " in err and "is not a run folder" in err
