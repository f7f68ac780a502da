"""Tests for the interaction-log readers in :mod:`llmesr.data.formats`."""

from __future__ import annotations

import csv
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmesr.data.formats import (
    DataFormatError,
    InteractionLog,
    read_atomic,
    read_dataset,
    read_sequences_dir,
    read_table,
)

# The shared real data sits beside the repository (``<parent of repo>/shared/data``), so a clone in
# a sibling folder finds it too.
REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(log: InteractionLog) -> list[tuple]:
    ts = log.timestamps if log.timestamps is not None else [None] * len(log.users)
    return list(zip(log.users.tolist(), log.items.tolist(), list(ts), strict=True))


def per_user(log: InteractionLog) -> dict[str, list]:
    out: dict[str, list] = {}
    for user, item, _ in rows(log):
        out.setdefault(user, []).append(item)
    return out


def assert_str_arrays(log: InteractionLog) -> None:
    assert log.users.dtype == object and log.items.dtype == object
    assert all(type(u) is str for u in log.users)
    assert all(type(i) is str for i in log.items)
    assert len(log.users) == len(log.items)
    if log.timestamps is not None:
        assert log.timestamps.dtype == np.float64 and len(log.timestamps) == len(log.users)


def assert_time_ordered(log: InteractionLog) -> None:
    frame = pd.DataFrame({"u": log.users, "t": log.timestamps})
    assert (frame.groupby("u", sort=False)["t"].diff().dropna() >= 0).all()


# ----------------------------------------------------------------------------------------------
# sequences.txt + items.jsonl
# ----------------------------------------------------------------------------------------------

ITEMS_JSONL = (
    '{"item_id": 1, "asin": "B01", "title": "Red lipstick", "attributes": ["Brand", "Makeup"]}\n'
    '{"item_id": 2, "asin": "B02", "title": "", "attributes": []}\n'
    '{"item_id": "007", "asin": "0123", "title": "Spy kit"}\n'
)


def test_sequences_basic(tmp_path: Path) -> None:
    write(tmp_path / "sequences.txt", "1 1 2 007\n\n  2\t2 1  \r\n10 007 007\n")
    write(tmp_path / "items.jsonl", ITEMS_JSONL)
    log = read_sequences_dir(tmp_path)
    assert_str_arrays(log)
    assert log.timestamps is None
    assert rows(log) == [
        ("1", "1", None),
        ("1", "2", None),
        ("1", "007", None),
        ("2", "2", None),
        ("2", "1", None),
        ("10", "007", None),
        ("10", "007", None),
    ]
    assert log.source == str(tmp_path)
    info = log.item_info
    assert info is not None
    assert list(info.index) == ["1", "2", "007"]
    assert "item_id" not in info.columns
    assert info.loc["1", "title"] == "Red lipstick"
    assert info.loc["1", "attributes"] == ["Brand", "Makeup"]
    # Text stays text: "0123" is not turned into the number 123.
    assert info.loc["007", "asin"] == "0123"
    assert info.loc["2", "title"] == ""
    assert pd.isna(info.loc["007", "attributes"])


def test_sequences_without_items_and_file_path(tmp_path: Path) -> None:
    seq = write(tmp_path / "sequences.txt", "a x y\nb y")
    log = read_sequences_dir(seq)
    assert log.item_info is None
    assert per_user(log) == {"a": ["x", "y"], "b": ["y"]}


def test_sequences_utf8_bom_and_unicode_ids(tmp_path: Path) -> None:
    (tmp_path / "sequences.txt").write_bytes("\ufeffü x é\n".encode())
    log = read_sequences_dir(tmp_path)
    assert rows(log) == [("ü", "x", None), ("ü", "é", None)]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("1 2 3\n\n7\n", "sequences.txt:3:", "empty history for user '7'"),
        ("1 2 3\n2 4\n1 5\n", "sequences.txt:3:", "duplicate user '1' (first seen on line 1)"),
        ("\n \n", "sequences.txt", "no user sequences"),
    ],
)
def test_sequences_errors(tmp_path: Path, text: str, where: str, what: str) -> None:
    write(tmp_path / "sequences.txt", text)
    with pytest.raises(DataFormatError) as err:
        read_sequences_dir(tmp_path)
    assert where in str(err.value) and what in str(err.value)


