"""LLMInit: what makes it LLMInit (its contract on every backbone is generated in test_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_contract import BASE_SETTINGS

from llmesr.models import LLMInit, build_backbone, model_config

N_ITEMS = 20


def pca_table(n_items: int = N_ITEMS, seed: int = 0) -> np.ndarray:
    table = (np.random.default_rng(seed).normal(size=(n_items + 1, 32)) * 0.05).astype(np.float32)
    table[0] = 0
    return table


def make_llminit(backbone: str, n_items: int = N_ITEMS, seed: int = 0, **settings) -> LLMInit:
    torch.manual_seed(seed)
    values = {"n_items": n_items, **BASE_SETTINGS, "backbone": backbone, **settings}
    return LLMInit(model_config("llminit", values), pca_table(n_items, seed), build_backbone=build_backbone)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_initial_item_table_is_the_pca_table(backbone):
    model = make_llminit(backbone)
    torch.testing.assert_close(model.item_table(), torch.from_numpy(pca_table()), rtol=0, atol=0)


def test_pca_table_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="expected"):
        make_llminit("sasrec").init_from_pca(np.zeros((N_ITEMS + 1, 16), dtype=np.float32))
