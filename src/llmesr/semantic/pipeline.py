"""``llmesr embed``: the whole offline semantic step for one dataset and split.

Outputs, in one folder per (dataset, split, encoder, prompt templates, retrieval settings):

| file | shape | content |
|---|---|---|
| ``item_embeddings.npy`` | (N + 1, d) | encoded item prompts; row 0 (padding) is zeros |
| ``item_pca.npy`` | (N + 1, h) | PCA of the item rows to the model width (ID-table init); row 0 zeros |
| ``user_embeddings.npy`` | (U, d) | encoded user prompts (training prefix only) |
| ``similar_users.npy`` | (U, K) | top-K most similar other users by cosine (internal user ids) |
| ``manifest.json`` | | what produced them: dataset fingerprint, encoder identity, templates... |

Every expensive step goes through the batch cache, and every file is written atomically, so a
killed run rerun with the same settings picks up where it stopped and ends with byte-identical files.

Under ``torchrun`` (``torchrun --nproc_per_node N -m llmesr.cli embed ...``, or a DDP training run
whose embeddings are not cached yet) the ranks encode disjoint shares of the item and user batches
into the same cache (each on its own GPU with ``encoder_device: cuda``); rank 0 then assembles the
matrices from the cache, fits the PCA, retrieves similar users and writes the folder while the
other ranks wait. A killed rank loses only the batch it was encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmesr.allocator import reuse_freed_memory
from llmesr.data.dataset import SequenceDataset
from llmesr.data.split import Split
from llmesr.errors import ConfigError
from llmesr.io import atomic_save_npy, atomic_write_json, read_json
from llmesr.parallel import DistContext, init_distributed
from llmesr.semantic.artifacts import SemanticArtifacts
from llmesr.semantic.cache import embed_texts, encode_share
from llmesr.semantic.encoders import EncoderError, TextEncoder, load_precomputed, one_line
from llmesr.semantic.pca import pca_project
from llmesr.semantic.prompts import USER_TEMPLATE, ItemPrompts, item_prompts, item_titles, user_prompts
from llmesr.semantic.retrieval import similar_users

FILES = SemanticArtifacts.files()


@dataclass(frozen=True)
class SemanticSettings:
    item_template: str = "default"
    domain: str = "beauty"
    user_template: str = USER_TEMPLATE
    user_max_items: int | None = None
    pca_dim: int = 64
    similar_k: int = 100
    retrieval: str = "auto"
    batch_size: int = 256
    # Precomputed item embeddings (.npy / Parquet), rows = internal items 1..N in order; the
    # encoder is then only used for user prompts. Recorded with its content hash.
    item_embeddings_file: str | None = None
    item_embeddings_sha: str | None = None


def default_cache_root() -> Path:
    return Path(os.environ.get("LLMESR_CACHE_DIR", ".llmesr_cache"))


def artifact_dir(
    root: Path, dataset: SequenceDataset, split: Split, encoder: TextEncoder, settings: SemanticSettings
) -> Path:
    """A folder name that changes whenever anything that changes the outputs changes."""
    key = json.dumps(
        {"encoder": encoder.identity, "split": split.protocol, **asdict(settings)}, sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return root / "semantic" / f"{dataset.name}-{dataset.fingerprint()}" / digest


def read_manifest(folder: Path) -> dict:
    """``folder/manifest.json``, refused with a ``ValueError`` naming it when it is damaged."""
    path = Path(folder) / "manifest.json"
    manifest = read_json(path, "semantic manifest")
    made_for = manifest.get("dataset")
    keys = ("name", "fingerprint", "split")
    if not (isinstance(made_for, dict) and all(isinstance(made_for.get(k), str) for k in keys)):
        raise ConfigError(f"{path}: damaged manifest (no dataset name, fingerprint and split)")
    return manifest


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # truncated, not .npy, or pickled objects
        raise ValueError(f"{path}: unreadable .npy file ({one_line(err)})") from None


def load_artifacts(folder: Path, dataset: SequenceDataset) -> SemanticArtifacts | None:
    """The finished outputs of ``folder`` if they are complete and belong to ``dataset`` (else None);
    a damaged file raises a ``ValueError`` naming it."""
    manifest = folder / "manifest.json"
    if not manifest.exists() or not all((folder / f).exists() for f in FILES):
        return None
    if read_manifest(folder)["dataset"]["fingerprint"] != dataset.fingerprint():
        return None
    return SemanticArtifacts(*(_load_npy(folder / f) for f in FILES))


def load_semantic_dir(folder: Path, dataset: SequenceDataset, split: Split) -> SemanticArtifacts:
    """The artifacts of a finished ``llmesr embed --out`` folder, refused with a ``ValueError`` naming
    the folder when they are incomplete or were made for another dataset or split."""
    missing = [f for f in ("manifest.json", *FILES) if not (folder / f).exists()]
    if missing:
        raise ValueError(f"{folder}: not a finished semantic folder (missing {', '.join(missing)})")
    made_for = read_manifest(folder)["dataset"]
    if made_for["fingerprint"] != dataset.fingerprint() or made_for["split"] != split.protocol:
        raise ValueError(
            f"{folder}: made for dataset {made_for['name']!r} ({made_for['fingerprint']}, "
            f"{made_for['split']}), not {dataset.name!r} ({dataset.fingerprint()}, {split.protocol})"
        )
    return load_artifacts(folder, dataset)


def _finished_manifest(
    out_dir: Path, dataset: SequenceDataset, split: Split, encoder: TextEncoder, settings: SemanticSettings
) -> dict | None:
    """The manifest of a complete earlier run with exactly these inputs, else None. A damaged
    folder (a truncated file) is recomputed, like a damaged batch of the embedding cache."""
    try:
        if load_artifacts(out_dir, dataset) is None:
            return None
        manifest = read_manifest(out_dir)
    except ValueError as err:
        warnings.warn(f"{err}; computing the semantic step again", stacklevel=3)
        return None
    same = (
        manifest.get("encoder") == encoder.identity
        and manifest.get("settings") == asdict(settings)
        and manifest["dataset"]["split"] == split.protocol
    )
    return manifest if same else None


def run_semantic_step(
    dataset: SequenceDataset,
    split: Split,
    encoder: TextEncoder,
    settings: SemanticSettings,
    out_dir: Path,
    cache_dir: Path,
    progress: bool = True,
    item_embeddings: np.ndarray | None = None,
) -> dict:
    """Compute (or reuse) every semantic artifact into ``out_dir``; returns the manifest.
    ``item_embeddings``: the ``settings.item_embeddings_file`` matrix when the caller loaded it."""
    done = _finished_manifest(out_dir, dataset, split, encoder, settings)
    if done is not None:
        return {**done, "timings": {"reused_s": 0.0}}
    items = item_prompts(dataset.item_info, dataset.item_ids, settings.item_template, settings.domain)
    titles = item_titles(dataset.item_info, dataset.item_ids)
    # Training prefix only: the validation and test items never reach a user prompt.
    users = user_prompts(split.train, titles, settings.user_template, max_items=settings.user_max_items)
    group = init_distributed()
    if group.world > 1:
        t = time.perf_counter()
        for texts in ([] if settings.item_embeddings_file else items.texts, users):
            encode_share(texts, encoder, cache_dir, settings.batch_size, group.rank, group.world, progress)
        share_s = time.perf_counter() - t
        group.barrier()  # every batch is cached now
        if group.rank != 0:
            # This rank's share of the retrieval (rank 0 runs its own inside _assemble).
            user_emb = embed_texts(users, encoder, cache_dir, settings.batch_size, False, "users")
            _similar_users(user_emb, settings, dataset.n_users, group)
            group.barrier()  # rank 0 has written the folder
            group.close()
            return {**read_manifest(out_dir), "timings": {"share_s": share_s}}
    manifest = _assemble(
        dataset, split, encoder, settings, out_dir, cache_dir, progress, item_embeddings, items, users, group
    )
    if group.world > 1:
        group.barrier()
        group.close()
    return manifest


def _assemble(
    dataset: SequenceDataset,
    split: Split,
    encoder: TextEncoder,
    settings: SemanticSettings,
    out_dir: Path,
    cache_dir: Path,
    progress: bool,
    item_embeddings: np.ndarray | None,
    items: ItemPrompts,
    users: list[str],
    group: DistContext,
) -> dict:
    """Encode (or read from the cache) both prompt sets, then PCA, retrieval (shared with the
    other ranks under ``torchrun``) and the files."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if settings.item_embeddings_file:
        item_emb = item_embeddings if item_embeddings is not None else load_item_embeddings(settings, dataset)
    else:
        item_emb = embed_texts(items.texts, encoder, cache_dir, settings.batch_size, progress, "items")
    timings["items_s"] = time.perf_counter() - t

    t = time.perf_counter()
    user_emb = embed_texts(users, encoder, cache_dir, settings.batch_size, progress, "users")
    timings["users_s"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        pca = pca_project(item_emb, settings.pca_dim)
    except ValueError as err:  # a catalogue smaller than the model width
        raise ConfigError(f"{err} (the PCA initialises the ID table: lower hidden_size)") from None
    timings["pca_s"] = time.perf_counter() - t
    t = time.perf_counter()
    neighbours = _similar_users(user_emb, settings, dataset.n_users, group)
    timings["similar_users_s"] = time.perf_counter() - t

    pad = lambda x: np.vstack([np.zeros((1, x.shape[1]), dtype=np.float32), x])  # noqa: E731 - row 0 = padding
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out_dir / "item_embeddings.npy", pad(item_emb))
    atomic_save_npy(out_dir / "item_pca.npy", pad(pca))
    atomic_save_npy(out_dir / "user_embeddings.npy", user_emb)
    atomic_save_npy(out_dir / "similar_users.npy", neighbours.astype(np.int64))
    manifest = {
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "split": split.protocol},
        "encoder": encoder.identity,
        "dim": int(item_emb.shape[1]),
        "settings": asdict(settings),
        "items": {
            "count": len(items.texts),
            "fallback_prompts": items.n_fallback,
            "placeholder_prompts": items.n_placeholder,
            "example": items.texts[0],
        },
        "users": {"count": len(users), "example": users[0]},
        "shapes": {
            "item_embeddings": list(pad(item_emb).shape),
            "item_pca": [len(pca) + 1, settings.pca_dim],
            "user_embeddings": list(user_emb.shape),
            "similar_users": list(neighbours.shape),
        },
    }
    # Timings vary run to run; they go to the log line, not into the manifest, so that a rerun
    # leaves byte-identical files.
    atomic_write_json(out_dir / "manifest.json", manifest)
    return {**manifest, "timings": timings}


