"""Self-contained model bundles: what a trained run exports for serving.

A bundle folder holds everything needed to recommend without the training data or a language
model at request time:

- ``bundle.json``: format, model name and config, dataset name and fingerprint, encoder and prompt
  settings (to embed new items), head/tail cuts;
- ``weights.pt``: the model's ``state_dict`` (loaded with ``weights_only=True``);
- ``item_table.npy``: the fused item table with a bias column, scores = ``[user_vector, 1] @ table.T``
  (the model's ``serving_scores`` of its ``serving_users``: EnsRec's holds both members' tables);
- ``items.parquet``: per internal item (row 0 = padding) its original id, title, training
  popularity and tail flag.

Recommendations for a history are one encoder pass (the backbone) and one matrix product (EnsRec:
one of each per member, fused).
What cold start changes (items, lookups, table, cold-start set) is one immutable snapshot,
:class:`~llmesr.serving.catalogue.Catalogue`, replaced in one assignment (see catalogue.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from llmesr.checkpoint import CheckpointError, first_line, load_weights
from llmesr.errors import ConfigError
from llmesr.io import load_matrix, read_json
from llmesr.serving.catalogue import Catalogue, quoted
from llmesr.serving.cold_start import DEFAULT_OPTIMISM, ColdItems, estimated_id_row

FORMAT = "llmesr-bundle-v1"
PRECOMPUTED = "precomputed:"  # encoder identity prefix of item vectors read from a file (export.py)


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or inconsistent."""


class ItemRefused(ValueError):
    """A new item this bundle cannot add (no semantic view, no comparable encoder, ...)."""


class DuplicateItem(ItemRefused):
    """A new item whose id the bundle already has."""


def _read_meta(path: Path) -> dict:
    """``bundle.json``, checked for the keys loading needs; a damaged file is a one-line BundleError."""
    try:
        meta = read_json(path, "bundle metadata")
    except ConfigError as err:
        raise BundleError(str(err)) from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path}: unknown bundle format {meta.get('format')!r}")
    for key, kind in (("model", str), ("model_config", dict), ("dataset", dict), ("encoder", dict)):
        if not isinstance(meta.get(key), kind):
            raise BundleError(f"{path}: damaged bundle metadata ({key!r} missing or not a {kind.__name__})")
    n_items = meta["dataset"].get("n_items")
    if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 1:
        raise BundleError(f"{path}: damaged bundle metadata (dataset n_items {n_items!r})")
    return meta


def _load_matrix(path: Path) -> np.ndarray:
    """A finite float matrix from a bundle's ``.npy`` file, as float32 (io.load_matrix checks it)."""
    return load_matrix(path).astype(np.float32, copy=False)


def _read_items(path: Path) -> pd.DataFrame:
    """``items.parquet``, checked for its columns and unique ids (``cold_start`` added if absent)."""
    try:
        items = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise BundleError(f"{path}: unreadable Parquet file ({first_line(err)})") from None
    missing = [c for c in ("item_id", "title", "popularity", "tail") if c not in items]
    if missing:
        raise BundleError(f"{path}: missing column(s) {', '.join(missing)}")
    ids = items["item_id"].astype(str).to_numpy()[1:]
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        raise BundleError(f"{path}: duplicate item_id {ids[duplicated][0]!r}")
    if "cold_start" not in items:
        items["cold_start"] = False
    return items


@dataclass
class Recommendation:
    items: np.ndarray  # (k,) original item ids, best first
    scores: np.ndarray  # (k,)
    internal: np.ndarray  # (k,) internal ids


