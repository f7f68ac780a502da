"""The figures of ``llmesr report`` (matplotlib, Agg backend): α / N sensitivity lines, NDCG@10 per
user-length and item-popularity group (the LLM-ESR paper's Figure 3) and a t-SNE of item embeddings
coloured by popularity (its Figure 4). Each function saves one PNG with the atomic writer.

Kept apart from ``report.py`` so that the report's logic (which runs go where) stays readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.io import atomic_write_png

LINE_GROUPS = ("overall", "tail_item", "tail_user")
# Panels per row of the t-SNE figure.
TSNE_COLUMNS = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: the report runs on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    atomic_write_png(Path(path), fig)
    _pyplot().close(fig)


def value_text(value) -> str:
    """``0.1`` -> "0.1", ``10.0`` -> "10": tick labels as a person would write the setting."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def sensitivity_plot(frame: pd.DataFrame, axis_label: str, path: Path, metric: str = "NDCG@10") -> None:
    """``frame`` (value, protocol, group, mean, sd): one line per group, one panel per protocol.

    Values sit at evenly spaced positions with their own tick labels (as in the paper's figure):
    settings such as α are usually log-spaced and include 0, which neither axis scale shows well."""
    plt = _pyplot()
    protocols = list(dict.fromkeys(frame.protocol))
    values = sorted(set(frame.value))
    x = np.arange(len(values))
    fig, axes = plt.subplots(1, len(protocols), figsize=(5 * len(protocols), 3.6), squeeze=False)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        part = frame[frame.protocol == protocol]
        for group in LINE_GROUPS:
            rows = part[part.group == group].set_index("value").reindex(values)
            ax.errorbar(
                x,
                rows["mean"],
                yerr=np.nan_to_num(rows["sd"].to_numpy(dtype=float)),
                marker="o",
                capsize=3,
                label=group.replace("_", " "),
            )
        ax.set_xticks(x, [value_text(v) for v in values])
        ax.set_xlabel(axis_label)
        ax.set_ylabel(metric)
        ax.set_title(f"{protocol} ranking")
        ax.legend()
    _save(fig, path)


def group_bars(frame: pd.DataFrame, path: Path, title: str, metric: str = "NDCG@10") -> None:
    """``frame`` (method, protocol, kind, bin, mean, sd), bins in display order: one panel per
    protocol × kind (user history length, target popularity), one bar per method and bin."""
    plt = _pyplot()
    protocols = list(dict.fromkeys(frame.protocol))
    kinds = list(dict.fromkeys(frame.kind))
    methods = list(dict.fromkeys(frame.method))
    fig, axes = plt.subplots(
        len(protocols), len(kinds), figsize=(6 * len(kinds), 3.8 * len(protocols)), squeeze=False
    )
    width = 0.8 / len(methods)
    for row, protocol in enumerate(protocols):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            part = frame[(frame.protocol == protocol) & (frame.kind == kind)]
            bins = list(dict.fromkeys(part["bin"]))
            for i, method in enumerate(methods):
                rows = part[part.method == method].set_index("bin").reindex(bins)
                sd = rows["sd"].to_numpy(dtype=float)
                sd = np.nan_to_num(sd) if np.isfinite(sd).any() else None  # one seed: no error bar
                ax.bar(
                    np.arange(len(bins)) + i * width, rows["mean"], width, yerr=sd, label=method, capsize=2
                )
            ax.set_xticks(np.arange(len(bins)) + width * (len(methods) - 1) / 2, bins, fontsize=8)
            ax.set_xlabel(kind)
            ax.set_ylabel(metric)
            ax.set_title(f"{title}, {protocol} ranking")
            ax.legend(fontsize=8)
    _save(fig, path)


def tsne_plot(
    panels: list[tuple[str, np.ndarray]], popularity: np.ndarray, path: Path, seed: int = 0
) -> None:
    """One t-SNE panel per (label, item vectors); every panel shows the same items, coloured by
    training popularity on a log scale with one shared colour scale, so the panels compare."""
    from matplotlib.colors import LogNorm
    from sklearn.manifold import TSNE

    plt = _pyplot()
    n = len(popularity)
    # sklearn requires perplexity < n; a third of n keeps tiny item sets meaningful.
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    colour = popularity.astype(np.float64) + 1.0  # +1: never-seen items still have a place on the scale
    norm = LogNorm(vmin=colour.min(), vmax=max(colour.max(), colour.min() * 1.01))
    columns = min(len(panels), TSNE_COLUMNS)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    points = None
    for ax, (label, vectors) in zip(axes.ravel(), panels, strict=False):
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            np.asarray(vectors, dtype=np.float32)
        )
        points = ax.scatter(xy[:, 0], xy[:, 1], c=colour, norm=norm, s=6, cmap="viridis", linewidths=0)
        ax.set_title(f"{label}, {n:,} items", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(points, ax=axes.ravel().tolist(), label="1 + training popularity (log scale)")
    atomic_write_png(Path(path), fig)  # no tight_layout: it fights the shared colour bar
    plt.close(fig)
