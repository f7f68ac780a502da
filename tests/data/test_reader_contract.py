"""The dataset-reader contract, run for every entry of ``llmesr.data.formats.READERS``: the same
interaction log written in each format reads back as the same users, items and order, with item
text where the format carries it; ``format="auto"`` finds the reader from the path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmesr.data.formats import READERS, read_dataset

# user -> items in time order (timestamps 10, 20, ... in that order); ids are strings on purpose
HISTORIES = {"u7": ["b", "a", "c"], "u2": ["a", "c"], "u10": ["c", "b", "a", "d"]}
TITLES = {"a": "Alpha", "b": "Beta", "c": "Gamma", "d": "Delta"}


def write_sequences(folder: Path) -> Path:
    folder.mkdir()
    (folder / "sequences.txt").write_text("".join(f"{u} {' '.join(h)}\n" for u, h in HISTORIES.items()))
    (folder / "items.jsonl").write_text(
        "".join(f'{{"item_id": "{i}", "title": "{t}"}}\n' for i, t in TITLES.items())
    )
    return folder


def write_atomic(folder: Path) -> Path:
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{10 * (k + 1)}" for u, h in HISTORIES.items() for k, i in enumerate(h)]
    (folder / "x.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\ttitle:token_seq", *(f"{i}\t{t}" for i, t in TITLES.items())]
    (folder / "x.item").write_text("\n".join(items) + "\n")
    return folder


def write_table(folder: Path) -> Path:
    folder.mkdir()
    # Rows shuffled against time: the reader orders each user's items by timestamp.
    rows = [f"{u},{i},{10 * (k + 1)}" for u, h in HISTORIES.items() for k, i in enumerate(h)][::-1]
    path = folder / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    "sequences": write_sequences,
    "atomic": write_atomic,
    "table": write_table,
}


def test_every_registered_reader_has_a_contract_case():
    assert set(WRITERS) == set(READERS), "add a writer for the new format to WRITERS"


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("fmt", ["named", "auto"])
def test_reader_contract(tmp_path, name, fmt):
    path = WRITERS[name](tmp_path / name)
    log = read_dataset(path, format=name if fmt == "named" else "auto")
    got: dict[str, list] = {}
    for user, item in zip(log.users.tolist(), log.items.tolist(), strict=True):
        got.setdefault(str(user), []).append(str(item))
    assert got == HISTORIES
    if name != "table":  # the two formats with an item file
        assert log.item_info is not None
        titles = dict(zip(log.item_info.index.astype(str), log.item_info["title"].astype(str), strict=True))
        assert {i: titles[i] for i in TITLES} == TITLES
