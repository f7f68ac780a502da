"""Comparing finished runs: per-user ranks, mean ± sd over seeds, paired tests, tables and a chart.

A *method* is a label with one or more run folders (one per seed). Every run folder holds
``ranks.npz`` (written by the trainer): each evaluated user's rank under both protocols plus the
user's head/tail memberships, so runs are compared user by user without reloading data or models.

Significance: for each method and user, the per-user metric is averaged over the method's seeds;
a paired t-test over users (scipy's ``ttest_rel``) compares each method with the first one (the
baseline), overall and inside every head/tail group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmesr.data.groups import named_groups
from llmesr.errors import ConfigError
from llmesr.evaluation import GROUPS, PROTOCOLS, per_user
from llmesr.io import atomic_write_png, atomic_write_text
from llmesr.runs import RunFolder, prepare_data


@dataclass
class RunRanks:
    """One run's per-user ranks on one evaluation split."""

    run: Path
    users: np.ndarray
    ranks: dict[str, np.ndarray]  # protocol -> 0-based pessimistic rank per user
    members: dict[str, np.ndarray]  # group -> bool per user
    seed: int | None

    @classmethod
    def load(cls, run: Path, split: str = "test", groups: str | None = None) -> RunRanks:
        """``groups``: recompute head/tail membership with another rule (``pareto``,
        ``beauty_paper``) instead of the one the run was trained with; ranks do not change."""
        folder = RunFolder(run)
        table = folder.read_ranks(split)
        tail_user, tail_item = table.tail_user, table.tail_item
        if groups is not None:
            tail_user, tail_item = regroup(folder, split, groups)
        members = {"overall": np.ones(len(table.users), dtype=bool), **named_groups(tail_user, tail_item)}
        seed = folder.config_values().get("seed") if folder.file(RunFolder.CONFIG).exists() else None
        return cls(folder.path, table.users, table.ranks, members, seed)


def regroup(folder: RunFolder, split: str, groups: str) -> tuple[np.ndarray, np.ndarray]:
    """Tail-user / tail-item membership of a run's evaluated users under another group rule."""
    data = prepare_data(folder.load_config([f"groups={groups}"]))
    ev = data.split.eval_split(split)
    return data.groups.tails(ev.users, ev.targets)


def compare(
    methods: dict[str, list[RunRanks]], metrics: tuple[str, ...] = ("HR@10", "NDCG@10")
) -> pd.DataFrame:
    """Long table: one row per method × protocol × group × metric with mean, sd over seeds, and the
    paired t-test p-value against the first method (NaN for the baseline itself)."""
    from scipy.stats import ttest_rel

    labels = list(methods)
    reference = methods[labels[0]][0]
    for label, runs in methods.items():
        if not runs:
            raise ConfigError(f"method {label!r} has no runs")
        for r in runs:
            if not np.array_equal(r.users, reference.users) or any(
                not np.array_equal(r.members[g], reference.members[g]) for g in GROUPS
            ):
                raise ConfigError(f"{r.run} was evaluated on other users or groups than {reference.run}")
    rows = []
    for protocol in PROTOCOLS:
        if any(protocol not in r.ranks for runs in methods.values() for r in runs):
            continue
        for metric in metrics:
            # (seeds, users) per method; the paired test uses the seed-averaged per-user value.
            values = {
                m: np.stack([per_user(r.ranks[protocol], metric) for r in runs])
                for m, runs in methods.items()
            }
            base = values[labels[0]].mean(0)
            for group in GROUPS:
                member = reference.members[group]
                for label in labels:
                    per_seed = (
                        values[label][:, member].mean(1)
                        if member.any()
                        else np.full(len(values[label]), np.nan)
                    )
                    p = np.nan
                    if label != labels[0] and member.sum() > 1:
                        p = float(ttest_rel(values[label].mean(0)[member], base[member]).pvalue)
                    rows.append(
                        {
                            "method": label,
                            "protocol": protocol,
                            "group": group,
                            "metric": metric,
                            "mean": float(per_seed.mean()),
                            "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan,
                            "seeds": len(per_seed),
                            "users": int(member.sum()),
                            "p_value": p,
                        }
                    )
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, protocol: str, alpha: float = 0.05) -> str:
    """Methods × (group, metric) with mean ± sd; relative change vs the baseline; ``*`` marks a
    significant paired difference (p < alpha) in the method's favour, the best value is bold."""
    part = frame[frame.protocol == protocol]
    if part.empty:
        return ""
    metrics = list(dict.fromkeys(part.metric))
    methods = list(dict.fromkeys(part.method))
    header = ["method"] + [f"{g} {m}" for g in GROUPS for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    index = part.set_index(["method", "group", "metric"])
    for method in methods:
        cells = [method]
        for group in GROUPS:
            for metric in metrics:
                row = index.loc[(method, group, metric)]
                best = index.xs((group, metric), level=("group", "metric"))["mean"].max()
                base = index.loc[(methods[0], group, metric), "mean"]
                text = f"{row['mean']:.4f}" + (f" ± {row['sd']:.4f}" if row["seeds"] > 1 else "")
                if row["mean"] == best:
                    text = f"**{text}**"
                if method != methods[0] and base > 0:
                    text += f" ({(row['mean'] / base - 1) * 100:+.1f}%)"
                if row["p_value"] < alpha and row["mean"] > base:
                    text += "*"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(frame: pd.DataFrame, path: Path, metric: str = "NDCG@10") -> None:
    """Grouped bars of ``metric`` per head/tail group, one bar per method, one panel per protocol;
    error bars are the sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [p for p in PROTOCOLS if p in set(frame.protocol)]
    methods = list(dict.fromkeys(frame.method))
    fig, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4), squeeze=False)
    width = 0.8 / len(methods)
    for ax, protocol in zip(axes[0], protocols, strict=True):
        part = frame[(frame.protocol == protocol) & (frame.metric == metric)].set_index(["method", "group"])
        for i, method in enumerate(methods):
            means = [part.loc[(method, g), "mean"] for g in GROUPS]
            sds = np.nan_to_num([part.loc[(method, g), "sd"] for g in GROUPS])
            ax.bar(np.arange(len(GROUPS)) + i * width, means, width, yerr=sds, label=method, capsize=2)
        ax.set_xticks(np.arange(len(GROUPS)) + width * (len(methods) - 1) / 2, GROUPS, rotation=15)
        ax.set_title(f"{metric}, {protocol} ranking")
        ax.set_ylabel(metric)
        ax.legend()
    fig.tight_layout()
    atomic_write_png(Path(path), fig)
    plt.close(fig)


def comparison_text(frame: pd.DataFrame, split: str, groups: str | None) -> str:
    """The Markdown of ``llmesr compare``: one table per protocol and a legend."""
    rule = f", {groups} groups" if groups else ""
    text = "\n\n".join(
        f"### {split}, {protocol} ranking{rule}\n\n{markdown_table(frame, protocol)}"
        for protocol in dict.fromkeys(frame.protocol)
    )
    return text + (
        "\n\nmean ± sd over seeds; (+x%) relative to the first method; * paired t-test over users "
        "p < 0.05 in the method's favour; best in bold.\n"
    )


def write_comparison(frame: pd.DataFrame, text: str, out: Path) -> list[Path]:
    """``comparison.md``, ``comparison.csv`` (long format, with p-values) and ``comparison.png``."""
    out = Path(out)
    files = [out / "comparison.md", out / "comparison.csv", out / "comparison.png"]
    atomic_write_text(files[0], text)
    atomic_write_text(files[1], frame.to_csv(index=False))
    bar_chart(frame, files[2])
    return files
