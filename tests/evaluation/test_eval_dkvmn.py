"""The fixed DKVMN splits: files found by fold, options detected from the folder, train/valid/test kept apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest

from knowtrace.evaluation import evaluate_dkvmn, read_dkvmn_split
from knowtrace.evaluation.dkvmn_split import dkvmn_files, dkvmn_options
from knowtrace.exceptions import InputError


def test_synthetic_split_is_read_and_evaluated(dkvmn_folder: Path) -> None:
    split = read_dkvmn_split(dkvmn_folder)
    assert (split.name, split.fold, split.ids_are, split.concept_map) == ("toy", 1, "items", None)
    lines = {k: (dkvmn_folder / f"toy_{k}.csv").read_text().splitlines() for k in ("train1", "valid1", "test")}
    for table, key in ((split.train, "train1"), (split.valid, "valid1"), (split.test, "test")):
        assert table.num_rows == sum(int(n) for n in lines[key][0::3])
        assert pc.count_distinct(table.column("learner_id")).as_py() == len(lines[key]) // 3
    first = split.train.filter(pc.equal(split.train.column("learner_id"), "toy_train1:1"))
    assert first.column("item_id").to_pylist() == lines["train1"][1].split(",")
    assert first.column("correct").to_pylist() == [int(a) for a in lines["train1"][2].split(",")]
    evaluation = evaluate_dkvmn(["global_rate", "item_rate"], split)
    for row in evaluation.results:
        assert (row["split"], row["dataset"], row["fold"]) == ("dkvmn", "toy", 1)
        assert (row["n_train"], row["n_valid"], row["n_test"]) == (split.train.num_rows, split.valid.num_rows,
                                                                  split.test.num_rows)
        assert row["per_concept"] == []  # item ids without a concept map carry no concepts
    assert evaluation.results[1]["auc"] > 0.6  # low ids are easier in the synthetic data


def test_fold_and_concept_map_options(tmp_path: Path, dkvmn_writer: Callable[..., None]) -> None:
    folder = tmp_path / "mapped"
    dkvmn_writer(folder, "mapped", items=4)
    (folder / "Qmatrix.csv").write_text("1,0,0\n1,0,0\n0,1,0\n1,1,0\n")
    split = read_dkvmn_split(folder, fold=2)
    assert split.fold == 2 and split.concept_map == folder / "Qmatrix.csv"
    tagged = dict(zip(split.test.column("item_id").to_pylist(), split.test.column("concept_ids").to_pylist()))
    assert tagged["1"] == ["1"] and tagged["3"] == ["2"] and tagged["4"] == ["1", "2"]
    as_concepts = read_dkvmn_split(folder, ids_are="concepts")
    assert as_concepts.concept_map is None
    assert as_concepts.test.column("concept_ids").to_pylist()[0] == [as_concepts.test.column("item_id")[0].as_py()]


def test_detected_defaults(tmp_path: Path) -> None:
    assist = tmp_path / "assist2009_updated"
    assist.mkdir()
    assert dkvmn_options(assist) == ("concepts", None)
    assert dkvmn_options(assist, "items") == ("items", None)
    assert dkvmn_options(tmp_path) == ("items", None)
    (tmp_path / "Qmatrix.csv").write_text("1\n")
    assert dkvmn_options(tmp_path) == ("items", tmp_path / "Qmatrix.csv")
    with pytest.raises(InputError, match="cannot be used when the ids are concepts"):
        dkvmn_options(tmp_path, "concepts", tmp_path / "Qmatrix.csv")


def test_missing_files_and_bad_records(tmp_path: Path, dkvmn_writer: Callable[..., None]) -> None:
    with pytest.raises(InputError, match="no \\*_train1.csv"):
        dkvmn_files(tmp_path)
    dkvmn_writer(tmp_path / "d", "d")
    with pytest.raises(InputError, match="no \\*_train3.csv.*d_train1.csv"):
        dkvmn_files(tmp_path / "d", 3)
    (tmp_path / "d" / "d_valid2.csv").unlink()
    with pytest.raises(InputError, match="needs d_valid2.csv"):
        dkvmn_files(tmp_path / "d", 2)
    (tmp_path / "d" / "d_test.csv").write_text("2\n1,2\n1,x\n")
    with pytest.raises(InputError, match="d_test.csv, line 3, field 'answers': record 1"):
        read_dkvmn_split(tmp_path / "d")


@pytest.mark.realdata
@pytest.mark.slow
def test_assist2009_fold1(shared_data: Path) -> None:
    split = read_dkvmn_split(shared_data / "assist2009_updated")
    assert split.ids_are == "concepts"
    # sizes from the folder's PROVENANCE.md
    assert (split.train.num_rows, split.valid.num_rows, split.test.num_rows) == (176684, 47534, 101419)
    evaluation = evaluate_dkvmn(["global_rate", "item_rate", "elo"], split)
    by_model = {r["model"]: r for r in evaluation.results}
    assert by_model["elo"]["auc"] > by_model["item_rate"]["auc"] > 0.55
    assert len(by_model["elo"]["per_concept"]) == 109  # distinct skill ids of the test file
    assert sum(c["n"] for c in by_model["elo"]["per_concept"]) == 101419  # one skill per answer


@pytest.mark.realdata
def test_statics_options_detected(shared_data: Path) -> None:
    folder = shared_data / "STATICS"
    assert dkvmn_options(folder) == ("items", folder / "Qmatrix.csv")
    assert dkvmn_files(folder)[0] == "STATICS"
