"""``llmesr tune SPACE.yaml``: an Optuna study over a method's search space (:mod:`.space`), stored
in a real database, one ordinary run folder per trial, and the best settings written out for the
final runs (:mod:`.tune_folder` names the files).

- The study lives in ``OUT/study.db`` (SQLite) or any SQLAlchemy URL (``--storage``); TPE samples
  by default; the median or Hyperband pruner judges the validation metric each trial reports per
  epoch (the trainer's epoch hook), and a pruned trial's folder stays resumable.
- Budget: ``trials`` trials that finish (complete or pruned), counted over the whole study and
  every worker, each at most ``max_epochs`` epochs; ``timeout_s`` stops starting new trials.
- ``--jobs N`` runs N worker processes on the one study. Each worker holds an exclusive lock file
  while it lives, and marks its trials with its id; a trial left running by a worker whose lock is
  free (killed) is failed and re-queued with the same parameters (Optuna's
  ``RetryHeartbeatStaleTrialCallback``), and its retry trains on in the same trial folder from its
  last finished epoch. Optuna's heartbeat does the same for workers on other machines that stop
  beating for ``GRACE_S`` seconds. A trial interrupted by Ctrl-C is re-queued the same way.
- Ctrl-C stops training at once but never cuts a write to the study (:mod:`.ctrl_c` says why).
- Trials select on the validation split and evaluate nothing else: ``evaluate_test: false``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmesr.errors import ConfigError
from llmesr.experiments.ctrl_c import DeferredCtrlC
from llmesr.experiments.space import SearchSpace
from llmesr.experiments.tune_folder import TuneFolder
from llmesr.experiments.tune_results import write_results
from llmesr.io import atomic_write_text
from llmesr.parallel import threads_per_job
from llmesr.runs import RunData, RunFolder
from llmesr.training import Trainer
from llmesr.training.tracking import MLflowTracker, TensorBoardTracker, Tracker, local_mlflow_store, require

try:
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState
except ImportError:  # the CLI reports this as one line
    raise ConfigError("llmesr tune needs Optuna: pip install 'llmesr[tune]'") from None

HEARTBEAT_S, GRACE_S = 30, 120  # Optuna's heartbeat, for workers that no lock file can vouch for
MAX_RETRIES = 3  # a trial cut short by a kill is retried at most this often
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class SurplusTrial(Exception):
    """A trial asked for after other workers had taken the last of the budget: not trained."""


# ---- study --------------------------------------------------------------------------------------
def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / TuneFolder.STUDY_DB).resolve()}"


@contextmanager
def _experimental():
    """Optuna marks its heartbeat and retry helpers experimental, warning at every use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str) -> RDBStorage:
    # SQLite serialises writers; several workers wait for each other rather than fail "locked".
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with _experimental():
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRIES, True),
            )
    except Exception as err:  # a bad URL, a missing driver, a server that does not answer
        raise ConfigError(
            f"--storage {url}: cannot open the study database ({' '.join(str(err).split())})"
        ) from None


def make_sampler(spec: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    options = {k: v for k, v in spec.items() if k != "type"}
    cls = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}[spec["type"]]
    try:
        return cls(seed=seed, **options)
    except TypeError as err:
        raise ConfigError(f"sampler {spec['type']}: {err}") from None


def make_pruner(spec: dict[str, Any], max_epochs: int) -> optuna.pruners.BasePruner:
    options = {k: v for k, v in spec.items() if k != "type"}
    try:
        if spec["type"] == "median":
            return optuna.pruners.MedianPruner(**options)
        if spec["type"] == "threshold":  # a floor the validation metric must reach (``lower``)
            return optuna.pruners.ThresholdPruner(**options)
        if spec["type"] == "hyperband":
            return optuna.pruners.HyperbandPruner(
                **{"min_resource": 1, "max_resource": max_epochs, **options}
            )
        return optuna.pruners.NopPruner(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"pruner {spec['type']}: {err}") from None


def open_study(space: SearchSpace, url: str, name: str, slot: int = 0) -> optuna.Study:
    """Create or load the study; a study made from another space (or budget per trial) is refused.
    ``slot`` seeds this worker's sampler apart from the others'."""
    storage = open_storage(url)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    done = existing[name].n_trials if name in existing else 0
    seed = int(np.random.SeedSequence([space.seed, slot, done]).generate_state(1)[0])
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(space.sampler, seed),
        pruner=make_pruner(space.pruner, space.budget.max_epochs),
    )
    identity = yaml.safe_load(yaml.safe_dump(space.identity()))  # as the database gives it back
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", identity)
    elif stored != identity:
        changed = sorted(k for k in identity if identity[k] != stored.get(k))
        raise ConfigError(
            f"study {name!r} in {url} was made from another search space ({', '.join(changed)} "
            "differ); give a new --out or --study (only the trial count and timeout may change)"
        )
    return study


