"""No validation or test item may reach a user prompt, a user embedding or the similar-user lists."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.data.dataset import SequenceDataset
from llmesr.data.sequences import Sequences
from llmesr.data.split import leave_one_out
from llmesr.semantic.cache import embed_texts
from llmesr.semantic.prompts import item_titles, user_prompts
from llmesr.semantic.retrieval import similar_users

N_SHARED = 10  # items 1..10 are ordinary training items shared by all users


class RecordingEncoder:
    """Character-trigram hashing into 32 dims; keeps every text it was given."""

    identity = "recording-trigram-32"
    dim = 32

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, t in enumerate(texts):
            for j in range(len(t) - 2):
                out[r, zlib.crc32(t[j : j + 3].encode()) % self.dim] += 1.0
        return out


def make_data(secret: str, n_users: int = 30, seed: int = 0) -> SequenceDataset:
    """User u: 2-6 shared training items, then a validation and a test item of its own, titled
    ``<secret>-VALID-u`` / ``<secret>-TEST-u``. The last two users have only 2 interactions
    (training only, so all their items are ordinary)."""
    rng = np.random.default_rng(seed)
    rows, titles = [], [f"shared item {i}" for i in range(1, N_SHARED + 1)]
    for u in range(n_users):
        history = (rng.integers(1, N_SHARED + 1, size=int(rng.integers(2, 7)))).tolist()
        if u < n_users - 2:
            history += [len(titles) + 1, len(titles) + 2]
            titles += [f"{secret}-VALID-{u}", f"{secret}-TEST-{u}"]
        else:
            history = history[:2]
        rows.append(history)
    info = pd.DataFrame({"title": [np.nan] + titles})
    return SequenceDataset(
        name="leak",
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([""] + [f"i{i}" for i in range(1, len(titles) + 1)], dtype=object),
        sequences=Sequences.from_lists(rows),
        timestamps=None,
        item_info=info,
    )


def prompts_for(data: SequenceDataset) -> list[str]:
    split = leave_one_out(data)
    return user_prompts(split.train, item_titles(data.item_info, data.item_ids))


def test_secret_titles_are_reachable_from_full_histories() -> None:
    # Guard against a vacuous test: prompts from the *full* histories do contain the secrets.
    data = make_data("SECRET")
    full = user_prompts(data.sequences, item_titles(data.item_info, data.item_ids))
    assert sum("SECRET-VALID" in p for p in full) == 28
    assert sum("SECRET-TEST" in p for p in full) == 28


def test_user_prompts_hold_the_training_prefix_only() -> None:
    data = make_data("SECRET")
    prompts = prompts_for(data)
    assert len(prompts) == 30
    assert not any("SECRET" in p for p in prompts)
    titles = item_titles(data.item_info, data.item_ids)
    for u in (0, 29):
        train = data.sequences.row(u)[:-2] if u < 28 else data.sequences.row(u)
        expected = "; ".join(titles[i] for i in train[::-1])
        assert prompts[u] == f"The user bought, most recent first: {expected}."


def test_user_embeddings_and_neighbours_ignore_held_out_items(tmp_path: Path) -> None:
    enc = RecordingEncoder()
    emb = embed_texts(prompts_for(make_data("SECRET")), enc, tmp_path / "a", batch_size=8, progress=False)
    assert len(enc.seen) == 30 and not any("SECRET" in t for t in enc.seen)
    neighbours = similar_users(emb, k=5)

    # Other held-out items (different ids and titles), same training prefixes: the retrieval
    # input must be byte-identical, so nothing about the held-out items can reach it.
    other = make_data("HIDDEN")
    other_emb = embed_texts(prompts_for(other), RecordingEncoder(), tmp_path / "b", progress=False)
    assert other_emb.tobytes() == emb.tobytes()
    np.testing.assert_array_equal(similar_users(other_emb, k=5), neighbours)
