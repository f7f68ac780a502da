"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (Schemathesis strategies
driven by Hypothesis): whatever a client sends that the schema allows, or nearly allows (negative
generation mode), the server never answers with a 5xx: also while items are being added, and
for the non-finite numbers (``1e400``, ``NaN``) that JSON schemas cannot describe but Python's
JSON parser accepts."""

from __future__ import annotations

import json
import sys
import threading

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")


@pytest.fixture(scope="module")
def operations(bundles):
    from llmesr.serving import Bundle
    from llmesr.serving.api import create_app

    app = create_app(
        {"llmesr": Bundle(bundles / "llmesr_bundle"), "sasrec": Bundle(bundles / "sasrec_bundle")}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}
    assert {"POST /recommend", "POST /recommend/batch", "GET /items/{item_id}", "POST /items"} <= set(ops)
    ops["app"] = app
    return ops


OPERATIONS = ["POST /recommend", "POST /recommend/batch", "GET /items", "GET /items/{item_id}", "POST /items"]
CASES = [(op, mode) for op in OPERATIONS for mode in ("positive", "negative")] + [("GET /health", "positive")]


def fuzz(operation, mode: str, examples: int = 40) -> None:
    """``examples`` Schemathesis cases of ``operation``: none may be answered with a 5xx."""
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call()
        assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])

    check()


@pytest.mark.parametrize("name, mode", CASES)
def test_no_server_errors(operations, name, mode):
    fuzz(operations[name], mode)


@pytest.mark.parametrize("name", ["GET /items", "POST /recommend", "GET /items/{item_id}"])
def test_no_server_errors_while_items_are_added(operations, name):
    """Fuzzed reads while another thread keeps adding items (the audit: 3 in 234 searches failed)."""
    errors: list[str] = []
    stop = threading.Event()

    def add(c: TestClient, n: int) -> None:
        r = c.post("/items", json={"item_id": f"{name}-{n}", "title": f"item {n} \u00e9dition"})
        if r.status_code != 201:
            errors.append(r.text[:300])

    def writer(c: TestClient) -> None:
        n = 1
        while not stop.is_set():
            add(c, n)
            n += 1

    interval = sys.getswitchinterval()
    with TestClient(operations["app"], raise_server_exceptions=False) as c:
        add(c, 0)  # loads the encoder: the writes below overlap the fuzzed reads
        thread = threading.Thread(target=writer, args=(c,))
        sys.setswitchinterval(1e-6)  # switch threads often: reads land inside every window a write leaves
        try:
            thread.start()
            fuzz(operations[name], "positive", examples=30)
        finally:
            stop.set()
            thread.join(timeout=300)
            sys.setswitchinterval(interval)
    assert errors == []


NON_FINITE = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"]
BODIES = {
    "/recommend": {"history": ["3", "4"], "k": 5, "exclude_seen": True, "bundle": "llmesr"},
    "/recommend/batch": {"histories": [["3"], ["4"]], "k": 5, "exclude_seen": True},
    "/items": {"item_id": "nf", "title": "t", "brand": "b", "categories": ["c"]},
}


def with_token(body: dict, path: tuple, token: str) -> str:
    """``body`` as JSON with the value at ``path`` replaced by the bare ``token`` (not a string)."""
    marker = "__NUMBER__"
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', token)


def paths(value, prefix=()) -> list[tuple]:
    """Every location of ``value``: each key, each list element, and every nested one."""
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    )
    return [p for key, child in children for p in [(*prefix, key), *paths(child, (*prefix, key))]]


@pytest.mark.parametrize("url", list(BODIES))
def test_non_finite_numbers_anywhere_in_a_body_are_4xx(operations, url):
    with TestClient(operations["app"], raise_server_exceptions=False) as c:
        for path in paths(BODIES[url]):
            for token in NON_FINITE:
                text = with_token(BODIES[url], path, token)
                r = c.post(url, content=text, headers={"Content-Type": "application/json"})
                assert 400 <= r.status_code < 500, (text, r.status_code, r.text[:300])
                json.loads(r.text)  # strict JSON back
        for token in NON_FINITE:
            r = c.get("/items", params={"q": "item", "limit": token})
            assert r.status_code == 422, r.text
