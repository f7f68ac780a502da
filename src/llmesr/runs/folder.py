"""The run folder: every file a run directory holds, and the one place that reads and writes them.

| file | written by | content |
|---|---|---|
| ``config.yaml`` | start | the fully resolved configuration |
| ``dataset.json`` | start | dataset statistics, fingerprint, split and head/tail cuts |
| ``log.jsonl`` | every epoch | loss, seconds, validation metrics |
| ``last.pt`` | every epoch | weights, optimiser and training state (for resuming) |
| ``best.pt`` | each new best | the best checkpoint by validation ``select_metric`` |
| ``item_table.npy``, ``ranks.npz`` | the end | serving table; per-user ranks and group membership |
| ``metrics.json`` | the end, last | validation and test metrics: its presence means *finished* |
| ``train.log`` | ``llmesr experiment`` | the output of the run's ``llmesr train`` process |

The CLI, the trainer, experiments, the report and serving all go through :class:`RunFolder`, so a
file name, the ranks layout or what "finished" means is written once.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmesr.checkpoint import first_line, model_from_checkpoint
from llmesr.config import BUDGET, REPORT, RUNTIME, RunConfig, apply_overrides, keys_with, parse_set
from llmesr.errors import ConfigError
from llmesr.evaluation import PROTOCOLS
from llmesr.io import (
    append_jsonl,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    load_matrix,
    read_json,
    read_yaml,
)
from llmesr.models import SequentialRecommender
from llmesr.runs.data import RunData, prepare_data

# Settings a rerun may change on a run folder: how long it trains, where and how fast it runs, and
# how its results are grouped. Any other change would describe epochs that were never trained so.
RESUMABLE_CHANGES = (*keys_with(BUDGET), *keys_with(RUNTIME), *keys_with(REPORT), "data")


@dataclass
class RankTable:
    """One split of ``ranks.npz``: each evaluated user's 0-based pessimistic rank per protocol."""

    users: np.ndarray
    ranks: dict[str, np.ndarray]
    tail_user: np.ndarray
    tail_item: np.ndarray


@dataclass
class LoadedRun:
    config: Any  # RunConfig
    data: RunData
    model: SequentialRecommender


