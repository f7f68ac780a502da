"""Bad input at every entry point of the ``llmesr`` command fails cleanly (issue 8).

Each case damages one input (data file, config, flag, checkpoint, embeddings, semantic folder,
grid, run folder, bundle) and runs the real command line. Clean means: exit code 2, stderr is one
line that names the file, line or key at fault, and nothing in the case's folder or the shared
inputs is created or changed (no output, no ``*.tmp``, no rewritten ``config.yaml``). Positive
controls prove that the undamaged copies work, so each failure is the damage's doing.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hardening_env import (
    BINARY,
    GOOD_ITEMS,
    GOOD_SEQ,
    NAN_VEC,
    ONE_DUPLICATE,
    OTHER_MANIFEST,
    VEC,
    Env,
    assert_clean_refusal,
    base,
    cut,
    edit_checkpoint,
    no_damage,
    put,
    shorten_ranks,
    train,
    validation_only_ranks,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main
from llmesr.config import ConfigError, RunConfig, apply_overrides, parse_set, read_yaml
from llmesr.data.formats import DataFormatError, read_sequences_dir

CASES: list[tuple[str, Callable[[Env], list], str]] = [
    # ---- data files
    ("seq-binary", lambda e: e.seq(BINARY), "sequences.txt:2: not valid UTF-8"),
    ("seq-latin1", lambda e: e.seq("1 café 2 3\n".encode("latin-1")), "sequences.txt:1: not valid UTF-8"),
    ("seq-utf16-bom", lambda e: e.seq(GOOD_SEQ.encode("utf-16")), "sequences.txt:1: not valid UTF-8"),
    ("seq-utf16-no-bom", lambda e: e.seq(GOOD_SEQ.encode("utf-16-le")), "sequences.txt:1: contains a NUL"),
    ("seq-cut-after-an-id", lambda e: e.seq(GOOD_SEQ.encode() + b"77"), "sequences.txt:31: empty history"),
    ("seq-empty", lambda e: e.seq(b""), "sequences.txt: no user sequences"),
    (
        "seq-duplicate-user",
        lambda e: e.seq(GOOD_SEQ.encode() + b"3 1 2\n"),
        "sequences.txt:31: duplicate user",
    ),
    (
        "seq-one-interaction-each",
        lambda e: e.seq(b"1 5\n2 6\n3 7\n"),
        "no user has two training interactions",
    ),
    ("seq-two-interactions-each", lambda e: e.seq(b"1 5 6\n2 6 7\n"), "no user has a validation target"),
    ("items-truncated", lambda e: e.items(GOOD_ITEMS.encode()[:100]), "items.jsonl:3: invalid JSON"),
    ("items-binary", lambda e: e.items(BINARY), "items.jsonl:2: not valid UTF-8"),
    (
        "items-duplicate-id",
        lambda e: e.items((GOOD_ITEMS * 2).encode()),
        "items.jsonl:13: duplicate item_id '1'",
    ),
    ("items-not-an-object", lambda e: e.items(b"[1, 2]\n"), "items.jsonl:1: expected a JSON object"),
    ("items-without-id", lambda e: e.items(b'{"title": "x"}\n'), "items.jsonl:1: object has no 'item_id'"),
    # ---- config files, --set and flags
    ("yaml-not-a-mapping", lambda e: e.cfg(b"- a\n- b\n"), "c.yaml: expected a mapping"),
    ("yaml-truncated", lambda e: e.cfg(b"loss: [ce\n"), "c.yaml:2: invalid YAML"),
    ("yaml-binary", lambda e: e.cfg(BINARY), "c.yaml:2: not valid UTF-8"),
    ("yaml-latin1", lambda e: e.cfg(b"data: caf\xe9\n"), "c.yaml:1: not valid UTF-8"),
    (
        "yaml-duplicate-key",
        lambda e: e.cfg(b"loss: ce\nloss: bce\n"),
        "c.yaml:2: invalid YAML: duplicate key 'loss'",
    ),
    ("yaml-unknown-key", lambda e: e.cfg(b"lossy: ce\n"), "c.yaml: unknown config key 'lossy'"),
    ("yaml-wrong-type", lambda e: e.cfg(b"epochs: many\n"), "c.yaml: config key 'epochs' expects int"),
    ("yaml-missing", lambda e: e.train("--config", e.w / "nope.yaml"), "config file not found"),
    ("yaml-is-a-folder", lambda e: e.train("--config", e.w), "cannot read the config file"),
    ("set-without-equals", lambda e: e.train("--set", "loss"), "--set expects key=value"),
    ("set-unparsable", lambda e: e.train("--set", "ks=[5,"), "--set ks: cannot parse value"),
    ("set-ks-zero", lambda e: e.train("--set", "ks=[0]"), "config key 'ks' must be"),
    ("set-lr-nan", lambda e: e.train("--set", "lr=.nan"), "config key 'lr' must be"),
    ("set-batch-size-zero", lambda e: e.train("--set", "batch_size=0"), "'batch_size' must be >= 1"),
    ("set-dropout-above-one", lambda e: e.train("--set", "dropout=2"), "dropout must be in [0, 1)"),
    ("set-unknown-split", lambda e: e.train("--set", "split=random"), "config key 'split' must be"),
    (
        "set-metric-not-computed",
        lambda e: e.train("--set", "select_metric=NDCG@50"),
        "'NDCG@50' is not computed",
    ),
    ("flag-negative-epochs", lambda e: e.train("--epochs", "-3"), "config key 'epochs' must be >= 1"),
    ("flag-epochs-not-int", lambda e: e.train("--epochs", "abc"), "argument --epochs: invalid int value"),
    ("flag-unknown", lambda e: e.train("--lossy", "ce"), "unrecognized arguments: --lossy"),
    (
        "flag-k-zero",
        lambda e: e.on_run("recommend", no_damage, "--k", "0", "--out", e.w / "r"),
        "--k must be",
    ),
    (
        "out-is-a-file",
        lambda e: train(e.base / "data", e.copy("data") / "sequences.txt"),
        "is a file; give a folder",
    ),
    # ---- checkpoints and run folders
    ("evaluate-best-truncated", lambda e: e.on_run("evaluate", cut("best.pt")), "best.pt: not a readable"),
    (
        "export-best-truncated",
        lambda e: e.on_run("export", cut("best.pt"), "--out", e.w / "b"),
        "best.pt: not a readable",
    ),
    (
        "resume-last-truncated",
        lambda e: e.resume(cut("last.pt")),
        "last.pt: not a readable llmesr checkpoint",
    ),
    (
        "resume-other-dataset",
        lambda e: e.resume(no_damage, data=e.base / "other"),
        "last.pt was trained on dataset",
    ),
    (
        "resume-other-model",
        lambda e: e.resume(no_damage, "--set", "hidden_size=16"),
        "was trained with other settings (hidden_size 8 -> 16)",
    ),
    (
        "evaluate-best-of-other-dataset",
        lambda e: e.on_run("evaluate", put("best.pt", (e.base / "run_other" / "best.pt").read_bytes())),
        "best.pt was trained on dataset 'other'",
    ),
    (
        "evaluate-weights-do-not-fit",
        lambda e: e.on_run(
            "evaluate", edit_checkpoint("best.pt", lambda c: c["state_dict"].pop("item_emb.weight"))
        ),
        "best.pt: weights do not fit",
    ),
    (
        "evaluate-checkpoint-lacks-a-key",
        lambda e: e.on_run("evaluate", edit_checkpoint("best.pt", lambda c: c.pop("dataset"))),
        "best.pt: damaged checkpoint ('dataset'",
    ),
    (
        "run-config-truncated",
        lambda e: e.on_run("evaluate", put("config.yaml", "model: [sas\n")),
        "config.yaml:2: invalid",
    ),
    (
        "run-config-empty",
        lambda e: e.on_run("evaluate", put("config.yaml", "")),
        "config.yaml: the run config is empty",
    ),
    (
        "evaluate-out-is-a-folder",
        lambda e: e.on_run("evaluate", no_damage, "--out", e.w),
        "is a folder; give a file",
    ),
    # ---- precomputed item embeddings (refused before any encoder is loaded)
    ("emb-npy-nan", lambda e: e.emb(NAN_VEC), "item_embeddings_file: emb.npy: row 0 contains NaN"),
    ("emb-npy-row-count", lambda e: e.emb(VEC[:11]), "emb.npy: expected 12 rows"),
    ("emb-npy-1d", lambda e: e.emb(VEC[:, 0]), "emb.npy: expected a 2-D array"),
    ("emb-npy-strings", lambda e: e.emb(VEC.astype(str)), "emb.npy: expected numbers"),
    ("emb-npy-truncated", lambda e: e.emb(VEC, cut("emb.npy")), "emb.npy: cannot read .npy file"),
    ("emb-npy-too-narrow", lambda e: e.emb(VEC[:, :3]), "dimension 3 is below the model width 8"),
    (
        "emb-parquet-nan",
        lambda e: e.emb(pd.DataFrame({"v": list(NAN_VEC)})),
        "emb.parquet: row 0 contains NaN",
    ),
    (
        "emb-parquet-row-count",
        lambda e: e.emb(pd.DataFrame({"v": list(VEC[:5])})),
        "emb.parquet: expected 12 rows",
    ),
    (
        "emb-parquet-strings",
        lambda e: e.emb(pd.DataFrame({"v": ["x"] * 12})),
        "emb.parquet: expected one list column",
    ),
    (
        "emb-missing",
        lambda e: e.llmesr("item_embeddings_file", e.w / "no.npy"),
        "item_embeddings_file: no such file",
    ),
    # ---- semantic_dir (an `llmesr embed --out` folder)
    (
        "sem-incomplete",
        lambda e: e.sem(lambda s: (s / "item_pca.npy").unlink()),
        "semantic folder (missing item_pca.npy)",
    ),
    ("sem-npy-truncated", lambda e: e.sem(cut("item_pca.npy")), "item_pca.npy: unreadable .npy file"),
    ("sem-manifest-truncated", lambda e: e.sem(cut("manifest.json")), "manifest.json:1: invalid JSON"),
    ("sem-other-dataset", lambda e: e.sem(put("manifest.json", OTHER_MANIFEST)), "made for dataset 'x'"),
    (
        "sem-nan",
        lambda e: e.sem(put("item_pca.npy", np.full((13, 8), np.nan, np.float32))),
        "item_pca.npy: contains NaN",
    ),
    (
        "sem-row-count",
        lambda e: e.sem(put("item_pca.npy", np.zeros((12, 8), np.float32))),
        "item_pca.npy: shape (12, 8)",
    ),
    (
        "sem-strings",
        lambda e: e.sem(put("item_embeddings.npy", np.full((13, 16), "a"))),
        "item_embeddings.npy: dtype <U1",
    ),
    (
        "sem-neighbours-float",
        lambda e: e.sem(put("similar_users.npy", np.zeros((30, 5), np.float32))),
        "expected integer",
    ),
    (
        "sem-neighbours-range",
        lambda e: e.sem(put("similar_users.npy", np.full((30, 5), 99))),
        "user ids outside 0..29",
    ),
    # ---- experiment grids
    ("grid-not-a-mapping", lambda e: e.grid("- 1\n"), "grid.yaml: expected a mapping"),
    ("grid-truncated", lambda e: e.grid("grid:\n  seed: [1, 2\n"), "grid.yaml:3: invalid YAML"),
    ("grid-empty", lambda e: e.grid(""), "grid.yaml: the grid file is empty"),
    (
        "grid-unknown-key",
        lambda e: e.grid("grid: {sead: [1, 2]}\n"),
        "grid.yaml: grid: unknown config key 'sead'",
    ),
    (
        "grid-bad-value",
        lambda e: e.grid("grid: {epochs: [a, 2]}\n"),
        "grid.yaml: grid: config key 'epochs' expects",
    ),
    ("grid-value-twice", lambda e: e.grid("grid: {seed: [1, 1]}\n"), "grid key 'seed' lists a value twice"),
    (
        "grid-set-not-a-mapping",
        lambda e: e.grid("set: [1]\ngrid: {seed: [1]}\n"),
        "'set' must map config keys",
    ),
    # ---- report and compare on damaged run folders
    ("report-metrics-truncated", lambda e: e.report(cut("metrics.json")), "metrics.json:"),
    ("report-ranks-truncated", lambda e: e.report(cut("ranks.npz")), "ranks.npz: unreadable ranks file"),
    # (found by the last section, after the others drew their figures: nothing may be left of them)
    ("report-table-truncated", lambda e: e.report(cut("item_table.npy")), "item_table.npy: unreadable .npy"),
    ("report-ranks-inconsistent", lambda e: e.report(shorten_ranks), "ranks.npz: test_full has shape (29,)"),
    (
        "report-config-truncated",
        lambda e: e.report(put("config.yaml", "model: [sas\n")),
        "config.yaml:2: invalid",
    ),
    (
        "compare-ranks-truncated",
        lambda e: e.on_run("compare", cut("ranks.npz")),
        "ranks.npz: unreadable ranks file",
    ),
    (
        "compare-run-without-test-ranks",
        lambda e: e.on_run("compare", validation_only_ranks),
        "has no test ranks: it was evaluated on valid only",
    ),
    (
        "compare-label-without-runs",
        lambda e: ["compare", "A=", "--out", e.w / "cmp"],
        "'A=' names no run folder",
    ),
    # ---- bundles (recommend, serve, export)
    (
        "serve-not-a-bundle",
        lambda e: e.on_run("serve", no_damage, "--port", "0"),
        "not a model bundle (no bundle.json)",
    ),
    (
        "serve-table-truncated",
        lambda e: ["serve", e.copy("bundle", cut("item_table.npy")), "--port", "0"],
        "item_table.npy: unreadable",
    ),
    ("bundle-json-truncated", lambda e: e.bundle(cut("bundle.json")), "bundle.json:"),
    (
        "bundle-weights-missing",
        lambda e: e.bundle(lambda b: (b / "weights.pt").unlink()),
        "weights.pt is missing",
    ),
    (
        "bundle-weights-truncated",
        lambda e: e.bundle(cut("weights.pt")),
        "weights.pt: not a readable weights file",
    ),
    (
        "bundle-table-truncated",
        lambda e: e.bundle(cut("item_table.npy")),
        "item_table.npy: unreadable .npy file",
    ),
    (
        "bundle-table-nan",
        lambda e: e.bundle(put("item_table.npy", np.full((13, 9), np.nan))),
        "a finite float matrix",
    ),
    (
        "bundle-table-width",
        lambda e: e.bundle(put("item_table.npy", np.zeros((13, 3)))),
        "item_table.npy: 3 columns",
    ),
    (
        "bundle-items-truncated",
        lambda e: e.bundle(cut("items.parquet")),
        "items.parquet: unreadable Parquet file",
    ),
    (
        "bundle-items-duplicate",
        lambda e: e.bundle(put("items.parquet", ONE_DUPLICATE)),
        "duplicate item_id '1'",
    ),
    (
        "bundle-unknown-item",
        lambda e: e.bundle(no_damage, "--history", "1", "zzz"),
        "unknown item id(s): 'zzz'",
    ),
    ("input-latin1", lambda e: e.history_file(b"user_id,item_id\nu,caf\xe9\n"), "in.csv:2: not valid UTF-8"),
    (
        "input-bad-timestamp",
        lambda e: e.history_file(b"user_id,item_id,timestamp\nu,1,abc\n"),
        "in.csv:2: timestamp",
    ),
    ("input-header-only", lambda e: e.history_file(b"user_id,item_id\n"), "in.csv: no rows"),
    (
        "export-into-a-foreign-folder",
        lambda e: ["export", e.base / "run", "--out", e.copy("data")],
        "holds other files",
    ),
]



@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line_with_exit_2_and_writes_nothing(base, tmp_path, capsys, build, expected):
    assert_clean_refusal(base, tmp_path, capsys, build(Env(base, tmp_path)), expected)


CONTROLS: list[tuple[str, Callable[[Env], list]]] = [
    ("seq", lambda e: e.seq(GOOD_SEQ.encode())),
    ("items", lambda e: e.items(GOOD_ITEMS.encode())),
    ("config", lambda e: e.cfg(b"loss: ce\nks: [5, 10]\n")),
    ("resume", lambda e: e.resume(no_damage, "--epochs", "2")),
    ("evaluate", lambda e: e.on_run("evaluate", no_damage, "--out", e.w / "m.json")),
    ("semantic-dir", lambda e: e.sem(no_damage)),
    ("grid", lambda e: e.grid("grid: {seed: [1, 2]}\n")),
    ("report", lambda e: e.report(no_damage)),
    ("compare", lambda e: e.on_run("compare", no_damage)),
    ("bundle", lambda e: e.bundle(no_damage)),
    ("history-file", lambda e: e.history_file(b"user_id,item_id,timestamp\nu,2,10\nu,1,9\n")),
]


@pytest.mark.parametrize("build", [c[1] for c in CONTROLS], ids=[c[0] for c in CONTROLS])
def test_controls_the_undamaged_inputs_work(base, tmp_path, build):
    """The inputs the cases damage work as they are: each failure above is the damage's doing."""
    assert main([str(a) for a in build(Env(base, tmp_path))]) == 0


