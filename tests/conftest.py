"""Shared fixtures: small synthetic datasets written in the library's own input formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# The tests use tiny tensors: one thread avoids thread start-up overhead and contention.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_sequences_dir(path: Path, rows: list[list[int]], titles: bool = True) -> Path:
    """``sequences.txt`` (+ ``items.jsonl``) with user ids 1.. and the given item rows."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "sequences.txt").write_text(
        "".join(f"{u} {' '.join(map(str, r))}\n" for u, r in enumerate(rows, 1))
    )
    if titles:
        items = sorted({i for r in rows for i in r})
        (path / "items.jsonl").write_text(
            "".join(
                f'{{"item_id": {i}, "title": "item {i}", "attributes": ["Brand{i % 3}"]}}\n' for i in items
            )
        )
    return path


def patterned_rows(n_users: int = 60, n_items: int = 20, seed: int = 0) -> list[list[int]]:
    """Learnable sequences: each user walks the item cycle 1..n_items from a random start with step
    1, so the next item is a deterministic function of the current one."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 12))
        rows.append([(start + k) % n_items + 1 for k in range(length)])
    return rows


@pytest.fixture
def patterned_dir(tmp_path: Path) -> Path:
    return write_sequences_dir(tmp_path / "patterned", patterned_rows())


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "beauty" / "sequences.txt").exists():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


def set_args(settings: dict, model: str) -> list[str]:
    """``--set key=value`` arguments for the settings a ``model`` run reads: shared test settings
    may hold keys of other models (``distill_users``), which the command line refuses."""
    from llmesr.config import MODEL_KEYS, applicable_keys

    reads = applicable_keys(model)
    kept = {k: v for k, v in settings.items() if k not in MODEL_KEYS or k in reads}
    return [a for k, v in kept.items() for a in ("--set", f"{k}={v}")]


SERVING_SETTINGS = {
    "max_len": 10,
    "hidden_size": 16,
    "batch_size": 16,
    "progress": False,
    "loss": "ce",
    "lr": 0.01,
    "similar_k": 5,
    "distill_users": 3,
}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """Serving tests: an LLM-ESR bundle (MiniLM embeddings) and a SASRec one, trained once per session
    on patterned data so that their recommendations are predictable."""
    from llmesr.cli import main

    root = tmp_path_factory.mktemp("api")
    data = write_sequences_dir(root / "data", patterned_rows(60, 20))
    for model in ("llmesr", "sasrec"):
        sets = [*set_args(SERVING_SETTINGS, model), "--set", f"cache_dir={root / 'cache'}"]
        run = root / model
        assert (
            main(["train", "--data", str(data), "--model", model, "--out", str(run), "--epochs", "10", *sets])
            == 0
        )
        assert main(["export", str(run), "--out", str(root / f"{model}_bundle")]) == 0
    return root