def test_sequences_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "sequences.txt").write_bytes(b"1 2 3\n2 3 4\n3 \xff\xfe 5\n")
    with pytest.raises(DataFormatError, match=r"sequences\.txt:3: not valid UTF-8"):
        read_sequences_dir(tmp_path)


def test_sequences_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no sequences.txt"):
        read_sequences_dir(tmp_path)


@pytest.mark.parametrize(
    ("jsonl", "where", "what"),
    [
        ('{"item_id": 1}\n{"item_id": 2, "title": "x"\n', "items.jsonl:2:", "invalid JSON"),
        ('{"item_id": 1}\n\n{"title": "x"}\n', "items.jsonl:3:", "no 'item_id' field"),
        ('{"item_id": 1}\n{"item_id": "1"}\n', "items.jsonl:2:", "duplicate item_id '1'"),
        ('{"item_id": 1}\n[1, 2]\n', "items.jsonl:2:", "expected a JSON object"),
        ('{"item_id": 1.5}\n', "items.jsonl:1:", "must be a string or integer"),
        ('{"item_id": true}\n', "items.jsonl:1:", "must be a string or integer"),
        ('{"item_id": " "}\n', "items.jsonl:1:", "empty item_id"),
    ],
)
def test_items_jsonl_errors(tmp_path: Path, jsonl: str, where: str, what: str) -> None:
    write(tmp_path / "sequences.txt", "u 1 2\n")
    write(tmp_path / "items.jsonl", jsonl)
    with pytest.raises(DataFormatError) as err:
        read_sequences_dir(tmp_path)
    assert where in str(err.value) and what in str(err.value)


def test_duplicate_item_error_names_first_line(tmp_path: Path) -> None:
    write(tmp_path / "sequences.txt", "u 1 2\n")
    write(tmp_path / "items.jsonl", '{"item_id": 5}\n{"item_id": 1}\n{"item_id": 5}\n')
    with pytest.raises(
        DataFormatError, match=r"items\.jsonl:3: duplicate item_id '5' \(first seen at .*:1\)"
    ):
        read_sequences_dir(tmp_path)


# ----------------------------------------------------------------------------------------------
# CSV / TSV / Parquet tables
# ----------------------------------------------------------------------------------------------

CSV = (
    "user_id,item_id,timestamp,rating\n"
    "007,01,30,5\nb,x,10,1\n007,02,10,3\n007,03,30,4\nb,y,5,2\n007,04,20,1\n"
)


def test_table_csv_sorts_per_user_stably(tmp_path: Path) -> None:
    log = read_table(write(tmp_path / "log.csv", CSV))
    assert_str_arrays(log)
    assert_time_ordered(log)
    # "01" and "03" share timestamp 30 and keep their file order.
    assert per_user(log) == {"007": ["02", "04", "01", "03"], "b": ["y", "x"]}
    assert sorted(rows(log)) == sorted(
        [("007", "01", 30.0), ("b", "x", 10.0), ("007", "02", 10.0), ("007", "03", 30.0)]
        + [("b", "y", 5.0), ("007", "04", 20.0)]
    )
    assert log.item_info is None
    assert log.source == str(tmp_path / "log.csv")


def test_table_keeps_id_text_verbatim(tmp_path: Path) -> None:
    # Values pandas would otherwise parse as numbers or missing values.
    text = "user_id,item_id,timestamp\n007,1.0,1\nNA,null,2\n1e3,-0,3\n"
    log = read_table(write(tmp_path / "t.csv", text))
    assert set(rows(log)) == {("007", "1.0", 1.0), ("NA", "null", 2.0), ("1e3", "-0", 3.0)}


@pytest.mark.parametrize("name", ["log.tsv", "log.txt"])
def test_table_tab_separated(tmp_path: Path, name: str) -> None:
    log = read_table(write(tmp_path / name, CSV.replace(",", "\t")))
    assert per_user(log) == {"007": ["02", "04", "01", "03"], "b": ["y", "x"]}


