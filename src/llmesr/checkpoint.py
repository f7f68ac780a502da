"""Checkpoints: a ``state_dict`` plus plain dicts (never pickled objects), loadable with
``weights_only=True``, and tied to the dataset they were trained on by its fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmesr.errors import ConfigError
from llmesr.io import atomic_torch_save
from llmesr.models import MODELS, BackboneConfig, SequentialRecommender, build_model, model_config

FORMAT = "llmesr-checkpoint-v1"


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used here (damaged, another dataset, another model)."""


def save_checkpoint(
    path: Path,
    *,
    model_name: str,
    model_config: dict,
    state_dict: dict,
    dataset: dict,
    extra: dict[str, Any] | None = None,
) -> None:
    atomic_torch_save(
        path,
        {
            "format": FORMAT,
            "model": model_name,
            "model_config": model_config,
            "state_dict": state_dict,
            "dataset": dataset,
            **(extra or {}),
        },
    )


def load_checkpoint(path: Path, *, fingerprint: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; ``fingerprint`` (the dataset's) must match when given."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to a user
        raise CheckpointError(f"{path}: not a readable llmesr checkpoint ({first_line(err)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an llmesr checkpoint (format {FORMAT!r} expected)")
    for key, kind in (("model", str), ("model_config", dict), ("state_dict", dict), ("dataset", dict)):
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"{path}: damaged checkpoint ({key!r} missing or not a {kind.__name__})")
    if fingerprint is not None and ckpt["dataset"].get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} was trained on dataset {ckpt['dataset'].get('name')!r} "
            f"(fingerprint {ckpt['dataset'].get('fingerprint')}), which is not the dataset given "
            f"(fingerprint {fingerprint}); ids would not line up"
        )
    return ckpt


def first_line(err: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, shortened: library errors (unpickling, ``load_state_dict``)
    often run over many lines."""
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else ""
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(err).__name__}: {text}".rstrip(": ")


def load_weights(model: torch.nn.Module, state_dict: dict, path: Path) -> None:
    """``model.load_state_dict`` whose failure is a :class:`CheckpointError` naming the file and the
    first offending keys on one line (PyTorch lists every key, one per line)."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        raise CheckpointError(f"{path}: weights do not fit the model it describes ({detail})") from None


def checkpoint_model_config(path: Path, ckpt: dict) -> BackboneConfig:
    """The model config a checkpoint records, refused (naming the file) when no model accepts it."""
    try:
        return model_config(ckpt["model"], ckpt["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: holds an unusable model configuration ({err})") from None


def init_from_run(model: torch.nn.Module, model_name: str, source: Path, fingerprint: str) -> str:
    """Start ``model`` from the best weights of a finished run (its folder, or a checkpoint file):
    all of it when that run trained the same model with the same settings, or a wrapper's
    ``backbone`` when it trained that backbone plain (CITIES and MELT fine-tune a converged
    backbone in their papers). Returns what was loaded, for the log; anything that does not fit is
    a :class:`CheckpointError` naming the file."""
    path = Path(source)
    path = path / "best.pt" if path.is_dir() else path
    if not path.exists():
        raise CheckpointError(f"init_from: no finished run at {source} ({path} is missing)")
    ckpt = load_checkpoint(path, fingerprint=fingerprint)
    stored = checkpoint_model_config(path, ckpt).to_dict()
    backbone = model.backbone if model.wraps_backbone else None
    if ckpt["model"] == model_name and stored == model.config.to_dict():
        load_weights(model, ckpt["state_dict"], path)
        return f"all weights from {path}"
    if isinstance(backbone, torch.nn.Module) and ckpt["model"] == model.config.backbone:
        differ = sorted(k for k, v in backbone.config.to_dict().items() if stored.get(k) != v)
        if differ:
            raise CheckpointError(
                f"init_from: {path} trained {ckpt['model']} with other settings ({', '.join(differ)})"
            )
        load_weights(backbone, ckpt["state_dict"], path)
        return f"the {ckpt['model']} backbone from {path}"
    wants = f"{model_name} with the same settings"
    if backbone is not None:
        wants += f", or plain {model.config.backbone}"
    raise CheckpointError(f"init_from: {path} trained {ckpt['model']}; this run needs {wants}")


def load_member(member: SequentialRecommender, path: Path, fingerprint: str, setting: str) -> None:
    """Load a finished run's best weights (``path``) into ``member``, a part of an ensemble that
    ``setting`` names. The run must have trained a model of the member's class with exactly the
    member's settings on this dataset, and its fixed tensors (buffers and frozen parameters, e.g.
    TextRec's text table) must be the ones this run built from its own data and semantic step."""
    try:
        ckpt = load_checkpoint(path, fingerprint=fingerprint)
        stored = checkpoint_model_config(path, ckpt).to_dict()
    except CheckpointError as err:
        raise CheckpointError(f"{setting}: {err}") from None
    kind = type(member).__name__
    if MODELS[ckpt["model"]][0] is not type(member):
        raise CheckpointError(f"{setting}: {path} trained {ckpt['model']}; this member is a {kind} model")
    own = member.config.to_dict()
    differ = [f"{k} {stored.get(k)!r}, here {v!r}" for k, v in own.items() if stored.get(k) != v]
    if differ:
        detail = "; ".join(differ[:6])
        raise CheckpointError(f"{setting}: {path} trained {kind} with other settings ({detail})")
    frozen = {n for n, p in member.named_parameters() if not p.requires_grad}
    frozen |= {n for n, _ in member.named_buffers()}
    mine, theirs = member.state_dict(), ckpt["state_dict"]
    changed = sorted(n for n in frozen if n in mine and n in theirs and not torch.equal(mine[n], theirs[n]))
    if changed:
        raise CheckpointError(
            f"{setting}: {path} was trained on other fixed inputs ({', '.join(changed)}) than this run "
            "builds: give this run the data and semantic settings that run had"
        )
    load_weights(member, theirs, path)


def model_from_checkpoint(
    path: Path, fingerprint: str | None = None, expected_model: str | None = None
) -> SequentialRecommender:
    """The model a checkpoint holds, in eval mode; ``expected_model`` (the run's) must match."""
    ckpt = load_checkpoint(path, fingerprint=fingerprint)
    if expected_model is not None and ckpt["model"] != expected_model:
        raise CheckpointError(f"{path} holds a {ckpt['model']} model, but its run trained {expected_model}")
    model = build_model(ckpt["model"], checkpoint_model_config(path, ckpt))
    load_weights(model, ckpt["state_dict"], path)
    model.eval()
    return model
