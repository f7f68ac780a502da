"""Model bundles: export, reload, recommendations identical to the run's, batch files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from llmesr.cli import main
from llmesr.serving import Bundle, BundleError

LEARN = ["--set", "loss=ce", "--set", "lr=0.01", "--set", "dropout=0.0"]
FAST = ["--set", "max_len=10", "--set", "hidden_size=16", "--set", "batch_size=16", "--set", "progress=false"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from conftest import patterned_rows, write_sequences_dir

    root = tmp_path_factory.mktemp("bundle")
    data = write_sequences_dir(root / "data", patterned_rows())
    run = root / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--model",
                "gru4rec",
                "--out",
                str(run),
                "--epochs",
                "15",
                *FAST,
                *LEARN,
            ]
        )
        == 0
    )
    assert main(["export", str(run), "--out", str(root / "bundle")]) == 0
    return root


def test_bundle_recommends_exactly_what_the_run_ranks(bundle_dir):
    from llmesr.checkpoint import model_from_checkpoint
    from llmesr.evaluation import top_k
    from llmesr.runs import RunFolder, prepare_data

    bundle = Bundle(bundle_dir / "bundle")
    cfg = RunFolder(bundle_dir / "run").load_config()
    data = prepare_data(cfg)
    model = model_from_checkpoint(bundle_dir / "run" / "best.pt")
    split = data.split.test
    items, _ = top_k(model, split, 5)
    users = np.arange(10)
    histories = [
        data.dataset.item_ids[
            split.inputs.items[split.inputs.offsets[u] : split.inputs.offsets[u + 1]]
        ].tolist()
        for u in users
    ]
    recs = bundle.recommend_many(histories, k=5)
    for u, rec in zip(users, recs, strict=True):
        assert rec.items.tolist() == data.dataset.item_ids[items[u]].tolist()
        assert not set(rec.items) & set(histories[u])  # seen items excluded by default
    everything = bundle.recommend(histories[0], k=1000, exclude_seen=False)
    assert len(everything.items) == data.dataset.n_items
    assert bundle.items.loc[everything.internal, "item_id"].tolist() == everything.items.tolist()


def test_bundle_files_are_plain_and_weights_only(bundle_dir):
    folder = bundle_dir / "bundle"
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["model"] == "gru4rec" and meta["dataset"]["n_items"] == 20
    torch.load(folder / "weights.pt", weights_only=True)
    items = pd.read_parquet(folder / "items.parquet")
    assert items.loc[1:, "title"].str.startswith("item ").all()
    assert items["popularity"].sum() > 0 and items["tail"].dtype == bool


def test_recommend_from_bundle_for_a_history_and_a_batch_file(bundle_dir, tmp_path, capsys):
    bundle = bundle_dir / "bundle"
    assert main(["recommend", str(bundle), "--history", "3", "4", "5", "--k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "title" in printed and "item 6" in printed  # the cycle's next item
    log = pd.DataFrame(
        {"user_id": ["a", "b", "a", "b"], "item_id": ["1", "7", "2", "8"], "timestamp": [1, 1, 2, 2]}
    )
    log.to_parquet(tmp_path / "in.parquet")
    assert (
        main(
            [
                "recommend",
                str(bundle),
                "--input",
                str(tmp_path / "in.parquet"),
                "--k",
                "4",
                "--out",
                str(tmp_path / "out.parquet"),
            ]
        )
        == 0
    )
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.groupby("user_id")["rank"].apply(list).to_dict() == {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}
    assert set(out.columns) == {"user_id", "rank", "item_id", "score", "title", "tail"}
    assert (out.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--history", "3", "nope"], "unknown item id(s): 'nope'"),
        (["--k", "0", "--history", "3"], "--k must be at least 1"),
        ([], "exactly one of --history"),
    ],
)
def test_bad_requests_are_one_line_errors(bundle_dir, capsys, args, message):
    assert main(["recommend", str(bundle_dir / "bundle"), *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_batch_file_and_broken_bundle(bundle_dir, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("user_id,item\nu,1\n")
    assert main(["recommend", str(bundle_dir / "bundle"), "--input", str(tmp_path / "bad.csv")]) == 2
    assert "missing column(s) item_id" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text((bundle_dir / "bundle" / "bundle.json").read_text())
    with pytest.raises(BundleError, match="weights.pt is missing"):
        Bundle(broken)
    assert main(["recommend", str(broken), "--history", "1"]) == 2
    assert "incomplete bundle" in capsys.readouterr().err


def test_id_start_map_reproduces_the_pca_start_and_drives_cold_start_rows(bundles):
    import torch.nn.functional as F

    from llmesr.runs import RunFolder, prepare_data
    from llmesr.training import semantic_artifacts

    folder = bundles / "llmesr_bundle"
    assert not (bundles / "sasrec_bundle" / "id_start_map.npy").exists()  # no semantic view, no map
    bundle = Bundle(folder, cold_start_neighbours=3)
    cfg = RunFolder(bundles / "llmesr").load_config()
    start = semantic_artifacts(cfg, prepare_data(cfg), bundle.model.config.hidden_size, 0).item_pca
    trained = bundle.model.semantic[1 : bundle.trained_items + 1]
    mapped = trained @ bundle._start_map[:-1] + bundle._start_map[-1]
    np.testing.assert_allclose(mapped.numpy(), start[1:], atol=1e-5)

    internal = bundle.add_item("new-x", "item 9 deluxe", "Brand0")
    e = torch.from_numpy(bundle.encoder().encode([bundle_text(bundle, "new-x")])).float()
    near = torch.topk(F.normalize(trained, dim=1) @ F.normalize(e, dim=1)[0], 3).indices + 1
    h = bundle.model.config.hidden_size
    drift = bundle.table[near, :h] - torch.from_numpy(start[near.numpy()])
    expected = e @ bundle._start_map[:-1] + bundle._start_map[-1] + drift.mean(0)
    torch.testing.assert_close(bundle.table[internal, :h], expected[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(bundle.table[internal, :h], bundle.table[near, :h].mean(0))


def bundle_text(bundle: Bundle, item_id: str) -> str:
    """The prompt the bundle embedded for a cold-start item (same template as at training)."""
    from llmesr.semantic.prompts import item_prompts

    row = bundle.items[bundle.items.item_id == item_id].iloc[0]
    enc = bundle.meta["encoder"]
    fields = pd.DataFrame({"title": ["", row.title], "brand": ["", "Brand0"], "categories": ["", ""]})
    return item_prompts(
        fields, np.array(["", item_id], dtype=object), enc["item_template"], enc["prompt_domain"]
    ).texts[0]


def test_bundle_from_precomputed_embeddings_refuses_new_items(tmp_path):
    """A run trained from ``item_embeddings_file`` has item vectors no encoder can reproduce: its
    bundle records ``precomputed:<sha256>`` (it recorded MiniLM before) and refuses new items
    instead of embedding them with MiniLM into a table whose other rows came from the file."""
    import hashlib

    from fastapi.testclient import TestClient

    from conftest import SERVING_SETTINGS, patterned_rows, write_sequences_dir
    from llmesr.serving.api import create_app
    from llmesr.serving.bundle import ItemRefused

    data = write_sequences_dir(tmp_path / "data", patterned_rows(40, 20))
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(20, 24)).astype(np.float32))
    sets = [a for k, v in SERVING_SETTINGS.items() for a in ("--set", f"{k}={v}")]
    sets += ["--set", f"item_embeddings_file={vectors}", "--set", f"cache_dir={tmp_path / 'cache'}"]
    run = tmp_path / "run"
    assert (
        main(["train", "--data", str(data), "--model", "llmesr", "--out", str(run), "--epochs", "1", *sets])
        == 0
    )
    assert main(["export", str(run), "--out", str(tmp_path / "bundle")]) == 0

    identity = json.loads((tmp_path / "bundle" / "bundle.json").read_text())["encoder"]["identity"]
    assert identity.startswith("precomputed:")
    assert hashlib.sha256(vectors.read_bytes()).hexdigest().startswith(identity.split(":", 1)[1])
    bundle = Bundle(tmp_path / "bundle")
    with pytest.raises(ItemRefused, match="precomputed item embeddings"):
        bundle.add_item("new", "a new thing")
    assert bundle.n_items == 20 and bundle._encoder is None  # refused before any encoder was loaded
    with TestClient(create_app({"b": bundle}), raise_server_exceptions=False) as c:
        r = c.post("/items", json={"item_id": "new", "title": "a new thing"})
        assert r.status_code == 422 and "precomputed item embeddings" in r.json()["detail"]
        assert c.post("/recommend", json={"history": ["3", "4"], "k": 3}).status_code == 200