def test_table_sep_override_and_custom_columns(tmp_path: Path) -> None:
    text = "who;what;when\nu1;i1;2.5\nu1;i2;1.5\n"
    path = write(tmp_path / "log.dat", text)
    log = read_table(path, user_col="who", item_col="what", time_col="when", sep=";")
    assert rows(log) == [("u1", "i2", 1.5), ("u1", "i1", 2.5)]
    via_dispatch = read_dataset(
        path, format="table", user_col="who", item_col="what", time_col="when", sep=";"
    )
    assert rows(via_dispatch) == rows(log)


def test_table_without_time_keeps_file_order(tmp_path: Path) -> None:
    log = read_table(write(tmp_path / "log.csv", CSV), time_col=None)
    assert log.timestamps is None
    assert log.users.tolist() == ["007", "b", "007", "007", "b", "007"]
    assert log.items.tolist() == ["01", "x", "02", "03", "y", "04"]


def test_table_parquet_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["007", "b", "007", "b"],
            "item_id": ["01", "x", "02", "y"],
            "timestamp": [3.5, 2.0, 1.0, 2.0],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    log = read_dataset(path)
    assert_str_arrays(log)
    assert rows(log) == [("007", "02", 1.0), ("007", "01", 3.5), ("b", "x", 2.0), ("b", "y", 2.0)]
    assert Counter(rows(log)) == Counter(zip(frame.user_id, frame.item_id, frame.timestamp, strict=True))


def test_table_parquet_typed_columns(tmp_path: Path) -> None:
    # Integer ids become their decimal text; datetimes become seconds since the epoch.
    frame = pd.DataFrame(
        {
            "user_id": np.array([5, 5], dtype=np.int64),
            "item_id": np.array([10, 11], dtype=np.int32),
            "timestamp": pd.to_datetime(["1970-01-01 00:01:00", "1970-01-01 00:00:01"]),
        }
    )
    path = tmp_path / "log.pq"
    frame.to_parquet(path)
    log = read_table(path)
    assert rows(log) == [("5", "11", 1.0), ("5", "10", 60.0)]


def test_table_parquet_float_ids_rejected(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": [1.0, 2.0], "item_id": ["a", "b"], "timestamp": [1, 2]}).to_parquet(path)
    with pytest.raises(DataFormatError, match=r"log\.parquet: row 1: column 'user_id' holds float64"):
        read_table(path)


def test_table_parquet_null_id(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["a", None], "timestamp": [1, 2]}).to_parquet(path)
    with pytest.raises(DataFormatError, match=r"log\.parquet: row 2: empty column 'item_id'"):
        read_table(path)


def test_table_parquet_sep_rejected_and_corrupt(tmp_path: Path) -> None:
    path = write(tmp_path / "log.parquet", "not parquet at all")
    with pytest.raises(DataFormatError, match=r"log\.parquet: cannot read Parquet"):
        read_table(path)
    with pytest.raises(DataFormatError, match="does not apply to a Parquet"):
        read_table(path, sep=",")


def test_table_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user,item_id,timestamp\na,b,1\n")
    with pytest.raises(DataFormatError) as err:
        read_table(path)
    message = str(err.value)
    assert "log.csv" in message and "missing column 'user_id'" in message
    assert "['user', 'item_id', 'timestamp']" in message


def test_table_missing_time_column_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a"], "item_id": ["b"], "rating": [5]}).to_parquet(path)
    # The message lists every column of the file, not only the ones the reader asked for.
    with pytest.raises(
        DataFormatError, match=r"log\.parquet: missing column 'timestamp'.*\['user_id', 'item_id', 'rating'\]"
    ):
        read_table(path)
    assert read_table(path, time_col=None).users.tolist() == ["a"]


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("a,b,1\na,c,2\na,d,soon\na,e,x\n", r"row 3: column 'timestamp' is not a finite number: 'soon'"),
        ("a,b,1\na,c,NaN\n", r"row 2: column 'timestamp' is not a finite number: 'NaN'"),
        ("a,b,1\na,c,\n", r"row 2: column 'timestamp' is not a finite number: ''"),
        ("a,b,1\na,c,inf\n", r"row 2: column 'timestamp' is not a finite number: 'inf'"),
        ("a,b,1\n,c,2\n", r"row 2: empty column 'user_id'"),
        ("a,b,1\na,c,2\nb, ,3\n", r"row 3: empty column 'item_id'"),
    ],
)
def test_table_bad_values(tmp_path: Path, body: str, what: str) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n" + body)
    with pytest.raises(DataFormatError, match=r"log\.csv: " + what):
        read_table(path)


