"""The ``llmesr`` argument parser: every subcommand, its flags and their help."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from llmesr.data.prepare import PRESETS, SOURCES


class _Parser(argparse.ArgumentParser):
    """Usage errors (a bad flag or flag value) on one line with exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _set_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", type=Path, default=[], help="YAML config file (repeatable)")
    _set_arg(p, "override one config key, e.g. --set loss=ce (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    about = "Long-tail sequential recommendation with LLM-ESR: train, evaluate, compare, serve."
    parser = _Parser(prog="llmesr", description=about)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a model into a run folder (rerun to resume)",
        description="Defaults are the recommended settings (full softmax cross-entropy, batch 256, "
        "hidden 64, 2 layers; configs/*_ce.yaml restate them). The paper's training setup (BCE with "
        "one negative, max length 200, batch 128) is one --config away: configs/*_paper.yaml.",
    )
    p.add_argument("--data", help="dataset folder/file, or a name under the data roots (default: beauty)")
    p.add_argument("--model", help="a registered model: sasrec, bert4rec, gru4rec, llmesr, llminit, ...")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    _config_args(p)

    p = sub.add_parser("embed", help="offline semantic step: item/user embeddings, PCA, similar users")
    p.add_argument("--data", help="dataset folder/file or name (default: beauty)")
    p.add_argument("--out", type=Path, help="output folder (default: a keyed folder under the cache root)")
    _config_args(p)

    p = sub.add_parser("evaluate", help="re-evaluate a run's best checkpoint (both protocols) and print it")
    p.add_argument("run", type=Path)
    _set_arg(p, "evaluation settings, e.g. --set exclude_history=false --set groups=beauty_paper")
    p.add_argument("--out", type=Path, help="also write the metrics to this JSON file")

    p = sub.add_parser(
        "recommend",
        help="top-k lists: every evaluated user of a run, or histories given to a bundle",
        description="With a run folder: each evaluated user's top-k (--split) into --out. With a "
        "bundle folder (llmesr export): the top-k for --history or for every user of --input.",
    )
    p.add_argument("run", type=Path, help="run folder or bundle folder")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--out", type=Path, help="CSV (or .parquet for bundles): user_id,rank,item_id,score")
    p.add_argument("--include-history", action="store_true", help="allow items already in the history")
    p.add_argument("--history", nargs="+", metavar="ITEM_ID", help="bundle: one history, oldest first")
    p.add_argument("--input", type=Path, help="bundle: CSV/Parquet with user_id,item_id rows in time order")

    p = sub.add_parser("serve", help="HTTP API + web page over one or more bundles (FastAPI/uvicorn)")
    p.add_argument("bundles", nargs="+", metavar="[NAME=]BUNDLE", help="bundle folders (first = default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--faiss-threshold", type=int, default=200_000, help="use a FAISS HNSW index above this many items"
    )
    p.add_argument(
        "--cold-start-optimism",
        type=float,
        default=1.0,
        help="items added by POST /items: standard deviations of their neighbours' ID logits added to "
        "the mean (0 = point estimate; see llmesr/serving/cold_start.py)",
    )

    p = sub.add_parser("experiment", help="run every combination of a grid (skips finished runs)")
    p.add_argument("grid", type=Path, help="grid YAML: configs, set, grid, out (see llmesr.experiments.grid)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (CPU threads are shared out)")
    p.add_argument("--dry-run", action="store_true", help="list what would run")

    p = sub.add_parser(
        "tune",
        help="tune one method's settings with Optuna (resumable study; one run folder per trial)",
        description="SPACE.yaml: base presets, fixed settings, the searched ranges and the budget "
        "(see llmesr.experiments.space). Trials select on the validation split only; the best "
        "settings are written to OUT/best.yaml and a grid of final runs to OUT/experiment.yaml.",
    )
    p.add_argument("space", type=Path, help="search space YAML (e.g. configs/tune/sasrec.yaml)")
    p.add_argument("--out", type=Path, help="tune folder (default: the space's 'out')")
    p.add_argument("--data", help="dataset folder/file or name (default: the space's)")
    p.add_argument("--storage", help="SQLAlchemy URL of the study database (default: sqlite OUT/study.db)")
    p.add_argument("--study", help="study name in the database (default: the tune folder's name)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes sharing the study")
    p.add_argument("--trials", type=int, help="budget: trials that finish (overrides the space's)")
    p.add_argument("--max-epochs", type=int, help="budget: epochs per trial at most")
    p.add_argument("--timeout", type=float, help="budget: start no trial after this many seconds")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # --jobs: one worker of a tune
    _set_arg(p, "a setting every trial shares, e.g. --set threads=1 (repeatable)")

    p = sub.add_parser("export", help="export a run's best model as a self-contained serving bundle")
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True, help="bundle folder")

    p = sub.add_parser(
        "compare",
        help="compare runs (first = baseline): table per protocol and head/tail group, t-test, bar chart",
    )
    p.add_argument(
        "methods",
        nargs="+",
        metavar="[LABEL=]RUN[,RUN...]",
        help="a run folder, or a label with comma-separated run folders (one per seed)",
    )
    p.add_argument("--out", type=Path, help="write comparison.md, comparison.csv and comparison.png here")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument(
        "--groups",
        choices=("pareto", "beauty_paper"),
        help="head/tail rule for the table (default: the one each run was trained with)",
    )

    p = sub.add_parser(
        "report",
        help="the paper's tables and figures from a folder of runs: report.md, report.html, PNGs",
        description="Table 1 per backbone and protocol, ablations, α/N sensitivity, NDCG@10 by user "
        "length and item popularity, t-SNE of item embeddings (see llmesr.experiments.report).",
    )
    p.add_argument("runs_dir", type=Path, help="folder with run folders (e.g. an experiment grid's out)")
    p.add_argument("--out", type=Path, help="report folder (default: RUNS_DIR/report)")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument(
        "--groups",
        choices=("pareto", "beauty_paper"),
        help="head/tail rule (default: the one each run was trained with)",
    )
    p.add_argument("--baseline-free", action="store_true", help="report the LLM-ESR runs alone")
    p.add_argument(
        "--tuning", action="append", type=Path, default=[], metavar="TUNE_DIR",
        help="a llmesr tune folder for the appendix (repeatable; those under RUNS_DIR are found)",
    )

    p = sub.add_parser(
        "prepare",
        help="a raw public review dump -> a sequences folder with a dataset card",
        description="Amazon 2014/2018/2023 or Yelp review and metadata files (plain or gzip) -> "
        "sequences.txt, items.jsonl, users.jsonl, card.json, dataset.md (see llmesr.data.prepare).",
    )
    p.add_argument("--source", required=True, choices=list(SOURCES))
    p.add_argument("--reviews", type=Path, required=True, metavar="FILE", help="the review file of the dump")
    p.add_argument("--meta", type=Path, metavar="FILE", help="the item metadata file (titles, brands, ...)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder (written all at once)"
    )
    p.add_argument("--preset", choices=list(PRESETS), default="s3rec", help="named filters (default: s3rec)")
    p.add_argument("--min-rating", type=float, help="keep reviews rated at least this")
    p.add_argument("--date-from", help="keep reviews at or after this UTC instant (YYYY-MM-DD[ HH:MM:SS])")
    p.add_argument("--date-to", help="keep reviews at or before this UTC instant")
    p.add_argument("--dedup", action=argparse.BooleanOptionalAction, help="keep the first of repeated pairs")
    p.add_argument("--kcore", type=int, help="iterated k-core instead of the preset's core steps (0: none)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")

    p = sub.add_parser("data", help="dataset tools: data stats")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("stats", help="sizes, long-tail distributions, head/tail shares of a dataset")
    q.add_argument("dataset", help="dataset folder/file, or a name under the data roots")
    q.add_argument("--out", type=Path, help="also write stats.md, stats.json and distributions.png here")
    return parser
