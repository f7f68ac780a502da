"""init_from: a run starts from another finished run's best weights (whole model or a backbone)."""

from __future__ import annotations

import pytest
import torch

from conftest import patterned_rows, write_sequences_dir
from llmesr.checkpoint import CheckpointError, load_checkpoint
from llmesr.cli import main
from llmesr.config import RunConfig
from llmesr.runs import prepare_data
from llmesr.training import Trainer

SMALL = {"max_len": 10, "hidden_size": 16, "batch_size": 16, "sampled_negatives": 5}
FAST = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def sasrec_run(patterned_dir, tmp_path):
    out = tmp_path / "sasrec"
    args = ["train", "--data", str(patterned_dir), "--model", "sasrec", "--epochs", "2", "--out", str(out)]
    assert main([*args, *FAST]) == 0
    return out


def trainer(data_dir, tmp_path, **settings) -> Trainer:
    cfg = RunConfig(data=str(data_dir), **{**SMALL, **settings})
    return Trainer(cfg, prepare_data(cfg), tmp_path / "new")


def test_same_model_starts_from_all_the_weights(patterned_dir, tmp_path, sasrec_run):
    best = load_checkpoint(sasrec_run / "best.pt")["state_dict"]
    model = trainer(patterned_dir, tmp_path, model="sasrec", seed=7, init_from=str(sasrec_run)).model
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, best[key])
    fresh = trainer(patterned_dir, tmp_path, model="sasrec", seed=7).model
    assert not torch.equal(fresh.item_emb.weight, best["item_emb.weight"])


def test_a_wrapper_starts_its_backbone_from_a_plain_run(patterned_dir, tmp_path, sasrec_run):
    best = load_checkpoint(sasrec_run / "best.pt")["state_dict"]
    melt = trainer(patterned_dir, tmp_path, model="melt", init_from=str(sasrec_run / "best.pt")).model
    for key, value in melt.backbone.state_dict().items():
        torch.testing.assert_close(value, best[key])
    assert torch.count_nonzero(melt.item_transfer.weight) == 0  # MELT's own modules start as before


def test_runs_that_do_not_fit_are_refused_naming_the_reason(patterned_dir, tmp_path, sasrec_run):
    with pytest.raises(CheckpointError, match=r"other settings \(hidden_size\)"):
        trainer(patterned_dir, tmp_path, model="melt", hidden_size=32, init_from=str(sasrec_run))
    with pytest.raises(CheckpointError, match="trained sasrec; this run needs gru4rec"):
        trainer(patterned_dir, tmp_path, model="gru4rec", init_from=str(sasrec_run))
    with pytest.raises(CheckpointError, match="or plain gru4rec"):
        trainer(patterned_dir, tmp_path, model="melt", backbone="gru4rec", init_from=str(sasrec_run))
    with pytest.raises(CheckpointError, match="no finished run"):
        trainer(patterned_dir, tmp_path, model="sasrec", init_from=str(tmp_path / "nothing"))


def test_a_run_of_another_dataset_is_refused_by_the_cli(patterned_dir, tmp_path, sasrec_run, capsys):
    other = write_sequences_dir(tmp_path / "other", patterned_rows(seed=5))
    args = ["train", "--data", str(other), "--model", "sasrec", "--out", str(tmp_path / "x"), *FAST]
    assert main([*args, "--set", f"init_from={sasrec_run}"]) == 2
    assert "ids would not line up" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
