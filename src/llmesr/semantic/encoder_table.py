"""Text encoders by name: the table a config's ``encoder`` spec is looked up in.

A new encoder is one class (in its own module, implementing :class:`TextEncoder`) plus one entry
here; its spec is ``name`` when it takes no model argument, else ``name:<model>``. Kept apart from
:mod:`llmesr.semantic.encoders` (the interface), which the concrete encoders import.
"""

from __future__ import annotations

import inspect
from typing import Any

from llmesr.semantic.encoders import EncoderError, TextEncoder
from llmesr.semantic.local_encoders import HuggingFaceEncoder, MiniLMEncoder, SentenceTransformerEncoder
from llmesr.semantic.openai_encoder import OpenAIEncoder

# spec prefix -> (class, whether the spec names a model after the colon)
ENCODERS: dict[str, tuple[type[TextEncoder], bool]] = {
    "minilm": (MiniLMEncoder, False),
    "st": (SentenceTransformerEncoder, True),
    "hf": (HuggingFaceEncoder, True),
    "openai": (OpenAIEncoder, True),
}


def spec_forms() -> list[str]:
    names = {"st": "name_or_path", "hf": "path", "openai": "model"}
    return [f"{k}:<{names.get(k, 'model')}>" if takes else k for k, (_, takes) in ENCODERS.items()]


def make_encoder(spec: str = "minilm", **options: Any) -> TextEncoder:
    """An encoder from a config string.

    * ``"minilm"`` - :class:`MiniLMEncoder` (options: device, batch_size, normalize, max_seq_length)
    * ``"st:<name_or_path>"`` - :class:`SentenceTransformerEncoder`
    * ``"hf:<path>"`` - :class:`HuggingFaceEncoder` (options: pooling, max_length, dtype, ...)
    * ``"openai:<model>"`` - :class:`OpenAIEncoder` (options: base_url, api_key_env, batch_size, ...)
    """
    text = (spec or "").strip()
    prefix, sep, rest = text.partition(":")
    prefix, rest = prefix.lower(), rest.strip()
    entry = ENCODERS.get(prefix if sep else text.lower())
    if entry is None or entry[1] != bool(sep) or (sep and not rest):
        raise EncoderError(f"unknown encoder spec {spec!r}; accepted forms: {', '.join(spec_forms())}")
    cls, takes_model = entry
    args: tuple[Any, ...] = (rest,) if takes_model else ()
    # A misspelled option would otherwise surface as a TypeError from deep inside the constructor.
    parameters = inspect.signature(cls.__init__).parameters
    accepted = [name for name in parameters if name != "self"][len(args) :]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise EncoderError(
            f"unknown option(s) {', '.join(unknown)} for encoder {text!r}; accepted: {', '.join(accepted)}"
        )
    return cls(*args, **options)
