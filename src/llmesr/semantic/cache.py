"""Resumable on-disk cache of text embeddings, one ``.npy`` file per fixed batch of texts.

Layout::

    cache_dir/<sha256(identity)[:16]>/identity.txt     the encoder identity, for people
    cache_dir/<sha256(identity)[:16]>/<batch_key>.npy  float32 (len(batch), dim)

The texts are ordered by length (characters; ties by position) and that order is cut into
consecutive batches of ``batch_size`` (:func:`batch_plan`). Each batch then holds texts of about
the same length, so a transformer pads it little and wastes little work on padding, and the plan
depends on the texts alone: a batch holds the same texts, padded the same way, on every run, so
cached and freshly encoded results are byte-identical.
``batch_key = sha256(identity + "\\0" + "\\0".join(batch))``, so changing a template or the encoder
invalidates exactly the batches whose texts changed. Each file is written atomically, so a killed
run resumes from its finished batches and never reads a half-written file.

Several processes (``torchrun`` ranks) can fill one cache together: :func:`encode_share` encodes
the batches ``rank, rank + world, ...`` of the plan, and any process then assembles the whole
matrix from the cache with :func:`embed_texts`.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path

import numpy as np

from llmesr.io import atomic_save_npy, atomic_write_text
from llmesr.progress import Progress
from llmesr.semantic.encoders import EncoderError, TextEncoder

# Temp files older than this are leftovers of a killed run (a live writer finishes a batch file
# in well under a second after encoding it) and are removed on the next run.
_STALE_TEMP_S = 3600.0


def batch_plan(texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Positions of the texts in each cache batch: the texts sorted by length (stable), cut into
    consecutive runs of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def embed_texts(
    texts: list[str],
    encoder: TextEncoder,
    cache_dir: Path,
    batch_size: int = 256,
    progress: bool = True,
    label: str = "texts",
) -> np.ndarray:
    """``encoder.encode(texts)`` as float32 ``(len(texts), encoder.dim)``, batch by batch via the cache.
    ``progress``: a bar on a terminal, else one line naming ``label`` when done."""
    plan, folder = _prepare(texts, encoder, cache_dir, batch_size)
    out = np.empty((len(texts), int(encoder.dim)), dtype=np.float32)
    for rows, vectors in _fill(texts, plan, encoder, folder, progress, f"embedding {label}"):
        out[rows] = vectors
    return out


def encode_share(
    texts: list[str],
    encoder: TextEncoder,
    cache_dir: Path,
    batch_size: int = 256,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
) -> int:
    """Encode into the cache this process's share of the batches (every ``world``-th one from
    ``rank``), skipping those already cached; returns how many batches the share holds."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    plan, folder = _prepare(texts, encoder, cache_dir, batch_size)
    share = plan[rank::world]
    for _ in _fill(texts, share, encoder, folder, progress, f"embedding (rank {rank}/{world})"):
        pass
    return len(share)


def _prepare(texts: list[str], encoder: TextEncoder, cache_dir: Path, batch_size: int):
    plan = batch_plan(texts, batch_size)
    if any("\x00" in t for t in texts):
        # NUL separates texts in the batch key; allowing it would let two batches share a key.
        raise ValueError("texts must not contain NUL characters")
    folder = cache_folder(cache_dir, encoder.identity)
    if texts:
        folder.mkdir(parents=True, exist_ok=True)
        _write_identity(folder, encoder.identity)
        _remove_stale_temps(folder)
    return plan, folder


def _fill(
    texts: list[str], plan: list[np.ndarray], encoder: TextEncoder, folder: Path, progress: bool, desc: str
):
    """Yield ``(positions, vectors)`` for each planned batch, from the cache or freshly encoded
    (and then cached)."""
    dim = int(encoder.dim)
    n_cached = 0
    batches = Progress(progress).over(
        plan, desc, "batches", len(plan), detail=lambda: f"{n_cached} from the cache"
    )
    for rows in batches:
        batch = [texts[i] for i in rows]
        path = folder / f"{batch_key(encoder.identity, batch)}.npy"
        vectors = _load_valid(path, (len(batch), dim))
        if vectors is None:
            vectors = _encode_checked(encoder, batch, dim)
            atomic_save_npy(path, vectors)
        else:
            n_cached += 1
        yield rows, vectors


def cache_folder(cache_dir: Path, identity: str) -> Path:
    """The per-encoder folder inside ``cache_dir``."""
    return Path(cache_dir) / hashlib.sha256(identity.encode()).hexdigest()[:16]


def batch_key(identity: str, batch: list[str]) -> str:
    h = hashlib.sha256(identity.encode())
    h.update(b"\x00")
    h.update("\x00".join(batch).encode())
    return h.hexdigest()


def _encode_checked(encoder: TextEncoder, batch: list[str], dim: int) -> np.ndarray:
    emb = np.asarray(encoder.encode(batch))
    if emb.ndim != 2 or emb.shape != (len(batch), dim):
        raise EncoderError(
            f"encoder {encoder.identity!r} returned shape {emb.shape} for {len(batch)} texts; "
            f"expected ({len(batch)}, {dim})"
        )
    emb = emb.astype(np.float32, copy=False)
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb).all(axis=1)).sum())
        raise EncoderError(f"encoder {encoder.identity!r} returned NaN/Inf for {bad} of {len(batch)} texts")
    return np.ascontiguousarray(emb)


def _load_valid(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached batch, or None when it is absent or unusable (a warning says which)."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated or overwritten by something else: re-encode
        warnings.warn(f"embedding cache file {path} is unreadable ({exc}); re-encoding it", stacklevel=3)
        return None
    if arr.shape != shape or arr.dtype != np.float32 or not np.isfinite(arr).all():
        warnings.warn(
            f"embedding cache file {path} is invalid (shape {arr.shape}, dtype {arr.dtype}, "
            f"expected {shape} float32 and finite); re-encoding it",
            stacklevel=3,
        )
        return None
    return arr


def _write_identity(folder: Path, identity: str) -> None:
    path = folder / "identity.txt"
    if not path.exists() or path.read_text() != identity + "\n":
        atomic_write_text(path, identity + "\n")


def _remove_stale_temps(folder: Path) -> None:
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TEMP_S:
                tmp.unlink()
        except FileNotFoundError:  # another process finished or removed it
            pass
