"""Where and how fast a run computes: the device, mixed precision and ``torch.compile``.

Everything defaults to the behaviour the tests pin down (CPU, float32, eager). On a GPU,
``precision=bf16`` runs the forward pass under autocast (no loss scaling needed: bfloat16 has
float32's exponent range) and ``fp16`` adds a gradient scaler; ``compile=true`` compiles each
backbone's encoder, the part every model spends its time in, with dynamic shapes because batches
are padded only to their longest row.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the GPU when there is one). Under ``torchrun``
    a bare ``cuda`` means this process's own GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (use bf16 on CPU)")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for float16 (whose small exponent range underflows gradients); disabled otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compile_encoders(model: nn.Module) -> int:
    """Replace every backbone's ``encode`` with a compiled version (LLM-ESR holds one or two
    backbones). The weights are untouched, so checkpoints stay plain ``state_dict``s. Returns how
    many encoders were compiled."""
    from llmesr.models.base import SequentialRecommender

    count = 0
    for module in model.modules():
        if isinstance(module, SequentialRecommender) and "encode" in type(module).__dict__:
            if not getattr(module, "_encode_compiled", False):
                module.encode = torch.compile(module.encode, dynamic=True)
                module._encode_compiled = True
                count += 1
    return count
