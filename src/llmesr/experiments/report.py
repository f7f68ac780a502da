"""``llmesr report RUNS_DIR``: the LLM-ESR paper's tables and figures (Liu et al., NeurIPS 2024) from
a folder of finished runs, as ``report.md``, a self-contained ``report.html`` and PNG files.

Sections, each omitted with a one-line note when no run fits it:

1. Table 1: every baseline and every *default* LLM-ESR method (see ``report_runs``), rows grouped by
   backbone, columns head/tail group × HR@10 / NDCG@10, one table per protocol. Best values are bold
   within each backbone block, as in the paper. ``*``: LLM-ESR beats the best baseline of its
   backbone (by overall NDCG@10, chosen per protocol) with p < 0.05 in a paired t-test over users.
2. Ablations: LLM-ESR methods with one ablation switch changed, against the default method with the
   same other settings ("full model"); ``*`` there marks a significant difference either way.
3. Sensitivity: α and N curves from LLM-ESR methods differing only in that setting (α = 0 is both
   the "w/o self-distillation" ablation and a point of the α curve).
4. NDCG@10 per quantile group of user history length and of target-item popularity (Figure 3).
5. t-SNE of item embeddings coloured by popularity (Figure 4): SASRec, LLM-ESR and every other
   Table-1 method of the same backbone, one panel each.
6. Appendix, when tune folders are under RUNS_DIR or given (``--tuning``): each tuned method's
   search space, budget and chosen values (``llmesr.experiments.tune_folder``).

All statistics come from ``llmesr.experiments.compare`` (mean ± sd over seeds, paired t-test on the
seed-averaged per-user metric). ``--baseline-free`` reports the LLM-ESR runs alone (baselines under
RUNS_DIR are left out): Table 1 then carries no significance marks and the t-SNE shows LLM-ESR only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmesr.data.groups import item_popularity
from llmesr.errors import ConfigError
from llmesr.evaluation import GROUPS, PROTOCOLS, per_user
from llmesr.experiments.compare import bar_chart, compare
from llmesr.experiments.document import Figure, Heading, Note, Part, Table, write_report
from llmesr.experiments.methods import (
    ABLATIONS,
    OURS,
    TESTED,
    DataCache,
    DataUnavailable,
    Method,
    display_names,
    find_runs,
    load_methods,
    ours_defaults,
    settings_key,
)
from llmesr.experiments.plots import LINE_GROUPS, group_bars, sensitivity_plot, tsne_plot, value_text
from llmesr.experiments.tune_folder import TuneFolder, find_tune_folders, tuning_appendix
from llmesr.runs import RunFolder

SENSITIVITY = {"distill_weight": "α (distill_weight)", "distill_users": "N (distill_users)"}
METRICS = ("HR@10", "NDCG@10")
GROUP_NAMES = {"overall": "overall", "tail_item": "tail item", "head_item": "head item"}
GROUP_NAMES |= {"tail_user": "tail user", "head_user": "head user"}
INDEX = ["protocol", "method", "group", "metric"]
BINS = 5
TSNE_ITEMS = 3000


def _cell(row: pd.Series) -> str:
    if np.isnan(row["mean"]):
        return "–"  # an empty group is shown as empty, never as a score
    return f"{row['mean']:.4f}" + (f" ± {row['sd']:.4f}" if row["seeds"] > 1 else "")


def _protocol_name(protocol: str, methods: list[Method]) -> str:
    negatives = methods[0].settings.get("sampled_negatives", 100)
    return "full ranking" if protocol == "full" else f"sampled-{negatives} ranking"


def _blocks(methods: list[Method]) -> dict[str, list[Method]]:
    """Table 1 methods by backbone, baselines first (in the paper's order), LLM-ESR last."""
    order = list(display_names())
    rank = {m: i for i, m in enumerate(order)}
    blocks: dict[str, list[Method]] = defaultdict(list)
    for m in sorted(methods, key=lambda m: (rank.get(m.backbone, len(order)), m.backbone)):
        if not m.variant:
            blocks[m.backbone].append(m)
    for ms in blocks.values():
        ms.sort(
            key=lambda m: (
                TESTED.index(m.model) if m.model in TESTED else -1,
                m.model != m.backbone,
                rank.get(m.model, len(order)),
                m.label,
            )
        )
    return dict(blocks)


Reference = dict[tuple[str, str], str]  # (protocol, tested method) -> the method it is tested against


def _backbone_stats(ms: list[Method]) -> tuple[pd.DataFrame, Reference, dict[tuple[str, str], pd.Series]]:
    """Means of every method of one backbone and, per protocol and tested method (:data:`TESTED`),
    the method it is tested against (the best by overall NDCG@10 of those not tested after it) and
    its p-values against that one (``compare`` tests against its first method)."""
    runs = {m.label: m.runs for m in ms}
    means = compare(runs, METRICS).set_index(INDEX)
    against: Reference = {}
    pvalues: dict[tuple[str, str], pd.Series] = {}
    tested: dict[tuple[str, str], pd.Series] = {}  # by pair: often the same one for both protocols
    for m in (m for m in ms if m.model in TESTED):
        later = TESTED[TESTED.index(m.model) :]
        pool = [x.label for x in ms if x.model not in later]
        for protocol in dict.fromkeys(means.index.get_level_values("protocol")) if pool else ():
            best = max(pool, key=lambda b: means.loc[(protocol, b, "overall", "NDCG@10"), "mean"])
            if (best, m.label) not in tested:
                pair = {best: runs[best], m.label: runs[m.label]}
                tested[(best, m.label)] = compare(pair, METRICS).set_index(INDEX)["p_value"]
            against[(protocol, m.label)] = best
            pvalues[(protocol, m.label)] = tested[(best, m.label)]
    return means, against, pvalues


def table1(methods: list[Method], alpha: float = 0.05) -> list[Part]:
    """The paper's Table 1, one table per protocol: rows by backbone, columns group × metric."""
    parts: list[Part] = [Heading(2, "Table 1: overall and long-tail performance")]
    blocks = _blocks(methods)
    if not blocks:
        return parts + [Note("No default runs (baselines or default LLM-ESR): Table 1 omitted.")]
    stats = {backbone: _backbone_stats(ms) for backbone, ms in blocks.items()}
    header = ["backbone", "method"] + [f"{GROUP_NAMES[g]} {m}" for g in GROUPS for m in METRICS]
    for protocol in PROTOCOLS:
        if not all(protocol in means.index.get_level_values("protocol") for means, _, _ in stats.values()):
            continue  # a protocol some run did not evaluate
        rows, tested = [], []
        for backbone, ms in blocks.items():
            means, against, pvalues = stats[backbone]
            part, name = means.loc[protocol], display_names().get(backbone, backbone)
            for m in ms:
                reference = against.get((protocol, m.label))
                if reference:
                    tested.append(f"{name}: {m.label} against {reference}")
                cells = [name, m.label]
                for group in GROUPS:
                    for metric in METRICS:
                        row = part.loc[(m.label, group, metric)]
                        text = _cell(row)
                        if row["mean"] == part.xs((group, metric), level=("group", "metric"))["mean"].max():
                            text = f"**{text}**"
                        if reference:
                            p = pvalues[(protocol, m.label)].loc[(protocol, m.label, group, metric)]
                            if p < alpha and row["mean"] > part.loc[(reference, group, metric), "mean"]:
                                text += "*"
                        cells.append(text)
                rows.append(cells)
        users = next(iter(stats.values()))[0].loc[protocol].xs("NDCG@10", level="metric")["users"]
        counts = ", ".join(f"{GROUP_NAMES[g]} {users.xs(g, level='group').iloc[0]:,}" for g in GROUPS)
        legend = f"users: {counts}; mean ± sd over seeds; best per backbone in bold"
        if tested:
            legend += (
                f"; * better with p < {alpha} (paired t-test over users) than the best method of its "
                f"backbone by overall NDCG@10 among the baselines, the successors and the methods "
                f"tested before it ({'; '.join(tested)})"
            )
        parts += [Heading(3, _protocol_name(protocol, methods)), Table(header, rows, 2), Note(legend + ".")]
    return parts


def ablation(methods: list[Method], out: Path, alpha: float = 0.05) -> list[Part]:
    defaults = ours_defaults()
    full = {settings_key(m.settings): m for m in methods if m.model == OURS and not m.variant}
    found: dict[str, list[tuple[str, Method]]] = defaultdict(list)  # full model's key -> its ablations
    unmatched = []
    for m in methods:
        key = next(iter(m.variant), None)
        if len(m.variant) != 1 or key not in ABLATIONS or m.variant[key] != ABLATIONS[key][0]:
            continue
        base = settings_key({**m.settings, key: defaults[key]})
        if base in full:
            found[base].append((ABLATIONS[key][1], m))
        else:
            unmatched.append(m.label)
    parts: list[Part] = [Heading(2, "Ablation study")]
    if not found:
        return parts + [Note("No ablation runs (LLM-ESR with one ablation switch changed): section omitted.")]
    order = [label for _, label in ABLATIONS.values()]
    groups = ("overall", "tail_item", "tail_user")
    for base_key, variants in found.items():
        base = full[base_key]
        variants.sort(key=lambda v: order.index(v[0]))
        reference = f"{base.label} (full model)"
        runs = {reference: base.runs, **{label: m.runs for label, m in variants}}
        frame = compare(runs, METRICS)
        index = frame.set_index(INDEX)
        title = f"{base.label} on {display_names().get(base.backbone, base.backbone)}"
        for protocol in dict.fromkeys(frame.protocol):
            header = ["variant"] + [f"{GROUP_NAMES[g]} {m}" for g in groups for m in ("NDCG@10", "HR@10")]
            rows = []
            for label in runs:
                cells = [label]
                for group in groups:
                    for metric in ("NDCG@10", "HR@10"):
                        row = index.loc[(protocol, label, group, metric)]
                        ref = index.loc[(protocol, reference, group, metric), "mean"]
                        text = _cell(row)
                        if label != reference and ref > 0 and not np.isnan(row["mean"]):
                            text += f" ({(row['mean'] / ref - 1) * 100:+.1f}%)"
                        text += "*" if row["p_value"] < alpha else ""
                        cells.append(text)
                rows.append(cells)
            parts += [Heading(3, f"{title}, {_protocol_name(protocol, methods)}"), Table(header, rows)]
        legend = f"(±x%) relative to the full model; * differs from it with p < {alpha} (paired t-test)."
        parts.append(Note(legend))
        path = out / f"ablation_{_slug(base.label)}_{base.backbone}.png"
        bar_chart(frame, path)
        parts.append(Figure(path, f"Ablation, {title}: NDCG@10 per head/tail group (sd over seeds)"))
    if unmatched:
        parts.append(Note(f"Ablations without a matching full model, left out: {', '.join(unmatched)}."))
    return parts


def sensitivity(methods: list[Method], out: Path) -> list[Part]:
    defaults = ours_defaults()
    parts: list[Part] = [Heading(2, "Sensitivity to α and N")]
    for key, axis in SENSITIVITY.items():
        curves: dict[str, dict[Any, Method]] = defaultdict(dict)
        for m in methods:
            if m.model == OURS and set(m.variant) <= {key}:
                curves[settings_key({**m.settings, key: defaults[key]})][m.settings[key]] = m
        drawn = 0
        for points in curves.values():
            if len(points) < 2:
                continue
            values = sorted(points)
            base = points.get(defaults[key], points[values[0]])
            frame = compare({value_text(v): points[v].runs for v in values}, ("NDCG@10",))
            frame["value"] = frame.method.map({value_text(v): v for v in values})
            title = f"{axis}, {display_names().get(base.backbone, base.backbone)} backbone"
            path = out / f"sensitivity_{key}_{base.backbone}_{drawn + 1}.png"
            sensitivity_plot(frame, axis, path)
            index = frame.set_index(["protocol", "value", "group"])
            rows = [
                [_protocol_name(p, methods), value_text(v)]
                + [_cell(index.loc[(p, v, g)]) for g in LINE_GROUPS]
                for p in dict.fromkeys(frame.protocol)
                for v in values
            ]
            header = ["protocol", key] + [f"{GROUP_NAMES[g]} NDCG@10" for g in LINE_GROUPS]
            parts += [Heading(3, title), Table(header, rows, 2), Figure(path, f"NDCG@10 against {axis}")]
            drawn += 1
        if not drawn:
            found = sorted({value_text(v) for c in curves.values() for v in c})
            parts.append(
                Note(f"{axis}: fewer than 2 values (found: {', '.join(found) or 'none'}), plot skipped.")
            )
    return parts


def quantile_bins(values: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, list[str]]:
    """Bin index per value from quantile edges (ties merge bins, so there may be fewer) and a label
    per bin with the value range and its size."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    index = np.searchsorted(edges[1:-1], values, side="right")
    used, index = np.unique(index, return_inverse=True)  # drop bins no value falls into
    lo = np.full(len(used), np.inf)
    hi = np.full(len(used), -np.inf)
    np.minimum.at(lo, index, values)
    np.maximum.at(hi, index, values)
    counts = np.bincount(index, minlength=len(used))
    labels = [
        (f"{a:g}" if a == b else f"{a:g}–{b:g}") + f"\n({n:,})"
        for a, b, n in zip(lo, hi, counts, strict=True)
    ]
    return index, labels


def group_charts(methods: list[Method], cache: DataCache, split: str, out: Path) -> list[Part]:
    parts: list[Part] = [Heading(2, "NDCG@10 by user history length and item popularity")]
    blocks = _blocks(methods)
    if not blocks:
        return parts + [Note("No default runs: group charts omitted.")]
    for backbone, ms in blocks.items():
        data = cache.get(ms[0].runs[0].run)
        ev = data.split.eval_split(split)
        if not np.array_equal(ev.users, ms[0].runs[0].users):
            raise ConfigError(
                f"{ms[0].runs[0].run}: its evaluated users differ from the dataset's {split} split"
            )
        popularity = item_popularity(data.split.train, data.dataset.n_items)
        kinds = {
            "user history length (training)": data.split.train.lengths[ev.users],
            "target item popularity (training)": popularity[ev.targets],
        }
        rows = []
        for kind, values in kinds.items():
            index, labels = quantile_bins(values)
            onehot = np.eye(len(labels))[index]  # (users, bins): per-bin means as one product
            counts = onehot.sum(0)
            for protocol in PROTOCOLS:
                if not all(protocol in r.ranks for m in ms for r in m.runs):
                    continue
                for m in ms:
                    per_seed = (
                        np.stack([per_user(r.ranks[protocol], "NDCG@10") for r in m.runs]) @ onehot / counts
                    )
                    sd = per_seed.std(0, ddof=1) if len(per_seed) > 1 else np.full(len(labels), np.nan)
                    for b, label in enumerate(labels):
                        rows.append(
                            {"method": m.label, "protocol": protocol, "kind": kind, "bin": label}
                            | {"mean": per_seed[:, b].mean(), "sd": sd[b]}
                        )
        name = display_names().get(backbone, backbone)
        path = out / f"groups_{backbone}.png"
        group_bars(pd.DataFrame(rows), path, name)
        caption = f"{name} backbone: NDCG@10 per quantile group ({BINS} bins; users per bin in brackets)"
        parts.append(Figure(path, caption))
    return parts


def item_vectors(run: Path) -> np.ndarray:
    """Items 1..N of the run's fused serving table, without the bias column."""
    folder = RunFolder(run)
    if not folder.file(RunFolder.ITEM_TABLE).exists():  # e.g. results copied without their tables
        raise DataUnavailable(f"{run} has no {RunFolder.ITEM_TABLE}")
    return folder.item_table()[1:, :-1]


def tsne_section(methods: list[Method], cache: DataCache, split: str, out: Path) -> list[Part]:
    """The paper's Figure 4 (SASRec against LLM-ESR) widened to every Table-1 method of one backbone
    (the SASRec backbone when it has runs), one seed each, the same items in every panel; methods
    whose runs kept no item table are named in a note."""
    parts: list[Part] = [Heading(2, "t-SNE of item embeddings")]
    blocks = _blocks(methods)
    for backbone in sorted(blocks, key=lambda b: b != "sasrec"):
        block = blocks[backbone]
        chosen = [m for m in block if m.model == backbone][:1] + [m for m in block if m.model == OURS][:1]
        if chosen:
            chosen += [m for m in block if m not in chosen]
            break
    else:
        return parts + [Note("No SASRec or LLM-ESR default run: t-SNE omitted.")]
    data = cache.get(chosen[0].runs[0].run)
    popularity = item_popularity(data.split.train, data.dataset.n_items)[1:]
    n = len(popularity)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, TSNE_ITEMS), replace=False))
    panels, missing = [], []
    for m in chosen:
        run = m.runs[0].run  # one seed each: the first found
        try:
            vectors = item_vectors(run)
        except DataUnavailable:
            missing.append(m.label)
            continue
        if len(vectors) != n:
            raise ConfigError(f"{run}: item table has {len(vectors)} items, the dataset {n}")
        panels.append((f"{m.label}\n{run.name}", vectors[sample]))
    if missing:
        parts.append(Note(f"No item table kept by {', '.join(missing)}: not in the t-SNE."))
    if not panels:
        return parts
    path = out / "tsne.png"
    tsne_plot(panels, popularity[sample], path)
    what = ", ".join(label.split("\n")[0] for label, _ in panels)
    return parts + [Figure(path, f"t-SNE of item embeddings ({what}), coloured by training popularity")]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def build_report(
    runs_dir: Path,
    out: Path | None = None,
    split: str = "test",
    groups: str | None = None,
    baseline_free: bool = False,
    tuning: list[Path] = (),
) -> Path:
    """Write report.md, report.html and the PNGs into ``out`` (default RUNS_DIR/report). Tune
    folders under RUNS_DIR and those in ``tuning`` get an appendix (spaces, budgets, choices)."""
    runs_dir = Path(runs_dir)
    for folder in tuning:
        if not TuneFolder(folder).file(TuneFolder.SUMMARY).exists():
            raise ConfigError(f"--tuning {folder}: not a finished tune folder (no {TuneFolder.SUMMARY})")
    tuned = list(dict.fromkeys([*map(Path, tuning), *find_tune_folders(runs_dir)]))
    paths = find_runs(runs_dir)
    if not paths:
        marker = RunFolder.METRICS
        raise ConfigError(f"no finished runs under {runs_dir} (a finished run folder holds {marker})")
    # Runs trained with evaluate_test: false (members chosen on validation) have no test ranks.
    without = [p for p in paths if split not in RunFolder(p).metrics()]
    paths = [p for p in paths if p not in without]
    if not paths:
        raise ConfigError(f"no run under {runs_dir} was evaluated on the {split} split")
    out = Path(out) if out is not None else runs_dir / "report"
    cache = DataCache()
    methods = load_methods(paths, split, groups, cache, baseline_free)
    if not methods:
        raise ConfigError(f"no LLM-ESR runs under {runs_dir} (--baseline-free reports LLM-ESR runs only)")
    rule = groups or "as trained"
    parts: list[Part] = [
        Heading(1, f"LLM-ESR report: {runs_dir.name}"),
        Note(f"{len(paths)} runs, {len(methods)} methods; {split} split; head/tail groups {rule}."),
    ]
    if without:
        names = ", ".join(p.relative_to(runs_dir).as_posix() for p in without)
        parts.append(Note(f"Left out, not evaluated on the {split} split: {names}."))
    # Built in a temporary sibling folder and moved into ``out`` once complete: a section that
    # fails on a damaged run (a truncated item table) leaves no half-written report behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        parts += table1(methods)
        parts += ablation(methods, stage)
        parts += sensitivity(methods, stage)
        mixed = [m.label for m in methods if len(m.variant) > 1]
        if mixed:  # no section compares a method that changes two settings at once
            parts.append(Note(f"Left out, more than one LLM-ESR setting changed: {', '.join(mixed)}."))
        for section in (group_charts, tsne_section):  # the sections that need the dataset itself
            try:
                parts += section(methods, cache, split, stage)
            except DataUnavailable as err:
                parts.append(Note(f"{section.__name__}: skipped, {err}."))
        if tuned:
            parts += tuning_appendix(tuned)
        write_report(parts, stage, title=f"LLM-ESR report: {runs_dir.name}")
        out.mkdir(exist_ok=True)
        for file in sorted(stage.iterdir()):  # figures first, report.md / report.html last
            if file.name not in ("report.md", "report.html"):
                os.replace(file, out / file.name)
        for name in ("report.md", "report.html"):
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
