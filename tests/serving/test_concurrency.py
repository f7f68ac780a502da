"""Readers and a writer at once on one real bundle: searches, lookups and recommendations while
``add_item`` publishes new items. The audit saw ``GET /items?q=`` fail 3 times in 234 reads during
``POST /items`` (``Item wrong length 1689 instead of 1690`` in ``Bundle.search``): titles and
items were two objects replaced one after the other."""

from __future__ import annotations

import sys
import threading

import pytest
from fastapi.testclient import TestClient

from llmesr.serving import Bundle
from llmesr.serving.api import create_app

ADDED = 40


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond, so that a reader runs inside every window a writer leaves."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def hammer(read, write, readers: int = 3) -> list[str]:
    """Run ``write`` once in one thread and ``read`` in a loop in ``readers`` threads until the
    write is done; returns every exception and failed check a thread met."""
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                read()
            except Exception as err:  # noqa: BLE001 - every failure is collected and reported
                errors.append(f"{type(err).__name__}: {err}")

    def writer() -> None:
        try:
            write()
        except Exception as err:  # noqa: BLE001
            errors.append(f"writer {type(err).__name__}: {err}")
        finally:
            done.set()

    threads = [threading.Thread(target=reader) for _ in range(readers)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


@pytest.mark.parametrize("faiss_threshold", [200_000, 0])
def test_bundle_readers_never_see_a_half_added_item(bundles, fast_switching, faiss_threshold):
    bundle = Bundle(bundles / "llmesr_bundle", faiss_threshold=faiss_threshold)

    def read() -> None:
        for internal in bundle.search("item", limit=200):
            info = bundle.item_info(internal)
            assert info["title"].startswith("item"), info
        rec = bundle.recommend(["3", "4", "5"], k=1000)
        assert len(rec.items) == len(set(rec.items.tolist())) == len(rec.internal)
        assert all(
            bundle.item_info(int(i))["item_id"] == item
            for i, item in zip(rec.internal, rec.items, strict=True)
        )

    def write() -> None:
        for n in range(ADDED):
            bundle.add_item(f"new-{n}", f"item {n} new edition", "Brand0")

    assert hammer(read, write) == []
    assert bundle.n_items == 20 + ADDED
    assert {f"new-{n}" for n in range(ADDED)} <= set(bundle.recommend(["3"], k=1000).items.tolist())


def test_http_readers_during_post_items_get_no_5xx(bundles, fast_switching):
    bundle = Bundle(bundles / "llmesr_bundle")
    with TestClient(create_app({"b": bundle}), raise_server_exceptions=False) as c:

        def read() -> None:
            for r in (
                c.get("/items", params={"q": "item", "limit": 200}),
                c.post("/recommend", json={"history": ["3", "4"], "k": 50}),
                c.get("/items/new-0"),
            ):
                assert r.status_code < 500, r.text

        def write() -> None:
            for n in range(ADDED // 2):
                r = c.post("/items", json={"item_id": f"new-{n}", "title": f"item {n} again"})
                assert r.status_code == 201, r.text

        assert hammer(read, write) == []
    assert bundle.n_items == 20 + ADDED // 2
