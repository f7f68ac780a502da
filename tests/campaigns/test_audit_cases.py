"""The CLI cases of the outside audit (issue 17): each was a traceback, a silent setting change or a
misleading result, and is now a clean one-line refusal that writes nothing (see hardening_env)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
from hardening_env import (
    Env,
    assert_clean_refusal,
    base,
    no_damage,
    put,
    run_case,
)

from llmesr.config import parse_set

AUDIT: list[tuple[str, Callable[[Env], list], str]] = [
    # 4. a rerun with other training settings silently resumed and rewrote config.yaml
    ("resume-other-lr", lambda e: e.resume(no_damage, "--set", "lr=0.05"), "(lr 0.001 -> 0.05"),
    ("resume-other-seed", lambda e: e.resume(no_damage, "--set", "seed=7"), "(seed 42 -> 7"),
    ("resume-other-batch", lambda e: e.resume(no_damage, "--set", "batch_size=32"), "batch_size 16 -> 32"),
    # 5. tracebacks instead of one line
    ("seed-negative", lambda e: e.train("--seed", "-1"), "'seed' must be >= 0, got -1"),
    ("retrieval-unknown", lambda e: e.train("--set", "retrieval=foo"), "'retrieval' must be 'auto' or"),
    ("out-empty", lambda e: ["train", "--data", e.base / "data", "--out", ""], "--out is empty"),
    # 6. wrong values accepted, misleading results
    ("sampled-negatives-zero", lambda e: e.train("--set", "sampled_negatives=0"), "must be >= 1, got 0"),
    ("key-not-read-by-the-model", lambda e: e.train("--set", "mask_prob=0.3"), "has no setting 'mask_prob'"),
    (
        "evaluate-changes-a-model-setting",
        lambda e: e.on_run("evaluate", no_damage, "--set", "hidden_size=32"),
        "--set hidden_size: cannot change what",
    ),
    (
        "table-column-on-a-sequences-folder",
        lambda e: e.train("--set", "user_col=uid"),
        "user_col: ",
    ),
    (
        "best-of-another-model",
        lambda e: e.on_run("evaluate", put("best.pt", (e.base / "run_gru" / "best.pt").read_bytes())),
        "holds a gru4rec model, but its run trained sasrec",
    ),
    ("unknown-model", lambda e: e.train("--model", "transformer9000"), "unknown model 'transformer9000'"),
    ("teacher-refresh-zero", lambda e: e.llmesr("teacher_refresh", 0), "and teacher_refresh must be >= 1"),
    ("distill-users-zero", lambda e: e.llmesr("distill_users", 0), "distill_users and teacher_refresh"),
    ("distill-weight-negative", lambda e: e.llmesr("distill_weight", -1), "distill_weight must be >= 0"),
    ("cross-heads-do-not-divide", lambda e: e.llmesr("cross_heads", 3), "cross_heads (3) must divide"),
    ("emb-all-zero", lambda e: e.emb(np.zeros((12, 16), np.float32)), "emb.npy: every embedding is zero"),
    (
        "sem-all-zero-items",
        lambda e: e.sem(put("item_embeddings.npy", np.zeros((13, 16), np.float32))),
        "item_embeddings.npy: every vector is zero",
    ),
]


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in AUDIT], ids=[c[0] for c in AUDIT])
def test_audit_case_is_a_clean_refusal(base, tmp_path, capsys, build, expected):
    assert_clean_refusal(base, tmp_path, capsys, build(Env(base, tmp_path)), expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable folder to test")
def test_an_unwritable_out_is_refused_before_any_work(base, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        argv = Env(base, tmp_path).train()
        argv[argv.index("--out") + 1] = locked / "run"
        assert_clean_refusal(base, tmp_path, capsys, argv, "no permission to write in")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("lr=1e-4", {"lr": 1e-4}),  # YAML 1.1 read "1e-4" as a string
        ("item_template={title} by {brand}", {"item_template": "{title} by {brand}"}),
        ("init_from=runs/a b", {"init_from": "runs/a b"}),
        ("time_col=null", {"time_col": None}),
        ("encoder='minilm'", {"encoder": "minilm"}),
    ],
)
def test_normal_values_are_read_as_meant(item, expected):
    assert parse_set([item]) == expected


def test_lr_in_yaml_exponent_form_trains(base, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lr: 1e-3\n")
    code, err = run_case(Env(base, tmp_path).train("--config", tmp_path / "c.yaml"), capsys)
    assert code == 0, err


def test_template_with_braces_from_the_command_line_trains(base, tmp_path, capsys):
    code, err = run_case(Env(base, tmp_path).train("--set", "item_template={title} by {brand}"), capsys)
    assert code == 0, err


def test_every_model_field_is_a_setting_and_reaches_the_model():
    """Model settings are read from the model configs: a field no hand-kept list names
    (``distill_temperature``) is settable with --set and arrives in the model's config."""
    from llmesr.config import resolve_config
    from llmesr.models import model_config

    cfg = resolve_config(overrides=["model=llmesr", "distill_temperature=0.2", "distill_loss=contrastive"])
    mcfg = model_config(cfg.model, {"n_items": 5, **cfg.model_settings()})
    assert (mcfg.distill_temperature, mcfg.distill_loss) == (0.2, "contrastive")


def test_the_bare_defaults_are_the_recommended_settings():
    from llmesr.config import resolve_config
    from llmesr.models import model_config

    cfg = resolve_config(model="llmesr")
    mcfg = model_config(cfg.model, {"n_items": 5, **cfg.model_settings()})
    assert (mcfg.loss, cfg.batch_size, mcfg.hidden_size, mcfg.max_len, cfg.lr) == ("ce", 256, 64, 50, 1e-3)
