"""``llmesr report``: real tiny runs from the trainer, the Markdown and HTML they give, and the table
conventions (bold best, ``*`` against the best baseline) on a case built to have known answers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main
from llmesr.config import RunConfig, apply_overrides
from llmesr.data.groups import named_groups
from llmesr.experiments.compare import RunRanks, compare
from llmesr.experiments.document import to_markdown
from llmesr.experiments.methods import Method, normalise
from llmesr.experiments.report import quantile_bins, table1
from llmesr.runs import prepare_data
from llmesr.training import Trainer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TINY = {"max_len": 10, "hidden_size": 16, "batch_size": 32, "epochs": 1, "progress": False, "similar_k": 10}
# (folder, settings): two seeds of three methods, one ablation and two more α values.
RUNS = [
    *(
        (f"model={m}__seed={s}", {"model": m, "seed": s})
        for m in ("sasrec", "llminit", "llmesr")
        for s in (1, 2)
    ),
    ("model=llmesr__cross_attention=false", {"model": "llmesr", "cross_attention": False, "seed": 1}),
    ("model=llmesr__distill_weight=0.0", {"model": "llmesr", "distill_weight": 0.0, "seed": 1}),
    ("model=llmesr__distill_weight=0.5", {"model": "llmesr", "distill_weight": 0.5, "seed": 1}),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = write_sequences_dir(root / "data", patterned_rows(60, 20))
    for name, settings in RUNS:
        values = {"data": str(data), "cache_dir": str(root / "cache"), **TINY, **settings}
        cfg = apply_overrides(RunConfig(), values, "test")
        Trainer(cfg, prepare_data(cfg), root / "runs" / name).fit()
    return root / "runs"


@pytest.fixture(scope="module")
def report(runs) -> Path:
    out = runs.parent / "out"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    return out


def _rows(markdown: str, prefix: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith(prefix)
    ]


def test_markdown_has_every_section_with_the_runs_numbers(runs, report):
    md = (report / "report.md").read_text()
    for heading in (
        "## Table 1",
        "### full ranking",
        "### sampled-100 ranking",
        "## Ablation study",
        "## Sensitivity to α and N",
        "## NDCG@10 by user history length",
        "## t-SNE of item embeddings",
    ):
        assert heading in md, heading
    for method in ("SASRec", "LLMInit", "LLM-ESR"):  # one row per protocol each
        assert len(_rows(md, f"| SASRec | {method} |")) == 2, method
    # Variants are not Table 1 methods; they are in their own sections.
    assert "LLM-ESR (cross_attention" not in md.split("## Ablation study")[0]
    ablation = _rows(md, "| w/o cross-attention |") + _rows(md, "| w/o self-distillation |")
    assert len(ablation) == 4 and all("%)" in cell for row in ablation for cell in row[1:])
    alphas = [row[1] for row in _rows(md, "| full ranking |")]
    assert alphas == ["0", "0.1", "0.5"]
    assert "N (distill_users): fewer than 2 values (found: 10), plot skipped." in md
    # The table's numbers are the runs' own: SASRec's overall full NDCG@10 is the mean over seeds.
    seeds = [json.loads((runs / f"model=sasrec__seed={s}" / "metrics.json").read_text()) for s in (1, 2)]
    values = [m["test"]["full"]["overall"]["NDCG@10"] for m in seeds]
    sasrec = _rows(md, "| SASRec | SASRec |")[0]
    assert sasrec[3].strip("*") == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"tsne.png", "groups_sasrec.png"} <= set(figures) and len(figures) == 4
    assert "t-SNE of item embeddings (SASRec, LLM-ESR, LLMInit)" in md  # every Table-1 method
    for name in figures:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def fake(ranks: np.ndarray, seed: int, tail_item: np.ndarray) -> RunRanks:
    members = {
        "overall": np.ones(len(ranks), bool),
        **named_groups(np.arange(len(ranks)) % 2 == 0, tail_item),
    }
    return RunRanks(Path(f"s{seed}"), np.arange(len(ranks)), {"full": ranks}, members, seed)


def table1_rows(methods: list[tuple[str, str, np.ndarray]], tail: np.ndarray) -> tuple[str, dict[str, dict]]:
    """Table 1 (full protocol) of SASRec-backbone methods given as (name, model, ranks), two seeds
    each: its Markdown and its rows by method, each a dict by column."""
    given = [
        Method(name, model, "sasrec", {}, [fake(r, s, tail) for s in (1, 2)], {})
        for name, model, r in methods
    ]
    md = to_markdown(table1(given), Path("."))
    header = _rows(md, "| backbone |")[0]
    return md, {r[1]: dict(zip(header, r, strict=True)) for r in _rows(md, "| SASRec |")}


def test_table1_bolds_the_best_and_tests_against_the_best_baseline():
    rng = np.random.default_rng(0)
    n = 400
    tail = np.arange(n) < n // 2
    sasrec = rng.integers(0, 30, n)
    llminit = np.maximum(sasrec - 6, 0)  # the best baseline, far better than SASRec
    ours = llminit.copy()
    ours[tail] = np.maximum(llminit[tail] - 6, 0)  # clearly better on tail items
    # Head items: better than LLMInit on two users only -> best, but not significantly so.
    lifted = np.flatnonzero(~tail & (llminit >= 1) & (llminit < 9))[:2]
    ours[lifted] -= 1
    # Input order must not matter: given last first.
    md, rows = table1_rows(
        [("LLM-ESR", "llmesr", ours), ("LLMInit", "llminit", llminit), ("SASRec", "sasrec", sasrec)], tail
    )
    assert list(rows) == ["SASRec", "LLMInit", "LLM-ESR"]  # baselines first, ours last
    for metric in ("HR@10", "NDCG@10"):
        for group in ("overall", "tail item"):
            assert rows["LLM-ESR"][f"{group} {metric}"].endswith("***"), (group, metric)  # bold and *
        head = rows["LLM-ESR"][f"head item {metric}"]
        # Best (bold) but no *: the test is against LLMInit, not against SASRec.
        assert head.startswith("**") and head.endswith("**") and not head.endswith("***"), head
        assert not any("*" in rows[b][f"overall {metric}"] for b in ("SASRec", "LLMInit"))
    assert "against LLMInit" in md


def test_esrfuse_is_tested_against_the_best_method_before_it_llmesr_included():
    rng = np.random.default_rng(1)
    n = 400
    tail = np.arange(n) < n // 2
    llminit = rng.integers(0, 30, n)
    llmesr = np.maximum(llminit - 6, 0)  # far better than the best baseline
    esrfuse = llmesr.copy()
    esrfuse[tail] = np.maximum(llmesr[tail] - 6, 0)  # better than LLM-ESR on tail items only
    md, rows = table1_rows(
        [("ESR-Fuse", "esrfuse", esrfuse), ("LLM-ESR", "llmesr", llmesr), ("LLMInit", "llminit", llminit)],
        tail,
    )
    assert list(rows) == ["LLMInit", "LLM-ESR", "ESR-Fuse"]  # the tested methods last, in order
    for metric in ("HR@10", "NDCG@10"):
        assert re.search(r"\d\*$", rows["LLM-ESR"][f"overall {metric}"])  # not bold, * against LLMInit
        assert rows["ESR-Fuse"][f"tail item {metric}"].endswith("***")  # best, and beats LLM-ESR
        # Far above LLMInit on head items, but equal to LLM-ESR, which it is tested against.
        head = rows["ESR-Fuse"][f"head item {metric}"]
        assert head.startswith("**") and not head.endswith("***"), head
    assert "LLM-ESR against LLMInit" in md and "ESR-Fuse against LLM-ESR" in md


def test_html_is_self_contained_and_shows_every_table_and_picture(report):
    page_html = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page_html)
    assert "<script" not in page_html
    md = (report / "report.md").read_text()
    tables = sum(line.startswith("|---|") for line in md.splitlines())
    figures = len(re.findall(r"!\[", md))
    assert page_html.count("<table") == tables and page_html.count("<img") == figures
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto((report / "report.html").resolve().as_uri())
        page.wait_for_function("[...document.images].every(i => i.complete)")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        shown = page.eval_on_selector_all("table", "ts => ts.map(t => t.rows.length)")
        bold = page.locator("td strong").count()
        browser.close()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert len(widths) == figures and all(w > 0 for w in widths), widths
    assert len(shown) == tables and all(rows > 1 for rows in shown)
    assert bold > 0  # the Markdown bold became <strong>


def test_baseline_free_reports_llmesr_alone(runs, tmp_path):
    assert main(["report", str(runs), "--out", str(tmp_path), "--baseline-free"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "| SASRec | LLM-ESR |" in md and "| SASRec | SASRec |" not in md and "LLMInit" not in md
    assert "best baseline" not in md


def test_groups_option_regroups_like_compare(runs, report, tmp_path):
    assert main(["report", str(runs), "--out", str(tmp_path), "--groups", "beauty_paper"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "head/tail groups beauty_paper" in md
    seeds = [RunRanks.load(runs / f"model=sasrec__seed={s}", "test", "beauty_paper") for s in (1, 2)]
    expected = compare({"SASRec": seeds}).set_index(["protocol", "group", "metric"])

    def cell(text: str, column: str) -> str:
        header = _rows(text, "| backbone |")[0]
        return dict(zip(header, _rows(text, "| SASRec | SASRec |")[0], strict=True))[column]

    tail_user = expected.loc[("full", "tail_user", "NDCG@10")]
    assert cell(md, "tail user NDCG@10").strip("*") == f"{tail_user['mean']:.4f} ± {tail_user['sd']:.4f}"
    # The paper's item threshold (< 4 interactions) leaves no tail item in this data: shown as empty.
    assert expected.loc[("full", "tail_item", "NDCG@10"), "users"] == 0
    assert cell(md, "tail item NDCG@10") == "–" and "tail item 0," in md
    assert cell((report / "report.md").read_text(), "tail item NDCG@10") != "–"


def test_sections_that_need_the_dataset_are_skipped_without_it(runs, tmp_path):
    for name in ("model=sasrec__seed=1", "model=llmesr__seed=1"):
        shutil.copytree(runs / name, tmp_path / "runs" / name)
        config = tmp_path / "runs" / name / "config.yaml"
        config.write_text(re.sub(r"(?m)^data: .*$", f"data: {tmp_path / 'gone'}", config.read_text()))
    assert main(["report", str(tmp_path / "runs")]) == 0
    md = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "| SASRec | LLM-ESR |" in md  # the tables need only the runs
    assert md.count("skipped, cannot load the dataset") == 2 and "![" not in md


def test_runs_without_the_split_are_left_out_and_named(runs, tmp_path, capsys):
    """A run trained with evaluate_test: false (a member chosen on validation) has no test ranks."""
    for name in ("model=sasrec__seed=1", "model=llmesr__seed=1", "model=llminit__seed=1"):
        shutil.copytree(runs / name, tmp_path / "runs" / name)
    member = tmp_path / "runs" / "model=llminit__seed=1"
    metrics = json.loads((member / "metrics.json").read_text())
    del metrics["test"]
    (member / "metrics.json").write_text(json.dumps(metrics))
    with np.load(member / "ranks.npz") as z:
        kept = {k: z[k] for k in z.files if not k.startswith("test_")}
    np.savez(member / "ranks.npz", **kept)
    assert main(["report", str(tmp_path / "runs")]) == 0
    md = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "2 runs, 2 methods" in md
    assert "Left out, not evaluated on the test split: model=llminit__seed=1." in md
    assert main(["report", str(tmp_path / "runs"), "--split", "valid", "--out", str(tmp_path / "v")]) == 0
    assert "3 runs, 3 methods" in (tmp_path / "v" / "report.md").read_text()


def test_tune_folders_under_the_runs_get_an_appendix_and_their_trials_are_no_runs(runs, tmp_path):
    import yaml

    for name in ("model=sasrec__seed=1", "model=llmesr__seed=1"):
        shutil.copytree(runs / name, tmp_path / "runs" / name)
    data = yaml.safe_load((runs / "model=sasrec__seed=1" / "config.yaml").read_text())["data"]
    space = {
        "base": str(Path(__file__).resolve().parents[1] / "configs" / "sasrec_ce.yaml"),
        "fixed": {"data": data, **{k: v for k, v in TINY.items() if k not in ("epochs", "similar_k")}},
        "space": {"lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True}},
        "budget": {"trials": 2, "max_epochs": 1},
        "pruner": "none",
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    tune = tmp_path / "runs" / "tune" / "sasrec"
    assert main(["tune", str(tmp_path / "space.yaml"), "--out", str(tune)]) == 0
    assert main(["report", str(tmp_path / "runs")]) == 0
    md = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "2 runs, 2 methods" in md  # the trials are not counted as runs
    assert "## Appendix: hyper-parameter tuning" in md
    assert "| sasrec | sasrec | 2 | 1 | – | none | tpe | 2 / 0 / 0 | NDCG@10 " in md
    assert "| sasrec | lr | float 0.001..0.01 (log) | 0.001 |" in md


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished runs" in err
    assert not (tmp_path / "report").exists()


def test_runs_on_another_dataset_are_refused(runs, tmp_path, capsys):
    for name in ("model=sasrec__seed=1", "model=llmesr__seed=1"):
        shutil.copytree(runs / name, tmp_path / name)
    info = json.loads((tmp_path / "model=llmesr__seed=1" / "dataset.json").read_text())
    (tmp_path / "model=llmesr__seed=1" / "dataset.json").write_text(
        json.dumps({**info, "fingerprint": "other"})
    )
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "different datasets" in err and "model=sasrec__seed=1" in err and "model=llmesr__seed=1" in err
    # Same dataset and users, other sampled negatives: the sampled ranks are not comparable.
    (tmp_path / "model=llmesr__seed=1" / "dataset.json").write_text(json.dumps(info))
    config = tmp_path / "model=llmesr__seed=1" / "config.yaml"
    config.write_text(config.read_text().replace("negatives_seed: 2024", "negatives_seed: 7"))
    assert main(["report", str(tmp_path)]) == 2
    assert "evaluated differently (negatives_seed 7 vs 2024)" in capsys.readouterr().err


def test_settings_left_at_none_are_the_model_default():
    explicit = normalise(
        {"model": "llmesr", "distill_weight": 0.1, "backbone": None, "seed": 1, "threads": 2}
    )
    implicit = normalise({"model": "llmesr", "distill_weight": None, "backbone": "sasrec", "seed": 2})
    assert explicit == implicit
    # SASRec never reads distill_weight, so a grid-wide value does not split it into two methods.
    assert normalise({"model": "sasrec", "distill_weight": 0.5}) == normalise({"model": "sasrec"})
    assert normalise({"model": "gru4rec", "backbone": "sasrec"})[1] == "gru4rec"
    # Fine-tuned runs start from their own seed's run: one method, apart from the from-scratch one.
    tuned = [normalise({"model": "melt", "init_from": f"runs/model=sasrec__seed={s}"}) for s in (1, 2)]
    assert tuned[0] == tuned[1] != normalise({"model": "melt", "init_from": None})


def test_quantile_bins_merge_ties_and_name_their_ranges():
    values = np.array([1, 1, 1, 1, 2, 3, 5, 8, 13, 40])
    index, labels = quantile_bins(values, 5)
    assert len(labels) == index.max() + 1 <= 5
    assert np.all(np.diff(index[np.argsort(values, kind="stable")]) >= 0)  # bins follow the values
    assert labels[0] == "1\n(4)" and labels[-1].startswith("13–40")
    assert sum(int(re.search(r"\((\d+)\)", label).group(1)) for label in labels) == len(values)
