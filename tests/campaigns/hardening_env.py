"""The hardening campaign's machinery: tiny real runs to damage, the damages, and the check that a
damaged input fails cleanly (exit 2, one line naming the fault, nothing created or changed)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main

TINY = {"max_len": 5, "hidden_size": 8, "num_layers": 1, "num_heads": 1, "batch_size": 16}
TINY |= {"progress": "false", "sampled_negatives": 5, "similar_k": 5}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


def train(data: Path, out: Path, *extra: str) -> list:
    return ["train", "--data", data, "--out", out, "--epochs", "1", *SETS, *extra]


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """Tiny SASRec runs on two datasets, a GRU4Rec run, a bundle, and a semantic folder, made once."""
    from llmesr.config import resolve_config
    from llmesr.runs import prepare_data

    root = tmp_path_factory.mktemp("hardening")
    data = write_sequences_dir(root / "data", patterned_rows(30, 12))
    other = write_sequences_dir(root / "other", patterned_rows(30, 12, seed=5))
    for name, folder in (("run", data), ("run_other", other)):
        assert main([str(a) for a in train(folder, root / name, "--model", "sasrec")]) == 0
    gru = ["--model", "gru4rec", "--set", "max_len=5", "--set", "hidden_size=8", "--set", "progress=false"]
    gru_run = ["train", "--data", data, "--out", root / "run_gru", "--epochs", "1", *gru]
    assert main([str(a) for a in gru_run]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "bundle")]) == 0
    # A semantic folder as `llmesr embed --out` writes it, with random vectors: no encoder needed.
    ds = prepare_data(resolve_config(data=str(data))).dataset
    sem = root / "sem"
    sem.mkdir()
    rng = np.random.default_rng(0)
    np.save(sem / "item_embeddings.npy", rng.normal(size=(13, 16)).astype(np.float32))
    np.save(sem / "item_pca.npy", rng.normal(size=(13, 8)).astype(np.float32))
    np.save(sem / "user_embeddings.npy", rng.normal(size=(30, 16)).astype(np.float32))
    np.save(sem / "similar_users.npy", (np.arange(30)[:, None] + np.arange(1, 6)) % 30)
    made_for = {"name": ds.name, "fingerprint": ds.fingerprint(), "split": "leave_one_out"}
    (sem / "manifest.json").write_text(json.dumps({"dataset": made_for, "encoder": "random"}))
    return root


def cut(name: str) -> Callable[[Path], None]:
    """Damage: truncate ``name`` to half its size, as an interrupted copy leaves it."""

    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


def put(name: str, content: bytes | str | np.ndarray | pd.DataFrame) -> Callable[[Path], None]:
    """Damage: replace (or create) ``name`` with ``content`` (bytes, text, an array or a table)."""

    def damage(folder: Path) -> None:
        path = folder / name
        if isinstance(content, np.ndarray):
            np.save(path, content)
        elif isinstance(content, pd.DataFrame):
            content.to_parquet(path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)

    return damage


def edit_checkpoint(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        ckpt = torch.load(folder / name, weights_only=True)
        change(ckpt)
        torch.save(ckpt, folder / name)

    return damage


def shorten_ranks(folder: Path) -> None:
    with np.load(folder / "ranks.npz") as z:
        arrays = {k: (z[k][:-1] if k == "test_full" else z[k]) for k in z.files}
    np.savez(folder / "ranks.npz", **arrays)


def validation_only_ranks(folder: Path) -> None:
    """The ranks of a run trained with ``evaluate_test: false``: validation alone."""
    with np.load(folder / "ranks.npz") as z:
        arrays = {k: z[k] for k in z.files if k.startswith("valid_")}
    np.savez(folder / "ranks.npz", **arrays)


def no_damage(folder: Path) -> None:
    pass


@dataclass
class Env:
    """One case's inputs: the shared base (read only) and the case's own folder ``w``; each method
    copies what it needs into ``w``, damages it and returns the command line."""

    base: Path
    w: Path

    def copy(self, name: str, damage: Callable[[Path], object] = no_damage) -> Path:
        folder = Path(shutil.copytree(self.base / name, self.w / name))
        damage(folder)
        return folder

    def train(self, *extra: str, data: Path | None = None) -> list:
        return train(data or self.base / "data", self.w / "run", *extra)

    def seq(self, content: bytes) -> list:
        return self.train(data=self.copy("data", put("sequences.txt", content)))

    def items(self, content: bytes) -> list:
        return self.train(data=self.copy("data", put("items.jsonl", content)))

    def cfg(self, content: bytes) -> list:
        put("c.yaml", content)(self.w)
        return self.train("--config", self.w / "c.yaml")

    def resume(self, damage: Callable[[Path], object], *extra: str, data: Path | None = None) -> list:
        self.copy("run", damage)  # train --out is w/run: a rerun resumes it
        return self.train(*extra, data=data)

    def on_run(self, command: str, damage: Callable[[Path], object], *extra: str) -> list:
        return [command, self.copy("run", damage), *extra]

    def llmesr(self, key: str, value: Path) -> list:
        model = ["--model", "llmesr", "--set", "distill_users=3", "--set", f"cache_dir={self.w / 'cache'}"]
        return self.train(*model, "--set", f"{key}={value}")

    def emb(self, content: np.ndarray | pd.DataFrame, damage: Callable[[Path], object] = no_damage) -> list:
        name = "emb.npy" if isinstance(content, np.ndarray) else "emb.parquet"
        put(name, content)(self.w)
        damage(self.w)
        return self.llmesr("item_embeddings_file", self.w / name)

    def sem(self, damage: Callable[[Path], object]) -> list:
        return self.llmesr("semantic_dir", self.copy("sem", damage))

    def grid(self, text: str) -> list:
        put("grid.yaml", text)(self.w)
        return ["experiment", self.w / "grid.yaml", "--dry-run"]

    def report(self, damage: Callable[[Path], object]) -> list:
        damage(Path(shutil.copytree(self.base / "run", self.w / "runs" / "a")))
        return ["report", self.w / "runs", "--out", self.w / "report"]

    def bundle(self, damage: Callable[[Path], object], *args: str) -> list:
        bundle = self.copy("bundle", damage)
        return ["recommend", bundle, *(args or ("--history", "1", "2")), "--out", self.w / "recs.csv"]

    def history_file(self, content: bytes) -> list:
        put("in.csv", content)(self.w)
        return self.bundle(no_damage, "--input", str(self.w / "in.csv"))


GOOD_SEQ = "".join(f"{u} {' '.join(map(str, r))}\n" for u, r in enumerate(patterned_rows(30, 12), 1))
GOOD_ITEMS = "".join(f'{{"item_id": {i}, "title": "item {i}"}}\n' for i in range(1, 13))
BINARY = bytes(range(256))
VEC = np.random.default_rng(1).normal(size=(12, 16)).astype(np.float32)
NAN_VEC = np.where(np.eye(12, 16) > 0, np.nan, VEC)
OTHER_MANIFEST = json.dumps({"dataset": {"name": "x", "fingerprint": "0", "split": "leave_one_out"}})
ONE_DUPLICATE = pd.DataFrame({"item_id": [""] + ["1"] * 12, "title": "", "popularity": 0, "tail": False})

# (case id, command line built from the case's Env, text the one stderr line must contain)


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under ``folders``, with a hash of each file's content."""
    return {
        str(p): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for folder in folders
        for p in sorted(folder.rglob("*"))
    }


def run_case(argv: list, capsys) -> tuple[int, str]:
    """Run one command line; its exit code and stderr."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    return code, capsys.readouterr().err


def assert_clean_refusal(base: Path, tmp_path: Path, capsys, argv: list, expected: str) -> None:
    """Exit 2, one line on stderr holding ``expected``, and no file created or changed."""
    before = snapshot(base, tmp_path)
    code, err = run_case(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    assert snapshot(base, tmp_path) == before
