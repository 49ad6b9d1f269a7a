"""The prerequisite graph of concepts: which concepts must be known before which."""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from knowtrace.events.catalog import Concept, _csv_header, _csv_records, _row_error
from knowtrace.exceptions import ConceptCycleError, InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ConceptGraph", "concept_schema"]

_EDGE_COLUMNS = ("concept_id", "prerequisite_id")
_CONCEPT_COLUMNS = ("concept_id", "name", "prerequisites")


class ConceptGraph:
    """The concepts of one tenant and their prerequisites, checked to have no cycle.

    A concept is every id that appears, as a concept or as a prerequisite. Declaring a concept
    twice unites its prerequisites and keeps its first name. Queries about an id that appears
    nowhere answer as for a concept without prerequisites or successors: empty, never an error.

    A cycle raises ``ConceptCycleError`` whose ``cycle`` starts at its smallest id and follows
    "needs" arrows: ``["a", "b", "a"]`` means a needs b and b needs a; a self-loop is ``["a", "a"]``.

    >>> graph = ConceptGraph(edges=[("fractions", "division"), ("division", "multiplication")])
    >>> graph.topological_order()
    ('multiplication', 'division', 'fractions')
    >>> graph.levels_back("fractions", 1), graph.levels_back("fractions", 2)
    (('division',), ('multiplication',))
    """

    def __init__(
        self,
        concepts: Iterable[Concept] = (),
        edges: Iterable[tuple[str, str]] = (),
        *,
        tenant: str | None = None,
    ) -> None:
        self._tenant = tenant
        self._names: dict[str, str | None] = {}
        prerequisites: dict[str, list[str]] = {}
        for concept in concepts:
            self._add(concept, prerequisites)
        for number, edge in enumerate(edges, start=1):
            try:
                concept_id, prerequisite_id = edge
                if prerequisite_id is None or not str(prerequisite_id).strip():
                    raise ValueError("the prerequisite id is empty")
                concept = Concept(concept_id=concept_id, tenant=self.tenant, prerequisites=[prerequisite_id])
            except (TypeError, ValueError) as exc:
                reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                raise InputError(f"edge {number} {edge!r}: {reason}", field="edges") from None
            self._add(concept, prerequisites)
        for needed in [p for ps in prerequisites.values() for p in ps]:
            prerequisites.setdefault(needed, [])
        cycle = _find_cycle(prerequisites)
        if cycle is not None:
            raise ConceptCycleError(cycle)
        self._prerequisites = {c: tuple(ps) for c, ps in sorted(prerequisites.items())}
        successors: dict[str, list[str]] = {c: [] for c in self._prerequisites}
        for concept_id, needed in self._prerequisites.items():
            for prerequisite in needed:
                successors[prerequisite].append(concept_id)
        self._successors = {c: tuple(sorted(s)) for c, s in successors.items()}

    def _add(self, concept: Concept, prerequisites: dict[str, list[str]]) -> None:
        if self._tenant is None:
            self._tenant = concept.tenant
        elif concept.tenant != self._tenant:
            raise InputError(
                f"concept {concept.concept_id!r} belongs to tenant {concept.tenant!r}, the graph to {self._tenant!r}",
                field="tenant",
            )
        if self._names.get(concept.concept_id) is None:
            self._names[concept.concept_id] = concept.name
        known = prerequisites.setdefault(concept.concept_id, [])
        known.extend(p for p in concept.prerequisites if p not in known)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str]], *, tenant: str = "default") -> ConceptGraph:
        """The graph of ``(concept, prerequisite)`` pairs."""
        return cls(edges=edges, tenant=tenant)

    # ----------------------------------------------------------------------- queries

    @property
    def tenant(self) -> str:
        """The tenant every concept of the graph belongs to."""
        return self._tenant if self._tenant is not None else "default"

    @property
    def concepts(self) -> tuple[str, ...]:
        """Every concept id, sorted."""
        return tuple(self._prerequisites)

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self._prerequisites

    def __len__(self) -> int:
        return len(self._prerequisites)

    def __iter__(self) -> Iterator[str]:
        return iter(self._prerequisites)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConceptGraph):
            return NotImplemented
        return self.to_concepts() == other.to_concepts()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ConceptGraph(tenant={self.tenant!r}, concepts={len(self)}, edges={sum(1 for _ in self.edges())})"

    def name(self, concept_id: str) -> str | None:
        """The name of ``concept_id``, if one was given."""
        return self._names.get(concept_id)

    def prerequisites(self, concept_id: str) -> tuple[str, ...]:
        """The direct prerequisites of ``concept_id``, in the order they were declared."""
        return self._prerequisites.get(concept_id, ())

    def successors(self, concept_id: str) -> tuple[str, ...]:
        """The concepts that have ``concept_id`` as a direct prerequisite, sorted."""
        return self._successors.get(concept_id, ())

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every ``(concept, prerequisite)`` pair, by concept id then declaration order."""
        for concept_id, needed in self._prerequisites.items():
            for prerequisite in needed:
                yield concept_id, prerequisite

    def ancestors(self, concept_id: str, depth: int | None = None) -> tuple[str, ...]:
        """The prerequisites of ``concept_id`` up to ``depth`` levels back (all when None).

        Nearest first; within a level sorted by id. A concept reachable by paths of different
        lengths is at the level of its shortest path.
        """
        if depth is not None and depth < 0:
            raise InputError(f"depth must be 0 or more, got {depth}", field="depth")
        return tuple(c for level in self._levels(concept_id, depth) for c in level)

    def levels_back(self, concept_id: str, k: int) -> tuple[str, ...]:
        """The concepts exactly ``k`` levels back from ``concept_id`` (shortest path), sorted.

        ``k=1`` are the direct prerequisites, ``k=2`` their prerequisites not already at level 1.
        """
        if k < 1:
            raise InputError(f"k must be 1 or more, got {k}", field="k")
        levels = self._levels(concept_id, k)
        return levels[k - 1] if len(levels) == k else ()

    def _levels(self, concept_id: str, depth: int | None) -> list[tuple[str, ...]]:
        seen = {concept_id}
        frontier = [concept_id]
        levels: list[tuple[str, ...]] = []
        while frontier and (depth is None or len(levels) < depth):
            found = []
            for current in frontier:
                for prerequisite in self._prerequisites.get(current, ()):
                    if prerequisite not in seen:
                        seen.add(prerequisite)
                        found.append(prerequisite)
            if not found:
                break
            frontier = sorted(found)
            levels.append(tuple(frontier))
        return levels

    def topological_order(self) -> tuple[str, ...]:
        """Every concept, each after all its prerequisites; among those ready, the smallest id first."""
        waiting = {c: len(ps) for c, ps in self._prerequisites.items()}
        ready = [c for c, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            concept_id = heapq.heappop(ready)
            order.append(concept_id)
            for successor in self._successors[concept_id]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    heapq.heappush(ready, successor)
        return tuple(order)

    def to_concepts(self) -> list[Concept]:
        """One ``Concept`` per concept id, sorted by id (prerequisites never declared included)."""
        return [
            Concept(concept_id=c, tenant=self.tenant, name=self._names.get(c), prerequisites=ps)
            for c, ps in self._prerequisites.items()
        ]

    # ----------------------------------------------------------------------- CSV

    @classmethod
    def from_csv(cls, path: str | Path, *, tenant: str = "default") -> ConceptGraph:
        """Read a graph from a CSV file with a header row, in one of two layouts.

        - ``concept_id,prerequisite_id``: one edge per row; an empty prerequisite declares a
          concept without one;
        - ``concept_id[,name][,prerequisites]``: one concept per row, prerequisites ``;``-separated.

        Errors name the file, line and column.
        """
        path = Path(path)
        records = _csv_records(path)
        header_line, header = next(records)
        columns = _csv_header(header, path, header_line, required=("concept_id",))
        allowed = _EDGE_COLUMNS if "prerequisite_id" in columns else _CONCEPT_COLUMNS
        for name in columns:
            if name not in allowed:
                raise InputError(
                    f"unknown column {name!r}; expected {', '.join(_EDGE_COLUMNS)} or {', '.join(_CONCEPT_COLUMNS)}",
                    file=path,
                    line=header_line,
                    field=name,
                )
        concepts = []
        for line, cells in records:
            if len(cells) != len(columns):
                raise InputError(f"row has {len(cells)} cells, the header {len(columns)}", file=path, line=line)
            row = {name: cell.strip() for name, cell in zip(columns, cells)}
            needed = row.get("prerequisite_id", row.get("prerequisites", ""))
            try:
                concepts.append(
                    Concept(
                        concept_id=row["concept_id"],
                        tenant=tenant,
                        name=row.get("name") or None,
                        prerequisites=needed.split(";") if "prerequisites" in row else [needed],
                    )
                )
            except ValidationError as exc:
                raise _row_error(exc, path, line) from None
        return cls(concepts, tenant=tenant)

    def to_csv(self, path: str | Path) -> None:
        """Write the graph as CSV in the ``concept_id,name,prerequisites`` layout."""
        for concept_id, needed in self._prerequisites.items():
            if any(";" in p for p in needed):
                raise InputError(f"concept {concept_id!r} has a prerequisite id with ';'", field="prerequisites")
        with Path(path).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(_CONCEPT_COLUMNS)
            for concept_id, needed in self._prerequisites.items():
                writer.writerow([concept_id, self._names.get(concept_id) or "", ";".join(needed)])

    # ----------------------------------------------------------------------- Arrow

    def to_arrow(self) -> pa.Table:
        """The graph as a table with the columns of ``concept_schema()``, one row per concept."""
        import pyarrow as pa

        concepts = self.to_concepts()
        columns: dict[str, list[Any]] = {
            "tenant": [c.tenant for c in concepts],
            "concept_id": [c.concept_id for c in concepts],
            "name": [c.name for c in concepts],
            "prerequisites": [list(c.prerequisites) for c in concepts],
        }
        return pa.table(columns, schema=concept_schema())

    @classmethod
    def from_arrow(cls, table: pa.Table, *, tenant: str | None = None) -> ConceptGraph:
        """Read a graph from a table shaped like ``to_arrow``'s; only ``concept_id`` is required.

        Rows without a tenant get ``tenant`` (or ``"default"``). Errors name the row (from 1).
        """
        if "concept_id" not in table.column_names:
            raise InputError("the table has no concept_id column", field="concept_id")
        concepts = []
        for number, row in enumerate(table.to_pylist(), start=1):
            fields = {key: row[key] for key in ("concept_id", "name", "prerequisites") if key in row}
            try:
                concepts.append(Concept(**fields, tenant=row.get("tenant") or tenant or "default"))
            except ValidationError as exc:
                error = _row_error(exc, None, None)
                raise InputError(f"row {number}: {error.reason}", field=error.field) from None
        return cls(concepts, tenant=tenant)


def concept_schema() -> pa.Schema:
    """The Arrow schema of a concept graph table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("tenant", pa.string()),
            ("concept_id", pa.string()),
            ("name", pa.string()),
            ("prerequisites", pa.list_(pa.string())),
        ]
    )


def _find_cycle(prerequisites: dict[str, list[str]]) -> list[str] | None:
    """A cycle of "needs" arrows, starting and ending at its smallest id, or None."""
    on_path: dict[str, int] = {}  # concept -> its index in path
    done: set[str] = set()
    for root in sorted(prerequisites):
        if root in done:
            continue
        path = [root]
        on_path[root] = 0
        stack = [iter(sorted(prerequisites[root]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                stack.pop()
            elif following in on_path:
                body = path[on_path[following] :]
                start = body.index(min(body))
                body = body[start:] + body[:start]
                return [*body, body[0]]
            elif following not in done:
                on_path[following] = len(path)
                path.append(following)
                stack.append(iter(sorted(prerequisites[following])))
    return None
