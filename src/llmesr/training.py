"""Training loop: Adam, early stopping on validation, best + last checkpoints, exact resume.

Determinism: every source of randomness in epoch ``e`` (batch order, negatives, masks, dropout)
is seeded from ``(seed, e)``, so an interrupted run resumed from its last checkpoint follows
exactly the path of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from llmesr.accel import autocast, check_precision, compile_encoders, grad_scaler, resolve_device
from llmesr.checkpoint import (
    CheckpointError,
    checkpoint_model_config,
    init_from_run,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from llmesr.config import ConfigError, RunConfig
from llmesr.data.batching import epoch_batches
from llmesr.data.dataset import SequenceDataset, load_dataset, resolve_data_path
from llmesr.data.formats import detect_format
from llmesr.data.groups import HeadTailGroups, groups_from_preset
from llmesr.data.split import Split, make_split
from llmesr.distributed import init_distributed, wrap
from llmesr.evaluation import describe_ranks, rank_targets, sampled_negatives, summarize
from llmesr.io import append_jsonl, atomic_save_npy, atomic_save_npz, atomic_write_json, atomic_write_text
from llmesr.models import MODELS, SequentialRecommender, build_model, model_config
from llmesr.semantic.artifacts import SemanticArtifacts


@dataclass
class RunData:
    dataset: SequenceDataset
    split: Split
    groups: HeadTailGroups
    negatives: dict[str, torch.Tensor]  # fixed sampled-protocol negatives per evaluation split

    def dataset_info(self) -> dict:
        return {
            **self.dataset.describe(),
            "fingerprint": self.dataset.fingerprint(),
            "split": self.split.protocol,
            "groups": self.groups.describe(),
        }


def prepare_data(cfg: RunConfig) -> RunData:
    path = resolve_data_path(cfg.data)
    fmt = detect_format(path) if cfg.data_format == "auto" else cfg.data_format
    table = {"user_col": cfg.user_col, "item_col": cfg.item_col, "time_col": cfg.time_col}
    dataset = load_dataset(path, kcore=cfg.kcore, format=fmt, **(table if fmt == "table" else {}))
    split = make_split(dataset, cfg.split)
    try:
        groups = groups_from_preset(
            split.train, dataset.n_items, cfg.groups, cfg.tail_user_threshold, cfg.tail_item_threshold
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    negatives = {
        name: sampled_negatives(
            dataset.sequences,
            split.eval_split(name).users,
            cfg.sampled_negatives,
            dataset.n_items,
            seed=cfg.negatives_seed + i,
        )
        for i, name in enumerate(("valid", "test"))
    }
    return RunData(dataset, split, groups, negatives)


def create_model(cfg: RunConfig, data: RunData) -> SequentialRecommender:
    torch.manual_seed(cfg.seed)
    values = {"n_items": data.dataset.n_items, **cfg.model_settings()}
    try:
        mcfg = model_config(cfg.model, values)
    except (TypeError, ValueError) as err:  # the model config's own checks of its settings
        raise ConfigError(f"model {cfg.model!r}: {err}") from None
    cls = MODELS[cfg.model][0]
    art = None
    if cls.needs_semantic:
        neighbours = getattr(mcfg, cls.semantic_neighbours) if cls.semantic_neighbours else 0
        art = semantic_artifacts(cfg, data, mcfg.hidden_size, neighbours=neighbours)  # ConfigError
    try:
        return cls.for_training(mcfg, data.split.train, art)
    except ConfigError:
        raise
    except ValueError as err:  # models refuse inputs that do not fit them (table shapes) this way
        raise ConfigError(f"model {cfg.model!r}: {err}") from None


def semantic_artifacts(cfg: RunConfig, data: RunData, width: int, neighbours: int) -> SemanticArtifacts:
    """The semantic step's outputs for this dataset and split (computed first if not cached),
    checked against the model: PCA ``width`` and at least ``neighbours`` similar users each."""
    from llmesr.semantic.pipeline import embed_for_config, load_artifacts, load_semantic_dir

    if cfg.semantic_dir:
        folder = Path(cfg.semantic_dir)
        try:
            art = load_semantic_dir(folder, data.dataset, data.split)
        except ValueError as err:
            raise ConfigError(f"semantic_dir: {err}") from None
    else:
        folder, _ = embed_for_config(cfg, data.dataset, data.split)
        art = load_artifacts(folder, data.dataset)
    try:
        art.check(folder, data.dataset.n_items, data.dataset.n_users, width, neighbours)
    except ValueError as err:
        raise ConfigError(f"semantic artifacts rejected: {err}") from None
    return art


def model_from_checkpoint(path: Path, fingerprint: str | None = None) -> SequentialRecommender:
    ckpt = load_checkpoint(path, fingerprint=fingerprint)
    model = build_model(ckpt["model"], checkpoint_model_config(path, ckpt))
    load_weights(model, ckpt["state_dict"], path)
    model.eval()
    return model


def evaluate_model(model: SequentialRecommender, data: RunData, cfg: RunConfig, name: str) -> dict:
    return evaluate_with_ranks(model, data, cfg, name)[0]


def evaluate_with_ranks(
    model: SequentialRecommender, data: RunData, cfg: RunConfig, name: str
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of one evaluation split and the per-user ranks they come from."""
    split = data.split.eval_split(name)
    ranks = rank_targets(
        model,
        split,
        negatives=data.negatives[name],
        exclude_history=cfg.exclude_history,
        batch_size=cfg.eval_batch_size,
    )
    metrics = describe_ranks(ranks, split, data.groups, data.negatives[name], cfg.ks, cfg.exclude_history)
    return metrics, ranks


