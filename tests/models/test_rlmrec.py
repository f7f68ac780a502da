"""RLMRec: what makes it RLMRec (its contract on every backbone and both variants is generated in
test_contract.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_contract import BASE_SETTINGS, TRAINER_SETTINGS

from conftest import patterned_rows
from llmesr.config import RunConfig, apply_overrides, resolve_config
from llmesr.data.sequences import Sequences
from llmesr.models import RLMRec, build_backbone, build_model, for_training, model_config
from llmesr.models.rlmrec import choose_masked, info_nce
from llmesr.semantic.artifacts import SemanticArtifacts

N_ITEMS, N_USERS, SEM_DIM = 20, 60, 24
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tables(seed: int = 0, n_items: int = N_ITEMS, n_users: int = N_USERS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items + 1, SEM_DIM)).astype(np.float32)
    items[0] = 0
    return items, rng.normal(size=(n_users, SEM_DIM)).astype(np.float32)


def settings_for(backbone: str, **settings) -> dict:
    own = {"backbone": backbone, "semantic_dim": SEM_DIM, "rlmrec_weight": 0.1}
    return {"n_items": N_ITEMS, **BASE_SETTINGS, **own, **settings}


def make_rlmrec(
    backbone: str, n_items: int = N_ITEMS, seed: int = 0, variant: str = "con", **settings
) -> RLMRec:
    torch.manual_seed(seed)
    values = settings_for(backbone, n_items=n_items, rlmrec_variant=variant, **settings)
    return RLMRec(model_config("rlmrec", values), *tables(seed, n_items), build_backbone=build_backbone)


def patterned_batch(model: RLMRec, n_users: int = 30) -> tuple[torch.Tensor, np.ndarray, Sequences]:
    train = Sequences.from_lists(patterned_rows(n_users, N_ITEMS))
    rows = np.arange(n_users)
    return model.train_input(train, rows), rows, train


# ---- (1) weight 0 is the plain backbone -----------------------------------------------------
@pytest.mark.parametrize("variant", ["con", "gen"])
@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_weight_zero_gives_the_plain_backbone_loss(backbone, variant):
    model = make_rlmrec(backbone, variant=variant, rlmrec_weight=0.0).train()
    plain = build_model(backbone, model.backbone.config).train()  # the very backbone it wraps
    plain.load_state_dict(model.backbone.state_dict())
    batch, rows, _ = patterned_batch(model)

    def loss_of(m, **kw):
        torch.manual_seed(5)  # dropout
        return m.loss(batch, torch.Generator().manual_seed(1), **kw)

    assert torch.equal(loss_of(model, users=rows), loss_of(plain))
    aligned = make_rlmrec(backbone, variant=variant, rlmrec_weight=0.5).train()
    assert not torch.equal(loss_of(aligned, users=rows), loss_of(plain))


# ---- (2) the contrastive loss is InfoNCE ----------------------------------------------------
def test_info_nce_matches_a_hand_computed_value():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    k = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    r = 1 / math.sqrt(2)
    cos = [[1, r, 0], [0, r, -1], [r, 1, -r]]  # cos(q_i, k_j), worked out by hand
    t = 0.5
    hand = np.mean([-cos[i][i] / t + math.log(sum(math.exp(c / t) for c in cos[i])) for i in range(3)])
    assert info_nce(q, k, t).item() == pytest.approx(hand, rel=1e-6)
    # rows 0 and 1 hold the same item: neither is a negative of the other
    no_dup = [
        -cos[0][0] / t + math.log(math.exp(cos[0][0] / t) + math.exp(cos[0][2] / t)),
        -cos[1][1] / t + math.log(math.exp(cos[1][1] / t) + math.exp(cos[1][2] / t)),
        -cos[2][2] / t + math.log(sum(math.exp(c / t) for c in cos[2])),
    ]
    assert info_nce(q, k, t, ids=torch.tensor([7, 7, 3])).item() == pytest.approx(np.mean(no_dup), rel=1e-6)


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_con_aligns_batch_items_and_users_with_their_mapped_semantic_vectors(backbone):
    model = make_rlmrec(backbone, rlmrec_temperature=0.3).eval()  # eval: no dropout, same passes
    batch, rows, train = patterned_batch(model)
    rec, align = model.terms(batch, torch.Generator().manual_seed(0), rows)
    ids = torch.unique(batch[batch > 0])
    sem_items = model.to_cf(torch.from_numpy(tables()[0])[ids])
    # the user: last column of the training pass, or BERT4Rec's unmasked prefix (= its eval input)
    if backbone == "bert4rec":
        torch.testing.assert_close(model.user_input(batch), model.eval_input(train, rows), rtol=0, atol=0)
        user = model.user_vectors(model.eval_input(train, rows))
    else:
        user = model.hidden_states(batch[:, :-1])[:, -1]
    sem_users = model.to_cf(torch.from_numpy(tables()[1])[rows])
    expected = info_nce(model.item_table()[ids], sem_items, 0.3) + info_nce(user, sem_users, 0.3)
    torch.testing.assert_close(align, expected)
    torch.testing.assert_close(rec, model.backbone.loss(batch, torch.Generator().manual_seed(0)))


def test_con_caps_the_items_of_a_batch():
    model = make_rlmrec("sasrec", rlmrec_max_items=5, loss="ce").eval()  # ce: no negatives drawn
    batch, _, _ = patterned_batch(model)
    align = model.terms(batch, torch.Generator().manual_seed(0))[1]
    ids = torch.unique(batch[batch > 0])
    ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))[:5]]
    sem = model.to_cf(torch.from_numpy(tables()[0])[ids])
    torch.testing.assert_close(align, info_nce(model.item_table()[ids], sem, model.config.rlmrec_temperature))


# ---- (3) gen masks the configured share and reconstructs semantic vectors -------------------
def test_choose_masked_takes_the_configured_share_of_real_positions_only():
    real = Sequences.from_lists(patterned_rows(40, N_ITEMS)).pad_left(np.arange(40), 12) > 0
    n = int(real.sum())
    chosen = choose_masked(real, 0.3, torch.Generator().manual_seed(0))
    assert int(chosen.sum()) == int(0.3 * n) and not (chosen & ~real).any()
    again = choose_masked(real, 0.3, torch.Generator().manual_seed(1))
    assert not torch.equal(chosen, again)
    assert int(choose_masked(real, 1e-6, None).sum()) == 1  # at least one


def test_gen_masks_inputs_and_reconstructs_their_semantic_vectors():
    model = make_rlmrec("sasrec", variant="gen", rlmrec_mask_ratio=0.25, rlmrec_temperature=0.4).eval()
    batch, rows, _ = patterned_batch(model)
    with torch.no_grad():
        model.mask_emb.normal_()  # a mask unlike every item
    rec, align = model.terms(batch, torch.Generator().manual_seed(3), rows)
    seq = batch[:, :-1]
    chosen = choose_masked(seq > 0, 0.25, torch.Generator().manual_seed(3))  # the same draw
    assert int(chosen.sum()) == int(0.25 * int((seq > 0).sum()))
    hidden = model.masked_hidden(seq, chosen)
    assert not torch.allclose(hidden[chosen], model.hidden_states(seq)[chosen])
    items, users = (torch.from_numpy(t) for t in tables())
    expected = info_nce(model.to_semantic(hidden[chosen]), items[seq[chosen]], 0.4, ids=seq[chosen])
    expected = expected + info_nce(model.to_semantic(hidden[:, -1]), users[rows], 0.4)
    torch.testing.assert_close(align, expected)
    # the recommendation loss reads the masked pass too (as the authors' BPR does)
    assert not torch.allclose(rec, model.backbone.loss(batch, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_gen_loss_trains_the_mask_embedding(backbone):
    """Fails if nothing is masked: only masked positions read the mask embedding."""
    model = make_rlmrec(backbone, variant="gen").train()
    batch, rows, _ = patterned_batch(model)
    model.loss(batch, torch.Generator().manual_seed(0), rows).backward()
    assert model.mask_emb.grad is not None and model.mask_emb.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.to_semantic.parameters())


# ---- (4) training with the alignment loss aligns --------------------------------------------
def train_rlmrec(model: RLMRec, steps: int = 80) -> RLMRec:
    train = Sequences.from_lists(patterned_rows(N_USERS, N_ITEMS))
    rows = np.arange(N_USERS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = model.loss(model.train_input(train, rows), gen, rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def alignment(model: RLMRec) -> float:
    """Con: InfoNCE of every item's CF vector against all mapped semantic vectors. Gen: reconstruction
    loss of a fixed masked batch."""
    items = torch.from_numpy(tables()[0])
    if model.config.rlmrec_variant == "con":
        return info_nce(model.item_table()[1:], model.to_cf(items[1:]), 0.2).item()
    batch, rows, _ = patterned_batch(model, N_USERS)
    seq = batch[:, :-1]
    chosen = choose_masked(seq > 0, 0.3, torch.Generator().manual_seed(9))
    return model.reconstruction(model.masked_hidden(seq, chosen), seq, chosen, rows).item()


@pytest.mark.parametrize("variant", ["con", "gen"])
def test_training_with_the_alignment_loss_aligns_the_two_spaces(variant):
    settings = {"variant": variant, "rlmrec_temperature": 0.2}
    with_align = alignment(train_rlmrec(make_rlmrec("sasrec", rlmrec_weight=1.0, **settings)))
    without = alignment(train_rlmrec(make_rlmrec("sasrec", rlmrec_weight=0.0, **settings)))
    assert with_align < 0.7 * without, (with_align, without)


# ---- (5) checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["con", "gen"])
def test_checkpoint_holds_no_semantic_table_and_scores_the_same(variant, tmp_path):
    model = train_rlmrec(make_rlmrec("sasrec", variant=variant), steps=3)
    state = model.state_dict()
    assert not any("semantic" in k and "to_semantic" not in k for k in state)
    assert any(k.startswith("to_cf" if variant == "con" else "to_semantic") for k in state)
    torch.save({"config": model.config.to_dict(), "state_dict": state}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    clone = build_model("rlmrec", model_config("rlmrec", saved["config"]))
    clone.load_state_dict(saved["state_dict"])
    clone.eval()
    assert clone.item_semantic is None and clone.user_semantic is None
    seq = model.eval_input(Sequences.from_lists([[1, 2, 3], [7, 8, 9, 10]]), np.arange(2))
    torch.testing.assert_close(model.score_all(seq), clone.score_all(seq), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="semantic tables"):
        clone.loss(model.train_input(Sequences.from_lists([[1, 2, 3]]), np.arange(1)))


def test_for_training_takes_the_semantic_width_from_the_artifacts():
    items, users = tables()
    art = SemanticArtifacts(items[:, :10], items[:, :4], users[:, :10], np.zeros((len(users), 1), dtype=int))
    config = model_config("rlmrec", settings_for("sasrec", rlmrec_variant="gen"))
    model = for_training("rlmrec", config, Sequences.from_lists([[1, 2]]), art)
    assert model.config.semantic_dim == 10 and model.to_semantic[-1].out_features == 10
    with pytest.raises(ValueError, match="expected"):
        RLMRec(config, items[:5], users, build_backbone=build_backbone)


def test_config_defaults_follow_the_variant_and_bad_values_are_refused():
    con = model_config("rlmrec", {"n_items": 5})
    gen = model_config("rlmrec", {"n_items": 5, "rlmrec_variant": "gen"})
    assert (con.rlmrec_weight, con.rlmrec_temperature) == (0.01, 0.2)
    assert (gen.rlmrec_weight, gen.rlmrec_temperature) == (0.1, 0.5)
    for bad in ({"rlmrec_variant": "both"}, {"rlmrec_temperature": 0.0}, {"rlmrec_mask_ratio": 0.0}):
        with pytest.raises(ValueError):
            model_config("rlmrec", {"n_items": 5, **bad})


@pytest.mark.parametrize("variant", ["con", "gen"])
def test_presets_mirror_the_llmesr_sasrec_backbone(variant):
    cfg = resolve_config([CONFIGS / f"rlmrec_{variant}_sasrec_ce.yaml"])
    ref = resolve_config([CONFIGS / "llmesr_sasrec_ce.yaml"])
    keys = (
        "backbone",
        "loss",
        "max_len",
        "hidden_size",
        "num_layers",
        "num_heads",
        "dropout",
        "batch_size",
        "lr",
    )
    assert cfg.model == "rlmrec" and all(getattr(cfg, k) == getattr(ref, k) for k in keys)
    assert model_config("rlmrec", {"n_items": 5, **cfg.model_settings()}).rlmrec_variant == variant


# ---- (6) end to end through the trainer -------------------------------------------------------
def test_trainer_trains_both_variants_end_to_end(patterned_dir, tmp_path):
    from llmesr.checkpoint import model_from_checkpoint
    from llmesr.runs import prepare_data
    from llmesr.training import Trainer

    for variant in ("con", "gen"):
        values = {
            "data": str(patterned_dir),
            "model": "rlmrec",
            "backbone": "sasrec",
            "rlmrec_variant": variant,
            "loss": "ce",
            **TRAINER_SETTINGS,
            "similar_k": 5,
            "cache_dir": str(tmp_path / "cache"),  # the two runs share one semantic step
        }
        cfg = apply_overrides(RunConfig(), values, "test")
        run = tmp_path / variant
        metrics = Trainer(cfg, prepare_data(cfg), run).fit()
        assert json.loads((run / "metrics.json").read_text())["model"] == "rlmrec"
        assert np.isfinite(metrics["test"]["full"]["overall"]["NDCG@10"])
        model = model_from_checkpoint(run / "best.pt")
        assert model.config.rlmrec_variant == variant and model.item_semantic is None