def test_table_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"log\.csv: empty file"):
        read_table(write(tmp_path / "log.csv", ""))
    with pytest.raises(DataFormatError, match=r"h\.csv: no interactions"):
        read_table(write(tmp_path / "h.csv", "user_id,item_id,timestamp\n"))
    with pytest.raises(DataFormatError, match=r"bad\.csv: .*line 3"):
        read_table(write(tmp_path / "bad.csv", "user_id,item_id,timestamp\na,b,1\na,b,1,9\n"))
    with pytest.raises(DataFormatError, match=r"log\.json: unknown table suffix"):
        read_table(write(tmp_path / "log.json", "{}"))
    (tmp_path / "latin.csv").write_bytes(b"user_id,item_id,timestamp\na,b,1\nc,caf\xe9,2\n")
    with pytest.raises(DataFormatError, match=r"latin\.csv:3: not valid UTF-8"):
        read_table(tmp_path / "latin.csv")


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "jsonl"])
def test_table_items_path(tmp_path: Path, kind: str) -> None:
    items = pd.DataFrame(
        {"iid": ["01", "02", "99"], "title": ["One", "Two", "Unused"], "year": ["1999", "", "x"]}
    )
    items_path = tmp_path / f"items.{kind}"
    if kind == "csv":
        items.to_csv(items_path, index=False)
    elif kind == "tsv":
        items.to_csv(items_path, index=False, sep="\t")
    elif kind == "parquet":
        items.to_parquet(items_path)
    else:
        write(items_path, "".join(json.dumps(r) + "\n" for r in items.to_dict("records")))
    log_path = write(tmp_path / "log.csv", "uid,iid\nu,01\nu,02\n")
    log = read_dataset(log_path, user_col="uid", item_col="iid", time_col=None, items_path=items_path)
    info = log.item_info
    assert info is not None
    assert list(info.index) == ["01", "02", "99"] and info.index.name == "item_id"
    assert list(info.columns) == ["title", "year"]
    assert info.loc["02", "title"] == "Two" and info.loc["01", "year"] == "1999"


