"""Text encoders behind one small interface (to be completed)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


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
