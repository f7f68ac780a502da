"""The HTTP API over real bundles (an LLM-ESR one with the MiniLM encoder, and a SASRec one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from llmesr.serving import Bundle
from llmesr.serving.api import MAX_HISTORY, create_app


@pytest.fixture
def client(bundles):
    served = {
        "llmesr": Bundle(bundles / "llmesr_bundle"),
        "sasrec": Bundle(bundles / "sasrec_bundle"),
    }
    with TestClient(create_app(served), raise_server_exceptions=False) as c:
        c.served = served
        yield c


def test_health_and_schema(client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["bundles"] == {
        "llmesr": {"model": "llmesr", "items": 20},
        "sasrec": {"model": "sasrec", "items": 20},
    }
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/recommend/batch", "/items", "/items/{item_id}", "/health"} <= set(paths)
    assert "<title>llmesr recommendations</title>" in client.get("/").text


def test_recommend_matches_the_bundle_and_excludes_seen(client):
    r = client.post("/recommend", json={"history": ["3", "4", "5"], "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["bundle"] == "llmesr"
    items = body["items"]
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    expected = client.served["llmesr"].recommend(["3", "4", "5"], k=5)
    assert [i["item_id"] for i in items] == expected.items.tolist()
    assert not {"3", "4", "5"} & {i["item_id"] for i in items}
    assert items[0]["item_id"] == "6"  # the learned cycle continues
    assert {"title", "score", "tail", "popularity", "cold_start"} <= set(items[0])
    other = client.post("/recommend", json={"history": ["3", "4", "5"], "k": 5, "bundle": "sasrec"}).json()
    assert other["bundle"] == "sasrec" and len(other["items"]) == 5
    batch = client.post("/recommend/batch", json={"histories": [["3", "4", "5"], ["10"]], "k": 3}).json()
    assert [i["item_id"] for i in batch["results"][0]] == [i["item_id"] for i in items[:3]]
    assert len(batch["results"]) == 2


def test_items_lookup_and_search(client):
    item = client.get("/items/7").json()
    assert item["item_id"] == "7" and item["title"] == "item 7" and item["cold_start"] is False
    found = client.get("/items", params={"q": "ITEM 1"}).json()
    assert found and all("item 1" in i["title"] for i in found)
    pops = [i["popularity"] for i in found]
    assert pops == sorted(pops, reverse=True)
    assert client.get("/items/nope").status_code == 404


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"history": ["3", "nope"]}, 422, "unknown item id(s): 'nope'"),
        ({"history": []}, 422, ""),
        ({"history": ["3"] * (MAX_HISTORY + 1)}, 422, ""),
        ({"history": ["3"], "k": 0}, 422, ""),
        ({"history": ["3"], "k": "many"}, 422, ""),
        ({"history": ["3"], "bundle": "other"}, 404, "unknown bundle 'other'"),
        ({"history": "3"}, 422, ""),
    ],
)
def test_client_mistakes_are_4xx_with_a_message(client, body, status, message):
    r = client.post("/recommend", json=body)
    assert r.status_code == status
    assert message in str(r.json()["detail"])


def test_cold_start_item_is_recommendable_at_once(client):
    bundle = client.served["llmesr"]
    r = client.post("/items", json={"item_id": "new-1", "title": "a brand new thing", "brand": "Acme"})
    assert r.status_code == 201 and r.json()["cold_start"] is True and r.json()["tail"] is True
    assert client.post("/items", json={"item_id": "new-1", "title": "x"}).status_code == 409
    assert client.post("/items", json={"item_id": "n2", "title": "x", "bundle": "sasrec"}).status_code == 422
    everything = client.post("/recommend", json={"history": ["3", "4", "5"], "k": 1000}).json()["items"]
    assert len(everything) == 20 + 1 - 3  # trained items + the new one, minus the 3 seen
    new = next(i for i in everything if i["item_id"] == "new-1")
    direct = bundle.recommend(["3", "4", "5"], k=1000)
    assert new["score"] == pytest.approx(float(direct.scores[direct.items.tolist().index("new-1")]), rel=1e-5)
    assert client.get("/items/new-1").json()["cold_start"] is True
    assert "new-1" in [i["item_id"] for i in client.get("/items", params={"q": "brand new"}).json()]
    in_history = client.post("/recommend", json={"history": ["new-1"]})
    assert in_history.status_code == 422 and "added after training" in in_history.json()["detail"]


def test_cold_start_twin_scores_exactly_like_the_item_with_the_same_text(bundles):
    # With one neighbour, a new item whose text equals item 9's (conftest: title "item 9", brand
    # "Brand0") borrows item 9's ID vector and bias and has the same semantic vector: same scores.
    bundle = Bundle(bundles / "llmesr_bundle", cold_start_neighbours=1)
    internal = bundle.add_item("twin-9", "item 9", "Brand0")
    twin = int(bundle.internal_ids(["9"])[0])
    torch.testing.assert_close(bundle.table[internal], bundle.table[twin], rtol=1e-5, atol=1e-5)
    rec = bundle.recommend(["3", "4", "5"], k=1000)
    scores = dict(zip(rec.items.tolist(), rec.scores.tolist(), strict=True))
    assert scores["twin-9"] == pytest.approx(scores["9"], rel=1e-5)


def test_faiss_path_agrees_with_the_exact_product(bundles):
    exact = Bundle(bundles / "sasrec_bundle")
    approx = Bundle(bundles / "sasrec_bundle", faiss_threshold=0)
    histories = [["3", "4", "5"], ["12", "13"], ["1"]]
    for a, b in zip(exact.recommend_many(histories, 5), approx.recommend_many(histories, 5), strict=True):
        assert a.items.tolist() == b.items.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
