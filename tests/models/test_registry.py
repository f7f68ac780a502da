"""The registry (``llmesr.models``): names, building, capabilities, and the layering it relies on."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from test_contract import REQUIRED_SETTINGS, make_model

from llmesr.models import (
    MODELS,
    BackboneConfig,
    SequentialRecommender,
    backbones,
    build_backbone,
    build_model,
    model_config,
    register,
    wrappers,
)

MODELS_DIR = Path(__file__).resolve().parents[2] / "src" / "llmesr" / "models"
BUILT_IN = {"sasrec", "bert4rec", "gru4rec", "llmesr", "llminit", "cities", "rlmrec", "melt"}
BUILT_IN |= {"alphafuse", "llmemb"}  # the successors of LLM-ESR


def test_registry_lists_the_backbones_and_the_methods():
    assert BUILT_IN <= set(MODELS)
    assert {"sasrec", "bert4rec", "gru4rec"} <= set(backbones())
    assert {"llmesr", "llminit", "cities", "rlmrec", "melt", "alphafuse", "llmemb"} <= set(wrappers())
    assert not set(backbones()) & set(wrappers())


def test_a_wrapper_needs_a_registered_backbone():
    for bad in ("llmesr", "nonesuch"):
        with pytest.raises(ValueError, match="backbone must be one of sasrec, bert4rec, gru4rec"):
            model_config("cities", {"n_items": 5, "backbone": bad})
    with pytest.raises(ValueError, match="unknown model 'nonesuch'"):
        model_config("nonesuch", {"n_items": 5})


def test_register_refuses_a_taken_name_and_a_wrapper_without_a_wrapper_config():
    with pytest.raises(ValueError, match="already registered"):
        register("sasrec", *MODELS["sasrec"])
    with pytest.raises(TypeError, match="WrapperConfig"):
        register("odd", MODELS["llminit"][0], BackboneConfig)
    assert "odd" not in MODELS


def test_capabilities_are_flags_and_methods_of_the_model_class():
    for name in BUILT_IN:
        cls, config_cls = MODELS[name]
        config = model_config(name, {"n_items": 5, **REQUIRED_SETTINGS.get(name, {})})
        assert cls.needs_semantic == (name in {"llmesr", "llminit", "rlmrec", "alphafuse", "llmemb"})
        assert cls.cold_start_items == (name == "llmesr")
        assert cls.similar_users_needed(config) == (config.distill_users if name == "llmesr" else 0)
        assert cls.reference_run(config) == (config.align_from if name == "llmemb" else None)


def test_fields_set_from_data_are_tagged_derived():
    derived = {
        name: {f.name for f in fields(config_cls) if f.metadata.get("derived")}
        for name, (_, config_cls) in MODELS.items()
        if name in BUILT_IN
    }
    assert derived == {
        name: {"n_items", "semantic_dim"} if name in {"llmesr", "rlmrec", "llmemb"} else {"n_items"}
        for name in BUILT_IN
    }


def test_wrappers_get_their_backbones_from_the_builder_they_are_handed():
    calls = []

    def counting(config):
        calls.append(config.backbone)
        return build_backbone(config)

    config = model_config("llmesr", {"n_items": 5, "backbone": "gru4rec", "shared_encoder": False})
    model = MODELS["llmesr"][0](config, build_backbone=counting)
    assert calls == ["gru4rec", "gru4rec"]  # the separate semantic encoder is a second backbone
    assert model.sem_backbone is not model.backbone
    assert type(build_model("llminit", model_config("llminit", {"n_items": 5})).backbone).__name__ == "SASRec"


def test_wrapper_constants_are_those_of_its_backbone():
    for backbone in backbones():
        if backbone not in BUILT_IN:
            continue
        model, plain = make_model("llminit", backbone), make_model(backbone)
        for constant in ("extra_item_rows", "bidirectional", "user_from_training_pass"):
            assert getattr(model, constant) == getattr(plain, constant), (backbone, constant)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_model_module_imports_the_registry_or_anything_above_the_models():
    above = ("llmesr.training", "llmesr.evaluation", "llmesr.serving", "llmesr.cli", "llmesr.experiments")
    for path in MODELS_DIR.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imports = imports_of(path)
        assert "llmesr.models" not in imports and "llmesr" not in imports, path.name
        assert not [m for m in imports if m.startswith(above)], path.name


def test_no_model_module_checks_a_model_name_outside_the_registry():
    """Wrappers never ask which backbone they hold: outside the registry no model name is compared
    with anything or listed (a config's default backbone is a setting, not a check)."""
    for path in MODELS_DIR.glob("*.py"):
        if path.name == "__init__.py":
            continue
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                operands = node.elts
            else:
                continue
            named |= {o.value for o in operands if isinstance(o, ast.Constant) and o.value in BUILT_IN}
        assert not named, (path.name, named)
        assert "is_bert" not in path.read_text(), path.name


def test_every_model_is_a_sequential_recommender():
    assert all(issubclass(cls, SequentialRecommender) for cls, _ in MODELS.values())
