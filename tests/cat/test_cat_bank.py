"""Item bank: CSV import/export, validation errors naming item and field, vectorised response model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowtrace.cat import ItemBank, ItemBankError
from knowtrace.exceptions import InputError, KnowtraceError

HEADER = "item_id,a,b,c,d,concepts,content_area,enemies,exposure_limit\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "bank.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_csv_reads_lists_and_makes_enemies_symmetric(tmp_path: Path) -> None:
    path = write(tmp_path, "q1,1.2,-0.5,0,1,fractions;decimals,number,q3,0.3\n"
                           "q2,0.8,0.1,0.2,,decimals,number,,\n"
                           "q3,1.5,1.0,,,,algebra,,\n")
    bank = ItemBank.from_csv(path)
    assert bank.item_ids == ("q1", "q2", "q3")
    assert bank.concepts == (("fractions", "decimals"), ("decimals",), ())
    assert bank.content_areas == ("number", "number", "algebra")
    assert bank.enemies == (("q3",), (), ("q1",))
    assert bank.exposure_limits.tolist() == [0.3, 1.0, 1.0]
    assert bank.c.tolist() == [0.0, 0.2, 0.0] and bank.d.tolist() == [1.0, 1.0, 1.0]
    assert bank.model == "3pl"
    assert bank.concept_ids == ("decimals", "fractions")
    assert bank.concept_matrix.sum(axis=1).tolist() == [2, 1]


def test_minimal_columns_and_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, "x,1,0\ny,2,1\n", header="Item,A,B\n")
    bank = ItemBank.from_csv(path)
    assert len(bank) == 2 and bank.model == "2pl"


def test_csv_round_trip_keeps_fingerprint(tmp_path: Path) -> None:
    bank = ItemBank.generate(40, model="3pl", seed=3, concepts=3, content_areas=2)
    again = ItemBank.from_csv(bank.to_csv(tmp_path / "out.csv"))
    assert again.fingerprint == bank.fingerprint
    assert np.array_equal(again.c, bank.c) and again.concepts == bank.concepts


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("q2,-0.5,0,,,,,,", "a", ["'q2'", "discrimination"]),
        ("q2,0,0,,,,,,", "a", ["'q2'", "> 0"]),
        ("q2,1,0,1.0,,,,,", "c", ["'q2'", "[0, 1)"]),
        ("q2,1,0,-0.1,,,,,", "c", ["'q2'", "guessing"]),
        ("q2,1,nan,,,,,,", "b", ["'q2'", "NaN"]),
        ("q2,1,zero,,,,,,", "b", ["'q2'", "not a number"]),
        ("q2,1,,,,,,,", "b", ["'q2'", "empty"]),
        ("q2,1,0,0.3,0.2,,,,", "d", ["'q2'", "upper asymptote"]),
        ("q2,1,0,,,,,q9,", "enemies", ["'q2'", "'q9'"]),
        ("q2,1,0,,,,,,0", "exposure_limit", ["'q2'", "(0, 1]"]),
        ("q1,1,0,,,,,,", "item_id", ["duplicate", "'q1'", "line 2"]),
    ],
)
def test_bad_bank_names_item_field_and_line(tmp_path: Path, row: str, field: str, words: list[str]) -> None:
    path = write(tmp_path, "q1,1.0,0.0,,,,,,\n" + row + "\n")
    with pytest.raises(ItemBankError) as info:
        ItemBank.from_csv(path)
    error = info.value
    assert isinstance(error, InputError) and isinstance(error, KnowtraceError)
    assert error.field == field and error.line == 3 and error.file == str(path)
    for word in words:
        assert word in str(error)


def test_missing_column_and_empty_bank(tmp_path: Path) -> None:
    with pytest.raises(ItemBankError, match="missing column 'b'"):
        ItemBank.from_csv(write(tmp_path, "q1,1\n", header="item_id,a\n"))
    with pytest.raises(ItemBankError, match="no items"):
        ItemBank.from_csv(write(tmp_path, ""))
    with pytest.raises(InputError, match="cannot open"):
        ItemBank.from_csv(tmp_path / "absent.csv")


def test_constructor_validates_too() -> None:
    with pytest.raises(ItemBankError, match="duplicate item_id 'a'"):
        ItemBank(["a", "b", "a"], a=[1, 1, 1], b=[0, 0, 0])
    with pytest.raises(ItemBankError, match="'b': a is nan"):
        ItemBank(["a", "b"], a=[1, float("nan")], b=[0, 0])
    with pytest.raises(ItemBankError, match="lists itself"):
        ItemBank(["a", "b"], a=[1, 1], b=[0, 0], enemies=[["a"], []])


def test_generator_is_deterministic_and_follows_its_distributions() -> None:
    one = ItemBank.generate(2000, model="3pl", seed=5)
    assert one.fingerprint == ItemBank.generate(2000, model="3pl", seed=5).fingerprint
    assert one.fingerprint != ItemBank.generate(2000, model="3pl", seed=6).fingerprint
    assert abs(np.log(one.a).std() - 0.25) < 0.02 and abs(one.b.mean()) < 0.1
    assert one.c.min() >= 0.1 and one.c.max() <= 0.25
    uniform = ItemBank.generate(2000, a_dist="uniform", seed=5)
    assert uniform.a.min() >= 0.5 and uniform.a.max() <= 2.0 and uniform.model == "2pl"


@pytest.mark.parametrize("model", ["2pl", "3pl", "4pl"])
def total_information_is_fisher_information_of_the_response_function(model: str) -> None:
    rng = np.random.default_rng(0)
    n = 30
    c = rng.uniform(0.1, 0.3, n) if model != "2pl" else None
    d = rng.uniform(0.9, 0.99, n) if model == "4pl" else None
    bank = ItemBank([f"i{k}" for k in range(n)], rng.uniform(0.5, 2, n), rng.normal(0, 1, n), c, d)
    assert bank.model == model
    for theta in (-2.0, 0.3, 1.7):
        h = 1e-5
        p = bank.probability(theta)
        slope = (bank.probability(theta + h) - bank.probability(theta - h)) / (2 * h)
        np.testing.assert_allclose(bank.information(theta), slope ** 2 / (p * (1 - p)), rtol=1e-6)
        for item in (0, 7):
            for answer in (0, 1):
                expected = np.log(np.where(answer, p[item], 1 - p[item]))
                got = bank.item_log_likelihood(item, answer, np.array([theta]))
                np.testing.assert_allclose(got, [expected], rtol=1e-12)


def test_bank_calibrated_from_the_lake(lake) -> None:  # type: ignore[no-untyped-def]
    from knowtrace.simulate import ClassroomSimulator

    lake.load(ClassroomSimulator(tenant="sim", learners=150, items=30, weeks=2, seed=2), None)
    bank = ItemBank.from_lake(lake, "2pl", tenant="sim", prior_b_sd=3.0)
    stats = lake.query("SELECT item_id, avg(correct::DOUBLE) AS p, min(concept_ids[1]) AS concept "
                       "FROM interactions WHERE tenant = 'sim' GROUP BY item_id").to_pylist()
    by_item = {row["item_id"]: row for row in stats}
    assert set(bank.item_ids) <= set(by_item) and len(bank) >= 25
    assert bank.model == "2pl" and np.all(bank.a > 0)
    p = np.array([by_item[i]["p"] for i in bank.item_ids])
    assert np.corrcoef(bank.b, p)[0, 1] < -0.8            # harder items are answered right less often
    for item_id, concepts in zip(bank.item_ids, bank.concepts):
        assert by_item[item_id]["concept"] in concepts
    with pytest.raises(ItemBankError, match="no answers for tenant 'nobody'"):
        ItemBank.from_lake(lake, tenant="nobody")
