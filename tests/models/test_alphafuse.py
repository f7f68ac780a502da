"""AlphaFuse: what makes it AlphaFuse (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_contract import BASE_SETTINGS, train_steps

from conftest import patterned_rows
from llmesr.config import resolve_config
from llmesr.data.sequences import Sequences
from llmesr.errors import ConfigError
from llmesr.models import AlphaFuse, build_backbone, build_model, model_config
from llmesr.models.alphafuse import whitened_projection
from llmesr.semantic.artifacts import SemanticArtifacts

N_ITEMS, H, TEXT_DIM = 40, 32, 48
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def text_table(n_items: int = N_ITEMS, dim: int = TEXT_DIM, seed: int = 0) -> np.ndarray:
    """Text vectors with very different variances per direction (as real encoders have), row 0 padding."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_items + 1, dim)) * np.geomspace(3.0, 0.01, dim) + rng.normal(size=dim)
    x = (x @ np.linalg.qr(rng.normal(size=(dim, dim)))[0]).astype(np.float32)  # mixed directions
    x[0] = 0
    return x


def make_alphafuse(backbone: str = "sasrec", n_items: int = N_ITEMS, seed: int = 0, **settings) -> AlphaFuse:
    torch.manual_seed(seed)
    values = {"n_items": n_items, **BASE_SETTINGS, "hidden_size": H, "backbone": backbone, **settings}
    return AlphaFuse(model_config("alphafuse", values), text_table(n_items), build_backbone=build_backbone)


def test_the_whitened_projection_is_exact_and_matches_numpy():
    """Identity covariance on every kept direction; each coordinate is the centred items' projection
    on a principal direction (numpy's SVD of the centred data, independently) over its std."""
    x = text_table()[1:].astype(np.float64)
    coords, eigenvalues = whitened_projection(x, H)
    assert coords.shape == (N_ITEMS, H)
    np.testing.assert_allclose(np.cov(coords, rowvar=False), np.eye(H), atol=1e-9)
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-9)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    variances = s[:H] ** 2 / (N_ITEMS - 1)  # the covariance's eigenvalues
    np.testing.assert_allclose(eigenvalues, variances, rtol=1e-9)
    expected = centred @ vt[:H].T / np.sqrt(variances)
    signs = np.sign((expected * coords).sum(0))  # directions are unique up to sign
    np.testing.assert_allclose(coords, expected * signs, atol=1e-8)


def test_the_null_space_coordinates_are_the_smallest_variance_ones():
    model = make_alphafuse(null_dim=12)
    x = text_table()[1:].astype(np.float64)
    _, eigenvalues = whitened_projection(x, H)
    assert (np.diff(eigenvalues) <= 0).all()  # coordinates in order of decreasing variance
    table = model.backbone.item_emb
    assert table.ids.shape == (N_ITEMS, 12) and table.frozen_dim == H - 12
    # The ID part lands on the last 12 coordinates: the kept directions of the smallest variances.
    with torch.no_grad():
        table.ids.fill_(1.0)
    moved = (model.item_table() - table.text)[1:]
    assert torch.equal(moved[:, : H - 12], torch.zeros(N_ITEMS, H - 12))
    torch.testing.assert_close(moved[:, H - 12 :], torch.ones(N_ITEMS, 12))  # (t + 1) - t: rounding
    assert eigenvalues[H - 12 :].max() <= eigenvalues[: H - 12].min()


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_only_the_null_space_coordinates_move_in_training(backbone):
    model = make_alphafuse(backbone, null_init="normal")
    before = model.item_table().detach().clone()
    torch.testing.assert_close(
        before[1:, :16], torch.from_numpy(whitened_projection(text_table()[1:], H)[0][:, :16]).float() * 0.02
    )
    train = Sequences.from_lists(patterned_rows(30, N_ITEMS))
    train_steps(model, train, 5, lr=1e-2)
    after = model.item_table().detach()
    frozen = H - model.config.null_dim
    assert torch.equal(after[:, :frozen], before[:, :frozen])  # bit-identical after 5 Adam steps
    assert not torch.allclose(after[1:, frozen:], before[1:, frozen:])
    assert torch.equal(after[0], torch.zeros(H))  # padding stays zero
    assert not model.backbone.item_emb.text.requires_grad
    # The serving table is the trained item vectors (plus the backbone's bias column).
    torch.testing.assert_close(model.fused_item_table()[:, :H], after, rtol=0, atol=0)


