"""The item catalog: merging duplicates, concept look-ups, CSV and Arrow round trips, errors."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import knowtrace.events.catalog as catalog_module
from knowtrace.events.catalog import ITEM_CSV_COLUMNS, Item, ItemCatalog, item_schema
from knowtrace.exceptions import InputError, UnreadableFileError


def make_item(item_id: str = "q1", **overrides: Any) -> Item:
    return Item(item_id=item_id, **overrides)


def sample_catalog() -> ItemCatalog:
    return ItemCatalog(
        [
            make_item(
                "q1",
                concept_ids=["add", "carry"],
                name="Sum, with carry",
                a=1.2,
                b=-0.5,
                c=0.2,
                metadata={"grade": "3", "source": "book"},
            ),
            make_item("q2", concept_ids=["add"], b=0.1),
            make_item("q 3;x", concept_ids=["sub"], name='say "hi"\nnew line', metadata={"grade": "4"}),
            make_item("q4"),
        ]
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_docstrings_run() -> None:
    assert doctest.testmod(catalog_module).failed == 0


# --------------------------------------------------------------------------- mapping


def test_mapping_interface() -> None:
    catalog = sample_catalog()
    assert len(catalog) == 4
    assert list(catalog) == ["q1", "q2", "q 3;x", "q4"]
    assert "q2" in catalog and "q9" not in catalog and 3 not in catalog
    assert catalog["q2"].b == 0.1
    assert catalog.get("q9") is None
    assert catalog.get("q4") == make_item("q4")
    with pytest.raises(KeyError):
        catalog["q9"]
    assert catalog.tenant == "default"


def test_concept_lookups() -> None:
    catalog = sample_catalog()
    assert catalog.concepts_of("q1") == ("add", "carry")
    assert catalog.concepts_of("q4") == ()
    assert catalog.concepts_of("unknown") == ()
    assert catalog.items_of("add") == ["q1", "q2"]
    assert catalog.items_of("sub") == ["q 3;x"]
    assert catalog.items_of("unknown") == []
    catalog.items_of("add").append("zzz")
    assert catalog.items_of("add") == ["q1", "q2"]


def test_duplicates_merge() -> None:
    catalog = ItemCatalog(
        [
            make_item("q1", concept_ids=["add"], a=1.0, metadata={"grade": "3"}),
            make_item("q2", concept_ids=["add"]),
            make_item("q1", concept_ids=["carry", "add"], b=0.5, name="Sum", metadata={"grade": "9", "src": "x"}),
            make_item("q1", a=1.0, c=0.25),
        ]
    )
    q1 = catalog["q1"]
    assert q1.concept_ids == ("add", "carry")
    assert (q1.a, q1.b, q1.c, q1.name) == (1.0, 0.5, 0.25, "Sum")
    assert q1.metadata == {"grade": "3", "src": "x"}  # first value wins
    assert list(catalog) == ["q1", "q2"]
    assert catalog.items_of("carry") == ["q1"]
    assert catalog.items_of("add") == ["q1", "q2"]


@pytest.mark.parametrize("parameter", ["a", "b", "c"])
def test_conflicting_irt_parameter_names_the_item(parameter: str) -> None:
    first = make_item("q7", **{parameter: 0.1})
    second = make_item("q7", **{parameter: 0.2})
    with pytest.raises(InputError) as info:
        ItemCatalog([first, second])
    assert info.value.field == parameter
    assert "'q7'" in str(info.value)


def test_one_tenant_per_catalog() -> None:
    assert ItemCatalog([make_item(tenant="t1")]).tenant == "t1"
    assert ItemCatalog(tenant="t2").tenant == "t2"
    with pytest.raises(InputError, match="tenant 't2'"):
        ItemCatalog([make_item("q1", tenant="t1"), make_item("q2", tenant="t2")])
    with pytest.raises(InputError) as info:
        ItemCatalog([make_item("q1")], tenant="t1")
    assert info.value.field == "tenant"


def test_add_after_construction() -> None:
    catalog = ItemCatalog()
    catalog.add(make_item("q1", concept_ids=["x"]))
    catalog.add(make_item("q1", concept_ids=["y"]))
    assert catalog.concepts_of("q1") == ("x", "y")
    assert catalog.items_of("y") == ["q1"]


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path: Path) -> None:
    catalog = sample_catalog()
    path = tmp_path / "items.csv"
    catalog.to_csv(path)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join([*ITEM_CSV_COLUMNS, "grade", "source"])
    back = ItemCatalog.from_csv(path)
    assert back == catalog
    assert list(back) == list(catalog)


def test_csv_round_trip_keeps_floats_exactly(tmp_path: Path) -> None:
    catalog = ItemCatalog([make_item("q1", a=0.1 + 0.2, b=-1e-17, c=1 / 3)])
    catalog.to_csv(tmp_path / "items.csv")
    assert ItemCatalog.from_csv(tmp_path / "items.csv")["q1"] == catalog["q1"]


def test_from_csv_reads_a_hand_written_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "\ufeffitem_id, concept_ids ,b,topic\n"
        "q1, add ; carry ;,0.5,sums\n"
        "\n"
        "q2,,,\n"
        "q1,sub,,\n",
    )
    catalog = ItemCatalog.from_csv(path, tenant="school-7")
    assert catalog.tenant == "school-7"
    assert catalog["q1"] == Item(
        item_id="q1", tenant="school-7", concept_ids=["add", "carry", "sub"], b=0.5, metadata={"topic": "sums"}
    )
    assert catalog["q2"] == Item(item_id="q2", tenant="school-7")


BAD_CSV = {
    "not a number": ("item_id,a\nq1,1.0\nq2,high\n", 3, "a"),
    "guessing out of range": ("item_id,c\nq1,1.5\n", 2, "c"),
    "nan difficulty": ("item_id,b\nq1,nan\n", 2, "b"),
    "empty item id": ("item_id,name\nq1,x\n ,y\n", 3, "item_id"),
    "too many cells": ("item_id,name\nq1,x,y\n", 2, None),
    "too few cells": ("item_id,name,b\nq1,x\n", 2, None),
    "conflicting duplicate": ("item_id,b\nq1,0.5\nq2,1\nq1,0.7\n", 4, "b"),
    "no item_id column": ("id,name\nq1,x\n", 1, "item_id"),
    "column twice": ("item_id,name,name\nq1,x,y\n", 1, "name"),
    "unnamed column": ("item_id,,b\nq1,x,1\n", 1, None),
    "line after a multi-line cell": ('item_id,name\nq1,"two\nlines"\nq2,ok\n"q3,bad\n', 5, None),
}


@pytest.mark.parametrize(("text", "line", "field"), BAD_CSV.values(), ids=BAD_CSV.keys())
def test_bad_csv_names_file_line_and_field(tmp_path: Path, text: str, line: int, field: str | None) -> None:
    path = write(tmp_path / "items.csv", text)
    with pytest.raises(InputError) as info:
        ItemCatalog.from_csv(path)
    error = info.value
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert str(error).startswith(f"{path}, line {line}")


def test_multi_line_cell_rows_are_numbered_from_their_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", 'item_id,name,b\nq1,"two\nlines",1\nq2,ok,x\n')
    with pytest.raises(InputError) as info:
        ItemCatalog.from_csv(path)
    assert (info.value.line, info.value.field) == (4, "b")


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"", "empty"), (b"\n\n", "empty"), (b"item_id\n\xff\xfe\n", "UTF-8")],
)
def test_unreadable_csv(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "items.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=reason) as info:
        ItemCatalog.from_csv(path)
    assert info.value.file == str(path)


def test_folder_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="folder"):
        ItemCatalog.from_csv(tmp_path)


def test_header_only_csv_is_an_empty_catalog(tmp_path: Path) -> None:
    assert len(ItemCatalog.from_csv(write(tmp_path / "items.csv", "item_id,concept_ids\n"))) == 0


def test_to_csv_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'name'"):
        ItemCatalog([make_item(metadata={"name": "x"})]).to_csv(tmp_path / "a.csv")
    with pytest.raises(InputError) as info:
        ItemCatalog([make_item(concept_ids=["a;b"])]).to_csv(tmp_path / "b.csv")
    assert info.value.field == "concept_ids"
    assert not (tmp_path / "b.csv").exists()


# --------------------------------------------------------------------------- Arrow


def test_arrow_round_trip() -> None:
    catalog = sample_catalog()
    table = catalog.to_arrow()
    assert table.schema.equals(item_schema())
    assert table.column_names == ["tenant", "item_id", "concept_ids", "name", "a", "b", "c", "metadata"]
    assert table.column("concept_ids").type == pa.list_(pa.string())
    row = table.to_pylist()[0]
    assert row["concept_ids"] == ["add", "carry"]
    assert json.loads(row["metadata"]) == {"grade": "3", "source": "book"}
    assert table.to_pylist()[3]["metadata"] == "{}"
    back = ItemCatalog.from_arrow(table)
    assert back == catalog
    assert list(back) == list(catalog)


def test_arrow_round_trip_keeps_the_tenant() -> None:
    catalog = ItemCatalog([make_item("q1", tenant="t1", concept_ids=["x"])])
    back = ItemCatalog.from_arrow(catalog.to_arrow())
    assert back.tenant == "t1"
    assert back["q1"].tenant == "t1"


def test_from_arrow_with_only_item_ids() -> None:
    catalog = ItemCatalog.from_arrow(pa.table({"item_id": ["q1", "q2"]}), tenant="t9")
    assert list(catalog) == ["q1", "q2"]
    assert catalog["q2"] == Item(item_id="q2", tenant="t9")


@pytest.mark.parametrize(
    ("columns", "field", "row"),
    [
        ({"name": ["x"]}, "item_id", None),
        ({"item_id": ["q1", ""]}, "item_id", 2),
        ({"item_id": ["q1"], "metadata": ["{not json"]}, "metadata", 1),
        ({"item_id": ["q1"], "metadata": ['{"k": 1}']}, "metadata.k", 1),
        ({"item_id": ["q1"], "c": [1.0]}, "c", 1),
        ({"item_id": ["q1", "q1"], "a": [1.0, 2.0]}, "a", 2),
        ({"item_id": ["q1", "q2"], "tenant": ["t1", "t2"]}, "tenant", 2),
    ],
)
def test_from_arrow_errors(columns: dict[str, list[Any]], field: str, row: int | None) -> None:
    with pytest.raises(InputError) as info:
        ItemCatalog.from_arrow(pa.table(columns))
    assert info.value.field == field
    if row is not None:
        assert info.value.reason.startswith(f"row {row}:")
