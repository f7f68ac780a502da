"""Sequential recommenders. Each model is one module with a ``@dataclass`` config."""

from __future__ import annotations

from typing import Any

from llmesr.models.base import BackboneConfig, SequentialRecommender
from llmesr.models.bert4rec import BERT4Rec, BERT4RecConfig
from llmesr.models.cities import CITIES, CITIESConfig
from llmesr.models.gru4rec import GRU4Rec, GRU4RecConfig
from llmesr.models.llmesr import LLMESR, LLMESRConfig
from llmesr.models.llminit import LLMInit, LLMInitConfig
from llmesr.models.melt import MELT, MELTConfig
from llmesr.models.rlmrec import RLMRec, RLMRecConfig
from llmesr.models.sasrec import SASRec, SASRecConfig

MODELS: dict[str, tuple[type[SequentialRecommender], type[BackboneConfig]]] = {
    "sasrec": (SASRec, SASRecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "llmesr": (LLMESR, LLMESRConfig),
    "llminit": (LLMInit, LLMInitConfig),
    "melt": (MELT, MELTConfig),
    "rlmrec": (RLMRec, RLMRecConfig),
    "cities": (CITIES, CITIESConfig),
}


def model_config(name: str, values: dict[str, Any]) -> BackboneConfig:
    """The model's config from a flat dict of settings (keys other components own are skipped)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name][1].from_dict(values)


def build_model(name: str, config: BackboneConfig) -> SequentialRecommender:
    return MODELS[name][0](config)


__all__ = [
    "MODELS",
    "BackboneConfig",
    "SequentialRecommender",
    "SASRec",
    "SASRecConfig",
    "BERT4Rec",
    "BERT4RecConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "LLMESR",
    "LLMESRConfig",
    "LLMInit",
    "LLMInitConfig",
    "MELT",
    "MELTConfig",
    "RLMRec",
    "RLMRecConfig",
    "CITIES",
    "CITIESConfig",
    "model_config",
    "build_model",
]