def test_a_bug_is_not_reported_as_bad_input(base, monkeypatch):
    """Only deliberate input errors become exit 2: an unexpected KeyError keeps its traceback."""
    import llmesr.runs.folder

    def broken(cfg):
        raise KeyError("a programming error")

    monkeypatch.setattr(llmesr.runs.folder, "prepare_data", broken)
    with pytest.raises(KeyError, match="a programming error"):
        main(["evaluate", str(base / "run")])


class FakeEncoder:
    identity, dim = "fake-encoder-v1", 6

    def encode(self, texts: list[str]) -> np.ndarray:
        seeds = [int(hashlib.sha1(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds]).astype(np.float32)


@pytest.mark.parametrize("damaged", ["item_pca.npy", "similar_users.npy", "manifest.json"])
def test_a_damaged_semantic_cache_is_recomputed(tmp_path, damaged):
    """The keyed semantic cache is derived data: a truncated file there is computed again (with a
    warning naming it) and ends byte-identical, like a damaged batch of the embedding cache."""
    from llmesr.data.dataset import load_dataset
    from llmesr.data.split import leave_one_out
    from llmesr.semantic.pipeline import FILES, SemanticSettings, run_semantic_step

    data = load_dataset(write_sequences_dir(tmp_path / "d", patterned_rows(20, 10)))
    split, out = leave_one_out(data), tmp_path / "out"
    step = SemanticSettings(pca_dim=4, similar_k=3, batch_size=8)
    run_semantic_step(data, split, FakeEncoder(), step, out, tmp_path / "cache", progress=False)
    files = {f: (out / f).read_bytes() for f in (*FILES, "manifest.json")}
    cut(damaged)(out)
    with pytest.warns(UserWarning, match=f"{damaged}.*computing the semantic step again"):
        run_semantic_step(data, split, FakeEncoder(), step, out, tmp_path / "cache", progress=False)
    assert {f: (out / f).read_bytes() for f in files} == files


# ---- property tests: whatever the bytes, a parser returns a value or raises its own error


@settings(max_examples=150, deadline=None)
@given(
    sequences=st.one_of(
        st.binary(max_size=80),
        st.text(st.sampled_from("ab1 2\t\n\r\x00é"), max_size=60).map(str.encode),
    ),
    items=st.none()
    | st.binary(max_size=60)
    | st.text(st.sampled_from('{}[]:,"item_d 1\n'), max_size=60).map(str.encode),
)
def test_sequences_folder_parser_never_crashes(sequences, items):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sequences.txt").write_bytes(sequences)
        if items is not None:
            (folder / "items.jsonl").write_bytes(items)
        try:
            log = read_sequences_dir(folder)
        except DataFormatError as err:
            assert len(str(err).splitlines()) == 1 and str(folder) in str(err)
            return
    assert len(log.users) == len(log.items) > 0
    assert all(u and not any(c.isspace() for c in u) for u in log.users)
    assert all(i and "\x00" not in i for i in log.items)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=60) | st.text(st.sampled_from("ab:- \n\t[]{}'\"&*!#"), max_size=40).map(str.encode))
def test_yaml_reader_returns_a_mapping_or_a_config_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(content)
        try:
            values = read_yaml(path)
        except ConfigError as err:
            assert len(str(err).splitlines()) == 1 and str(path) in str(err)
            return
    assert isinstance(values, dict)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["epochs", "lr", "ks", "split", "loss", "bogus", "dropout"]), st.text(max_size=8)
        ),
        max_size=4,
    )
)
def test_set_options_give_a_config_or_a_config_error(pairs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            cfg = apply_overrides(RunConfig(), parse_set([f"{k}={v}" for k, v in pairs]), "--set")
        except ConfigError as err:
            assert len(str(err).splitlines()) == 1
            return
    assert cfg.epochs >= 1 and cfg.lr >= 0 and cfg.ks and min(cfg.ks) >= 1
