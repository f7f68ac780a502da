"""The ``llmesr`` subcommands: each parses its arguments, calls one library function and prints."""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

from llmesr.config import REPORT, RUNTIME, keys_with, parse_set, resolve_config
from llmesr.errors import ConfigError
from llmesr.evaluation import EVAL_SPLITS, format_table, model_device
from llmesr.io import atomic_write_json, atomic_write_text, check_writable
from llmesr.parallel import init_distributed
from llmesr.runs import RunFolder, prepare_data, run_metrics, top_k_frame

# What ``llmesr evaluate --set`` may change: how a trained model is ranked and reported.
EVALUATION_OVERRIDES = (*keys_with(section="eval"), *keys_with(REPORT), *keys_with(RUNTIME))


def warn(message: str) -> None:
    logging.getLogger("llmesr").warning(message)


def cmd_train(args: argparse.Namespace) -> int:
    from llmesr.training import train_run

    cfg = resolve_config(
        args.config, args.overrides, warn=warn, data=args.data, model=args.model, epochs=args.epochs,
        seed=args.seed,
    )
    check_writable(args.out, folder=True)
    if cfg.cache_dir:
        check_writable(Path(cfg.cache_dir), folder=True, flag="cache_dir")
    metrics = train_run(cfg, prepare_data(cfg), args.out)  # bad data fails before anything is written
    if metrics is not None:
        for split in (s for s in EVAL_SPLITS if s in metrics):
            print(format_table(metrics, split))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from llmesr.semantic.pipeline import embed_for_config

    cfg = resolve_config(args.config, args.overrides, warn=warn, data=args.data)
    check_writable(args.out, folder=True)
    if cfg.cache_dir:
        check_writable(Path(cfg.cache_dir), folder=True, flag="cache_dir")
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
    check_writable(args.out, folder=False)
    run = RunFolder(args.run).load(args.overrides, allowed=EVALUATION_OVERRIDES)
    # Under torchrun every rank ranks its share of the users; rank 0 writes and prints.
    dist = init_distributed(model_device(run.model))
    metrics = run_metrics(run.model, run.data, run.config, dist)
    dist.close()
    if not dist.is_main:
        return 0
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


def cmd_tune(args: argparse.Namespace) -> int:
    from llmesr.experiments.space import load_space
    from llmesr.experiments.tune import run_tune, run_worker
    from llmesr.experiments.tune_results import summary_lines

    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    fixed = parse_set(args.overrides) | ({"data": args.data} if args.data else {})
    budget = {"trials": args.trials, "max_epochs": args.max_epochs, "timeout_s": args.timeout}
    space = load_space(args.space, fixed, {k: v for k, v in budget.items() if v is not None})
    out = args.out or space.out
    if out is None:
        raise ConfigError(f"{args.space} names no 'out' folder: give --out")
    check_writable(out, folder=True)
    data = prepare_data(space.base_config())  # bad data fails before the study is made
    if args.worker is not None:
        run_worker(space, data, out, args.storage, args.study, slot=args.worker)
        return 0
    summary = run_tune(space, data, out, args.storage, args.study, jobs=args.jobs)
    print("\n".join(summary_lines(summary, out)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from llmesr.serving import export_bundle

    check_writable(args.out, folder=True)
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
        name, path = split_label(spec)
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
    check_writable(args.out, folder=False)
    if (args.run / "bundle.json").exists():
        from llmesr.serving.batch import recommend_from_bundle, write_frame

        frame = recommend_from_bundle(args.run, args.history, args.input, args.k, not args.include_history)
        if args.out is None:
            print(frame.drop(columns="user_id").to_string(index=False))
            return 0
        write_frame(frame, args.out)
        print(f"wrote {len(frame):,} rows for {frame['user_id'].nunique():,} users to {args.out}")
        return 0
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


def split_label(spec: str) -> tuple[str, str]:
    """``LABEL=PATHS`` -> (label, paths); ``PATHS`` alone -> ("", paths). Folder names may hold
    ``=`` themselves (the grid writes ``model=sasrec__seed=42``), so paths that exist as given are
    never split, and otherwise the label ends at the first ``=``."""
    if all(Path(p).exists() for p in spec.split(",") if p):
        return "", spec
    label, sep, rest = spec.partition("=")
    return (label, rest) if sep else ("", spec)


def parse_methods(specs: list[str]) -> dict[str, list[Path]]:
    methods: dict[str, list[Path]] = {}
    for spec in specs:
        label, runs = split_label(spec)
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

    check_writable(args.out, folder=True)
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

    check_writable(args.out, folder=True)
    out = build_report(args.runs_dir, args.out, args.split, args.groups, args.baseline_free, args.tuning)
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

    check_writable(args.out, folder=True)
    print(describe_dataset(args.dataset, args.out))
    return 0