def test_table_items_path_errors(tmp_path: Path) -> None:
    log_path = write(tmp_path / "log.csv", "user_id,item_id\nu,1\n")
    dup = write(tmp_path / "items.csv", "item_id,title\n1,a\n2,b\n1,c\n")
    with pytest.raises(
        DataFormatError, match=r"items\.csv: row 3: duplicate item_id '1' \(first seen at .*row 1\)"
    ):
        read_table(log_path, time_col=None, items_path=dup)
    nocol = write(tmp_path / "other.csv", "id,title\n1,a\n")
    with pytest.raises(DataFormatError, match=r"other\.csv: missing column 'item_id'"):
        read_table(log_path, time_col=None, items_path=nocol)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text("0123456789abcXYZ_-", min_size=1, max_size=4),
            st.text("0123456789ab", min_size=1, max_size=4),
            st.integers(min_value=-(10**12), max_value=10**12),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_table_csv_round_trip_property(data: list[tuple[str, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user_id", "item_id", "timestamp"])
            writer.writerows(data)
        log = read_table(path)
    assert_str_arrays(log)
    assert Counter(rows(log)) == Counter((u, i, float(t)) for u, i, t in data)
    # Per user: timestamps sorted, and rows with equal timestamps keep their file order.
    for user in {u for u, _, _ in data}:
        mine = [(t, i) for u, i, t in rows(log) if u == user]
        expected = sorted(((float(t), i) for u, i, t in data if u == user), key=lambda pair: pair[0])
        assert mine == expected


# ----------------------------------------------------------------------------------------------
# RecBole atomic files
# ----------------------------------------------------------------------------------------------

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "007\t1\t3\t300\n"
    "2\t1\t4\t100\n"
    "\n"
    "007\t02\t5\t100\n"
    "007\t3\t1\t300\n"
    "007\t4\t2\t200\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tscore:float\n"
    '1\t"Crocodile" Dundee\t1986\tComedy Action\t2.5\n'
    "02\tHeat\t\tCrime\t1\n"
    "3\tUnused movie\t2001\tDrama\t0\n"
)


def test_atomic_basic(tmp_path: Path) -> None:
    write(tmp_path / "mini.inter", INTER)
    write(tmp_path / "mini.item", ITEM)
    log = read_atomic(tmp_path)
    assert_str_arrays(log)
    assert_time_ordered(log)
    assert per_user(log) == {"007": ["02", "4", "1", "3"], "2": ["1"]}
    assert log.source == str(tmp_path / "mini.inter")
    info = log.item_info
    assert info is not None
    assert list(info.columns) == ["movie_title", "release_year", "class", "score"]
    assert list(info.index) == ["1", "02", "3"]
    assert info.loc["1", "movie_title"] == '"Crocodile" Dundee'
    assert info.loc["02", "release_year"] == ""
    assert info.loc["1", "class"] == "Comedy Action"
    assert info["score"].dtype == np.float64 and info.loc["1", "score"] == 2.5
    # The .inter file can be named directly, and auto-detection finds both forms.
    assert rows(read_atomic(tmp_path / "mini.inter")) == rows(log)
    assert rows(read_dataset(tmp_path)) == rows(log)
    assert rows(read_dataset(str(tmp_path / "mini.inter"))) == rows(log)


def test_atomic_without_timestamp_or_items(tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "item_id:token\tuser_id:token\nb\ta\nc\ta\nb\tz\n")
    log = read_atomic(tmp_path)
    assert log.timestamps is None and log.item_info is None
    assert rows(log) == [("a", "b", None), ("a", "c", None), ("z", "b", None)]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("user_id\titem_id:token\n1\t2\n", "x.inter:1:", "header field 'user_id' has no type"),
        ("user_id:token\titem_id:str\n1\t2\n", "x.inter:1:", "unknown type 'str'"),
        ("user_id:token\tuser_id:token\n1\t2\n", "x.inter:1:", "appears twice"),
        ("uid:token\titem_id:token\n1\t2\n", "x.inter:1:", "no user_id field"),
        ("user_id:token\trating:float\n1\t2\n", "x.inter:1:", "no item_id field"),
        ("\nuser_id:token\titem_id:token\n", "x.inter:1:", "missing header"),
        (
            "user_id:token\titem_id:token\n1\t2\n\n3\t4\t5\n",
            "x.inter:4:",
            "expected 2 tab-separated fields, found 3",
        ),
        ("user_id:token\titem_id:token\n1\t2\n3\n", "x.inter:3:", "expected 2 tab-separated fields, found 1"),
        ("user_id:token\titem_id:token\n", "x.inter", "no interactions"),
        ("user_id:token\titem_id:token\n1\t2\n\n\t4\n", "x.inter:4:", "empty user_id"),
        (
            "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n\n1\t3\tlater\n",
            "x.inter:4:",
            "timestamp is not a finite number: 'later'",
        ),
    ],
)
def test_atomic_errors(tmp_path: Path, text: str, where: str, what: str) -> None:
    write(tmp_path / "x.inter", text)
    with pytest.raises(DataFormatError) as err:
        read_atomic(tmp_path / "x.inter")
    assert where in str(err.value) and what in str(err.value)


def test_atomic_item_errors(tmp_path: Path) -> None:
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    write(tmp_path / "x.item", "item_id:token\ttitle:token_seq\n2\tA\n3\tB\n2\tC\n")
    with pytest.raises(
        DataFormatError, match=r"x\.item:4: duplicate item_id '2' \(first seen at .*x\.item:2\)"
    ):
        read_atomic(tmp_path)
    write(tmp_path / "x.item", "id:token\ttitle:token_seq\n2\tA\n")
    with pytest.raises(DataFormatError, match=r"x\.item:1: header has no item_id"):
        read_atomic(tmp_path)
    write(tmp_path / "x.item", "item_id:token\tscore:float\n2\tgood\n")
    with pytest.raises(DataFormatError, match=r"x\.item:2: score is not a finite number"):
        read_atomic(tmp_path)


