"""The concept prerequisite graph: cycles, levels back, order, CSV and Arrow round trips."""

from __future__ import annotations

import doctest
from pathlib import Path

import pyarrow as pa
import pytest

import knowtrace.events.concept_graph as graph_module
from knowtrace.events.catalog import Concept
from knowtrace.events.concept_graph import ConceptGraph, concept_schema
from knowtrace.exceptions import ConceptCycleError, InputError, UnreadableFileError


def diamond() -> ConceptGraph:
    """top needs left and right, both need base; base needs root."""
    return ConceptGraph(
        [
            Concept(concept_id="top", name="Top", prerequisites=["right", "left"]),
            Concept(concept_id="left", prerequisites=["base"]),
            Concept(concept_id="right", prerequisites=["base"]),
            Concept(concept_id="base", name="Base", prerequisites=["root"]),
        ]
    )


def chain(n: int) -> ConceptGraph:
    """c0 <- c1 <- ... <- c{n-1}: each concept needs the one before it."""
    return ConceptGraph.from_edges([(f"c{i}", f"c{i - 1}") for i in range(1, n)])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_docstrings_run() -> None:
    assert doctest.testmod(graph_module).failed == 0


# --------------------------------------------------------------------------- cycles


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([("a", "a")], ["a", "a"]),
        ([("x", "y"), ("b", "b")], ["b", "b"]),
        ([("a", "b"), ("b", "a")], ["a", "b", "a"]),
        ([("b", "a"), ("a", "b")], ["a", "b", "a"]),
        ([("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c", "a"]),
        ([("c", "a"), ("b", "c"), ("a", "b")], ["a", "b", "c", "a"]),
        ([("b", "c"), ("c", "d"), ("d", "b"), ("a", "b")], ["b", "c", "d", "b"]),
        ([("z", "m"), ("m", "q"), ("q", "z"), ("q", "ok")], ["m", "q", "z", "m"]),
        ([("a", "z"), ("z", "y"), ("y", "z")], ["y", "z", "y"]),
    ],
)
def test_cycle_is_named_in_order(edges: list[tuple[str, str]], cycle: list[str]) -> None:
    with pytest.raises(ConceptCycleError) as info:
        ConceptGraph.from_edges(edges)
    assert info.value.cycle == cycle
    assert str(info.value) == "prerequisite cycle: " + " -> ".join(cycle)


def test_cycle_through_concepts() -> None:
    concepts = [
        Concept(concept_id="fractions", prerequisites=["division"]),
        Concept(concept_id="division", prerequisites=["multiplication"]),
        Concept(concept_id="multiplication", prerequisites=["fractions", "addition"]),
    ]
    with pytest.raises(ConceptCycleError) as info:
        ConceptGraph(concepts)
    assert info.value.cycle == ["division", "multiplication", "fractions", "division"]


def test_same_cycle_whatever_the_declaration_order() -> None:
    edges = [("p", "q"), ("q", "r"), ("r", "p"), ("r", "s"), ("s", "t")]
    found = set()
    for shift in range(len(edges)):
        with pytest.raises(ConceptCycleError) as info:
            ConceptGraph.from_edges(edges[shift:] + edges[:shift])
        found.add(tuple(info.value.cycle))
    assert found == {("p", "q", "r", "p")}


def test_diamond_is_not_a_cycle() -> None:
    assert len(diamond()) == 5


def test_long_chain_has_no_recursion_limit() -> None:
    graph = chain(5000)
    assert graph.topological_order() == tuple(f"c{i}" for i in range(5000))
    assert len(graph.ancestors("c4999")) == 4999
    with pytest.raises(ConceptCycleError) as info:
        ConceptGraph.from_edges([(f"c{i}", f"c{i - 1}") for i in range(1, 3000)] + [("c0", "c2999")])
    assert len(info.value.cycle) == 3001


# --------------------------------------------------------------------------- queries


def test_prerequisites_and_successors() -> None:
    graph = diamond()
    assert graph.prerequisites("top") == ("right", "left")  # declared order
    assert graph.prerequisites("base") == ("root",)
    assert graph.prerequisites("root") == ()
    assert graph.successors("base") == ("left", "right")
    assert graph.successors("top") == ()
    assert graph.name("top") == "Top" and graph.name("left") is None
    assert list(graph.edges()) == [
        ("base", "root"),
        ("left", "base"),
        ("right", "base"),
        ("top", "right"),
        ("top", "left"),
    ]


def test_unknown_concepts_have_nothing() -> None:
    graph = diamond()
    assert "nowhere" not in graph
    assert graph.prerequisites("nowhere") == ()
    assert graph.successors("nowhere") == ()
    assert graph.ancestors("nowhere") == ()
    assert graph.levels_back("nowhere", 1) == ()
    assert graph.name("nowhere") is None