class Bundle:
    """A loaded bundle: maps original ids, encodes histories, ranks the whole catalogue."""

    def __init__(
        self,
        folder: Path,
        faiss_threshold: int = 200_000,
        cold_start_neighbours: int = 10,
        cold_start_optimism: float = DEFAULT_OPTIMISM,
    ) -> None:
        from llmesr.models import build_model, model_config

        self.folder = Path(folder)
        meta_path = self.folder / "bundle.json"
        if not meta_path.exists():
            raise BundleError(f"{self.folder} is not a model bundle (no bundle.json)")
        self.meta = _read_meta(meta_path)
        for name in ("weights.pt", "item_table.npy", "items.parquet"):
            if not (self.folder / name).exists():
                raise BundleError(f"{self.folder} is an incomplete bundle: {name} is missing")
        try:
            mcfg = model_config(self.meta["model"], self.meta["model_config"])
        except (TypeError, ValueError) as err:
            raise BundleError(f"{meta_path}: unusable model configuration ({err})") from None
        self.model = build_model(self.meta["model"], mcfg)
        weights = self.folder / "weights.pt"
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
            raise BundleError(f"{weights}: not a readable weights file ({first_line(err)})") from None
        try:
            if not isinstance(state, dict):
                raise CheckpointError(f"{weights}: not a state_dict")
            load_weights(self.model, state, weights)
        except CheckpointError as err:
            raise BundleError(f"{err} (see bundle.json)") from None
        self.model.eval()
        table = torch.from_numpy(_load_matrix(self.folder / "item_table.npy"))
        items = _read_items(self.folder / "items.parquet")
        n = self.meta["dataset"]["n_items"]
        if table.shape[0] != n + 1 or len(items) != n + 1:
            raise BundleError(f"{self.folder}: item table / item list do not have {n} + 1 rows")
        if table.shape[1] != self._user_width():
            raise BundleError(
                f"{self.folder / 'item_table.npy'}: {table.shape[1]} columns, but the model's serving "
                f"rows have {self._user_width()} (user vector + 1 bias column per scored product)"
            )
        # The one mutable reference: readers take it once per request, add_item replaces it.
        self._state = Catalogue.build(items, table, ColdItems.empty(self.model.config.hidden_size))
        self._write_lock = threading.RLock()  # one addition (and one encoder load) at a time
        self._faiss_lock = threading.Lock()
        self.max_len = int(self.model.config.max_len)
        self.trained_items = n  # ids above this were added at serving time (cold start)
        self.faiss_threshold = faiss_threshold
        self.cold_start_neighbours = cold_start_neighbours
        if not (cold_start_optimism >= 0 and np.isfinite(cold_start_optimism)):
            raise ValueError(f"cold_start_optimism must be a finite number >= 0, got {cold_start_optimism}")
        self.cold_start_optimism = float(cold_start_optimism)
        start_map = self.folder / "id_start_map.npy"
        self._start_map = None
        if start_map.exists():
            m = torch.from_numpy(_load_matrix(start_map))
            want = (getattr(self.model.config, "semantic_dim", -2) + 1, self.model.config.hidden_size)
            if tuple(m.shape) != want or not torch.isfinite(m).all():
                raise BundleError(f"{start_map}: shape {tuple(m.shape)} or values do not fit bundle.json")
            self._start_map = m
        self._faiss = None
        self._encoder = None

    @torch.inference_mode()
    def _user_width(self) -> int:
        """Width of the model's serving rows, ``serving_users`` of a history of one item: what the
        item table must have."""
        from llmesr.data.sequences import Sequences

        batch = self.model.eval_input(Sequences.from_lists([[1]]), np.arange(1))
        return int(self.model.serving_users(batch).shape[1])

    # ---- the current snapshot (one read each: a request that needs several takes ``state``) -------
    @property
    def state(self) -> Catalogue:
        """The current catalogue snapshot; it never changes, later additions publish a new one."""
        return self._state

    @property
    def items(self) -> pd.DataFrame:
        return self._state.items

    @property
    def table(self) -> torch.Tensor:
        return self._state.table

    @property
    def item_ids(self) -> np.ndarray:
        return self._state.item_ids

    @property
    def n_items(self) -> int:
        """Items that can be recommended (cold-start additions included)."""
        return self._state.n_items

    def internal_ids(self, original: list[str]) -> np.ndarray:
        """Internal ids of original item ids; ``KeyError`` naming the unknown ids."""
        return self._state.internal_ids(original)

    def item_info(self, internal: int) -> dict:
        return self._state.item_info(internal)

    def search(self, query: str, limit: int = 20) -> list[int]:
        """Internal ids of items whose title contains ``query`` (case-insensitive), most popular
        first; the most popular items for an empty query."""
        return self._state.search(query, limit)

    @torch.inference_mode()
    def recommend_many(
        self,
        histories: list[list[str]],
        k: int = 10,
        exclude_seen: bool = True,
        state: Catalogue | None = None,
    ) -> list[Recommendation]:
        """Top-``k`` items for each history (original ids, oldest first), from ``state`` (default:
        the current snapshot; a caller that reads item details afterwards passes the one it took)."""
        from llmesr.data.sequences import Sequences

        state = state or self._state
        if k < 1:
            raise ValueError("k must be at least 1")
        if any(len(h) == 0 for h in histories):
            raise ValueError("every history needs at least one item")
        rows = [state.internal_ids(h).tolist() for h in histories]
        seqs = Sequences.from_lists(rows)
        if (seqs.items > self.trained_items).any():
            new = state.item_ids[int(seqs.items[seqs.items > self.trained_items][0])]
            raise ValueError(
                f"item {new!r} was added after training: it can be recommended, but the model "
                "cannot read it in a history yet"
            )
        batch = self.model.eval_input(seqs, np.arange(len(rows)))
        users = self.model.serving_users(batch)
        table, cold = state.table, state.cold
        bonus = cold.bonus(users[:, : self.model.config.hidden_size], self.cold_start_optimism)
        k = min(k, len(table) - 1)
        # The index searches inner products: only for models whose scores are one (not EnsRec's).
        if self.model.one_product_scores and len(table) - 1 > self.faiss_threshold:
            values, ids = self._faiss_top_k(users, seqs, k, exclude_seen, state, bonus)
        else:
            scores = self.model.serving_scores(users, table)
            scores[:, cold.ids] += bonus
            scores[:, 0] = float("-inf")
            if exclude_seen:
                row_of = np.repeat(np.arange(len(rows)), seqs.lengths)
                scores[torch.from_numpy(row_of), torch.from_numpy(seqs.items)] = float("-inf")
            top = torch.topk(scores, k, dim=1)
            values, ids = top.values.numpy(), top.indices.numpy()
        out = []
        for v, i in zip(values, ids, strict=True):
            keep = np.isfinite(v) & (i > 0)
            out.append(Recommendation(state.item_ids[i[keep]], v[keep], i[keep]))
        return out

    def _faiss_index(self):
        """The HNSW index of the *trained* items' rows, built on first use. Those rows never change,
        so the index is never written to again and concurrent searches are safe; cold-start items
        are scored exactly instead (``_faiss_top_k``)."""
        import faiss

        with self._faiss_lock:
            if self._faiss is None:
                rows = self._state.table[1 : self.trained_items + 1].numpy()
                index = faiss.IndexHNSWFlat(rows.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
                index.add(rows)
                self._faiss = index
        return self._faiss

    def _faiss_top_k(
        self, users: torch.Tensor, seqs, k: int, exclude_seen: bool, state: Catalogue, bonus: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k by inner product over an HNSW index of the trained items (large
        catalogues), asking for enough extra candidates to drop each history's own items. Cold-start
        items are scored exactly, with their optimism bonus, and merged in (they are few)."""
        import faiss

        index = self._faiss_index()
        extra = int(seqs.lengths.max()) if exclude_seen else 0
        want = min(k + extra, self.trained_items)
        params = faiss.SearchParametersHNSW(efSearch=max(64, 2 * want))  # per call: no shared setting
        values, ids = index.search(users.numpy().astype(np.float32), want, params=params)
        ids = np.where(ids >= 0, ids + 1, 0)  # index rows are items 1..N
        values = np.where(ids > 0, values, -np.inf)
        if exclude_seen:
            stride = len(state.table) + 1
            history = np.repeat(np.arange(len(seqs)), seqs.lengths) * stride + seqs.items
            seen = np.isin(np.arange(len(ids))[:, None] * stride + ids, history)
            values = np.where(seen, -np.inf, values)
        cold = state.cold
        if len(cold):
            cold_ids = cold.ids.numpy()
            exact = (users @ state.table[cold.ids].T + bonus).numpy()
            values = np.concatenate([values, exact], axis=1)
            ids = np.concatenate([ids, np.broadcast_to(cold_ids, exact.shape)], axis=1)
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(values, order, 1), np.take_along_axis(ids, order, 1)

    def add_item(self, item_id: str, title: str, brand: str = "", categories: list[str] = ()) -> int:
        """Cold start: embed a new item's text with the bundle's encoder and make it recommendable
        at once. Its semantic view is its own embedding through the adapter. Its ID view needs
        interactions: it starts where training started every item (its own PCA row, when the bundle
        has ``id_start_map.npy``) and moves by the mean of what training moved its
        ``cold_start_neighbours`` most similar trained items (cosine of LLM embeddings); without
        the map, it is the neighbours' mean ID vector. The bias is the neighbours' mean. Its ID
        logit is then scored optimistically (``cold_start_optimism``, see cold_start.py).

        Additions are serialised; readers are never blocked: the next snapshot is built aside and
        published in one assignment. ``ItemRefused`` (``DuplicateItem``) when the item cannot be
        added; ``EncoderError`` when the encoder cannot be loaded or fails."""
        self._check_can_add()
        with self._write_lock:
            state = self._state
            if str(item_id) in state.internal:
                raise DuplicateItem(f"item id {quoted(str(item_id))} already exists")
            e = self._embed(item_id, title, brand, categories)
            row, drift = self._cold_row(e, state.table)
            new = {"item_id": str(item_id), "title": title, "popularity": 0, "tail": True, "cold_start": True}
            internal = state.n_items + 1
            cold = state.cold.add(internal, drift) if self.model.config.use_collaborative else state.cold
            self._state = state.with_item(new, row, cold)
        return internal

    def _check_can_add(self) -> None:
        """Refuse up front what no encoder call could fix."""
        if not self.model.cold_start_items or not self.model.config.use_semantic:
            model = self.meta["model"]
            raise ItemRefused(f"this bundle's model ({model}) has no semantic view for new items")
        identity = self.meta["encoder"].get("identity") or ""
        if identity.startswith(PRECOMPUTED):
            raise ItemRefused(
                f"this bundle was trained from precomputed item embeddings ({identity}): no encoder "
                "can embed a new item comparably; add it to the embeddings file and retrain"
            )

    def _embed(self, item_id: str, title: str, brand: str, categories: list[str]) -> torch.Tensor:
        """(1, d) LLM embedding of a new item's prompt (the template the bundle was trained with)."""
        from llmesr.semantic.prompts import item_prompts

        enc = self.meta["encoder"]
        fields = pd.DataFrame(
            {"title": ["", title], "brand": ["", brand], "categories": ["", ", ".join(categories)]}
        )
        text = item_prompts(
            fields, np.array(["", str(item_id)], dtype=object), enc["item_template"], enc["prompt_domain"]
        ).texts[0]
        vector = self.encoder().encode([text])
        dim = self.model.config.semantic_dim
        if vector.shape != (1, dim) or not np.isfinite(vector).all():
            raise ItemRefused(
                f"the encoder returned a vector of shape {vector.shape}, expected (1, {dim}) and finite"
            )
        return torch.from_numpy(vector).float()

    @torch.inference_mode()
    def _cold_row(self, e: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused table row of a new item with embedding ``e`` and its neighbours' drifts.
        The ID view and the bias have no interactions to learn from: they come from the most
        similar trained items by LLM-embedding cosine (what a similar item has learned); the
        semantic view is the new item's own."""
        model = self.model
        trained = model.semantic[1 : self.trained_items + 1]
        sims = F.normalize(trained, dim=1) @ F.normalize(e, dim=1)[0]
        similar = torch.topk(sims, min(self.cold_start_neighbours, len(sims))).indices + 1
        near_rows = table[similar, : model.config.hidden_size]
        id_row, drift = estimated_id_row(e, model.semantic[similar], near_rows, self._start_map)
        parts = [id_row] if model.config.use_collaborative else []
        parts += [model.adapter(e), table[similar, -1:].mean(0, keepdim=True)]
        return torch.cat(parts, dim=1), drift

    def encoder(self):
        """The bundle's text encoder, loaded on first use and checked against the bundle's identity
        (``ItemRefused`` when it differs: new items would not be comparable)."""
        from llmesr.semantic.encoder_table import make_encoder

        with self._write_lock:
            if self._encoder is None:
                enc = self.meta["encoder"]
                encoder = make_encoder(enc["spec"])
                if enc.get("identity") and encoder.identity != enc["identity"]:
                    raise ItemRefused(
                        f"encoder {encoder.identity!r} differs from the one the bundle was trained with "
                        f"({enc['identity']!r}): new items would not be comparable"
                    )
                self._encoder = encoder
        return self._encoder

    def recommend(self, history: list[str], k: int = 10, exclude_seen: bool = True) -> Recommendation:
        return self.recommend_many([history], k, exclude_seen)[0]
