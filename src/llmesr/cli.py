"""The ``llmesr`` command: train, embed, evaluate, recommend, compare, report, export, serve.

Every user-facing error (bad data, bad config, wrong checkpoint) is one line on stderr and exit
code 2; nothing is written for a run whose inputs are rejected.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import NoReturn

from llmesr.checkpoint import CheckpointError
from llmesr.config import REPORT, RUNTIME, keys_with, resolve_config
from llmesr.data.formats import DataFormatError
from llmesr.data.prepare import PRESETS, SOURCES
from llmesr.errors import ConfigError
from llmesr.evaluation import EVAL_SPLITS, format_table
from llmesr.io import atomic_write_json, atomic_write_text, check_writable
from llmesr.runs import RunFolder, prepare_data, run_metrics, top_k_frame
from llmesr.semantic.encoders import EncoderError
from llmesr.serving.bundle import BundleError

# What ``llmesr evaluate --set`` may change: how a trained model is ranked and reported.
EVALUATION_OVERRIDES = (*keys_with(section="eval"), *keys_with(REPORT), *keys_with(RUNTIME))

# Errors that mean "bad input", raised on purpose with a message naming the file, line or key.
# Anything else (a KeyError, TypeError, ...) is a bug and keeps its traceback and exit code 1.
USER_ERRORS = (
    DataFormatError,
    ConfigError,
    CheckpointError,
    EncoderError,
    BundleError,
    FileNotFoundError,
)


class _Parser(argparse.ArgumentParser):
    """Usage errors (a bad flag or flag value) on one line with exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def check_out(path: Path | None, folder: bool, flag: str = "--out") -> None:
    check_writable(path, folder, flag)


def warn(message: str) -> None:
    logging.getLogger("llmesr").warning(message)


def _set_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", type=Path, default=[], help="YAML config file (repeatable)")
    _set_arg(p, "override one config key, e.g. --set loss=ce (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmesr", description=__doc__.splitlines()[0])
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


