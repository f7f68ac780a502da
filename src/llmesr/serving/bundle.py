"""Self-contained model bundles: what a trained run exports for serving.

A bundle folder holds everything needed to recommend without the training data or a language
model at request time:

- ``bundle.json``: format, model name and config, dataset name and fingerprint, encoder and prompt
  settings (to embed new items), head/tail cuts;
- ``weights.pt``: the model's ``state_dict`` (loaded with ``weights_only=True``);
- ``item_table.npy``: the fused item table with a bias column, scores = ``[user_vector, 1] @ table.T``;
- ``items.parquet``: per internal item (row 0 = padding) its original id, title, training
  popularity and tail flag.

Recommendations for a history are one encoder pass (the backbone) and one matrix product.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from llmesr.checkpoint import CheckpointError
from llmesr.io import atomic_save_npy, atomic_torch_save, atomic_write_text

FORMAT = "llmesr-bundle-v1"


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or inconsistent."""


def export_bundle(run: Path, out: Path) -> Path:
    """Write the bundle of ``run`` (its best checkpoint) into ``out``; returns ``out``."""
    from llmesr.cli import load_run_config
    from llmesr.semantic.prompts import item_titles
    from llmesr.training import model_from_checkpoint, prepare_data

    run, out = Path(run), Path(out)
    cfg = load_run_config(run)
    data = prepare_data(cfg)
    model = model_from_checkpoint(run / "best.pt", data.dataset.fingerprint())
    ds = data.dataset
    popularity = np.bincount(data.split.train.items, minlength=ds.n_items + 1)
    items = pd.DataFrame(
        {
            "item_id": ds.item_ids.astype(str),
            "title": item_titles(ds.item_info, ds.item_ids).astype(str),
            "popularity": popularity,
            "tail": data.groups.tail_item,
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
            "item_template": cfg.item_template,
            "prompt_domain": cfg.prompt_domain,
        },
        "groups": data.groups.describe(),
        "exclude_history": cfg.exclude_history,
        "source_run": str(run.resolve()),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out / "weights.pt", model.state_dict())
    atomic_save_npy(out / "item_table.npy", model.fused_item_table().numpy())
    tmp = out / ".items.parquet.tmp"
    items.to_parquet(tmp, index=False)
    tmp.replace(out / "items.parquet")
    # bundle.json last: a folder without it is an unfinished export, never a broken bundle.
    atomic_write_text(out / "bundle.json", json.dumps(meta, indent=2) + "\n")
    return out


@dataclass
class Recommendation:
    items: np.ndarray  # (k,) original item ids, best first
    scores: np.ndarray  # (k,)
    internal: np.ndarray  # (k,) internal ids


class Bundle:
    """A loaded bundle: maps original ids, encodes histories, ranks the whole catalogue."""

    def __init__(self, folder: Path) -> None:
        from llmesr.models import build_model, model_config

        self.folder = Path(folder)
        meta_path = self.folder / "bundle.json"
        if not meta_path.exists():
            raise BundleError(f"{self.folder} is not a model bundle (no bundle.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise BundleError(f"{meta_path}: unknown bundle format {self.meta.get('format')!r}")
        for name in ("weights.pt", "item_table.npy", "items.parquet"):
            if not (self.folder / name).exists():
                raise BundleError(f"{self.folder} is an incomplete bundle: {name} is missing")
        self.model = build_model(
            self.meta["model"], model_config(self.meta["model"], self.meta["model_config"])
        )
        try:
            state = torch.load(self.folder / "weights.pt", map_location="cpu", weights_only=True)
            self.model.load_state_dict(state)
        except (RuntimeError, CheckpointError) as err:
            raise BundleError(f"{self.folder}/weights.pt does not fit bundle.json: {err}") from None
        self.model.eval()
        self.table = torch.from_numpy(np.load(self.folder / "item_table.npy", allow_pickle=False))
        self.items = pd.read_parquet(self.folder / "items.parquet")
        n = self.meta["dataset"]["n_items"]
        if self.table.shape[0] != n + 1 or len(self.items) != n + 1:
            raise BundleError(f"{self.folder}: item table / item list do not have {n} + 1 rows")
        self.index = pd.Index(self.items["item_id"].iloc[1:])
        self.max_len = int(self.meta["model_config"]["max_len"])

    @property
    def n_items(self) -> int:
        return len(self.items) - 1

    def internal_ids(self, original: list[str]) -> np.ndarray:
        """Internal ids of original item ids; ``KeyError`` naming every unknown id."""
        idx = self.index.get_indexer(pd.Index([str(i) for i in original], dtype=object))
        if (idx < 0).any():
            unknown = [str(original[i]) for i in np.flatnonzero(idx < 0)]
            raise KeyError(f"unknown item id(s): {', '.join(map(repr, unknown[:10]))}")
        return idx + 1

    @torch.inference_mode()
    def recommend_many(
        self, histories: list[list[str]], k: int = 10, exclude_seen: bool = True
    ) -> list[Recommendation]:
        """Top-``k`` items for each history (original ids, oldest first)."""
        from llmesr.data.sequences import Sequences

        if k < 1:
            raise ValueError("k must be at least 1")
        if any(len(h) == 0 for h in histories):
            raise ValueError("every history needs at least one item")
        rows = [self.internal_ids(h).tolist() for h in histories]
        seqs = Sequences.from_lists(rows)
        batch = self.model.eval_input(seqs, np.arange(len(rows)))
        users = self.model.user_vectors(batch)
        scores = torch.cat([users, torch.ones(len(rows), 1)], dim=1) @ self.table.T
        scores[:, 0] = float("-inf")
        if exclude_seen:
            row_of = np.repeat(np.arange(len(rows)), seqs.lengths)
            scores[torch.from_numpy(row_of), torch.from_numpy(seqs.items)] = float("-inf")
        k = min(k, self.n_items)
        top = torch.topk(scores, k, dim=1)
        out = []
        for values, ids in zip(top.values.numpy(), top.indices.numpy(), strict=True):
            keep = np.isfinite(values)
            out.append(Recommendation(self.items["item_id"].to_numpy()[ids[keep]], values[keep], ids[keep]))
        return out

    def recommend(self, history: list[str], k: int = 10, exclude_seen: bool = True) -> Recommendation:
        return self.recommend_many([history], k, exclude_seen)[0]
