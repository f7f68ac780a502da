"""The training loop: Adam, early stopping on validation, best + last checkpoints, exact resume.

A caller may pass ``fit`` an *epoch hook*, called after each epoch is logged and saved; it returns
True to stop there (tuning prunes a trial this way): the folder stays resumable, and no final
evaluation is made. Tracking (``tracking: tensorboard | mlflow``) goes through
:mod:`llmesr.training.tracking`, on the main process only.

Determinism: every source of randomness in epoch ``e`` (batch order, negatives, masks, dropout)
is seeded from ``(seed, e)``, so an interrupted run resumed from its last checkpoint follows
exactly the path of an uninterrupted one. Everything the loop carries between epochs is one
:class:`TrainState`, saved whole in ``last.pt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from llmesr.allocator import reuse_freed_memory
from llmesr.checkpoint import (
    CheckpointError,
    checkpoint_model_config,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from llmesr.data.batching import epoch_batches
from llmesr.errors import ConfigError
from llmesr.evaluation import rank_targets, summarize
from llmesr.parallel import init_distributed
from llmesr.progress import Progress
from llmesr.runs.data import RunData, evaluate_splits
from llmesr.runs.folder import RunFolder
from llmesr.training.accel import autocast, check_precision, compile_encoders, grad_scaler, resolve_device
from llmesr.training.build import (
    create_model,
    make_optimizer,
    member_weights,
    start_weights,
)
from llmesr.training.distributed import wrap
from llmesr.training.tracking import Tracker, epoch_metrics, final_metrics, open_tracker, require

# Called on the main process with each epoch's log record (after last.pt is saved); True stops.
EpochHook = Callable[[dict[str, Any]], bool]


@dataclass
class TrainState:
    """Where training stands after ``epoch`` finished epochs."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    bad_evals: int = 0  # validations since the best one (early stopping)

    @classmethod
    def from_dict(cls, values: Any, path: Path) -> TrainState:
        names = [f.name for f in fields(cls)]
        if not (isinstance(values, dict) and all(k in values for k in names)):
            raise CheckpointError(f"{path}: not a resumable checkpoint (no training progress)")
        return cls(**{k: values[k] for k in names})


