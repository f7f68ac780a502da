"""Sequential recommenders and their registry: name -> (model class, config class).

Each model is one module with a ``@dataclass`` config; this package imports every one explicitly
and registers it below. Backbones (SASRec, BERT4Rec, GRU4Rec) are models of their own; wrappers
(LLM-ESR and the baselines, ``cls.wraps_backbone``) are built around any registered backbone, which
the registry builds and hands them (``build_backbone``), so no model module imports this package.
What a trainer or a server may ask of a model are flags and methods of its class
(``needs_semantic``, ``similar_users_needed``, ``reference_run``, ``cold_start_items``,
``wraps_backbone``), never its name.

A backbone or wrapper defined elsewhere (a test, a plugin) joins with :func:`register` and then
works everywhere a built-in one does (``model_config``, ``build_model``, ``for_training``, any
wrapper's ``backbone`` setting).
"""

from __future__ import annotations

from typing import Any

from llmesr.data.sequences import Sequences
from llmesr.models.alphafuse import AlphaFuse, AlphaFuseConfig
from llmesr.models.base import BackboneConfig, SequentialRecommender, WrapperConfig
from llmesr.models.bert4rec import BERT4Rec, BERT4RecConfig
from llmesr.models.cities import CITIES, CITIESConfig
from llmesr.models.ensrec import EnsRec, EnsRecConfig
from llmesr.models.esrfuse import ESRFuse, ESRFuseConfig
from llmesr.models.gru4rec import GRU4Rec, GRU4RecConfig
from llmesr.models.llmemb import LLMEmb, LLMEmbConfig
from llmesr.models.llmesr import LLMESR, LLMESRConfig
from llmesr.models.llminit import LLMInit, LLMInitConfig
from llmesr.models.melt import MELT, MELTConfig
from llmesr.models.rlmrec import RLMRec, RLMRecConfig
from llmesr.models.sasrec import SASRec, SASRecConfig
from llmesr.models.textrec import TextRec, TextRecConfig
from llmesr.models.wrapper import BackboneWrapper
from llmesr.semantic.artifacts import SemanticArtifacts

MODELS: dict[str, tuple[type[SequentialRecommender], type[BackboneConfig]]] = {}


def register(name: str, cls: type[SequentialRecommender], config_cls: type[BackboneConfig]) -> None:
    """Make ``cls`` (configured by ``config_cls``) a model called ``name``; a backbone (one whose
    ``wraps_backbone`` is false) can then be any wrapper's ``backbone``."""
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    if cls.wraps_backbone and not issubclass(config_cls, WrapperConfig):
        raise TypeError(f"{cls.__name__} wraps a backbone: its config must extend WrapperConfig")
    MODELS[name] = (cls, config_cls)


def unregister(name: str) -> None:
    """Forget the model ``name`` (for tests that register their own)."""
    MODELS.pop(name)


def backbones() -> list[str]:
    """Names of the registered backbones: the models a wrapper can be built around."""
    return [name for name, (cls, _) in MODELS.items() if not cls.wraps_backbone]


def wrappers() -> list[str]:
    """Names of the registered methods built around a backbone."""
    return [name for name, (cls, _) in MODELS.items() if cls.wraps_backbone]


def model_config(name: str, values: dict[str, Any]) -> BackboneConfig:
    """The model's config from a flat dict of settings (keys other components own are skipped)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    cls, config_cls = MODELS[name]
    config = config_cls.from_dict(values)
    if cls.wraps_backbone and config.backbone not in backbones():
        raise ValueError(f"backbone must be one of {', '.join(backbones())}, got {config.backbone!r}")
    return config


def build_backbone(config: WrapperConfig) -> SequentialRecommender:
    """A fresh backbone of the kind ``config.backbone`` names, with the wrapper's settings."""
    settings = {k: v for k, v in config.to_dict().items() if k != "backbone"}
    return build_model(config.backbone, model_config(config.backbone, settings))


def build_model(name: str, config: BackboneConfig) -> SequentialRecommender:
    """The model ``name`` as a checkpoint rebuilds it (everything else comes from its state_dict)."""
    cls = MODELS[name][0]
    if cls.wraps_backbone:
        return cls(config, build_backbone=build_backbone)
    return cls(config)


def for_training(
    name: str, config: BackboneConfig, train: Sequences, artifacts: SemanticArtifacts | None
) -> SequentialRecommender:
    """The model ``name`` as the trainer builds it, from the training split and (for models with
    ``needs_semantic``) the semantic artifacts."""
    cls = MODELS[name][0]
    if cls.wraps_backbone:
        return cls.for_training(config, train, artifacts, build_backbone=build_backbone)
    return cls.for_training(config, train, artifacts)


for _name, _cls, _config in (
    ("sasrec", SASRec, SASRecConfig),
    ("bert4rec", BERT4Rec, BERT4RecConfig),
    ("gru4rec", GRU4Rec, GRU4RecConfig),
    ("llmesr", LLMESR, LLMESRConfig),
    ("llminit", LLMInit, LLMInitConfig),
    ("melt", MELT, MELTConfig),
    ("rlmrec", RLMRec, RLMRecConfig),
    ("cities", CITIES, CITIESConfig),
    ("alphafuse", AlphaFuse, AlphaFuseConfig),
    ("llmemb", LLMEmb, LLMEmbConfig),
    ("textrec", TextRec, TextRecConfig),
    ("ensrec", EnsRec, EnsRecConfig),
    ("esrfuse", ESRFuse, ESRFuseConfig),
):
    register(_name, _cls, _config)

__all__ = [
    "MODELS",
    "BackboneConfig",
    "BackboneWrapper",
    "SequentialRecommender",
    "WrapperConfig",
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
    "AlphaFuse",
    "AlphaFuseConfig",
    "ESRFuse",
    "ESRFuseConfig",
    "LLMEmb",
    "LLMEmbConfig",
    "EnsRec",
    "EnsRecConfig",
    "TextRec",
    "TextRecConfig",
    "backbones",
    "build_backbone",
    "build_model",
    "for_training",
    "model_config",
    "register",
    "unregister",
    "wrappers",
]