def test_atomic_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no .inter file"):
        read_atomic(tmp_path)
    write(tmp_path / "a.inter", "user_id:token\titem_id:token\n1\t2\n")
    write(tmp_path / "b.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"several \.inter files \(a\.inter, b\.inter\)"):
        read_dataset(tmp_path)
    with pytest.raises(DataFormatError, match="not a RecBole .inter file"):
        read_atomic(write(tmp_path / "c.csv", "x"))


def test_atomic_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "x.inter").write_bytes(b"user_id:token\titem_id:token\n1\t2\n1\t\xc3(\n")
    with pytest.raises(DataFormatError, match=r"x\.inter:3: not valid UTF-8"):
        read_atomic(tmp_path)


# ----------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------


def test_dispatch_auto(tmp_path: Path) -> None:
    write(tmp_path / "seq" / "sequences.txt", "u a b\n")
    assert per_user(read_dataset(tmp_path / "seq")) == {"u": ["a", "b"]}
    assert per_user(read_dataset(tmp_path / "seq" / "sequences.txt")) == {"u": ["a", "b"]}
    write(tmp_path / "t.csv", CSV)
    write(tmp_path / "t.tsv", CSV.replace(",", "\t"))
    assert rows(read_dataset(tmp_path / "t.csv")) == rows(read_dataset(tmp_path / "t.tsv"))


def test_dispatch_explicit_formats(tmp_path: Path) -> None:
    write(tmp_path / "d" / "sequences.txt", "u a b\n")
    assert len(read_dataset(tmp_path / "d", format="sequences").users) == 2
    write(tmp_path / "d" / "r.inter", "user_id:token\titem_id:token\n1\t2\n")
    # Both layouts in one folder: auto prefers sequences.txt, an explicit format picks the other.
    assert read_dataset(tmp_path / "d").users.tolist() == ["u", "u"]
    assert read_dataset(tmp_path / "d", format="atomic").users.tolist() == ["1"]
    # format="table" reads suffixes auto-detection leaves alone (.txt means tab-separated).
    write(tmp_path / "log.txt", "user_id\titem_id\n1\t2\n")
    assert read_dataset(tmp_path / "log.txt", format="table", time_col=None).items.tolist() == ["2"]


def test_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file or directory: .*nope"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(
        DataFormatError, match=r"data\.json: cannot tell the dataset format; supported: .*sequences"
    ):
        read_dataset(write(tmp_path / "data.json", "{}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataFormatError, match=r"empty: cannot tell the dataset format; supported: .*\.parquet"
    ):
        read_dataset(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="unknown dataset format 'xml'"):
        read_dataset(tmp_path, format="xml")
    write(tmp_path / "s" / "sequences.txt", "u a\n")
    with pytest.raises(TypeError, match="only apply to format='table'"):
        read_dataset(tmp_path / "s", user_col="uid")


# ----------------------------------------------------------------------------------------------
# Real data (skipped when the shared data folder is absent)
# ----------------------------------------------------------------------------------------------


def real(name: str) -> Path:
    path = REAL_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset folder {path} is absent")
    return path


def test_real_beauty() -> None:
    log = read_dataset(real("beauty"))
    assert_str_arrays(log)
    assert len(log.users) == 198_502
    assert len(set(log.users)) == 22_363
    assert len(set(log.items)) == 12_101
    assert log.timestamps is None
    info = log.item_info
    assert info is not None and len(info) == 12_101 and "title" in info.columns
    assert set(log.items) <= set(info.index)
    # Each user's rows are contiguous, in the order of their line.
    first_line = (REAL_DATA / "beauty" / "sequences.txt").read_text().split("\n", 1)[0].split()
    assert per_user(log)[first_line[0]] == first_line[1:]


def test_real_ml100k() -> None:
    log = read_dataset(real("ml-100k"))
    assert_str_arrays(log)
    assert len(log.users) == 100_000
    assert len(set(log.users)) == 943
    assert len(set(log.items)) == 1_682
    assert_time_ordered(log)
    info = log.item_info
    assert info is not None and len(info) == 1_682
    assert {"movie_title", "release_year", "class"} <= set(info.columns)
    assert info.loc["1", "movie_title"] == "Toy Story"
