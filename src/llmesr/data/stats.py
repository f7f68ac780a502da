"""Statistics of a dataset: sizes, density, history-length and item-popularity distributions,
head/tail shares and text coverage, as Markdown, JSON and a PNG of the two long-tail histograms
(the LLM-ESR paper's Figure 1 in spirit).

Head/tail cuts come from :mod:`llmesr.data.groups` (the same functions training uses), applied to
the *full* histories: training applies them to the training prefixes, whose cuts can differ by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmesr.data.dataset import SequenceDataset, load_dataset, resolve_data_path
from llmesr.data.groups import groups_from_preset, item_popularity
from llmesr.io import atomic_write_json, atomic_write_png, atomic_write_text

PERCENTILES = (10, 25, 50, 75, 90, 99)
HISTORY_AT_MOST = (5, 9, 20, 50)  # "share of users with at most n interactions" (README: 77% <= 9 on Beauty)
GROUP_RULES = ("pareto", "beauty_paper")
# Item-table columns that hold original ids (written by llmesr prepare), not text.
ID_COLUMNS = ("asin", "parent_asin", "business_id")


def distribution(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    out = {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}
    out |= {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}
    return out


def head_tail(dataset: SequenceDataset, rule: str) -> dict[str, float]:
    """Cuts and shares under a :data:`llmesr.data.groups.PRESETS` rule, on the full histories."""
    groups = groups_from_preset(dataset.sequences, dataset.n_items, rule)
    lengths = dataset.sequences.lengths
    popularity = item_popularity(dataset.sequences, dataset.n_items)[1:]
    total = max(dataset.n_interactions, 1)
    return {
        "tail_user_if_length_below": groups.user_cut,
        "tail_users": float(groups.tail_user.mean()),
        "head_users_interaction_share": float(lengths[~groups.tail_user].sum() / total),
        "tail_item_if_popularity_below": groups.item_cut,
        "tail_items": float(groups.tail_item[1:].mean()),
        "head_items_interaction_share": float(popularity[~groups.tail_item[1:]].sum() / total),
    }


def _is_empty(value: Any) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def text_coverage(dataset: SequenceDataset) -> dict[str, int]:
    """Items with an empty title, and items with no text field at all (ids do not count as text)."""
    if dataset.item_info is None:
        return {"items_without_title": dataset.n_items, "items_without_text": dataset.n_items}
    info = dataset.item_info.iloc[1:]
    text = info[[c for c in info.columns if c not in ID_COLUMNS]]
    empty = text.map(_is_empty) if len(text.columns) else pd.DataFrame(index=info.index)
    no_title = empty["title"] if "title" in empty else pd.Series(True, index=info.index)
    return {"items_without_title": int(no_title.sum()), "items_without_text": int(empty.all(axis=1).sum())}


def dataset_stats(dataset: SequenceDataset) -> dict[str, Any]:
    lengths = dataset.sequences.lengths
    popularity = item_popularity(dataset.sequences, dataset.n_items)[1:]
    users = np.repeat(np.arange(dataset.n_users), lengths)
    pairs = pd.MultiIndex.from_arrays([users, dataset.sequences.items])
    return {
        "name": dataset.name,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": dataset.n_interactions,
        "density": dataset.n_interactions / max(dataset.n_users * dataset.n_items, 1),
        "repeated_pairs": int(pairs.duplicated().sum()),
        "history_length": distribution(lengths),
        "users_with_history_at_most": {n: float((lengths <= n).mean()) for n in HISTORY_AT_MOST},
        "item_popularity": distribution(popularity),
        "head_tail": {rule: head_tail(dataset, rule) for rule in GROUP_RULES},
        "text": text_coverage(dataset),
    }


def _row(name: str, dist: dict[str, float]) -> str:
    keys = ["min", *(f"p{q}" for q in PERCENTILES), "mean", "max"]
    return f"| {name} | " + " | ".join(f"{dist[k]:,.1f}".removesuffix(".0") for k in keys) + " |"


def stats_markdown(stats: dict[str, Any]) -> str:
    header = (
        "| | min | " + " | ".join("median" if q == 50 else f"p{q}" for q in PERCENTILES) + " | mean | max |"
    )
    shares = ", ".join(f"{share:.0%} at most {n}" for n, share in stats["users_with_history_at_most"].items())
    lines = [
        f"# Dataset statistics: {stats['name']}",
        "",
        f"{stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions; "
        f"density {stats['density']:.5f}; {stats['repeated_pairs']:,} repeated (user, item) pairs.",
        "",
        header,
        "|---|" + "---:|" * (len(PERCENTILES) + 3),
        _row("history length per user", stats["history_length"]),
        _row("interactions per item", stats["item_popularity"]),
        "",
        f"Users by history length: {shares}.",
        "",
        "## Head and tail (cuts from llmesr.data.groups, on full histories)",
        "",
        "| rule | tail user if length < | tail users | head users' share | tail item if popularity < "
        "| tail items | head items' share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rule, g in stats["head_tail"].items():
        lines.append(
            f"| {rule} | {g['tail_user_if_length_below']:g} | {g['tail_users']:.1%} | "
            f"{g['head_users_interaction_share']:.1%} | {g['tail_item_if_popularity_below']:g} | "
            f"{g['tail_items']:.1%} | {g['head_items_interaction_share']:.1%} |"
        )
    text = stats["text"]
    lines += [
        "",
        f"Items without a title: {text['items_without_title']:,}; "
        f"without any text: {text['items_without_text']:,}.",
        "",
    ]
    return "\n".join(lines)


def plot_distributions(dataset: SequenceDataset, path: Path) -> None:
    """Two log-log frequency plots: users per history length and items per interaction count,
    Pareto cuts marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: runs on servers and in CI
    import matplotlib.pyplot as plt

    pareto = groups_from_preset(dataset.sequences, dataset.n_items, "pareto")
    panels = [
        (dataset.sequences.lengths, pareto.user_cut, "interactions per user (history length)", "users"),
        (
            item_popularity(dataset.sequences, dataset.n_items)[1:],
            pareto.item_cut,
            "interactions per item",
            "items",
        ),
    ]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (values, cut, xlabel, ylabel) in zip(axes, panels, strict=True):
        # One point per exact value: integer counts binned on a log axis give jagged bars.
        value, count = np.unique(values, return_counts=True)
        ax.scatter(value, count, s=8, color="#4c72b0")
        ax.axvline(cut, color="#c44e52", linestyle="--", label=f"Pareto cut: head if >= {cut:g}")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
        ax.legend(frameon=False)
    figure.suptitle(f"{dataset.name}: {dataset.n_users:,} users, {dataset.n_items:,} items")
    figure.tight_layout()
    atomic_write_png(path, figure)
    plt.close(figure)


def describe_dataset(dataset: str | Path, out: str | Path | None = None) -> str:
    """Statistics of a dataset folder or name, as Markdown; with ``out``, also written there as
    ``stats.md``, ``stats.json`` and ``distributions.png``."""
    data = load_dataset(resolve_data_path(str(dataset)))
    stats = dataset_stats(data)
    text = stats_markdown(stats)
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "stats.md", text)
        atomic_write_json(out / "stats.json", stats)
        plot_distributions(data, out / "distributions.png")
    return text