class RunFolder:
    CONFIG = "config.yaml"
    DATASET = "dataset.json"
    LOG = "log.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    ITEM_TABLE = "item_table.npy"
    RANKS = "ranks.npz"
    METRICS = "metrics.json"
    TRAIN_LOG = "train.log"  # llmesr experiment: the output of the run's llmesr train process
    TENSORBOARD = "tensorboard"  # tracking=tensorboard: the event files (tensorboard --logdir RUN)
    MLFLOW_DB = "mlflow.db"  # tracking=mlflow without tracking_uri: the local SQLite store
    MLFLOW_ARTIFACTS = "mlartifacts"  # ... and its artifact folder
    TRACKING = "tracking.json"  # which tracker run this folder logs to (a resume continues it)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- state --------------------------------------------------------------------------------
    def is_finished(self) -> bool:
        """``metrics.json`` is the trainer's last write."""
        return self.file(self.METRICS).exists()

    def require_finished(self) -> None:
        if not self.file(self.CONFIG).exists():
            raise ConfigError(f"{self.path} is not a run folder (no {self.CONFIG})")
        if not self.is_finished():
            raise ConfigError(f"{self.path} is not a finished run folder (no {self.METRICS})")

    def require_weights(self) -> None:
        if not self.file(self.BEST).exists():
            raise ConfigError(f"{self.path} has no {self.BEST}: not a trained run (or copied without it)")

    # ---- reading ------------------------------------------------------------------------------
    def config_values(self) -> dict[str, Any]:
        """``config.yaml`` as written (raw values)."""
        path = self.file(self.CONFIG)
        if not path.exists():
            raise ConfigError(f"{self.path} is not a run folder (no {self.CONFIG})")
        return read_yaml(path, "run config", allow_empty=False)

    def load_config(self, overrides: list[str] = (), allowed: tuple[str, ...] | None = None) -> Any:
        """The run's config with ``--set`` style ``overrides``; ``allowed`` limits which keys they
        may change (``llmesr evaluate`` may not change what was trained)."""
        cfg = apply_overrides(RunConfig(), self.config_values(), str(self.file(self.CONFIG)))
        values = parse_set(list(overrides))
        refused = sorted(set(values) - set(allowed)) if allowed is not None else []
        if refused:
            raise ConfigError(
                f"--set {refused[0]}: cannot change what {self.path} was trained with; "
                f"settable here: {', '.join(allowed)}"
            )
        return apply_overrides(cfg, values, "--set")

    def load_best_model(self, cfg: Any, data: RunData) -> SequentialRecommender:
        self.require_weights()
        best = self.file(self.BEST)
        return model_from_checkpoint(best, data.dataset.fingerprint(), expected_model=cfg.model)

    def load(self, overrides: list[str] = (), allowed: tuple[str, ...] | None = None) -> LoadedRun:
        """Config, data and best model of a finished run: what evaluate, recommend and export use."""
        self.require_finished()
        self.require_weights()  # before the data is prepared: a run without weights fails at once
        cfg = self.load_config(overrides, allowed)
        data = prepare_data(cfg)
        return LoadedRun(cfg, data, self.load_best_model(cfg, data))

    def metrics(self) -> dict[str, Any]:
        return read_json(self.file(self.METRICS), "metrics file")

    def dataset_info(self) -> dict[str, Any]:
        """``dataset.json``: what the run was trained on (statistics, fingerprint, split, groups)."""
        return read_json(self.file(self.DATASET), "run file")

    def fingerprint(self) -> str | None:
        """The fingerprint of the dataset the run was trained on."""
        for name in (self.DATASET, self.METRICS):
            if self.file(name).exists():
                info = read_json(self.file(name), "run file")
                dataset = info.get("dataset", info)
                return dataset.get("fingerprint") if isinstance(dataset, dict) else None
        return None

    def item_table(self) -> np.ndarray:
        return load_matrix(self.file(self.ITEM_TABLE), "serving item table")

    def read_ranks(self, split: str) -> RankTable:
        """One split of ``ranks.npz``, refused with a one-line error naming the file when damaged."""
        path = self.file(self.RANKS)
        if not path.exists():
            raise ConfigError(f"{self.path} is not a finished run folder (no {self.RANKS})")
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [f"{split}_users", f"{split}_tail_user", f"{split}_tail_item"]
                missing = [n for n in names if n not in z.files]
                if missing and not any(n.startswith(f"{split}_") for n in z.files):
                    raise ConfigError(
                        f"{self.path} has no {split} ranks: it was evaluated on "
                        f"{', '.join(sorted({n.split('_')[0] for n in z.files})) or 'no split'} only "
                        "(evaluate_test: false ranks validation alone)"
                    )
                if missing:
                    raise ConfigError(f"{path}: damaged ranks file (no {', '.join(missing)})")
                users, tail_user, tail_item = (z[n] for n in names)
                ranks = {p: z[f"{split}_{p}"] for p in PROTOCOLS if f"{split}_{p}" in z.files}
        except ConfigError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise ConfigError(f"{path}: unreadable ranks file ({first_line(err)})") from None
        for name, a in {"users": users, "tail_user": tail_user, "tail_item": tail_item, **ranks}.items():
            if a.ndim != 1 or len(a) != len(users) or a.dtype.kind not in "iub":
                raise ConfigError(
                    f"{path}: {split}_{name} has shape {a.shape} and dtype {a.dtype}, expected "
                    f"{len(users)} integers (one per evaluated user)"
                )
        return RankTable(users, ranks, tail_user, tail_item)

    # ---- writing (the trainer) ----------------------------------------------------------------
    def check_same_settings(self, cfg: Any) -> None:
        """A rerun on a folder with a ``last.pt`` resumes it: refuse settings that differ from those
        the finished epochs were trained with, naming them."""
        if not (self.file(self.LAST).exists() and self.file(self.CONFIG).exists()):
            return
        stored = self.load_config().to_dict()
        new = cfg.to_dict()
        changed = [k for k in new if k not in RESUMABLE_CHANGES and stored.get(k) != new[k]]
        if changed:
            diff = ", ".join(f"{k} {stored.get(k)!r} -> {new[k]!r}" for k in changed[:6])
            raise ConfigError(
                f"{self.path} was trained with other settings ({diff}); use a new --out folder "
                f"(a rerun may change only {', '.join(keys_with(BUDGET))} and runtime settings)"
            )

    def start(self, cfg: Any, dataset_info: dict, resumed_epoch: int | None) -> None:
        """Write the run's description; on a resume keep only the log lines of trained epochs."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):  # a write cut short by a kill; the real file is intact
            stale.unlink(missing_ok=True)
        atomic_write_text(self.file(self.CONFIG), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        atomic_write_json(self.file(self.DATASET), dataset_info)
        log = self.file(self.LOG)
        if resumed_epoch is None:
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
                if record.get("epoch", 0) <= resumed_epoch:
                    kept.append(line)
            atomic_write_text(log, "".join(f"{line}\n" for line in kept))

    def append_log(self, record: dict[str, Any]) -> None:
        append_jsonl(self.file(self.LOG), record)

    def write_results(
        self, metrics: dict, rank_arrays: dict[str, np.ndarray], item_table: np.ndarray
    ) -> None:
        # Serving table: scores are the model's serving_scores of it (see fused_item_table; one
        # product, [user_vector, 1] @ item_table.T, unless the model fuses several).
        atomic_save_npy(self.file(self.ITEM_TABLE), item_table)
        atomic_save_npz(self.file(self.RANKS), rank_arrays)
        atomic_write_json(self.file(self.METRICS), metrics)  # last: the run is finished
