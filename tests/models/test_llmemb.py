"""LLMEmb: what makes it LLMEmb (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_contract import BASE_SETTINGS, TRAINER_SETTINGS, synthetic_reference, train_steps

from conftest import patterned_rows, write_sequences_dir
from llmesr.config import RunConfig, apply_overrides, resolve_config
from llmesr.data.sequences import Sequences
from llmesr.errors import ConfigError
from llmesr.models import LLMEmb, build_backbone, model_config

N_ITEMS, SEM_DIM, H = 20, 24, 32
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = {k: v for k, v in TRAINER_SETTINGS.items() if k != "epochs"}


def llm_table(seed: int = 0) -> np.ndarray:
    table = np.random.default_rng(seed).normal(size=(N_ITEMS + 1, SEM_DIM)).astype(np.float32)
    table[0] = 0
    return table


def make_llmemb(backbone: str = "sasrec", seed: int = 0, reference: bool = True, **settings) -> LLMEmb:
    torch.manual_seed(seed)
    values = {"n_items": N_ITEMS, **BASE_SETTINGS, "backbone": backbone, "semantic_dim": SEM_DIM}
    values = {**values, "align_from": "a-finished-run", **settings}
    model = LLMEmb(model_config("llmemb", values), llm_table(seed), build_backbone=build_backbone)
    if reference:
        model.set_reference_table(synthetic_reference(N_ITEMS, H, seed))
    return model


def batch_of(model: LLMEmb, n_users: int = 30) -> torch.Tensor:
    return model.train_input(Sequences.from_lists(patterned_rows(n_users, N_ITEMS)), np.arange(n_users))


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_the_item_table_is_the_adapter_output_of_the_frozen_llm_table(backbone):
    model = make_llmemb(backbone)
    table = model.backbone.item_emb
    adapted = table.adapter(torch.from_numpy(llm_table()))
    adapted[0] = 0  # padding
    torch.testing.assert_close(model.item_table(), adapted, rtol=0, atol=0)
    ids = torch.tensor([[1, 7], [N_ITEMS, 0]])
    torch.testing.assert_close(model.item_vectors(ids), adapted[ids])
    # Input embeddings too: the backbone's table is the adapted one (plus BERT4Rec's mask token).
    assert model.backbone.item_emb is table and table.weight.shape[0] == N_ITEMS + 1 + model.extra_item_rows
    torch.testing.assert_close(model.backbone.item_emb(ids), adapted[ids])
    assert not table.llm.requires_grad and "backbone.item_emb.llm" in model.state_dict()


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_gradients_reach_the_adapter_from_both_terms(backbone):
    model = make_llmemb(backbone).train()
    batch = batch_of(model)
    model.alignment(batch).backward()
    adapter = list(model.backbone.item_emb.adapter.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter)
    assert all(p.grad is None for p in model.backbone.encoder.parameters())  # alignment: items only
    model.zero_grad()
    model.loss(batch, torch.Generator().manual_seed(0)).backward()
    assert all(p.grad.abs().sum() > 0 for p in adapter)


def test_the_alignment_loss_is_symmetric_dot_product_info_nce_over_the_distinct_batch_items():
    model = make_llmemb(align_temperature=0.7).eval()
    batch = torch.tensor([[0, 3, 5, 3], [0, 0, 9, 5]])  # items 3, 5, 9 (3 and 5 twice)
    a = model.item_table()[[3, 5, 9]].detach().double().numpy()
    r = synthetic_reference(N_ITEMS, H)[[3, 5, 9]].astype(np.float64)

    def ce(x, y):  # rows of x classify their own row of y among all rows of y
        logits = x @ y.T / 0.7
        return np.mean([math.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])

    expected = (ce(a, r) + ce(r, a)) / 2
    assert model.alignment(batch).item() == pytest.approx(expected, rel=1e-5)
    rec = model.backbone.objective(model, batch, torch.Generator().manual_seed(0))[0]
    total = model.loss(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(total, rec + model.config.align_weight * model.alignment(batch))


def test_the_alignment_caps_the_items_of_a_batch():
    model = make_llmemb(align_max_items=4, loss="ce").eval()
    batch = batch_of(model)
    ids = torch.unique(batch[batch > 0])
    ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(3))[:4]]
    a, r = model.item_vectors(ids), model.reference[ids]
    from llmesr.models.losses import info_nce

    t = model.config.align_temperature
    expected = (info_nce(a, r, t, cosine=False) + info_nce(r, a, t, cosine=False)) / 2
    torch.testing.assert_close(model.alignment(batch, torch.Generator().manual_seed(3)), expected)


def test_the_reference_table_is_frozen_training_only_and_checked():
    model = make_llmemb()
    reference = model.reference.clone()
    train_steps(model, Sequences.from_lists(patterned_rows(30, N_ITEMS)), 5, lr=1e-2)
    assert torch.equal(model.reference, reference)  # a buffer: no optimiser ever sees it
    assert not any(p is model.reference for p in model.parameters())
    assert not any("reference" in k for k in model.state_dict())  # checkpoints do not carry it
    with pytest.raises(ValueError, match="vectors are 16 wide, this model's hidden_size is 32"):
        model.set_reference_table(np.zeros((N_ITEMS + 1, 16), np.float32))
    with pytest.raises(ValueError, match="expected"):
        model.set_reference_table(np.zeros((N_ITEMS, H), np.float32))
    without = make_llmemb(reference=False)
    with pytest.raises(RuntimeError, match="reference table"):
        without.loss(batch_of(without))


def test_align_from_is_required_unless_the_alignment_is_off():
    with pytest.raises(ConfigError, match="set align_from to that run's folder"):
        resolve_config([CONFIGS / "llmemb_sasrec_ce.yaml"])
    off = resolve_config([CONFIGS / "llmemb_sasrec_ce.yaml"], ["align_weight=0"])
    assert LLMEmb.reference_run(model_config("llmemb", {"n_items": 5, **off.model_settings()})) is None
    on = resolve_config([CONFIGS / "llmemb_sasrec_ce.yaml"], ["align_from=runs/x"])
    assert LLMEmb.reference_run(model_config("llmemb", {"n_items": 5, **on.model_settings()})) == "runs/x"
    ref = resolve_config([CONFIGS / "llmesr_sasrec_ce.yaml"])
    keys = ("backbone", "loss", "max_len", "hidden_size", "num_layers", "num_heads", "dropout")
    keys += ("batch_size", "lr")
    assert on.model == "llmemb" and all(getattr(on, k) == getattr(ref, k) for k in keys)
    assert (on.align_weight, on.align_temperature) == (0.01, 2.0)


# ---- through the trainer: the reference is a finished run's table ------------------------------
@pytest.fixture(scope="module")
def finished_sasrec(tmp_path_factory):
    from llmesr.cli import main

    root = tmp_path_factory.mktemp("llmemb")
    data = write_sequences_dir(root / "data", patterned_rows())
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    out = root / "sasrec"
    args = ["train", "--data", str(data), "--model", "sasrec", "--epochs", "2", "--out", str(out)]
    assert main([*args, *sets]) == 0
    return root, data, out


def trainer_config(data: Path, root: Path, **settings) -> RunConfig:
    values = {"data": str(data), "model": "llmemb", **SMALL, "similar_k": 5, "cache_dir": str(root / "cache")}
    return apply_overrides(RunConfig(), {**values, **settings}, "test")


def test_the_trainer_hands_over_the_finished_runs_table_which_stays_frozen(finished_sasrec):
    from llmesr.checkpoint import model_from_checkpoint
    from llmesr.runs import RunFolder, prepare_data
    from llmesr.training import Trainer

    root, data, sasrec = finished_sasrec
    cfg = trainer_config(data, root, align_from=str(sasrec), epochs=2)
    trainer = Trainer(cfg, prepare_data(cfg), root / "llmemb")
    expected = torch.from_numpy(RunFolder(sasrec).item_table()[:, :-1])
    torch.testing.assert_close(trainer.model.reference, expected, rtol=0, atol=0)
    adapter = trainer.model.backbone.item_emb.adapter[0].weight.detach().clone()
    metrics = trainer.fit()
    torch.testing.assert_close(trainer.model.reference, expected, rtol=0, atol=0)
    assert not torch.equal(trainer.model.backbone.item_emb.adapter[0].weight, adapter)
    assert np.isfinite(metrics["test"]["full"]["overall"]["NDCG@10"])
    clone = model_from_checkpoint(root / "llmemb" / "best.pt")
    assert clone.reference is None and clone.config.align_from == str(sasrec)


def test_reference_runs_that_do_not_fit_are_refused(finished_sasrec, tmp_path):
    from llmesr.cli import main
    from llmesr.runs import prepare_data
    from llmesr.training import Trainer

    root, data, sasrec = finished_sasrec
    cases = [
        ({"align_from": str(tmp_path / "nothing")}, "reference run: .* is not a run folder"),
        ({"align_from": str(sasrec), "hidden_size": 8}, "vectors are 16 wide, this model's hidden_size is 8"),
    ]
    for settings, message in cases:
        cfg = trainer_config(data, root, **settings)
        with pytest.raises(ConfigError, match=message):
            Trainer(cfg, prepare_data(cfg), tmp_path / "new")
    other = write_sequences_dir(tmp_path / "other", patterned_rows(seed=5))
    cfg = trainer_config(other, root, align_from=str(sasrec))
    with pytest.raises(ConfigError, match="trained on another dataset .* ids would not line up"):
        Trainer(cfg, prepare_data(cfg), tmp_path / "new")
    args = ["train", "--data", str(data), "--model", "llmemb", "--out", str(tmp_path / "x")]
    assert main(args) == 2  # alignment on, no align_from: refused before anything is written
    assert not (tmp_path / "x").exists()


def test_a_report_groups_seeds_that_align_with_their_own_runs():
    from llmesr.experiments.methods import normalise

    runs = [{"model": "llmemb", "align_from": f"runs/model=sasrec__seed={s}", "seed": s} for s in (1, 2)]
    assert normalise(runs[0]) == normalise(runs[1])
    assert normalise(runs[0])[2]["align_from"] is True
