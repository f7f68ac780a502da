"""Runs: the data a run trains on (:mod:`llmesr.runs.data`) and its folder (:mod:`llmesr.runs.folder`)."""

from llmesr.runs.data import (
    RunData,
    evaluate_split,
    evaluate_splits,
    prepare_data,
    rank_arrays,
    run_metrics,
    top_k_frame,
)
from llmesr.runs.folder import LoadedRun, RankTable, RunFolder

__all__ = [
    "LoadedRun",
    "RankTable",
    "RunData",
    "RunFolder",
    "evaluate_split",
    "evaluate_splits",
    "prepare_data",
    "rank_arrays",
    "run_metrics",
    "top_k_frame",
]
