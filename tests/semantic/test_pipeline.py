"""``llmesr embed`` end to end on small data with the real MiniLM encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main
from llmesr.data.dataset import load_dataset
from llmesr.data.split import leave_one_out
from llmesr.semantic import MiniLMEncoder
from llmesr.semantic.pipeline import FILES, SemanticSettings, load_artifacts, run_semantic_step


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder()


class StopAfter:
    """The real encoder, interrupted after ``calls`` batches (what a kill does to a run)."""

    def __init__(self, encoder, calls: int) -> None:
        self.inner, self.left = encoder, calls
        self.identity, self.dim = encoder.identity, encoder.dim

    def encode(self, texts):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.encode(texts)


def small_dataset(tmp_path):
    data = load_dataset(write_sequences_dir(tmp_path / "d", patterned_rows(40, 20)))
    return data, leave_one_out(data)


SETTINGS = SemanticSettings(pca_dim=8, similar_k=5, batch_size=8)


def read_all(folder):
    return {f: (folder / f).read_bytes() for f in (*FILES, "manifest.json")}


def test_outputs_have_the_documented_shapes(tmp_path, minilm):
    data, split = small_dataset(tmp_path)
    run_semantic_step(data, split, minilm, SETTINGS, tmp_path / "out", tmp_path / "cache", progress=False)
    art = load_artifacts(tmp_path / "out", data)
    assert art.item_embeddings.shape == (21, 384) and not art.item_embeddings[0].any()
    assert art.item_pca.shape == (21, 8) and not art.item_pca[0].any()
    assert art.user_embeddings.shape == (40, 384)
    sim = art.similar_users
    assert sim.shape == (40, 5) and not (sim == np.arange(40)[:, None]).any()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dataset"]["fingerprint"] == data.fingerprint()
    assert manifest["encoder"] == minilm.identity


def test_killed_run_resumes_to_byte_identical_files(tmp_path, minilm):
    data, split = small_dataset(tmp_path)
    run_semantic_step(data, split, minilm, SETTINGS, tmp_path / "straight", tmp_path / "c1", progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_semantic_step(
            data, split, StopAfter(minilm, 4), SETTINGS, tmp_path / "resumed", tmp_path / "c2", progress=False
        )
    assert not (tmp_path / "resumed" / "manifest.json").exists()  # nothing final written yet
    counting = StopAfter(minilm, 10_000)
    run_semantic_step(data, split, counting, SETTINGS, tmp_path / "resumed", tmp_path / "c2", progress=False)
    # 3 item batches + 5 user batches in all; 4 were finished before the kill.
    assert 10_000 - counting.left == 8 - 4
    assert read_all(tmp_path / "straight") == read_all(tmp_path / "resumed")


def test_artifacts_of_another_dataset_are_not_reused(tmp_path, minilm):
    data, split = small_dataset(tmp_path)
    run_semantic_step(data, split, minilm, SETTINGS, tmp_path / "out", tmp_path / "cache", progress=False)
    other = load_dataset(write_sequences_dir(tmp_path / "o", patterned_rows(40, 20, seed=3)))
    assert load_artifacts(tmp_path / "out", other) is None


def test_cli_embed_then_rerun_from_cache(tmp_path, capsys):
    data_dir = write_sequences_dir(tmp_path / "d", patterned_rows(30, 20))
    args = [
        "embed",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "similar_k=4",
        "--set",
        "hidden_size=8",
        "--set",
        f"cache_dir={tmp_path / 'cache'}",
        "--set",
        "progress=false",
    ]
    assert main(args) == 0
    first = read_all(tmp_path / "out")
    assert main(args) == 0
    assert read_all(tmp_path / "out") == first
    assert "similar_users (30, 4)" in capsys.readouterr().out


def test_cli_embed_reports_a_bad_encoder_in_one_line(tmp_path, capsys):
    data_dir = write_sequences_dir(tmp_path / "d", patterned_rows(30, 20))
    bad = ["--set", "encoder=hf:/no/such/model", "--set", "sampled_negatives=5"]
    args = ["embed", "--data", str(data_dir), *bad]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "/no/such/model" in err


@pytest.mark.parametrize("model", ["llmesr", "llminit"])
def test_semantic_models_train_end_to_end_computing_embeddings_first(tmp_path, capsys, model):
    data_dir = write_sequences_dir(tmp_path / "d", patterned_rows(40, 20))
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data_dir),
        "--model",
        model,
        "--out",
        str(run),
        "--epochs",
        "2",
        "--set",
        "hidden_size=16",
        "--set",
        "max_len=10",
        "--set",
        "similar_k=5",
        *(["--set", "distill_users=3"] if model == "llmesr" else []),
        "--set",
        f"cache_dir={tmp_path / 'cache'}",
        "--set",
        "progress=false",
        "--set",
        "sampled_negatives=5",
    ]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["test"]["full"]["users"] == 40
    assert list((tmp_path / "cache" / "semantic").glob("*/*/manifest.json"))
    recs = tmp_path / "recs.csv"
    assert main(["recommend", str(run), "--k", "5", "--out", str(recs)]) == 0
    assert len(recs.read_text().splitlines()) == 1 + 40 * 5


def test_corrupted_or_mis_sized_artifacts_are_refused_naming_the_file(tmp_path, capsys):
    data_dir = write_sequences_dir(tmp_path / "d", patterned_rows(30, 20))
    cache = tmp_path / "cache"
    base = ["train", "--data", str(data_dir), "--model", "llmesr", "--epochs", "1"]
    base += [
        "--set",
        "hidden_size=16",
        "--set",
        "max_len=8",
        "--set",
        "similar_k=5",
        "--set",
        "distill_users=3",
    ]
    base += ["--set", f"cache_dir={cache}", "--set", "progress=false", "--set", "sampled_negatives=5"]
    assert main([*base, "--out", str(tmp_path / "ok")]) == 0
    folder = next((cache / "semantic").glob("*/*/manifest.json")).parent
    pca = np.load(folder / "item_pca.npy")
    pca[3, 2] = np.nan
    np.save(folder / "item_pca.npy", pca)
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "nan")]) == 2
    assert "item_pca.npy: contains NaN or Inf" in capsys.readouterr().err
    assert not (tmp_path / "nan").exists()
    np.save(folder / "item_pca.npy", np.zeros((pca.shape[0] - 1, pca.shape[1]), dtype=np.float32))
    assert main([*base, "--out", str(tmp_path / "short")]) == 2
    assert "item_pca.npy: shape" in capsys.readouterr().err
