"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (Schemathesis strategies
driven by Hypothesis): whatever a client sends that the schema allows, or nearly allows (negative
generation mode), the server never answers with a 5xx."""

from __future__ import annotations

import pytest
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
    return ops


OPERATIONS = ["POST /recommend", "POST /recommend/batch", "GET /items", "GET /items/{item_id}", "POST /items"]
CASES = [(op, mode) for op in OPERATIONS for mode in ("positive", "negative")] + [("GET /health", "positive")]


@pytest.mark.parametrize("name, mode", CASES)
def test_no_server_errors(operations, name, mode):
    strategy = operations[name].as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @given(case=strategy)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call()
        assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])

    check()