def evaluate_splits(
    model: SequentialRecommender, data: RunData, cfg: RunConfig
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of the validation and test splits, and the ``ranks.npz`` arrays behind them."""
    metrics, arrays = {}, {}
    for name in ("valid", "test"):
        metrics[name], ranks = evaluate_with_ranks(model, data, cfg, name)
        arrays.update(rank_arrays(data, name, ranks))
    return metrics, arrays


def rank_arrays(data: RunData, name: str, ranks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``ranks.npz`` stores for one split: per-user ranks by protocol and group membership,
    enough to compare runs user by user (paired tests) without reloading data or models."""
    split = data.split.eval_split(name)
    tail_user, tail_item = data.groups.tails(split.users, split.targets)
    return {
        f"{name}_users": split.users,
        f"{name}_tail_user": tail_user,
        f"{name}_tail_item": tail_item,
        **{f"{name}_{protocol}": r for protocol, r in ranks.items()},
    }


class Trainer:
    """Trains ``cfg.model`` into ``out_dir``; rerunning on the same folder resumes."""

    def __init__(self, cfg: RunConfig, data: RunData, out_dir: Path) -> None:
        self.cfg, self.data, self.out = cfg, data, Path(out_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.loss_weighting not in ("batch", "position"):
            raise ConfigError(f"loss_weighting must be 'batch' or 'position', got {cfg.loss_weighting!r}")
        computed = {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in cfg.ks}
        if cfg.select_metric not in computed:
            raise ConfigError(
                f"select_metric {cfg.select_metric!r} is not computed: choose one of "
                f"{', '.join(sorted(computed))} (HR, NDCG or MRR at one of ks={cfg.ks})"
            )
        try:
            self.device = resolve_device(cfg.device)
            check_precision(cfg.precision, self.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.dist = init_distributed(self.device)
        self.model = create_model(cfg, data)
        if cfg.init_from:  # a resumed run then overwrites these with its own last.pt
            loaded = init_from_run(self.model, cfg.model, Path(cfg.init_from), data.dataset.fingerprint())
            if self.dist.is_main:
                print(f"init_from: {loaded}", flush=True)
        self.model = self.model.to(self.device)
        if cfg.compile:
            compile_encoders(self.model)
        self.scaler = grad_scaler(self.device, cfg.precision)
        self.loss_fn = wrap(self.model, self.dist)  # DDP under torchrun, the plain loss otherwise
        if not 0.0 <= cfg.adam_beta2 < 1.0:
            raise ConfigError(f"adam_beta2 must be in [0, 1), got {cfg.adam_beta2}")
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay
        )
        train = data.split.train
        self.train_rows = np.flatnonzero(train.lengths >= 2)  # one input and one target at least
        if len(self.train_rows) == 0:
            raise ConfigError(f"{cfg.data}: no user has two training interactions: nothing to train on")
        if len(data.split.valid) == 0:
            raise ConfigError(
                f"{cfg.data}: no user has a validation target under the {cfg.split} split "
                "(leave_one_out needs users with 3 interactions or more): nothing to select the model on"
            )
        self.epoch, self.best_score, self.best_epoch, self.bad_evals = 0, -1.0, 0, 0

    # ---- files ------------------------------------------------------------------------------
    def _checkpoint_meta(self) -> dict:
        return {
            "model_name": self.cfg.model,
            "model_config": self.model.config.to_dict(),
            "dataset": {"name": self.data.dataset.name, "fingerprint": self.data.dataset.fingerprint()},
        }

    def _save_last(self) -> None:
        save_checkpoint(
            self.out / "last.pt",
            state_dict=self.model.state_dict(),
            **self._checkpoint_meta(),
            extra={
                "optimizer": self.optimizer.state_dict(),
                "progress": {
                    "epoch": self.epoch,
                    "best_score": self.best_score,
                    "best_epoch": self.best_epoch,
                    "bad_evals": self.bad_evals,
                },
            },
        )

    def _resume(self) -> bool:
        last = self.out / "last.pt"
        if not last.exists():
            return False
        ckpt = load_checkpoint(last, fingerprint=self.data.dataset.fingerprint())
        # Compare through the config class so that keys added later with defaults still match.
        stored = ckpt["model"] == self.cfg.model and checkpoint_model_config(last, ckpt).to_dict()
        if stored != self.model.config.to_dict():
            raise ConfigError(f"{last} holds a different model configuration; use a new --out folder")
        progress_keys = ("epoch", "best_score", "best_epoch", "bad_evals")
        if not isinstance(ckpt.get("optimizer"), dict) or not (
            isinstance(ckpt.get("progress"), dict) and all(k in ckpt["progress"] for k in progress_keys)
        ):
            raise CheckpointError(f"{last}: not a resumable checkpoint (no optimizer state or progress)")
        load_weights(self.model, ckpt["state_dict"], last)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{last}: its optimizer state does not fit the model ({err})") from None
        p = ckpt["progress"]
        self.epoch, self.best_score, self.best_epoch, self.bad_evals = (
            p["epoch"],
            p["best_score"],
            p["best_epoch"],
            p["bad_evals"],
        )
        return True

    def _start(self) -> None:
        if not self.dist.is_main:
            self._resume()
            return
        # Resume (which checks last.pt against this dataset and model) before writing anything: a
        # refused rerun must leave the run folder as it was.
        resumed = self._resume()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".*.tmp"):  # a write cut short by a kill; the real file is intact
            stale.unlink(missing_ok=True)
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        atomic_write_json(self.out / "dataset.json", self.data.dataset_info())
        log = self.out / "log.jsonl"
        if not resumed:
            log.unlink(missing_ok=True)
        elif log.exists():
            # A kill between the log line and last.pt leaves a line for an epoch that will be
            # trained again: keep only the epochs last.pt contains (and drop a torn last line).
            kept = []
            for line in log.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("epoch", 0) <= self.epoch:
                    kept.append(line)
            atomic_write_text(log, "".join(f"{line}\n" for line in kept))

    # ---- loop -------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        cfg, model = self.cfg, self.model
        seed = [cfg.seed, self.epoch]
        rank = [self.dist.rank] if self.dist.active else []  # one random stream per rank
        torch.manual_seed(np.random.SeedSequence(seed + rank).generate_state(1)[0])  # dropout
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence(seed + [1] + rank).generate_state(1)[0])
        )
        lengths = np.minimum(self.data.split.train.lengths, model.config.max_len + 1)
        batches = epoch_batches(
            self.train_rows, lengths, cfg.batch_size, np.random.default_rng(seed), bucket=cfg.bucket_batches
        )
        positions = lengths - 1  # trained positions per row (next-item; proportional for masking)
        mean_positions = positions[self.train_rows].sum() / len(batches)
        model.start_epoch(self.epoch)
        model.train()
        total = 0.0
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not cfg.progress)
        world = self.dist.world
        for rows in bar:
            if len(rows) < world:  # every rank sees the same batches, so all skip it together
                continue
            shard = self.dist.shard(rows)
            batch = model.train_input(self.data.split.train, shard).to(self.device, non_blocking=True)
            with autocast(self.device, cfg.precision):
                loss = self.loss_fn(batch, gen, shard).float()
            # DDP averages over ranks: weighting each rank by its share of the batch's positions
            # makes that average the global batch's mean (a factor of 1 in a single process).
            scale = float(positions[shard].sum() * world / positions[rows].sum())
            if cfg.loss_weighting == "position":
                scale *= float(positions[rows].sum() / mean_positions)
            loss = loss * scale
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            value = loss.item()
            total += value
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        model.end_epoch(self.epoch)
        return self.dist.mean(total) / len(batches)

    def validate(self) -> dict:
        split = self.data.split.valid
        ranks = rank_targets(
            self.model, split, exclude_history=self.cfg.exclude_history, batch_size=self.cfg.eval_batch_size
        )["full"]
        return summarize(ranks, split, None, self.cfg.ks)["overall"]

    def fit(self) -> dict:
        self._start()
        cfg = self.cfg
        while self.epoch < cfg.epochs and self.bad_evals < cfg.patience:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            self.epoch += 1
            record = {"epoch": self.epoch, "loss": loss, "train_seconds": time.perf_counter() - t0}
            if (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs) and self.dist.is_main:
                valid = self.validate()
                if cfg.select_metric not in valid:
                    raise ConfigError(f"select_metric {cfg.select_metric!r} is not computed (ks={cfg.ks})")
                score = valid[cfg.select_metric]
                record["valid"] = valid
                if score > self.best_score:
                    self.best_score, self.best_epoch, self.bad_evals = score, self.epoch, 0
                    save_checkpoint(
                        self.out / "best.pt",
                        state_dict=self.model.state_dict(),
                        **self._checkpoint_meta(),
                        extra={"epoch": self.epoch},
                    )
                else:
                    self.bad_evals += 1
            # Rank 0 alone evaluates and writes; every rank takes its early-stopping state.
            self.best_score, self.best_epoch, self.bad_evals = self.dist.broadcast(
                (self.best_score, self.best_epoch, self.bad_evals)
            )
            if not self.dist.is_main:
                continue
            append_jsonl(self.out / "log.jsonl", record)
            self._save_last()
            v = record.get("valid", {})
            tqdm.write(
                f"epoch {self.epoch}: loss {loss:.4f}  valid {cfg.select_metric} "
                f"{v.get(cfg.select_metric, float('nan')):.4f}  best {self.best_score:.4f} "
                f"@ {self.best_epoch}  ({record['train_seconds']:.1f}s)"
            )
        self.dist.barrier()
        metrics = self.finish() if self.dist.is_main else None
        return self.dist.broadcast(metrics)

    def finish(self) -> dict:
        """Evaluate the best checkpoint on validation and test under both protocols -> metrics.json."""
        model = model_from_checkpoint(self.out / "best.pt", self.data.dataset.fingerprint()).to(self.device)
        metrics = {
            "model": self.cfg.model,
            "best_epoch": self.best_epoch,
            "epochs_trained": self.epoch,
            "dataset": self.data.dataset_info(),
        }
        per_split, arrays = evaluate_splits(model, self.data, self.cfg)
        metrics.update(per_split)
        # Serving table: scores are [user_vector, 1] @ item_table.T (see fused_item_table).
        atomic_save_npy(self.out / "item_table.npy", model.fused_item_table().cpu().numpy())
        atomic_save_npz(self.out / "ranks.npz", arrays)
        atomic_write_json(self.out / "metrics.json", metrics)
        return metrics
