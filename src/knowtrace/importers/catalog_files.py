"""Catalog files: an item catalog CSV and a concept prerequisite graph CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from knowtrace.events.catalog import ItemCatalog
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import ConceptCycleError
from knowtrace.importers.base import Importer, Record

__all__ = ["ConceptGraphImporter", "ItemCatalogImporter"]


class ItemCatalogImporter(Importer):
    """Items with their concepts, IRT parameters and metadata (see ``ItemCatalog.from_csv``)."""

    format = "items"
    description = "item catalog CSV: item_id, concept_ids (;-separated), name, a, b, c, other columns as metadata"

    def read(self, path: Path) -> Iterator[Record]:
        catalog = ItemCatalog.from_csv(path, tenant=self.tenant)
        for item in catalog.values():
            self.rows_read += 1
            yield item


class ConceptGraphImporter(Importer):
    """Concepts and their prerequisites (see ``ConceptGraph.from_csv``); a cycle fails the load."""

    format = "concepts"
    description = "concept graph CSV: concept_id,prerequisite_id edges, or concept_id,name,prerequisites"

    def read(self, path: Path) -> Iterator[Record]:
        try:
            graph = ConceptGraph.from_csv(path, tenant=self.tenant)
        except ConceptCycleError as exc:
            raise ConceptCycleError(exc.cycle, file=path) from None
        for concept in graph.to_concepts():
            self.rows_read += 1
            yield concept
