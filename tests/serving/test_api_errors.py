"""Client mistakes the audit found answered with a 5xx, or with a body that echoes the whole input:
each is a 4xx whose body is small and carries a one-line ``message`` (or a string ``detail``)."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from llmesr.serving import Bundle
from llmesr.serving.api import create_app

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(bundles):
    with TestClient(
        create_app({"llmesr": Bundle(bundles / "llmesr_bundle")}), raise_server_exceptions=False
    ) as c:
        yield c


def one_line_message(response) -> str:
    body = response.json()
    message = body.get("message", body["detail"])
    assert isinstance(message, str) and message and "\n" not in message
    return message


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
@pytest.mark.parametrize(
    "path, template",
    [
        ("/recommend", '{"history": ["1"], "k": %s}'),
        ("/recommend/batch", '{"histories": [["1"]], "k": %s}'),
        ("/items", '{"item_id": "x", "title": %s}'),
    ],
)
def test_non_finite_numbers_are_422_not_500(client, path, template, number):
    # Python's JSON parser reads 1e400 as inf and accepts NaN; the error body quoted them back and
    # JSON cannot encode them (500 before the fix).
    r = client.post(path, content=template % number, headers=JSON)
    assert r.status_code == 422, r.text
    json.loads(r.text)  # strict JSON: no NaN / Infinity tokens in the body
    assert "k" in one_line_message(r) or "title" in one_line_message(r)


@pytest.mark.parametrize(
    "body",
    [
        {"history": "x" * 5_000_000},  # a validation error quotes its input
        {"history": ["x" * 5_000_000]},  # an unknown id is named in the message
        {"history": ["3"], "bundle": "b" * 5_000_000},  # an unknown bundle too
        {"histories": [["3"], "y" * 5_000_000]},
    ],
)
def test_error_bodies_never_echo_a_huge_input(client, body):
    path = "/recommend/batch" if "histories" in body else "/recommend"
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500
    assert len(r.content) < 4_000, len(r.content)  # was the whole 5 MB input
    one_line_message(r)


def test_validation_message_is_readable(client):
    r = client.post("/recommend", json={"history": ["3"], "k": 0})
    assert r.status_code == 422
    assert one_line_message(r) == "k: Input should be greater than or equal to 1 (got 0)"
    assert r.json()["detail"][0]["loc"] == ["body", "k"]  # FastAPI's structured list is kept


def test_head_health(client):
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""  # was 405


def test_cold_start_with_another_encoder_is_refused_not_500(bundles, tmp_path):
    folder = shutil.copytree(bundles / "llmesr_bundle", tmp_path / "bundle")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["encoder"]["identity"] = "st:some-other-model|norm=1"
    (folder / "bundle.json").write_text(json.dumps(meta))
    with TestClient(create_app({"b": Bundle(folder)}), raise_server_exceptions=False) as c:
        r = c.post("/items", json={"item_id": "n1", "title": "a new thing"})
        assert r.status_code == 422, r.text  # an EncoderError, not a ValueError: 500 before the fix
        assert "differs from the one the bundle was trained with" in one_line_message(r)
        assert c.get("/items/n1").status_code == 404


def test_new_item_text_with_nul_is_refused_like_in_data_files(client):
    r = client.post("/items", json={"item_id": "n", "title": "a\u0000b"})
    assert r.status_code == 422 and one_line_message(r).startswith("title: String should match pattern")
