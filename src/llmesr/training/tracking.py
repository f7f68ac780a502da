"""Experiment tracking: a run's curves, configuration and final metrics in TensorBoard or MLflow.

``tracking: tensorboard`` writes event files into ``RUN/tensorboard`` (``tensorboard --logdir RUN``;
with ``tracking_uri: DIR`` into ``DIR/<run name>``, so one ``--logdir DIR`` shows many runs).
``tracking: mlflow`` logs one MLflow run per run folder to ``tracking_uri`` (a server's URI) or, by
default, to a local SQLite store ``RUN/mlflow.db`` (``mlflow ui --backend-store-uri
sqlite:///RUN/mlflow.db``). MLflow's plain-file store is in maintenance mode and refuses to open
by default since MLflow 3.x, so the local default is MLflow's own recommended SQLite backend.

What is logged: the resolved configuration when the run starts; per epoch the training loss,
the learning rate, the epoch's seconds and the validation metrics; the final metrics (every split,
protocol and head/tail group) when it ends. A resumed run continues its MLflow run (the run id is
kept in ``RUN/tracking.json``) and TensorBoard hides the events of epochs that are trained again.

Both packages are optional (``pip install 'llmesr[tracking]'``); asking for one that is missing
is a one-line error before anything is written. The trainer opens a tracker on the main process
only, so a distributed run logs once.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from llmesr.errors import ConfigError
from llmesr.io import atomic_write_json, read_json
from llmesr.runs.folder import RunFolder

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracking -> module it needs
MLFLOW_BATCH = 100  # MLflow takes at most 100 params (1000 metrics) per log_batch call


def require(kind: str) -> None:
    """Fail with one line when the package ``tracking: kind`` needs is not installed."""
    if kind not in PACKAGES:
        return
    try:
        __import__(PACKAGES[kind])
    except ImportError:
        raise ConfigError(
            f"tracking={kind} needs the {PACKAGES[kind]} package: pip install 'llmesr[tracking]'"
        ) from None


class Tracker:
    """Where a run's numbers go; this base class drops them (``tracking: none``)."""

    def log_config(self, config: dict[str, Any]) -> None:
        """The resolved settings, once when the run starts."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Named numbers at one step (the epoch, or a trial number for a study)."""

    def close(self, finished: bool = True) -> None:
        """Flush; ``finished=False`` when the run stopped early (killed, pruned, failed)."""


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events at steps >= it, left by a run killed mid-way, are hidden from then on.
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log_config(self, config: dict[str, Any]) -> None:
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))  # code block

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self, finished: bool = True) -> None:
        self.writer.close()


def mlflow_name(name: str) -> str:
    """MLflow names allow letters, digits, ``_-. :/`` only: ``valid/NDCG@10`` -> ``valid/NDCG_at_10``."""
    return name.replace("@", "_at_")


class MLflowTracker(Tracker):
    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        artifact_location: str | None = None,
    ) -> None:
        from mlflow import MlflowClient

        for noisy in ("mlflow", "alembic"):  # the store's schema set-up logs a dozen INFO lines
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = run_id if run_id and self._usable(run_id) else None
        if self.run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(experiment, artifact_location=artifact_location)
            )
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _usable(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
        except Exception:  # deleted, or another store: start a new run
            return False
        return True

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # Params cannot change once logged; a resume may change only budget and runtime settings,
        # and the run keeps the values it started with.
        logged = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)) for k, v in config.items() if k not in logged]
        for start in range(0, len(params), MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + MLFLOW_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_name(k), float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 10 * MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 10 * MLFLOW_BATCH])

    def close(self, finished: bool = True) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")


def local_mlflow_store(folder: Path) -> tuple[str, str]:
    """The SQLite tracking URI and artifact location of a local MLflow store in ``folder``."""
    folder = Path(folder).resolve()
    return f"sqlite:///{folder / RunFolder.MLFLOW_DB}", (folder / RunFolder.MLFLOW_ARTIFACTS).as_uri()


def open_tracker(cfg: Any, folder: RunFolder, resumed_epoch: int | None) -> Tracker:
    """The tracker ``cfg.tracking`` asks for, for the run folder ``folder`` (resumed after
    ``resumed_epoch`` finished epochs, or new when None)."""
    if cfg.tracking == "tensorboard":
        default = folder.file(RunFolder.TENSORBOARD)
        log_dir = Path(cfg.tracking_uri) / folder.path.name if cfg.tracking_uri else default
        if resumed_epoch is None and not cfg.tracking_uri:
            shutil.rmtree(default, ignore_errors=True)  # the curves of a run this one replaces
        return TensorBoardTracker(log_dir, None if resumed_epoch is None else resumed_epoch + 1)
    if cfg.tracking == "mlflow":
        uri, artifacts = (cfg.tracking_uri, None) if cfg.tracking_uri else local_mlflow_store(folder.path)
        record = folder.file(RunFolder.TRACKING)
        stored = read_json(record, "tracking record") if resumed_epoch is not None and record.exists() else {}
        run_id = stored.get("run_id") if stored.get("uri") == uri else None
        name = folder.path.resolve()
        tracker = MLflowTracker(uri, name.parent.name or "llmesr", name.name, run_id, artifacts)
        atomic_write_json(record, {"tracking": "mlflow", "uri": uri, "run_id": tracker.run_id})
        return tracker
    return Tracker()


def epoch_metrics(record: dict[str, Any], lr: float) -> dict[str, float]:
    """One log.jsonl record as tracked numbers: train/loss, train/lr, train/epoch_seconds, valid/*."""
    out = {"train/loss": record["loss"], "train/lr": lr, "train/epoch_seconds": record["train_seconds"]}
    out |= {f"valid/{k}": v for k, v in record.get("valid", {}).items() if isinstance(v, (int, float))}
    return out


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json as ``final/<split>/<protocol>/<group>/<metric>`` numbers (group counts left out)."""
    out = {}
    for split, protocols in metrics.items():
        if not isinstance(protocols, dict) or split == "dataset":
            continue
        for protocol, result in protocols.items():
            if not (isinstance(result, dict) and "overall" in result):
                continue
            groups = {"overall": result["overall"], **result.get("groups", {})}
            for group, values in groups.items():
                for name, value in values.items():
                    if name != "count" and isinstance(value, (int, float)):
                        out[f"final/{split}/{protocol}/{group}/{name}"] = value
    return out
