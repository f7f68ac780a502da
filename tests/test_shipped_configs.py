"""Every config the repository ships loads and checks: run presets, grids (each of their runs is
resolved as `llmesr experiment` would, before anything trains) and tune search spaces. A renamed
setting or model otherwise surfaces only when a user launches an hour-long grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmesr.config import resolve_config
from llmesr.errors import ConfigError
from llmesr.experiments.grid import load_grid
from llmesr.experiments.space import load_space

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
GRIDS = sorted(CONFIGS.glob("grid_*.yaml"))
PRESETS = sorted(p for p in CONFIGS.glob("*.yaml") if p not in GRIDS)
SPACES = sorted((CONFIGS / "tune").glob("*.yaml"))
# Presets whose header says which finished run to name (the folder is read when training starts).
NEEDS_RUN = {"llmemb_sasrec_ce.yaml": ["align_from=runs/beauty_sasrec"]}


def test_the_repository_ships_each_kind_of_config():
    assert GRIDS and PRESETS and SPACES


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_resolves(path):
    config = resolve_config([path], NEEDS_RUN.get(path.name, []))
    assert config.model


def test_a_preset_that_needs_a_run_says_so_without_one():
    with pytest.raises(ConfigError, match="align_from"):
        resolve_config([CONFIGS / "llmemb_sasrec_ce.yaml"])


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_grid_expands_and_every_run_resolves(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # grids name configs relative to the repository root, as documented
    runs, out, _ = load_grid(path.relative_to(ROOT))
    assert runs and str(out).startswith("runs/")
    assert len({run.folder for run in runs}) == len(runs)


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_search_space_loads(path):
    space = load_space(path)
    assert space.params and space.budget
