"""Item text that cannot become a prompt, and ISO-8601 time columns (audit findings on data input).

Before: a NUL inside an ``items.jsonl`` string reached the embedding cache and ended in a traceback
naming no file; ``"title": 5`` or an object was stringified into the prompt; a CSV time column of
ISO-8601 strings was refused while the same times stored as Parquet datetimes were accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import patterned_rows, write_sequences_dir
from llmesr.cli import main
from llmesr.data.formats import DataFormatError, read_sequences_dir, read_table
from llmesr.serving.batch import read_histories


def items_dir(tmp_path: Path, *lines: str) -> Path:
    (tmp_path / "sequences.txt").write_text("u 1 2\n")
    (tmp_path / "items.jsonl").write_text(
        '{"item_id": 1, "title": "fine"}\n' + "".join(f"{x}\n" for x in lines)
    )
    return tmp_path


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ('{"item_id": 2, "title": "a\\u0000b"}', "field 'title' contains a NUL character"),
        ('{"item_id": 2, "attributes": ["x", "\\u0000"]}', "field 'attributes' contains a NUL character"),
        ('{"item_id": "2\\u0000"}', "item_id contains a NUL character"),
        ('{"item_id": 2, "title": 5}', "field 'title' must be a string, or a list of strings, not int 5"),
        (
            '{"item_id": 2, "title": 1.5}',
            "field 'title' must be a string, or a list of strings, not float 1.5",
        ),
        ('{"item_id": 2, "brand": true}', "field 'brand' must be a string, or a list of strings, not bool"),
        (
            '{"item_id": 2, "title": {"en": "x"}}',
            "field 'title' must be a string, or a list of strings, not dict",
        ),
        (
            '{"item_id": 2, "categories": ["a", 3]}',
            "field 'categories' must be a string, or a list of strings",
        ),
        (
            '{"item_id": 2, "categories": [["a"]]}',
            "field 'categories' must be a string, or a list of strings",
        ),
    ],
)
def test_item_text_that_is_not_text_names_file_line_and_field(tmp_path: Path, line: str, what: str) -> None:
    with pytest.raises(DataFormatError) as err:
        read_sequences_dir(items_dir(tmp_path, line))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'items.jsonl'}:2: ") and what in message
    assert "\n" not in message


def test_strings_lists_of_strings_and_nulls_stay_allowed(tmp_path: Path) -> None:
    line = '{"item_id": 2, "title": "Schindler\'s List", "categories": ["a", "b"], "tags": [], "brand": null}'
    info = read_sequences_dir(items_dir(tmp_path, line)).item_info
    assert info.loc["2", "title"] == "Schindler's List" and info.loc["2", "categories"] == ["a", "b"]


def test_nul_in_a_parquet_item_table_names_row_and_field(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\nu,1,1\nu,2,2\n")
    pd.DataFrame({"item_id": ["1", "2"], "title": ["ok", "bad\x00"]}).to_parquet(tmp_path / "items.parquet")
    with pytest.raises(
        DataFormatError, match=r"items\.parquet: row 2: field 'title' contains a NUL character"
    ):
        read_table(tmp_path / "log.csv", items_path=tmp_path / "items.parquet")


def test_cli_prints_the_error_on_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    data = write_sequences_dir(tmp_path / "data", patterned_rows(10, 6))
    with (data / "items.jsonl").open("a") as f:
        f.write('{"item_id": 99, "title": "a\\u0000b"}\n')
    assert main(["train", "--data", str(data), "--model", "llmesr", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{data / 'items.jsonl'}:7: field 'title' contains a NUL character" in err
    assert not (tmp_path / "run").exists()


TIMES = [
    "2024-03-01T10:00:00Z",
    "2024-03-01T11:30:00+02:00",  # 09:30 UTC: before the first row
    "2024-03-01 10:00:00.000001",
    "2024-02-29",
    "2024-03-01T10:00:00Z",  # a tie keeps file order
]


def test_iso_8601_csv_times_order_exactly_like_parquet_datetimes(tmp_path: Path) -> None:
    users, items = ["a", "a", "a", "b", "a"], ["1", "2", "3", "4", "5"]
    csv = "user_id,item_id,timestamp\n" + "".join(
        f"{u},{i},{t}\n" for u, i, t in zip(users, items, TIMES, strict=True)
    )
    (tmp_path / "log.csv").write_text(csv)
    stamps = pd.to_datetime(pd.Series(TIMES), format="ISO8601", utc=True)
    pd.DataFrame({"user_id": users, "item_id": items, "timestamp": stamps}).to_parquet(
        tmp_path / "log.parquet"
    )
    text, typed = read_table(tmp_path / "log.csv"), read_table(tmp_path / "log.parquet")
    assert text.items.tolist() == typed.items.tolist() == ["2", "1", "5", "3", "4"]
    assert text.users.tolist() == typed.users.tolist()
    np.testing.assert_array_equal(text.timestamps, typed.timestamps)
    assert text.timestamps[0] == pd.Timestamp("2024-03-01T09:30:00Z").timestamp()


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [
        (["2024-03-01", "2024-13-01"], 2, "'2024-13-01'"),
        (["2024-03-01", "", "x"], 2, "''"),
        (["2024-03-01", "1700000000"], 2, "'1700000000'"),
    ],
)
def test_unparseable_iso_time_names_column_and_first_bad_row(tmp_path: Path, column, row, value) -> None:
    body = "".join(f"u,{i},{t}\n" for i, t in enumerate(column))
    (tmp_path / "log.csv").write_text("user_id,item_id,when\n" + body)
    with pytest.raises(DataFormatError) as err:
        read_table(tmp_path / "log.csv", time_col="when")
    assert (
        str(err.value)
        == f"{tmp_path / 'log.csv'}: row {row}: column 'when' is not an ISO-8601 date-time: {value}"
    )


def test_text_that_is_neither_a_number_nor_a_time_says_both(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\nu,1,soon\n")
    with pytest.raises(
        DataFormatError, match="row 1: column 'timestamp' is not a finite number or an ISO-8601"
    ):
        read_table(tmp_path / "log.csv")


def test_batch_histories_accept_iso_times(tmp_path: Path) -> None:
    # 8 is 01:00 UTC on March 2, after 7; as text it would sort first.
    (tmp_path / "h.csv").write_text(
        "user_id,item_id,timestamp\nu,8,2024-03-01T23:00:00-02:00\nu,7,2024-03-02T00:30Z\n"
    )
    assert read_histories(tmp_path / "h.csv") == (["u"], [["7", "8"]])