def retry_history(trial: optuna.trial.FrozenTrial) -> list[int]:
    """The earlier attempts of a retried trial, first attempt first (empty for a first attempt)."""
    with _experimental():
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def stored_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` as the database holds it (a running trial's system attributes included)."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def home_number(study: optuna.Study, number: int) -> int:
    """The trial whose folder trial ``number`` trains in: the first attempt of a retried trial, else
    itself."""
    history = retry_history(stored_trial(study, number))
    return history[0] if history else number


# ---- workers ------------------------------------------------------------------------------------
@contextmanager
def worker_lock(tune: TuneFolder):
    """This worker's id, with its lock file held (exclusively) for as long as it runs."""
    folder = tune.file(TuneFolder.WORKERS)
    folder.mkdir(parents=True, exist_ok=True)
    worker = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = folder / f"{worker}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield worker
        finally:
            path.unlink(missing_ok=True)


def worker_alive(tune: TuneFolder, worker: str) -> bool:
    """Whether the worker ``worker`` still holds its lock (a lock file that is gone counts as dead)."""
    path = tune.file(TuneFolder.WORKERS) / f"{worker}.lock"
    try:
        with open(path) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    path.unlink(missing_ok=True)
    return False


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's re-queueing of a failed trial: a WAITING trial with the same parameters, its
    reported values, and the number of the attempt it retries."""
    with _experimental():
        return RetryHeartbeatStaleTrialCallback(MAX_RETRIES, inherit_intermediate_values=True)


def release_dead_trials(study: optuna.Study, tune: TuneFolder) -> list[int]:
    """Fail the running trials of workers that died (their lock is free) and queue each again with
    its parameters; the numbers released."""
    storage, released = study._storage, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # "attempt": a retry inherits its first attempt's attributes until its worker sets its own.
        worker = t.user_attrs.get("worker") if t.user_attrs.get("attempt") == t.number else None
        if worker is None or worker_alive(tune, worker):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, t.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker released it first
            continue
        retry_callback()(study, storage.get_trial(trial_id))
        released.append(t.number)
    return released


class TrialRunner:
    """The objective: one trial trains one run folder of the tune, pruned on its validation curve."""

    def __init__(self, space: SearchSpace, data: RunData, tune: TuneFolder, worker: str) -> None:
        self.space, self.data, self.tune, self.worker = space, data, tune, worker
        self.ctrl_c = DeferredCtrlC()

    def surplus(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        """Whether the budget was taken by trials numbered before this one."""
        before = study.get_trials(deepcopy=False, states=LIVE)
        return sum(t.number < trial.number for t in before) >= self.space.budget.trials

    def __call__(self, trial: optuna.Trial) -> float:
        if self.surplus(trial.study, trial):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the budget of {self.space.budget.trials} is taken")
        folder = self.tune.trial(home_number(trial.study, trial.number))
        for key, value in {"worker": self.worker, "attempt": trial.number, "folder": folder.name}.items():
            trial.set_user_attr(key, value)
        params = self.space.suggest(trial)
        cfg = self.space.trial_config(params)
        if cfg.tracking == "mlflow" and not cfg.tracking_uri:  # every trial into the tune's store
            cfg = dataclasses.replace(cfg, tracking_uri=local_mlflow_store(self.tune.path)[0])
        epochs: list[int] = []

        def report(record: dict) -> bool:
            epochs.append(record["epoch"])
            value = record.get("valid", {}).get(self.space.metric)
            if value is None:
                return False
            with self.ctrl_c.writing_to_study():
                trial.report(value, record["epoch"])
                return trial.should_prune()

        print(f"trial {trial.number} ({folder.name}): {params}", flush=True)
        try:
            with self.ctrl_c.training_only():
                metrics = Trainer(cfg, self.data, folder).fit(report)
        except BaseException:
            if self.ctrl_c.pressed:  # Ctrl-C: queued again now, so the next tune continues it
                retry_callback()(trial.study, stored_trial(trial.study, trial.number))
            raise
        trial.set_user_attr("epochs", epochs[-1] if epochs else _epochs_done(metrics))
        if metrics is None:
            raise optuna.TrialPruned(f"pruned after epoch {epochs[-1]}")
        return metrics["valid"]["full"]["overall"][self.space.metric]


def _epochs_done(metrics: dict | None) -> int:
    return int(metrics["epochs_trained"]) if metrics else 0


def trials_to_run(study: optuna.Study, space: SearchSpace) -> bool:
    """Whether the budget has room for a new trial, or a queued retry waits to be run."""
    live = study.get_trials(deepcopy=False, states=LIVE)
    return len(live) < space.budget.trials or any(t.state == TrialState.WAITING for t in live)


def run_worker(
    space: SearchSpace,
    data: RunData,
    out: Path,
    storage: str | None = None,
    study_name: str | None = None,
    slot: int = 0,
) -> None:
    """Run trials of the study until the budget is taken (or the timeout passes)."""
    tune = TuneFolder(out)
    url, name = storage_url(out, storage), study_name or Path(out).name
    study = open_study(space, url, name, slot)
    start, timeout = time.monotonic(), space.budget.timeout_s
    with worker_lock(tune) as worker:
        runner, tracker = TrialRunner(space, data, tune, worker), study_tracker(space, tune, study)
        main_thread = threading.current_thread() is threading.main_thread()  # signals go there only
        previous = signal.signal(signal.SIGINT, runner.ctrl_c.on_sigint) if main_thread else None
        try:
            while True:
                runner.ctrl_c.stop_if_pressed()
                release_dead_trials(study, tune)
                if not trials_to_run(study, space) or (timeout and time.monotonic() - start >= timeout):
                    break
                with _experimental():  # the heartbeat's stale-trial check, run before each trial
                    study.optimize(runner, n_trials=1, callbacks=[partial(log_trial, tracker)])
        except SurplusTrial:
            pass
        finally:
            tracker.close()
            if main_thread:
                signal.signal(signal.SIGINT, previous)


# ---- study-level tracking -----------------------------------------------------------------------
def study_tracker(space: SearchSpace, tune: TuneFolder, study: optuna.Study) -> Tracker:
    """Where the study's own curve goes, as the tune's ``tracking`` asks: ``TUNE/tensorboard/study``
    or one MLflow run named "study" (made once, by the first command; workers reuse it)."""
    cfg = space.base_config()
    require(cfg.tracking)
    if cfg.tracking == "tensorboard":
        return TensorBoardTracker(Path(cfg.tracking_uri or tune.file(RunFolder.TENSORBOARD)) / "study")
    if cfg.tracking != "mlflow":
        return Tracker()
    uri, artifacts = (cfg.tracking_uri, None) if cfg.tracking_uri else local_mlflow_store(tune.path)
    run_id = study.user_attrs.get("mlflow_run_id")
    tracker = MLflowTracker(uri, tune.path.resolve().name, "study", run_id, artifacts)
    if run_id is None:
        study.set_user_attr("mlflow_run_id", tracker.run_id)
        spaces = {f"space.{p.name}": p.describe() for p in space.params}
        tracker.log_config({"metric": space.metric, **vars(space.budget), **spaces})
    return tracker


def log_trial(tracker: Tracker, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """An Optuna callback: a completed trial's value and the best so far, at step = trial number."""
    if trial.state == TrialState.COMPLETE:
        tracker.log_metrics({"tune/value": trial.value, "tune/best": study.best_value}, trial.number)


# ---- the command --------------------------------------------------------------------------------
def run_tune(
    space: SearchSpace,
    data: RunData,
    out: Path,
    storage: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Tune into ``out`` (resuming its study) with ``jobs`` worker processes; the summary."""
    tune = TuneFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    url, name = storage_url(out, storage), study_name or out.name
    study = open_study(space, url, name)  # created (and checked) once, before any worker starts
    atomic_write_text(tune.file(TuneFolder.SPACE), yaml.safe_dump(space.to_spec(), sort_keys=False))
    if space.base_config().tracking == "mlflow":  # so are the MLflow store and its "study" run
        study_tracker(space, tune, study).close()
    if jobs == 1:
        run_worker(space, data, out, storage, study_name)
    else:
        _run_processes(tune, url, name, jobs, space)
    return write_results(optuna.load_study(study_name=name, storage=open_storage(url)), space, tune)


def _run_processes(tune: TuneFolder, url: str, name: str, jobs: int, space: SearchSpace) -> None:
    """``jobs`` processes, each ``llmesr tune`` as a worker of the one study, with its share of
    the CPU threads; each writes its output to ``workers/worker_<k>.log``."""
    threads = [] if space.base_config().threads else ["--set", f"threads={threads_per_job(jobs)}"]
    logs = tune.file(TuneFolder.WORKERS)
    logs.mkdir(parents=True, exist_ok=True)
    spec = str(tune.file(TuneFolder.SPACE))
    procs = []
    for slot in range(jobs):
        cmd = [
            sys.executable,
            "-m",
            "llmesr.cli",
            "tune",
            spec,
            "--out",
            str(tune.path),
            "--storage",
            url,
            "--study",
            name,
            "--worker",
            str(slot),
            *threads,
            "--set",
            "progress=false",
        ]
        with open(logs / f"worker_{slot}.log", "a") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    failed = [f"worker_{k}.log (exit {c})" for k, c in enumerate(codes) if c != 0]
    if failed:
        raise ConfigError(f"{len(failed)} of {jobs} tune workers failed: see {logs}/{', '.join(failed)}")