def test_trainable_parameters_are_the_null_space_ids_and_the_encoder():
    model = make_alphafuse(null_dim=8)
    plain = build_model("sasrec", model.backbone.config)
    encoder = plain.trainable_parameters() - plain.item_emb.weight.numel()
    assert model.trainable_parameters() == N_ITEMS * 8 + encoder
    assert make_alphafuse(null_dim=0).trainable_parameters() == encoder  # the frozen-text model


def test_zero_variance_directions_get_zero_text_and_must_lie_in_the_null_space():
    """Fewer items than hidden_size: the covariance has rank n - 1, so the last kept directions do
    not vary; their text is 0 (not noise over ~0) and the ID part alone fills them."""
    x = text_table(n_items=20)[1:]
    coords, eigenvalues = whitened_projection(x, H)
    assert (eigenvalues[19:] == 0).all() and (eigenvalues[:19] > 0).all()
    assert (coords[:, 19:] == 0).all()
    np.testing.assert_allclose(np.cov(coords[:, :19], rowvar=False), np.eye(19), atol=1e-9)
    make_alphafuse(n_items=20, null_dim=13)  # 19 frozen coordinates, all varying
    with pytest.raises(ValueError, match="vary along only 19 directions, fewer than the 20 frozen"):
        make_alphafuse(n_items=20, null_dim=12)


def test_text_narrower_than_the_model_is_a_one_line_config_error(monkeypatch, patterned_dir):
    from llmesr.config import RunConfig
    from llmesr.runs import prepare_data
    from llmesr.training import build

    cfg = RunConfig(data=str(patterned_dir), model="alphafuse", hidden_size=32, max_len=10)
    data = prepare_data(cfg)
    n, u = data.dataset.n_items, data.dataset.n_users
    rng = np.random.default_rng(0)
    narrow = SemanticArtifacts(
        rng.normal(size=(n + 1, 24)).astype(np.float32),
        np.zeros((n + 1, 32), np.float32),
        np.zeros((u, 24), np.float32),
        np.zeros((u, 1), np.int64),
    )
    monkeypatch.setattr(build, "semantic_artifacts", lambda *args, **kwargs: narrow)
    with pytest.raises(ConfigError) as err:
        build.create_model(cfg, data)
    message = str(err.value)
    assert "\n" not in message
    assert "keeps hidden_size = 32 directions of the item text embeddings, which have only 24" in message


def test_config_defaults_and_bad_values():
    config = model_config("alphafuse", {"n_items": 5, "hidden_size": 64})
    assert (config.null_dim, config.null_init, config.text_std) == (32, "zeros", config.init_std)
    for bad in ({"null_dim": 65}, {"null_dim": -1}, {"null_init": "ones"}, {"text_std": 0.0}):
        with pytest.raises(ValueError):
            model_config("alphafuse", {"n_items": 5, "hidden_size": 64, **bad})


def test_the_text_std_scales_the_whitened_coordinates_by_one_factor():
    a, b = make_alphafuse(text_std=1.0), make_alphafuse(text_std=0.5)
    torch.testing.assert_close(b.backbone.item_emb.text, a.backbone.item_emb.text * 0.5)
    coords = a.backbone.item_emb.text[1:].double().numpy()
    np.testing.assert_allclose(np.cov(coords, rowvar=False), np.eye(H), atol=1e-5)  # float32 storage


def test_preset_mirrors_the_llmesr_sasrec_backbone():
    cfg = resolve_config([CONFIGS / "alphafuse_sasrec_ce.yaml"])
    ref = resolve_config([CONFIGS / "llmesr_sasrec_ce.yaml"])
    keys = ("backbone", "loss", "max_len", "hidden_size", "num_layers", "num_heads", "dropout")
    keys += ("batch_size", "lr")
    assert cfg.model == "alphafuse" and all(getattr(cfg, k) == getattr(ref, k) for k in keys)
    assert model_config("alphafuse", {"n_items": 5, **cfg.model_settings()}).null_dim == cfg.hidden_size // 2
