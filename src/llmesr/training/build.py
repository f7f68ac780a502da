"""Building what a run trains: the model from the registry (with the semantic artifacts it needs, the
reference table of the run it aligns with, the weights ``init_from`` names and the parts it takes
from finished runs), on its device, and its optimiser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmesr.checkpoint import (
    CheckpointError,
    checkpoint_model_config,
    init_from_run,
    load_checkpoint,
    load_member,
)
from llmesr.errors import ConfigError
from llmesr.models import MODELS, SequentialRecommender, for_training, model_config
from llmesr.runs.data import RunData
from llmesr.runs.folder import RunFolder
from llmesr.semantic.artifacts import SemanticArtifacts
from llmesr.semantic.pipeline import embed_for_config, load_artifacts, load_semantic_dir


def create_model(cfg: Any, data: RunData) -> SequentialRecommender:
    """The configured model, initialised from the run seed, as the trainer starts it."""
    torch.manual_seed(cfg.seed)
    values = {"n_items": data.dataset.n_items, **cfg.model_settings()}
    try:
        mcfg = model_config(cfg.model, values)
    except (TypeError, ValueError) as err:  # the model config's own checks of its settings
        raise ConfigError(f"model {cfg.model!r}: {err}") from None
    cls = MODELS[cfg.model][0]
    mcfg = with_member_settings(cls, mcfg, data)
    source = cls.reference_run(mcfg)
    reference = reference_table(Path(source), data) if source else None  # before the semantic step
    art = None
    if cls.needs_semantic:
        art = semantic_artifacts(cfg, data, mcfg.hidden_size, neighbours=cls.similar_users_needed(mcfg))
    try:
        model = for_training(cfg.model, mcfg, data.split.train, art)
        if reference is not None:
            model.set_reference_table(reference)
        return model
    except ConfigError:
        raise
    except ValueError as err:  # models refuse inputs that do not fit them (table shapes) this way
        raise ConfigError(f"model {cfg.model!r}: {err}") from None


def finished_run(setting: str, source: str) -> RunFolder:
    """The run folder ``setting`` names, refused in one line (naming the setting) unless it is
    finished and has its best weights."""
    folder = RunFolder(source)
    try:
        folder.require_finished()
        folder.require_weights()
    except ConfigError as err:
        raise ConfigError(f"{setting}: {err}") from None
    return folder


def with_member_settings(cls: type[SequentialRecommender], mcfg: Any, data: RunData) -> Any:
    """``mcfg`` completed with the model settings of the finished runs its members take theirs from
    (:meth:`~llmesr.models.base.SequentialRecommender.member_runs`); each run must be finished, on
    this dataset, and have trained the model the member is."""
    stored = {}
    for setting, (source, expected) in cls.member_runs(mcfg).items():
        folder = finished_run(setting, source)
        best = folder.file(RunFolder.BEST)
        try:
            ckpt = load_checkpoint(best, fingerprint=data.dataset.fingerprint())
        except CheckpointError as err:
            raise ConfigError(f"{setting}: {err}") from None
        trained = MODELS.get(ckpt["model"], (None,))[0]
        if trained is not expected:
            want = expected.display_name or expected.__name__
            raise ConfigError(f"{setting}: {source} trained {ckpt['model']}, not {want}")
        stored[setting] = checkpoint_model_config(best, ckpt).to_dict()
    if not stored:
        return mcfg
    try:
        return cls.with_member_settings(mcfg, stored)
    except ValueError as err:
        raise ConfigError(f"model {cls.display_name or cls.__name__}: {err}") from None


def reference_table(source: Path, data: RunData) -> np.ndarray:
    """The (n_items + 1, d) item vectors of the finished run ``source`` (its serving table without
    the bias column), refused unless that run was trained on this very dataset."""
    folder = RunFolder(source)
    try:
        folder.require_finished()
    except ConfigError as err:
        raise ConfigError(f"reference run: {err}") from None
    fingerprint, expected = folder.fingerprint(), data.dataset.fingerprint()
    if fingerprint != expected:
        raise ConfigError(
            f"reference run {source} was trained on another dataset (fingerprint {fingerprint}, this "
            f"run's is {expected}); ids would not line up"
        )
    return folder.item_table()[:, :-1]


def semantic_artifacts(cfg: Any, data: RunData, width: int, neighbours: int) -> SemanticArtifacts:
    """The semantic step's outputs for this dataset and split (computed first if not cached),
    checked against the model: PCA ``width`` and at least ``neighbours`` similar users each."""
    if cfg.semantic_dir:
        folder = Path(cfg.semantic_dir)
        try:
            art = load_semantic_dir(folder, data.dataset, data.split)
        except ValueError as err:
            raise ConfigError(f"semantic_dir: {err}") from None
    else:
        folder, _ = embed_for_config(cfg, data.dataset, data.split)
        art = load_artifacts(folder, data.dataset)
    try:
        art.check(folder, data.dataset.n_items, data.dataset.n_users, width, neighbours)
    except ValueError as err:
        raise ConfigError(f"semantic artifacts rejected: {err}") from None
    return art


def start_weights(model: SequentialRecommender, cfg: Any, data: RunData) -> str | None:
    """Load the weights ``init_from`` names (a resumed run then overwrites them with its last.pt)."""
    if not cfg.init_from:
        return None
    return init_from_run(model, cfg.model, Path(cfg.init_from), data.dataset.fingerprint())


def member_weights(model: SequentialRecommender, data: RunData) -> list[str]:
    """Load the parts a model takes from finished runs (its ``finished_members``: EnsRec's two) and
    freeze them; what was loaded, for the log. Each run must be finished, on this dataset and split."""
    loaded = []
    for setting, (source, member) in model.finished_members().items():
        folder = finished_run(setting, source)
        split = folder.dataset_info().get("split")
        if split != data.split.protocol:
            raise ConfigError(
                f"{setting}: {source} was trained under the {split!r} split, this run uses "
                f"{data.split.protocol!r}"
            )
        best = folder.file(RunFolder.BEST)
        load_member(member, best, data.dataset.fingerprint(), setting)
        member.requires_grad_(False)
        loaded.append(f"{setting} from {best}")
    return loaded


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay
    )
