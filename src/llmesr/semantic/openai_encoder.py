"""An OpenAI-compatible ``/embeddings`` client (OpenAI, vLLM, TEI, Ollama): batching, retries with
back-off on 429/5xx and connection errors, ``Retry-After``, and strict response validation.
Standard library only."""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import os
import random
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

import numpy as np

from llmesr.semantic.encoders import EncoderError, check_texts

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoint

# Longest wait honoured from a server's Retry-After, so that a bogus value cannot hang a run.
_MAX_RETRY_AFTER_S = 600.0


class _Retryable(Exception):
    """A failed attempt worth repeating (rate limit, server error, network error)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OpenAIEncoder:
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

    Works with OpenAI itself and with the OpenAI-compatible servers of vLLM, TEI and Ollama. The API
    key is read from the environment variable ``api_key_env`` at each request (and sent only when
    set); it is never stored in ``identity`` or written to logs or error messages. Rate limits (429),
    server errors (5xx) and network errors are retried up to ``max_retries`` times with exponential
    back-off from ``backoff`` seconds, capped at ``max_backoff``, plus a little jitter, honouring a
    ``Retry-After`` header; any other HTTP error is raised at once. ``dim``, when not given, is
    learned from the first response (reading ``.dim`` before any encoding sends one probe request).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 256,
        max_retries: int = 6,
        timeout: float = 60.0,
        dim: int | None = None,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        if not model:
            raise EncoderError("openai: a model name is required (e.g. openai:text-embedding-ada-002)")
        if not base_url.startswith(("http://", "https://")):
            raise EncoderError(f"openai: base_url must start with http:// or https://, got {base_url!r}")
        if batch_size < 1 or max_retries < 0 or timeout <= 0:
            raise EncoderError("openai: batch_size >= 1, max_retries >= 0 and timeout > 0 are required")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._dim = dim
        self._rng = random.Random()
        self.identity: str = f"openai:{model}@{self.base_url}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.encode(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        check_texts(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        # OpenAI rejects empty strings; a lone space tokenises to the same (empty) content.
        cleaned = [t if t else " " for t in texts]
        chunks = [
            self._request(cleaned[start : start + self.batch_size], first=start)
            for start in range(0, len(cleaned), self.batch_size)
        ]
        return np.concatenate(chunks, axis=0)

    # -- one batch, with retries

    def _request(self, batch: list[str], first: int) -> np.ndarray:
        body = json.dumps({"model": self.model, "input": batch}).encode()
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                payload = self._post_once(body)
            except _Retryable as failure:
                if attempt == attempts:
                    raise EncoderError(
                        f"openai: {self.url} failed after {attempts} attempts: {failure.reason}"
                    ) from None
                delay = self._delay(attempt, failure.retry_after)
                log.warning(
                    "%s: %s; retrying in %.2f s (attempt %d of %d)",
                    self.url,
                    failure.reason,
                    delay,
                    attempt + 1,
                    attempts,
                )
                time.sleep(delay)
                continue
            return self._parse(payload, len(batch), first)
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_S)
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        # Jitter spreads out clients that were throttled at the same moment.
        return base * (1.0 + 0.1 * self._rng.random())

    def _post_once(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            status = err.code
            message = _server_message(_read_quietly(err))
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}: {message}", _retry_after(err.headers)) from None
            raise EncoderError(f"openai: {self.url} returned HTTP {status}: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            if isinstance(reason, ssl.SSLCertVerificationError):
                # A certificate problem will not fix itself; retrying would only delay the error.
                raise EncoderError(f"openai: {self.url}: TLS certificate check failed: {reason}") from None
            raise _Retryable(f"connection error: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise EncoderError(
                f"openai: {self.url} returned a body that is not JSON: {raw[:200]!r}"
            ) from None

    def _parse(self, payload: Any, n_inputs: int, first: int) -> np.ndarray:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise EncoderError(f"openai: {self.url} response has no 'data' list")
        if len(data) != n_inputs:
            raise EncoderError(f"openai: {self.url} returned {len(data)} embeddings for {n_inputs} inputs")
        # Servers may answer out of order; the 'index' field says which input each vector is for.
        rows: list[Any] = [None] * n_inputs
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < n_inputs or rows[index] is not None:
                raise EncoderError(f"openai: {self.url} returned a missing, duplicate or bad index {index!r}")
            rows[index] = item.get("embedding")
        lengths = {len(r) if isinstance(r, list) else -1 for r in rows}
        if -1 in lengths:
            raise EncoderError(f"openai: {self.url} returned an embedding that is not a list of numbers")
        if len(lengths) != 1:
            raise EncoderError(f"openai: {self.url} returned vectors of different lengths {sorted(lengths)}")
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError):
            raise EncoderError(f"openai: {self.url} returned non-numeric embedding values") from None
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise EncoderError(
                f"openai: embedding of input {first + int(np.argmax(bad))} contains NaN or Inf"
            )
        dim = vectors.shape[1]
        if self._dim is None:
            self._dim = dim
        elif dim != self._dim:
            raise EncoderError(f"openai: {self.url} returned {dim}-d vectors, expected {self._dim}")
        return vectors


def _read_quietly(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read()
    except Exception:  # the body is only used for the message; a broken one must not mask the status
        return b""


def _server_message(raw: bytes) -> str:
    """The human-readable error from an error body, in any of the formats the servers use:
    OpenAI/vLLM ``{"error": {"message": ...}}``, TEI/Ollama ``{"error": "..."}``, older vLLM
    ``{"message": ...}``; otherwise the start of the raw text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if obj.get("message"):
            return str(obj["message"])
    return " ".join(text.split())[:300] or "(empty body)"


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
