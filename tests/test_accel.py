"""Device, mixed precision and torch.compile options, and training from an embed folder.

The CUDA tests run only where PyTorch sees a GPU; on CPU the same options are checked for what
they promise there: bf16 autocast trains, compile gives the eager result, bad settings fail early.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import patterned_rows, write_sequences_dir
from llmesr.config import ConfigError, RunConfig, apply_overrides
from llmesr.runs import prepare_data
from llmesr.training import Trainer

FAST = {
    "max_len": 10,
    "hidden_size": 16,
    "batch_size": 16,
    "epochs": 2,
    "patience": 10,
    "progress": False,
    "eval_batch_size": 32,
    "sampled_negatives": 5,
    "dropout": 0.0,
    "attn_dropout": 0.0,
    "loss": "ce",
}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")


def config(data_dir, **values) -> RunConfig:
    return apply_overrides(RunConfig(), {"data": str(data_dir), **FAST, **values}, "test")


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def train(cfg: RunConfig, out) -> dict:
    return Trainer(cfg, prepare_data(cfg), out).fit()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"device": "tpu"}, "device must be"),
        ({"precision": "fp16"}, "fp16 needs a CUDA device"),
    ],
)
def test_bad_device_settings_fail_before_training(patterned_dir, tmp_path, values, message):
    cfg = config(patterned_dir, **values)
    with pytest.raises(ConfigError, match=message):
        Trainer(cfg, prepare_data(cfg), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unknown_precision_is_refused_as_the_config_is_read(patterned_dir):
    with pytest.raises(ConfigError, match="'precision' must be 'fp32' or 'bf16' or 'fp16', got 'fp8'"):
        config(patterned_dir, precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(patterned_dir, tmp_path):
    cfg = config(patterned_dir, device="cuda")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        Trainer(cfg, prepare_data(cfg), tmp_path / "run")


def test_bf16_autocast_on_cpu_follows_fp32(patterned_dir, tmp_path):
    fp32 = train(config(patterned_dir), tmp_path / "fp32")
    bf16 = train(config(patterned_dir, precision="bf16"), tmp_path / "bf16")
    # bfloat16 keeps ~3 significant digits: the curves agree loosely, not bit for bit.
    assert losses(tmp_path / "bf16") == pytest.approx(losses(tmp_path / "fp32"), rel=0.05)
    assert bf16["test"]["full"]["overall"]["NDCG@10"] == pytest.approx(
        fp32["test"]["full"]["overall"]["NDCG@10"], abs=0.1
    )


def test_compiled_encoder_gives_the_eager_result(tmp_path):
    data = write_sequences_dir(tmp_path / "data", patterned_rows(40, 15, seed=3))
    eager = train(config(data, epochs=1), tmp_path / "eager")
    compiled = train(config(data, epochs=1, compile=True), tmp_path / "compiled")
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)
    assert compiled["test"]["full"]["overall"]["NDCG@10"] == pytest.approx(
        eager["test"]["full"]["overall"]["NDCG@10"], abs=1e-6
    )


@needs_cuda
@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec"])
def test_cuda_training_matches_cpu(patterned_dir, tmp_path, model):
    cpu = train(config(patterned_dir, model=model), tmp_path / "cpu")
    gpu = train(config(patterned_dir, model=model, device="cuda"), tmp_path / "gpu")
    # Different kernels and random streams (dropout is off; BERT4Rec masks come from the CPU
    # generator): the runs agree to training noise, not bit for bit.
    assert losses(tmp_path / "gpu") == pytest.approx(losses(tmp_path / "cpu"), rel=0.02)
    for protocol in ("full", "sampled"):
        assert gpu["test"][protocol]["overall"]["NDCG@10"] == pytest.approx(
            cpu["test"][protocol]["overall"]["NDCG@10"], abs=0.05
        )


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_and_compile_train(patterned_dir, tmp_path, precision):
    ref = train(config(patterned_dir, device="cuda"), tmp_path / "ref")
    run = train(config(patterned_dir, device="cuda", precision=precision, compile=True), tmp_path / "amp")
    assert losses(tmp_path / "amp") == pytest.approx(losses(tmp_path / "ref"), rel=0.05)
    assert run["test"]["full"]["overall"]["NDCG@10"] == pytest.approx(
        ref["test"]["full"]["overall"]["NDCG@10"], abs=0.1
    )


def test_training_from_an_embed_folder_needs_no_encoder(tmp_path):
    from llmesr.semantic.pipeline import embed_for_config

    data = write_sequences_dir(tmp_path / "data", patterned_rows(60, 20, seed=1))
    values = {"model": "llmesr", "similar_k": 5, "distill_users": 3, "cache_dir": str(tmp_path / "cache")}
    cfg = config(data, **values)
    run_data = prepare_data(cfg)
    folder, _ = embed_for_config(cfg, run_data.dataset, run_data.split, tmp_path / "sem")
    # An encoder that cannot be built proves the folder alone is used.
    from_dir = config(data, **values, semantic_dir=str(folder), encoder="hf:/no/such/model")
    via_cache = train(cfg, tmp_path / "cache_run")
    assert train(from_dir, tmp_path / "dir_run") == via_cache

    other = write_sequences_dir(tmp_path / "other", patterned_rows(50, 20, seed=2))
    wrong = config(other, **values, semantic_dir=str(folder))
    with pytest.raises(ConfigError, match="made for dataset"):
        Trainer(wrong, prepare_data(wrong), tmp_path / "wrong")
    (folder / "similar_users.npy").unlink()
    with pytest.raises(ConfigError, match="missing similar_users.npy"):
        Trainer(from_dir, prepare_data(from_dir), tmp_path / "missing")