def test_concepts_include_undeclared_prerequisites() -> None:
    graph = diamond()
    assert graph.concepts == ("base", "left", "right", "root", "top")
    assert "root" in graph and list(graph) == list(graph.concepts)


def test_ancestors_with_depth() -> None:
    graph = diamond()
    assert graph.ancestors("top") == ("left", "right", "base", "root")
    assert graph.ancestors("top", depth=None) == ("left", "right", "base", "root")
    assert graph.ancestors("top", depth=0) == ()
    assert graph.ancestors("top", depth=1) == ("left", "right")
    assert graph.ancestors("top", depth=2) == ("left", "right", "base")
    assert graph.ancestors("top", depth=3) == ("left", "right", "base", "root")
    assert graph.ancestors("top", depth=10) == ("left", "right", "base", "root")
    assert graph.ancestors("left", depth=1) == ("base",)
    assert graph.ancestors("root") == ()
    with pytest.raises(InputError) as info:
        graph.ancestors("top", depth=-1)
    assert info.value.field == "depth"


def test_levels_back() -> None:
    graph = diamond()
    assert graph.levels_back("top", 1) == ("left", "right")
    assert graph.levels_back("top", 2) == ("base",)  # reached twice, listed once
    assert graph.levels_back("top", 3) == ("root",)
    assert graph.levels_back("top", 4) == ()
    assert graph.levels_back("base", 1) == ("root",)
    for k in (0, -1):
        with pytest.raises(InputError):
            graph.levels_back("top", k)


def test_levels_back_uses_the_shortest_path() -> None:
    # d needs b and a; b needs a: a is one level back, not two.
    graph = ConceptGraph.from_edges([("d", "b"), ("d", "a"), ("b", "a"), ("a", "z")])
    assert graph.levels_back("d", 1) == ("a", "b")
    assert graph.levels_back("d", 2) == ("z",)
    assert graph.ancestors("d", depth=1) == ("a", "b")


def test_topological_order_is_deterministic() -> None:
    graph = diamond()
    assert graph.topological_order() == ("root", "base", "left", "right", "top")
    edges = [("b", "a"), ("c", "a"), ("e", "d"), ("b", "d")]
    for ordered in (edges, edges[::-1]):
        order = ConceptGraph.from_edges(ordered).topological_order()
        assert order == ("a", "c", "d", "b", "e")
    independent = ConceptGraph([Concept(concept_id=c) for c in "zyx"])
    assert independent.topological_order() == ("x", "y", "z")


def test_topological_order_puts_prerequisites_first() -> None:
    graph = chain(30)
    order = graph.topological_order()
    position = {c: i for i, c in enumerate(order)}
    assert all(position[p] < position[c] for c, p in graph.edges())
    assert sorted(order) == sorted(graph.concepts)


def test_duplicate_concepts_merge() -> None:
    graph = ConceptGraph(
        [
            Concept(concept_id="a", prerequisites=["b"]),
            Concept(concept_id="a", name="A", prerequisites=["c", "b"]),
            Concept(concept_id="a", name="Other"),
        ],
        edges=[("a", "d"), ("a", "b")],
    )
    assert graph.prerequisites("a") == ("b", "c", "d")
    assert graph.name("a") == "A"


def test_empty_graph() -> None:
    graph = ConceptGraph()
    assert len(graph) == 0 and graph.topological_order() == () and graph.tenant == "default"


def test_one_tenant_per_graph() -> None:
    assert ConceptGraph([Concept(concept_id="a", tenant="t1")]).tenant == "t1"
    assert ConceptGraph.from_edges([("a", "b")], tenant="t1").to_concepts()[0].tenant == "t1"
    with pytest.raises(InputError) as info:
        ConceptGraph([Concept(concept_id="a", tenant="t1"), Concept(concept_id="b", tenant="t2")])
    assert info.value.field == "tenant"


@pytest.mark.parametrize("edge", [("a", ""), ("a", " "), ("a", None), ("", "b"), ("a",), ("a", "b", "c"), "ab c"])
def test_bad_edges(edge: object) -> None:
    with pytest.raises(InputError) as info:
        ConceptGraph.from_edges([("x", "y"), edge])  # type: ignore[list-item]
    assert info.value.field == "edges"
    assert "edge 2" in info.value.reason


