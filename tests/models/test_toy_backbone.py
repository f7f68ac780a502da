"""A backbone that exists only in this file: registered from outside the package, it gets the
whole model contract, and LLM-ESR and every baseline run on top of it, with nothing under src/
knowing it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from test_contract import contract_classes, make_model
from torch import nn

from llmesr.models import BackboneConfig, SequentialRecommender, backbones, register, unregister, wrappers

NAME = "meanpool"


@dataclass
class MeanPoolConfig(BackboneConfig):
    residual: bool = True  # a setting of its own: wrappers that do not know it keep the default


class MeanPool(SequentialRecommender):
    """Each position's state is the mean of the embedded items up to it (plus, with ``residual``,
    the item itself) through a linear layer: causal, order-free and no attention at all."""

    config: MeanPoolConfig
    uses_positions = False  # a mean does not read positions

    def __init__(self, config: MeanPoolConfig) -> None:
        super().__init__(config)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.init_weights()

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1)
        mean = (x * keep).cumsum(1) / keep.cumsum(1).clamp(min=1)  # (B, L, h): mean up to each position
        return self.proj(mean + x if self.config.residual else mean) * keep


@pytest.fixture(autouse=True, scope="module")
def registered():
    register(NAME, MeanPool, MeanPoolConfig)
    yield
    unregister(NAME)


globals().update(
    contract_classes(
        [NAME, *wrappers()],
        [NAME],
        overfit={NAME: {"overfit_steps": 150}},
        known={NAME: (MeanPool, MeanPoolConfig)},
    )
)


def test_the_toy_is_a_backbone_of_every_wrapper():
    assert NAME in backbones() and NAME not in wrappers()
    for wrapper in wrappers():
        model = make_model(wrapper, NAME)
        assert type(model.backbone) is MeanPool, wrapper
        assert model.backbone.config.residual is True


def test_llmesr_fuses_its_views_through_the_toy_encoder():
    model = make_model("llmesr", NAME, shared_encoder=False).eval()
    assert type(model.sem_backbone) is MeanPool and model.sem_backbone is not model.backbone
    seq = torch.tensor([[0, 1, 2, 3]])
    assert model.user_vectors(seq).shape == (1, 64)  # [H_id ; H_sem]
