"""AlphaFuse and LLMEmb serve through the same bundle path as every model: exported from a run, a
bundle recommends exactly the run's top-k (its frozen tables travel in weights.pt; LLMEmb's
reference table, training-only, does not)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SERVING_SETTINGS, patterned_rows, set_args, write_sequences_dir
from llmesr.cli import main
from llmesr.serving import Bundle


@pytest.fixture(scope="module")
def successor_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("successors")
    data = write_sequences_dir(root / "data", patterned_rows(60, 20))
    extra = {"sasrec": [], "alphafuse": [], "llmemb": ["--set", f"align_from={root / 'sasrec'}"]}
    for model, more in extra.items():  # sasrec first: LLMEmb aligns with its finished table
        sets = [*set_args(SERVING_SETTINGS, model), "--set", f"cache_dir={root / 'cache'}", *more]
        run = root / model
        args = ["train", "--data", str(data), "--model", model, "--out", str(run), "--epochs", "4"]
        assert main([*args, *sets]) == 0
        assert main(["export", str(run), "--out", str(root / f"{model}_bundle")]) == 0
    return root


@pytest.mark.parametrize("model", ["alphafuse", "llmemb"])
def test_bundle_recommends_exactly_what_the_run_ranks(successor_runs, model):
    from llmesr.checkpoint import model_from_checkpoint
    from llmesr.evaluation import top_k
    from llmesr.runs import RunFolder, prepare_data

    bundle = Bundle(successor_runs / f"{model}_bundle")
    run = successor_runs / model
    data = prepare_data(RunFolder(run).load_config())
    trained = model_from_checkpoint(run / "best.pt")
    split = data.split.test
    items, _ = top_k(trained, split, 5)
    users = np.arange(len(split))
    flat, offsets = split.inputs.items, split.inputs.offsets
    histories = [data.dataset.item_ids[flat[offsets[u] : offsets[u + 1]]].tolist() for u in users]
    recs = bundle.recommend_many(histories, k=5)
    for u, rec in zip(users, recs, strict=True):
        assert rec.items.tolist() == data.dataset.item_ids[items[u]].tolist()
    # The bundle's table is the run's serving table, and its model scores with the trained tables.
    np.testing.assert_array_equal(bundle.table.numpy(), RunFolder(run).item_table())
    state = torch.load(successor_runs / f"{model}_bundle" / "weights.pt", weights_only=True)
    assert not any("reference" in key for key in state)
    frozen = "backbone.item_emb.text" if model == "alphafuse" else "backbone.item_emb.llm"
    assert frozen in state