def test_to_concepts_and_equality() -> None:
    graph = diamond()
    concepts = graph.to_concepts()
    assert [c.concept_id for c in concepts] == ["base", "left", "right", "root", "top"]
    assert concepts[-1] == Concept(concept_id="top", name="Top", prerequisites=["right", "left"])
    assert ConceptGraph(concepts) == graph
    assert ConceptGraph(concepts[:-1]) != graph
    assert graph != "graph"


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path: Path) -> None:
    graph = diamond()
    graph.to_csv(tmp_path / "concepts.csv")
    assert (tmp_path / "concepts.csv").read_text(encoding="utf-8").splitlines() == [
        "concept_id,name,prerequisites",
        "base,Base,root",
        "left,,base",
        "right,,base",
        "root,,",
        "top,Top,right;left",
    ]
    back = ConceptGraph.from_csv(tmp_path / "concepts.csv")
    assert back == graph
    assert back.prerequisites("top") == ("right", "left")


def test_edge_list_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path / "edges.csv",
        "concept_id,prerequisite_id\nfractions,division\n\ndivision, multiplication\nfractions,division\ngeometry,\n",
    )
    graph = ConceptGraph.from_csv(path, tenant="school-7")
    assert graph.tenant == "school-7"
    assert graph.concepts == ("division", "fractions", "geometry", "multiplication")
    assert graph.levels_back("fractions", 2) == ("multiplication",)
    assert graph.prerequisites("geometry") == ()


def test_concept_csv_without_name_column(tmp_path: Path) -> None:
    graph = ConceptGraph.from_csv(write(tmp_path / "c.csv", "prerequisites,concept_id\n a ; b ,c\n,a\n"))
    assert graph.prerequisites("c") == ("a", "b")


def test_cycle_in_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "edges.csv", "concept_id,prerequisite_id\na,b\nb,c\nc,a\n")
    with pytest.raises(ConceptCycleError) as info:
        ConceptGraph.from_csv(path)
    assert info.value.cycle == ["a", "b", "c", "a"]


BAD_CSV = {
    "empty concept": ("concept_id,prerequisite_id\na,b\n ,c\n", 3, "concept_id"),
    "too many cells": ("concept_id,prerequisite_id\na,b\nb,c,d\n", 3, None),
    "too few cells": ("concept_id,name,prerequisites\na,A\n", 2, None),
    "no concept_id": ("concept,prerequisite_id\na,b\n", 1, "concept_id"),
    "unknown column": ("concept_id,prerequisite_id,weight\na,b,1\n", 1, "weight"),
    "mixed layouts": ("concept_id,prerequisite_id,prerequisites\na,b,c\n", 1, "prerequisites"),
    "column twice": ("concept_id,concept_id\na,b\n", 1, "concept_id"),
    "bad quoting": ('concept_id,prerequisite_id\na,b\n"b,c\n', 3, None),
}


@pytest.mark.parametrize(("text", "line", "field"), BAD_CSV.values(), ids=BAD_CSV.keys())
def test_bad_csv_names_file_line_and_field(tmp_path: Path, text: str, line: int, field: str | None) -> None:
    path = write(tmp_path / "concepts.csv", text)
    with pytest.raises(InputError) as info:
        ConceptGraph.from_csv(path)
    error = info.value
    assert (error.file, error.line, error.field) == (str(path), line, field)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="no such file"):
        ConceptGraph.from_csv(tmp_path / "missing.csv")


def test_to_csv_refuses_semicolons(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        ConceptGraph.from_edges([("a", "b;c")]).to_csv(tmp_path / "c.csv")


# --------------------------------------------------------------------------- Arrow


def test_arrow_round_trip() -> None:
    graph = ConceptGraph([c.model_copy(update={"tenant": "t1"}) for c in diamond().to_concepts()])
    table = graph.to_arrow()
    assert table.schema.equals(concept_schema())
    assert table.column_names == ["tenant", "concept_id", "name", "prerequisites"]
    last = {"tenant": "t1", "concept_id": "top", "name": "Top", "prerequisites": ["right", "left"]}
    assert table.to_pylist()[-1] == last
    back = ConceptGraph.from_arrow(table)
    assert back == graph and back.tenant == "t1"


def test_from_arrow_minimal_and_errors() -> None:
    graph = ConceptGraph.from_arrow(pa.table({"concept_id": ["a", "b"]}), tenant="t2")
    assert graph.concepts == ("a", "b") and graph.tenant == "t2"
    with pytest.raises(InputError) as info:
        ConceptGraph.from_arrow(pa.table({"name": ["a"]}))
    assert info.value.field == "concept_id"
    with pytest.raises(InputError) as info:
        ConceptGraph.from_arrow(pa.table({"concept_id": ["a", ""]}))
    assert info.value.field == "concept_id" and info.value.reason.startswith("row 2:")
    with pytest.raises(ConceptCycleError):
        ConceptGraph.from_arrow(pa.table({"concept_id": ["a"], "prerequisites": [["a"]]}))
