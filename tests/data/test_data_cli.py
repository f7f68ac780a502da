"""``llmesr prepare`` and ``llmesr data stats`` from the command line: output, and one-line errors."""

from __future__ import annotations

from raw_dumps import Product, Review, write_dump, write_lines

from llmesr.cli import main


def test_prepare_then_stats(tmp_path, capsys):
    reviews = [Review(f"U{u}", f"B{(u + k) % 3}", k) for u in range(4) for k in range(3)]
    review_file, meta = write_dump(
        tmp_path / "raw", "yelp", reviews, [Product("B0", "Diner", categories=("Food",))]
    )
    out = tmp_path / "yelp"
    code = main(
        ["prepare", "--source", "yelp", "--reviews", str(review_file), "--meta", str(meta), "--out", str(out)]
        + ["--preset", "none", "--dedup", "--min-rating", "1"]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("4 users, 3 items, 12 interactions\n")
    assert main(["data", "stats", str(out), "--out", str(tmp_path / "stats")]) == 0
    assert "4 users, 3 items, 12 interactions" in capsys.readouterr().out
    assert (tmp_path / "stats" / "distributions.png").exists()


def test_prepare_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    bad = write_lines(
        tmp_path / "reviews.json",
        ['{"reviewerID": "U", "asin": "A", "overall": 5, "unixReviewTime": 1}', "{"],
    )
    code = main(["prepare", "--source", "amazon2014", "--reviews", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"llmesr prepare: error: {bad}:2: ")
    assert not (tmp_path / "out").exists()


def test_data_stats_on_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "nowhere")]) == 2
    assert "llmesr data: error: dataset" in capsys.readouterr().err
