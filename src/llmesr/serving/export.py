"""Exporting a trained run as a serving bundle (the folder layout is described in bundle.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.errors import ConfigError
from llmesr.io import atomic_save_npy, atomic_torch_save, atomic_write_parquet, atomic_write_text
from llmesr.serving.bundle import FORMAT, PRECOMPUTED, BundleError


def export_bundle(run: Path, out: Path) -> Path:
    """Write the bundle of ``run`` (its best checkpoint) into ``out``; returns ``out``."""
    from llmesr.runs import RunFolder
    from llmesr.semantic.prompts import item_titles

    run, out = Path(run), Path(out)
    loaded = RunFolder(run).load()
    cfg, data, model = loaded.config, loaded.data, loaded.model
    ds = data.dataset
    popularity = np.bincount(data.split.train.items, minlength=ds.n_items + 1)
    items = pd.DataFrame(
        {
            "item_id": ds.item_ids.astype(str),
            "title": item_titles(ds.item_info, ds.item_ids).astype(str),
            "popularity": popularity,
            "tail": data.groups.tail_item,
            "cold_start": np.zeros(ds.n_items + 1, dtype=bool),
        }
    )
    items.loc[0, ["title", "popularity", "tail"]] = ["", 0, False]
    meta = {
        "format": FORMAT,
        "model": cfg.model,
        "model_config": model.config.to_dict(),
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint(), "n_items": ds.n_items},
        "encoder": {
            "spec": cfg.encoder,
            "identity": encoder_identity(cfg, data) if model.cold_start_items else None,
            "item_template": cfg.item_template,
            "prompt_domain": cfg.prompt_domain,
        },
        "groups": data.groups.describe(),
        "exclude_history": cfg.exclude_history,
        "source_run": str(run.resolve()),
    }
    start_map = id_start_map(cfg, data, model)
    out.mkdir(parents=True, exist_ok=True)
    if start_map is not None:
        atomic_save_npy(out / "id_start_map.npy", start_map)
    atomic_torch_save(out / "weights.pt", model.state_dict())
    atomic_save_npy(out / "item_table.npy", model.fused_item_table().numpy())
    atomic_write_parquet(out / "items.parquet", items)
    # bundle.json last: a folder without it is an unfinished export, never a broken bundle.
    atomic_write_text(out / "bundle.json", json.dumps(meta, indent=2) + "\n")
    return out


def id_start_map(cfg, data, model) -> np.ndarray | None:
    """For LLM-ESR with a PCA-initialised ID table: the affine map ``[e, 1] @ M`` from an item's
    LLM embedding to the ID row it started training from (the PCA of the semantic table), fitted by
    least squares on the trained items. PCA is affine, so the fit is exact up to rounding; a new
    item's ID row can then start where a trained item's did. None when it does not apply."""
    from llmesr.training.build import semantic_artifacts

    mcfg = model.config
    if not (model.cold_start_items and mcfg.use_collaborative and mcfg.use_semantic) or mcfg.id_init != "pca":
        return None
    start = semantic_artifacts(cfg, data, mcfg.hidden_size, neighbours=0).item_pca[1:].astype(np.float64)
    emb = model.semantic.detach()[1 : mcfg.n_items + 1].double().numpy()
    design = np.hstack([emb, np.ones((len(emb), 1))])
    mapping = np.linalg.lstsq(design, start, rcond=None)[0]
    error = np.abs(design @ mapping - start).max()
    if not error <= 1e-4 * max(np.abs(start).max(), 1e-12):
        raise BundleError(f"PCA start rows are not an affine map of the semantic table (error {error:.2e})")
    return mapping.astype(np.float32)


def encoder_identity(cfg, data) -> str:
    """The identity of what made the run's item vectors, from the artifacts manifest (the
    ``semantic_dir`` the run was trained from, else the keyed cache): the encoder's, or
    ``precomputed:<sha256 prefix of the file>`` for ``item_embeddings_file`` runs, whose item vectors
    no encoder made (the manifest's encoder only embedded the user prompts)."""
    from llmesr.semantic.pipeline import embed_for_config, read_manifest

    if cfg.semantic_dir:
        try:
            manifest = read_manifest(Path(cfg.semantic_dir))
        except ValueError as err:
            raise ConfigError(f"semantic_dir: {err}") from None
    else:
        manifest = embed_for_config(cfg, data.dataset, data.split)[1]
    settings = manifest.get("settings") or {}
    if settings.get("item_embeddings_file"):
        return f"{PRECOMPUTED}{settings.get('item_embeddings_sha')}"
    return str(manifest.get("encoder"))
