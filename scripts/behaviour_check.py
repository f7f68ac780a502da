"""Behaviour check: the same seeded commands must give the same results before and after a change.

Trains every model on every backbone it supports on MovieLens-100K (2 epochs, CPU, 1 thread, every
setting pinned on the command line so that a change of the library's defaults does not move them),
then builds one ``llmesr report`` over all runs and one exported bundle's recommendations. What is
compared, bitwise: each run's ``metrics.json`` (both protocols, every group), the bytes of its
``item_table.npy`` and ``ranks.npz`` arrays, the report's Markdown and the bundle's top-k CSV.

    python scripts/behaviour_check.py --record    # write scripts/behaviour_expected.json
    python scripts/behaviour_check.py             # rerun and compare (exit 1 on any difference)

It runs the ``llmesr`` module of the interpreter it is started with (``PYTHONPATH=OTHER/src`` runs
another checkout's code). About 10 minutes on 2 CPU cores; run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "behaviour_expected.json"
DATA = HERE.parent.parent / "shared" / "data" / "ml-100k"

COMMON = {
    "max_len": 20,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "inner_size": 64,
    "dropout": 0.2,
    "init_std": 0.02,
    "positions": "from_start",
    "batch_size": 128,
    "lr": 0.001,
    "weight_decay": 0.0,
    "adam_beta2": 0.999,
    "epochs": 2,
    "patience": 5,
    "seed": 7,
    "threads": 1,
    "progress": False,
    "bucket_batches": True,
    "loss_weighting": "position",
    "sampled_negatives": 100,
    "negatives_seed": 2024,
    "exclude_history": True,
    "groups": "pareto",
    "select_metric": "NDCG@10",
    "similar_k": 20,
    "item_template": "default",
    "prompt_domain": "beauty",
    "encoder": "minilm",
    "retrieval": "exact",
}
# Per backbone: its loss (SASRec with sampled BCE, so negative sampling is covered) and own keys.
BACKBONES = {
    "sasrec": {"loss": "bce", "negatives": 1, "attn_dropout": 0.2, "causal": True},
    "bert4rec": {"loss": "ce", "negatives": 1, "attn_dropout": 0.2, "mask_prob": 0.4},
    "gru4rec": {"loss": "ce", "negatives": 1},
}
# Settings plain GRU4Rec does not read (the library refuses them on the command line; before it
# did, they were ignored, so the recorded runs are the same).
GRU_SKIP = {"num_heads", "inner_size"}
WRAPPERS = {
    "llmesr": {"distill_weight": 0.1, "distill_users": 5, "teacher": "cached", "teacher_refresh": 1},
    "llminit": {},
    "melt": {"melt_curriculum_epochs": 4},
    "rlmrec_con": {"rlmrec_variant": "con"},
    "rlmrec_gen": {"rlmrec_variant": "gen"},
    "cities": {"cities_weight": 1.0},
}


def run_specs() -> dict[str, dict]:
    """Run name -> every setting of that run."""
    specs = {}
    for backbone, own in BACKBONES.items():
        plain = {k: v for k, v in COMMON.items() if backbone != "gru4rec" or k not in GRU_SKIP}
        specs[backbone] = {**plain, "model": backbone, **own}
        for name, extra in WRAPPERS.items():
            model = name.split("_")[0]
            # Wrapper configs do not forward ``causal`` (always the default, True) to their backbone.
            passed = {k: v for k, v in own.items() if k != "causal"}
            specs[f"{name}_{backbone}"] = {**COMMON, **passed, "model": model, "backbone": backbone, **extra}
    return specs


def llmesr(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "llmesr.cli", *args]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def digest_arrays(path: Path) -> str:
    h = hashlib.sha256()
    if path.suffix == ".npz":
        with np.load(path) as z:
            for key in sorted(z.files):
                h.update(key.encode())
                h.update(np.ascontiguousarray(z[key]).tobytes())
    else:
        h.update(np.ascontiguousarray(np.load(path)).tobytes())
    return h.hexdigest()


def train_all(root: Path, cache: Path) -> dict:
    results = {}
    for name, settings in run_specs().items():
        out = root / "runs" / name
        sets = [f"--set={k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
        sets.append(f"--set=cache_dir={cache}")
        llmesr("train", "--data", str(DATA), "--out", str(out), *sets)
        metrics = json.loads((out / "metrics.json").read_text())
        results[name] = {
            "metrics": metrics,
            "item_table": digest_arrays(out / "item_table.npy"),
            "ranks": digest_arrays(out / "ranks.npz"),
        }
        print(f"{name}: test full NDCG@10 {metrics['test']['full']['overall']['NDCG@10']:.6f}", flush=True)
    return results


def report_and_bundle(root: Path) -> dict:
    runs = root / "runs"
    llmesr("report", str(runs), "--out", str(root / "report"))
    bundle = root / "bundle"
    llmesr("export", str(runs / "llmesr_sasrec"), "--out", str(bundle))
    recs = root / "recs.csv"
    history = ["50", "181", "258", "100", "294"]
    llmesr("recommend", str(bundle), "--history", *history, "--k", "20", "--out", str(recs))
    return {
        "report_md": hashlib.sha256((root / "report" / "report.md").read_bytes()).hexdigest(),
        "bundle_recs": hashlib.sha256(recs.read_bytes()).hexdigest(),
    }


def differences(expected: dict, got: dict, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(expected) | set(got)):
            if key not in got or key not in expected:
                out.append(f"{path}/{key}: only in {'expected' if key in expected else 'this run'}")
            else:
                out.extend(differences(expected[key], got[key], f"{path}/{key}"))
        return out
    return [] if expected == got else [f"{path}: expected {expected!r}, got {got!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {EXPECTED.name} instead of comparing")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"behaviour check needs {DATA}", file=sys.stderr)
        return 2
    # The semantic cache is shared between checks: embedding is part of what is compared only
    # through the models trained on it, and recomputing it costs minutes.
    default_cache = Path(tempfile.gettempdir()) / "llmesr_behaviour_cache"
    cache = Path(os.environ.get("LLMESR_BEHAVIOUR_CACHE", default_cache))
    # Wiped at the start: two checks running at once need two LLMESR_BEHAVIOUR_WORK folders.
    fixed = Path(os.environ.get("LLMESR_BEHAVIOUR_WORK", default_cache.with_name("llmesr_behaviour_work")))
    shutil.rmtree(fixed, ignore_errors=True)
    fixed.mkdir(parents=True)
    got = {"runs": train_all(fixed, cache), **report_and_bundle(fixed)}
    if args.record:
        EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(got['runs'])} runs, the report and the bundle in {EXPECTED}")
        return 0
    diff = differences(json.loads(EXPECTED.read_text()), got)
    for line in diff[:50]:
        print(line)
    print(f"{len(diff)} differences" if diff else f"identical: {len(got['runs'])} runs, report, bundle")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