def _similar_users(
    user_emb: np.ndarray, settings: SemanticSettings, n_users: int, group: DistContext
) -> np.ndarray:
    """Every user's similar users; under ``torchrun`` each rank searches for its share."""
    k = min(settings.similar_k, n_users - 1)
    return similar_users(user_emb, k=k, method=settings.retrieval, dist=group)


def _rank_device(device: str) -> str:
    """``cuda`` under ``torchrun`` means this rank's own GPU (``LOCAL_RANK``)."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{local}" if device == "cuda" and local is not None else device


def encoder_options(cfg) -> dict:
    """Encoder constructor options from a :class:`llmesr.config.RunConfig` (only those set)."""
    spec = cfg.encoder.split(":", 1)[0].lower()
    options: dict = {}
    if spec != "openai":
        options["device"] = _rank_device(cfg.encoder_device)
    if cfg.encoder_batch_size:
        options["batch_size"] = cfg.encoder_batch_size
    if cfg.encoder_pooling:
        options["pooling"] = cfg.encoder_pooling
    if cfg.encoder_url:
        options["base_url"] = cfg.encoder_url
    if cfg.encoder_api_key_env:
        options["api_key_env"] = cfg.encoder_api_key_env
    if cfg.encoder_backend != "torch":
        if spec not in ("minilm", "st"):
            raise ConfigError(f"encoder_backend {cfg.encoder_backend} serves minilm and st: only, not {spec}")
        options["backend"] = cfg.encoder_backend
        options["onnx_dir"] = str(cache_root(cfg) / "onnx")
    return options


def cache_root(cfg) -> Path:
    """Where the semantic step of ``cfg`` keeps its caches."""
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root()


def settings_from_config(cfg, pca_dim: int) -> SemanticSettings:
    sha = None
    if cfg.item_embeddings_file:
        path = Path(cfg.item_embeddings_file)
        if not path.is_file():
            raise ConfigError(f"item_embeddings_file: no such file: {path}")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return SemanticSettings(
        item_embeddings_file=cfg.item_embeddings_file,
        item_embeddings_sha=sha,
        item_template=cfg.item_template,
        domain=cfg.prompt_domain,
        user_max_items=cfg.user_max_items,
        pca_dim=pca_dim,
        similar_k=cfg.similar_k,
        retrieval=cfg.retrieval,
        batch_size=cfg.embed_batch_size,
    )


def load_item_embeddings(settings: SemanticSettings, dataset: SequenceDataset) -> np.ndarray:
    """The precomputed item embeddings of ``settings``, checked against the dataset and the PCA
    width; any problem is an :class:`EncoderError` naming the key and the file."""
    try:
        item_emb = load_precomputed(settings.item_embeddings_file, n_rows=dataset.n_items)
    except EncoderError as err:
        raise EncoderError(f"item_embeddings_file: {err}") from None
    if item_emb.shape[1] < settings.pca_dim:
        raise EncoderError(
            f"item_embeddings_file: {settings.item_embeddings_file}: dimension {item_emb.shape[1]} "
            f"is below the model width {settings.pca_dim} that the PCA projects to"
        )
    return item_emb


def embed_for_config(
    cfg, dataset: SequenceDataset, split: Split, out_dir: Path | None = None
) -> tuple[Path, dict]:
    """Run (or reuse) the semantic step as a :class:`llmesr.config.RunConfig` describes it.
    Returns the artifact folder (``out_dir`` or the keyed default) and the manifest."""
    from llmesr.semantic.encoder_table import make_encoder

    if cfg.reuse_freed_memory:  # the encoder's attention and FFN buffers are tens of MB per batch
        reuse_freed_memory()
    settings = settings_from_config(cfg, pca_dim=cfg.hidden_size or 64)
    # A bad precomputed file fails before the encoder (possibly a large LLM) is loaded.
    items = load_item_embeddings(settings, dataset) if settings.item_embeddings_file else None
    encoder = make_encoder(cfg.encoder, **encoder_options(cfg))
    root = cache_root(cfg)
    folder = out_dir or artifact_dir(root, dataset, split, encoder, settings)
    manifest = run_semantic_step(
        dataset, split, encoder, settings, folder, root / "embeddings", cfg.progress, item_embeddings=items
    )
    return folder, manifest
