"""EnsRec from two finished runs (``ensrec_id_run``, ``ensrec_text_run``): loaded, checked, evaluated
without training, and served from a bundle exactly as the run ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import patterned_rows, write_sequences_dir
from llmesr.checkpoint import model_from_checkpoint
from llmesr.cli import main
from llmesr.evaluation import top_k
from llmesr.models.ensrec import fuse_scores
from llmesr.runs import RunFolder, prepare_data
from llmesr.serving import Bundle

FAST = {"max_len": 10, "hidden_size": 16, "batch_size": 16, "progress": "false", "loss": "ce", "lr": 0.01}
FAST |= {"threads": 1, "sampled_negatives": 5}
FUSION = ["--set", "ensrec_alpha=0.3", "--set", "ensrec_tau=2"]  # tau 2: far from a plain sum


def train(root, model: str, out: str, epochs: int, *extra: str) -> int:
    sets = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    sets += ["--set", f"cache_dir={root / 'cache'}"]
    args = ["train", "--data", str(root / "data"), "--model", model, "--out", str(root / out)]
    return main([*args, "--epochs", str(epochs), *sets, *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensrec")
    write_sequences_dir(root / "data", patterned_rows(60, 20))
    assert train(root, "sasrec", "id", 3) == 0
    assert train(root, "textrec", "text", 3) == 0
    members = ["--set", f"ensrec_id_run={root / 'id'}", "--set", f"ensrec_text_run={root / 'text'}"]
    assert train(root, "ensrec", "ens", 5, *members, *FUSION) == 0
    assert main(["export", str(root / "ens"), "--out", str(root / "bundle")]) == 0
    return root


def test_an_ensemble_of_finished_runs_scores_the_fusion_of_their_own_scores(runs):
    metrics = json.loads((runs / "ens" / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 0 and metrics["best_epoch"] == 0  # evaluated, not trained
    assert [r["epoch"] for r in map(json.loads, (runs / "ens" / "log.jsonl").read_text().splitlines())] == [0]
    models = [model_from_checkpoint(runs / name / "best.pt") for name in ("ens", "id", "text")]
    split = prepare_data(RunFolder(runs / "ens").load_config()).split.test
    seq = models[0].eval_input(split.inputs, np.arange(len(split)))
    with torch.no_grad():
        ens, s_id, s_text = (m.score_all(seq) for m in models)
    torch.testing.assert_close(ens, fuse_scores(s_id, s_text, 0.3, 2.0), rtol=0, atol=0)
    expected = 0.3 * np.exp(s_id.double().numpy()[:, 1:] / 2) + 0.7 * np.exp(
        s_text.double().numpy()[:, 1:] / 2
    )
    np.testing.assert_allclose(np.exp(ens.double().numpy()[:, 1:] / 2), expected, rtol=1e-5)


def test_an_exported_ensemble_recommends_what_the_run_ranks(runs):
    """The bundle scores both members (two products) and fuses them; with the FAISS threshold at one
    item it must still not use the inner-product index."""
    model = model_from_checkpoint(runs / "ens" / "best.pt")
    data = prepare_data(RunFolder(runs / "ens").load_config())
    split = data.split.test
    items, _ = top_k(model, split, 5)
    users = np.arange(8)
    histories = [
        data.dataset.item_ids[
            split.inputs.items[split.inputs.offsets[u] : split.inputs.offsets[u + 1]]
        ].tolist()
        for u in users
    ]
    for threshold in (200_000, 1):
        recs = Bundle(runs / "bundle", faiss_threshold=threshold).recommend_many(histories, k=5)
        for u, rec in zip(users, recs, strict=True):
            assert rec.items.tolist() == data.dataset.item_ids[items[u]].tolist()


def test_member_runs_that_do_not_fit_are_refused(runs, capsys):
    id_run, text_run = f"ensrec_id_run={runs / 'id'}", f"ensrec_text_run={runs / 'text'}"
    swapped = ["--set", f"ensrec_id_run={runs / 'text'}", "--set", f"ensrec_text_run={runs / 'id'}"]
    assert train(runs, "ensrec", "bad1", 1, *swapped) == 2
    assert "ensrec_id_run: " in capsys.readouterr().err
    assert train(runs, "ensrec", "bad2", 1, "--set", id_run, "--set", text_run, "--set", "num_layers=1") == 2
    assert "other settings (num_layers 2, here 1)" in capsys.readouterr().err
    assert train(runs, "ensrec", "bad3", 1, "--set", id_run) == 2
    assert "give both" in capsys.readouterr().err
    assert train(runs, "ensrec", "bad4", 1, "--set", id_run, "--set", f"ensrec_text_run={runs / 'none'}") == 2
    err = capsys.readouterr().err
    assert "ensrec_text_run: " in err and "is not a run folder" in err


def test_reports_group_ensembles_by_whether_member_runs_are_set_not_by_their_paths():
    from llmesr.experiments.methods import normalise

    seed1 = {"model": "ensrec", "seed": 1, "ensrec_id_run": "runs/id1", "ensrec_text_run": "runs/text1"}
    seed2 = {"model": "ensrec", "seed": 2, "ensrec_id_run": "runs/id2", "ensrec_text_run": "runs/text2"}
    assert normalise(seed1) == normalise(seed2)
    assert normalise(seed1) != normalise({"model": "ensrec", "seed": 1})