class Trainer:
    """Trains ``cfg.model`` into the run folder ``out_dir``; rerunning on the same folder resumes."""

    def __init__(self, cfg: Any, data: RunData, out_dir: Path) -> None:
        self.cfg, self.data, self.folder = cfg, data, RunFolder(out_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.reuse_freed_memory:
            reuse_freed_memory()
        try:
            self.device = resolve_device(cfg.device)
            check_precision(cfg.precision, self.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        train = data.split.train
        self.train_rows = np.flatnonzero(train.lengths >= 2)  # one input and one target at least
        if len(self.train_rows) == 0:
            raise ConfigError(f"{cfg.data}: no user has two training interactions: nothing to train on")
        if len(data.split.valid) == 0:
            raise ConfigError(
                f"{cfg.data}: no user has a validation target under the {cfg.split} split "
                "(leave_one_out needs users with 3 interactions or more): nothing to select the model on"
            )
        self.folder.check_same_settings(cfg)
        require(cfg.tracking)
        self.dist = init_distributed(self.device)
        self.model = create_model(cfg, data)
        loaded = start_weights(self.model, cfg, data)
        if loaded and self.dist.is_main:
            print(f"init_from: {loaded}", flush=True)
        for member in member_weights(self.model, data):
            if self.dist.is_main:
                print(f"loaded {member}", flush=True)
        # Nothing to train (an ensemble of finished runs): the model is evaluated as loaded.
        n_trainable = self.model.trainable_parameters()
        self.trainable = n_trainable > 0
        reference = self.model.reference_run(self.model.config)
        if self.dist.is_main:
            if reference:
                print(f"reference item table: {reference}", flush=True)
            print(f"trainable parameters: {n_trainable:,}", flush=True)
        self.model = self.model.to(self.device)
        if cfg.compile:
            compile_encoders(self.model)
        self.scaler = grad_scaler(self.device, cfg.precision)
        # DDP under torchrun, the plain loss otherwise (DDP refuses a model with nothing to train).
        self.loss_fn = wrap(self.model, self.dist) if self.trainable else self.model.loss
        self.optimizer = make_optimizer(self.model, cfg)
        self.state = TrainState()
        self.tracker = Tracker()

    # ---- checkpoints ------------------------------------------------------------------------
    def _checkpoint_meta(self) -> dict:
        return {
            "model_name": self.cfg.model,
            "model_config": self.model.config.to_dict(),
            "dataset": {"name": self.data.dataset.name, "fingerprint": self.data.dataset.fingerprint()},
        }

    def _save(self, name: str, extra: dict) -> None:
        save_checkpoint(
            self.folder.file(name), state_dict=self.model.state_dict(), **self._checkpoint_meta(), extra=extra
        )

    def _resume(self) -> int | None:
        """Load ``last.pt`` if there is one; the epoch it holds, else None."""
        last = self.folder.file(RunFolder.LAST)
        if not last.exists():
            return None
        ckpt = load_checkpoint(last, fingerprint=self.data.dataset.fingerprint())
        # Compare through the config class so that keys the config fills in still match.
        stored = ckpt["model"] == self.cfg.model and checkpoint_model_config(last, ckpt).to_dict()
        if stored != self.model.config.to_dict():
            raise ConfigError(f"{last} holds a different model configuration; use a new --out folder")
        if not isinstance(ckpt.get("optimizer"), dict):
            raise CheckpointError(f"{last}: not a resumable checkpoint (no optimizer state)")
        state = TrainState.from_dict(ckpt.get("progress"), last)
        load_weights(self.model, ckpt["state_dict"], last)
        model_state = ckpt.get("model_state", {})
        if not isinstance(model_state, dict):
            raise CheckpointError(f"{last}: damaged checkpoint (model_state is not a mapping)")
        self.model.load_training_state(model_state)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{last}: its optimizer state does not fit the model ({err})") from None
        self.state = state
        return state.epoch

    def _start(self) -> None:
        # Resume (which checks last.pt against this dataset and model) before writing anything: a
        # refused rerun must leave the run folder as it was.
        resumed = self._resume()
        if self.dist.is_main:
            self.folder.start(self.cfg, self.data.dataset_info(), resumed)
            self.tracker = open_tracker(self.cfg, self.folder, resumed)
            self.tracker.log_config(self.cfg.to_dict())

    # ---- loop -------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        cfg, model, epoch = self.cfg, self.model, self.state.epoch
        seed = [cfg.seed, epoch]
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
        model.start_epoch(epoch)
        model.train()
        total = 0.0
        # A bar on a terminal only; the one line per epoch (_end_epoch) is printed either way.
        bar = tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not Progress(cfg.progress).bars)
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
        model.end_epoch(epoch)
        return self.dist.mean(total) / len(batches)

    def validate(self) -> dict:
        """Full-ranking validation metrics; under ``torchrun`` every rank ranks its share of users."""
        split = self.data.split.valid
        ranks = rank_targets(
            self.model,
            split,
            exclude_history=self.cfg.exclude_history,
            batch_size=self.cfg.eval_batch_size,
            dist=self.dist,
        )["full"]
        return summarize(ranks, split, None, self.cfg.ks)["overall"]

    def _evaluate_epoch(self, record: dict) -> None:
        """Validate (every rank its share), keep the best checkpoint (rank 0) and count
        evaluations without progress (every rank: they all receive the same metrics)."""
        state = self.state
        valid = self.validate()
        score = valid[self.cfg.select_metric]
        record["valid"] = valid
        if score > state.best_score:
            state.best_score, state.best_epoch, state.bad_evals = score, state.epoch, 0
            if self.dist.is_main:
                self._save(RunFolder.BEST, {"epoch": state.epoch})
        else:
            state.bad_evals += 1

    def _evaluate_as_loaded(self) -> None:
        """A model with nothing to train is its own best checkpoint, validated as epoch 0."""
        record: dict = {"epoch": 0}
        self._evaluate_epoch(record)
        if self.dist.is_main:
            self.folder.append_log(record)
            v = record["valid"][self.cfg.select_metric]
            tqdm.write(f"nothing to train: valid {self.cfg.select_metric} {v:.4f} as loaded")

    def fit(self, on_epoch: EpochHook | None = None) -> dict | None:
        """Train to the budget or early stop, then evaluate the best checkpoint: the metrics.
        None when ``on_epoch`` stopped training (nothing evaluated; rerunning resumes)."""
        self._start()
        finished = False
        try:
            stopped = self._loop(on_epoch)
            self.dist.barrier()  # best.pt is written before any rank loads it
            metrics = None if stopped else self.finish()
            finished = not stopped
            return metrics
        finally:
            self.tracker.close(finished)

    def _loop(self, on_epoch: EpochHook | None) -> bool:
        """The epochs still to train; True if ``on_epoch`` asked to stop."""
        cfg, state = self.cfg, self.state
        if not self.trainable:
            self._evaluate_as_loaded()
        while self.trainable and state.epoch < cfg.epochs and state.bad_evals < cfg.patience:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            state.epoch += 1
            record = {"epoch": state.epoch, "loss": loss, "train_seconds": time.perf_counter() - t0}
            if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
                self._evaluate_epoch(record)
            # Rank 0 alone writes; every rank takes its early-stopping state from it.
            state.best_score, state.best_epoch, state.bad_evals = self.dist.broadcast(
                (state.best_score, state.best_epoch, state.bad_evals)
            )
            stop = self.dist.is_main and self._end_epoch(record, on_epoch)
            if self.dist.broadcast(stop):
                return True
        return False

    def _end_epoch(self, record: dict, on_epoch: EpochHook | None) -> bool:
        """Main process: log and save the epoch, print its line; the hook's answer."""
        cfg, state = self.cfg, self.state
        self.folder.append_log(record)
        extra = {"optimizer": self.optimizer.state_dict(), "progress": asdict(state)}
        self._save(RunFolder.LAST, {**extra, "model_state": self.model.training_state()})
        self.tracker.log_metrics(epoch_metrics(record, self.optimizer.param_groups[0]["lr"]), state.epoch)
        v = record.get("valid", {})
        tqdm.write(
            f"epoch {state.epoch}: loss {record['loss']:.4f}  valid {cfg.select_metric} "
            f"{v.get(cfg.select_metric, float('nan')):.4f}  best {state.best_score:.4f} "
            f"@ {state.best_epoch}  ({record['train_seconds']:.1f}s)"
        )
        return bool(on_epoch and on_epoch(record))

    def finish(self) -> dict:
        """Evaluate the best checkpoint on the final splits (validation and test, or validation
        alone with ``evaluate_test: false``) under both protocols -> metrics.json (rank 0). Under
        ``torchrun`` every rank ranks its share of users and receives the same metrics."""
        model = self.folder.load_best_model(self.cfg, self.data).to(self.device)
        metrics = {
            "model": self.cfg.model,
            "best_epoch": self.state.best_epoch,
            "epochs_trained": self.state.epoch,
            "dataset": self.data.dataset_info(),
        }
        per_split, arrays = evaluate_splits(model, self.data, self.cfg, self.dist)
        metrics.update(per_split)
        if not self.dist.is_main:
            return metrics
        self.folder.write_results(metrics, arrays, model.fused_item_table().cpu().numpy())
        self.tracker.log_metrics(final_metrics(metrics), self.state.epoch)
        return metrics


def train_run(cfg: Any, data: RunData, out_dir: Path) -> dict | None:
    """Train (or resume) one run; the metrics on the main process, None on the other ranks."""
    trainer = Trainer(cfg, data, out_dir)
    metrics = trainer.fit()
    trainer.dist.close()
    return metrics if trainer.dist.is_main else None
