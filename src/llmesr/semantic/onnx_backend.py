"""ONNX Runtime execution of a sentence-transformers model: ``encoder_backend: onnx | onnx-int8``.

Why: encoding the user prompts is the longest part of a first run on CPU, and ONNX Runtime runs
the same transformer faster than eager PyTorch there; its dynamic int8 quantisation (weights
quantised per output channel, activations per batch) is faster again at a small, measured change
of the vectors (README, "The semantic step"). The vectors of ``onnx`` equal PyTorch's up to
float rounding; those of ``onnx-int8`` do not, so each backend is part of the encoder identity and
has its own cache entries.

The model is exported once — its transformer, the pooling (mean over the attention mask, or the
first token) and the L2 normalisation when the pipeline ends with one — with
``torch.onnx.export``, quantised with ``onnxruntime.quantization``, and kept (atomically written)
under ``<cache>/onnx/``, keyed by the encoder identity. Tokenisation stays the model's own.
onnxruntime and onnx are the optional extra ``fast`` (``pip install 'llmesr[fast]'``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmesr.io import atomic_write_by_path
from llmesr.semantic.encoders import EncoderError

BACKENDS = ("torch", "onnx", "onnx-int8")
_MISSING = "encoder_backend {backend}: onnxruntime and onnx are not installed (pip install 'llmesr[fast]')"


def check_backend(backend: str) -> None:
    """A one-line error for an unknown backend, or for an ONNX one without its packages."""
    if backend not in BACKENDS:
        raise EncoderError(f"encoder_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "torch":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise EncoderError(_MISSING.format(backend=backend)) from None


def runtime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


class OnnxSentencePipeline:
    """``SentenceTransformer.encode`` for Transformer -> Pooling (mean or CLS) [-> Normalize]
    pipelines, run by ONNX Runtime."""

    def __init__(
        self, model: Any, folder: Path, key: str, quantize: bool, threads: int | None = None
    ) -> None:
        check_backend("onnx-int8" if quantize else "onnx")
        import onnxruntime as ort

        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length)
        self.normalizes = type(model[-1]).__name__ == "Normalize"
        path = _exported(model, Path(folder), key, quantize)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int, normalize: bool) -> np.ndarray:
        """float32 (len(texts), dim): texts sorted by token count, encoded in batches of
        ``batch_size``, returned in input order."""
        lengths = [
            len(ids)
            for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        ]
        order = np.argsort(lengths, kind="stable")
        parts = []
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            enc = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
            }
            parts.append(self.session.run(None, feeds)[0])
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        if normalize and not self.normalizes:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def _exported(model: Any, folder: Path, key: str, quantize: bool) -> Path:
    """The model's ONNX file (int8 when ``quantize``), exported on first use."""
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    fp32 = folder / f"{name}.onnx"
    int8 = folder / f"{name}-int8.onnx"
    if not fp32.exists():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_by_path(fp32, lambda tmp: _export(model, tmp))
    if quantize and not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        atomic_write_by_path(
            int8,
            lambda tmp: quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True),
        )
    return int8 if quantize else fp32


def _pooling_mode(model: Any) -> str:
    modules = [type(m).__name__ for m in model]
    if modules[:2] != ["Transformer", "Pooling"] or modules[2:] not in ([], ["Normalize"]):
        raise EncoderError(
            f"encoder_backend onnx runs Transformer -> Pooling [-> Normalize] models, not {modules}"
        )
    config = model[1].get_config_dict()
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers before 5: one boolean per mode
        flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
        modes = [m for m, flag in flags.items() if config.get(flag)]
        mode = modes[0] if len(modes) == 1 else ""
    if mode not in ("mean", "cls"):
        raise EncoderError(f"encoder_backend onnx supports mean or cls pooling, not {mode!r}")
    return mode


def _export(model: Any, path: Path) -> None:
    mode = _pooling_mode(model)
    graph = _PooledTransformer(model[0].auto_model, mode, type(model[-1]).__name__ == "Normalize").eval()
    sample = model.tokenizer(
        ["an example", "a second, longer example text"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
            },
            opset_version=17,
            dynamo=False,
        )


class _PooledTransformer(torch.nn.Module):
    """The transformer, its pooling and (optionally) the L2 normalisation, as one traced graph."""

    def __init__(self, transformer: Any, mode: str, normalize: bool) -> None:
        super().__init__()
        self.transformer, self.mode, self.normalize = transformer, mode, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.mode == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1) if self.normalize else pooled
