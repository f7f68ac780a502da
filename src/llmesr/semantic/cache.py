"""Resumable on-disk cache of text embeddings, one ``.npy`` file per fixed batch of texts.

Layout::

    cache_dir/<sha256(identity)[:16]>/identity.txt     the encoder identity, for people
    cache_dir/<sha256(identity)[:16]>/<batch_key>.npy  float32 (len(batch), dim)

The text list is cut into consecutive batches of ``batch_size`` *by position*, so a batch holds the
same texts (and is padded the same way inside a transformer) on every run: cached and freshly
encoded results are byte-identical. ``batch_key = sha256(identity + "\\0" + "\\0".join(batch))``,
so changing a template or the encoder invalidates exactly the batches whose texts changed. Each
file is written atomically, so a killed run resumes from its finished batches and never reads a
half-written file.
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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any("\x00" in t for t in texts):
        # NUL separates texts in the batch key; allowing it would let two batches share a key.
        raise ValueError("texts must not contain NUL characters")
    dim = int(encoder.dim)
    out = np.empty((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    folder = cache_folder(cache_dir, encoder.identity)
    folder.mkdir(parents=True, exist_ok=True)
    _write_identity(folder, encoder.identity)
    _remove_stale_temps(folder)

    starts = range(0, len(texts), batch_size)
    n_cached = 0
    batches = Progress(progress).over(
        starts, f"embedding {label}", "batches", len(starts), detail=lambda: f"{n_cached} from the cache"
    )
    for start in batches:
        batch = texts[start : start + batch_size]
        path = folder / f"{batch_key(encoder.identity, batch)}.npy"
        cached = _load_valid(path, (len(batch), dim))
        if cached is None:
            cached = _encode_checked(encoder, batch, dim)
            atomic_save_npy(path, cached)
        else:
            n_cached += 1
        out[start : start + len(batch)] = cached
    return out


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