def cmd_train(args: argparse.Namespace) -> int:
    from llmesr.training import train_run

    cfg = resolve_config(
        args.config, args.overrides, warn=warn, data=args.data, model=args.model, epochs=args.epochs,
        seed=args.seed,
    )
    check_out(args.out, folder=True)
    if cfg.cache_dir:
        check_out(Path(cfg.cache_dir), folder=True, flag="cache_dir")
    metrics = train_run(cfg, prepare_data(cfg), args.out)  # bad data fails before anything is written
    if metrics is not None:
        for split in EVAL_SPLITS:
            print(format_table(metrics, split))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from llmesr.semantic.pipeline import embed_for_config

    cfg = resolve_config(args.config, args.overrides, warn=warn, data=args.data)
    check_out(args.out, folder=True)
    if cfg.cache_dir:
        check_out(Path(cfg.cache_dir), folder=True, flag="cache_dir")
    data = prepare_data(cfg)
    t0 = time.perf_counter()
    out, manifest = embed_for_config(cfg, data.dataset, data.split, args.out)
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in manifest["shapes"].items())
    timings = ", ".join(f"{k} {v:.1f}" for k, v in manifest["timings"].items())
    print(
        f"encoder {manifest['encoder']}\n{shapes}\ntimings (s): {timings}; total "
        f"{time.perf_counter() - t0:.1f}\noutput: {out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    check_out(args.out, folder=False)
    run = RunFolder(args.run).load(args.overrides, allowed=EVALUATION_OVERRIDES)
    metrics = run_metrics(run.model, run.data, run.config)
    if args.out:
        atomic_write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from llmesr.experiments.grid import run_grid

    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    frame = run_grid(args.grid, jobs=args.jobs, dry_run=args.dry_run)
    runs = frame["run"].nunique() if not frame.empty else 0
    print(f"results of {runs} finished runs collected (results.csv, results.parquet)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from llmesr.serving import export_bundle

    RunFolder(args.run).require_finished()
    RunFolder(args.run).require_weights()
    check_out(args.out, folder=True)
    if args.out.is_dir() and any(args.out.iterdir()) and not (args.out / "bundle.json").exists():
        raise ConfigError(f"--out {args.out} holds other files and no bundle.json; give a new folder")
    out = export_bundle(args.run, args.out)
    print(f"bundle written to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from llmesr.serving import Bundle
    from llmesr.serving.api import create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    optimism = args.cold_start_optimism
    if not (optimism >= 0 and math.isfinite(optimism)):
        raise ConfigError(f"--cold-start-optimism must be a finite number >= 0, got {optimism}")
    bundles = {}
    for spec in args.bundles:
        name, _, path = spec.rpartition("=")
        if not path:
            raise ConfigError(f"bundle {spec!r} names no folder (use NAME=PATH or PATH)")
        name = name or Path(path).name
        if name in bundles:
            raise ConfigError(f"bundle name {name!r} given twice (use NAME=PATH)")
        bundles[name] = Bundle(Path(path), faiss_threshold=args.faiss_threshold, cold_start_optimism=optimism)
    uvicorn.run(create_app(bundles), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    check_out(args.out, folder=False)
    if (args.run / "bundle.json").exists():
        from llmesr.serving.batch import recommend_from_bundle

        return recommend_from_bundle(args)
    if args.history or args.input:
        raise ConfigError("--history / --input need a bundle folder (make one with llmesr export)")
    if args.out is None:
        raise ConfigError("--out is required when recommending for a run's evaluated users")
    run = RunFolder(args.run).load()
    frame = top_k_frame(
        run.model, run.data, args.split, args.k, not args.include_history, run.config.eval_batch_size
    )
    atomic_write_text(args.out, frame.to_csv(index=False))
    users = len(run.data.split.eval_split(args.split))
    print(f"wrote {len(frame):,} rows for {users:,} users to {args.out}")
    return 0


def parse_methods(specs: list[str]) -> dict[str, list[Path]]:
    methods: dict[str, list[Path]] = {}
    for spec in specs:
        label, _, runs = spec.rpartition("=")
        paths = [Path(r) for r in runs.split(",") if r]
        if not paths:
            raise ConfigError(f"method {spec!r} names no run folder (use LABEL=RUN[,RUN...])")
        label = label or paths[0].name
        if label in methods:
            raise ConfigError(f"method label {label!r} given twice")
        for path in paths:
            RunFolder(path).require_finished()
        methods[label] = paths
    return methods


def cmd_compare(args: argparse.Namespace) -> int:
    from llmesr.experiments.compare import RunRanks, compare, comparison_text, write_comparison

    check_out(args.out, folder=True)
    methods = {
        label: [RunRanks.load(run, args.split, args.groups) for run in runs]
        for label, runs in parse_methods(args.methods).items()
    }
    frame = compare(methods)
    text = comparison_text(frame, args.split, args.groups)
    print(text)
    if args.out:
        files = write_comparison(frame, text, args.out)
        print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from llmesr.experiments.report import build_report

    check_out(args.out, folder=True)
    out = build_report(args.runs_dir, args.out, args.split, args.groups, args.baseline_free)
    print(f"wrote {out}/report.md, report.html and the figures")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from llmesr.data.prepare import prepare

    card = prepare(
        args.source,
        args.reviews,
        args.out,
        args.meta,
        args.preset,
        min_rating=args.min_rating,
        date_from=args.date_from,
        date_to=args.date_to,
        dedup=args.dedup,
        kcore=args.kcore,
        overwrite=args.overwrite,
        progress=True,
    )
    counts = card["counts"]
    print(f"{counts['users']:,} users, {counts['items']:,} items, {counts['interactions']:,} interactions")
    print(f"wrote {args.out}/sequences.txt, items.jsonl, users.jsonl, card.json and dataset.md")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from llmesr.data.stats import describe_dataset

    check_out(args.out, folder=True)
    print(describe_dataset(args.dataset, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger("llmesr").handlers:  # library warnings, one line each
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("llmesr: %(levelname)s: %(message)s"))
        logging.getLogger("llmesr").addHandler(handler)
    handler = {
        "train": cmd_train,
        "embed": cmd_embed,
        "evaluate": cmd_evaluate,
        "recommend": cmd_recommend,
        "compare": cmd_compare,
        "report": cmd_report,
        "export": cmd_export,
        "serve": cmd_serve,
        "experiment": cmd_experiment,
        "prepare": cmd_prepare,
        "data": cmd_data_stats,  # "stats" is the only data subcommand so far
    }[args.command]
    try:
        return handler(args)
    except USER_ERRORS as err:
        # One line whatever the message holds (library messages may quote input over several lines).
        message = " ".join(str(err).split())
        print(f"llmesr {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
