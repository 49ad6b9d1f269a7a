"""Importers: one module per input format, all producing canonical events for the lake."""

from knowtrace.importers.base import IMPORTERS, Importer, RawEvent, Record, Rejection, get_importer
from knowtrace.importers.assistments import AssistmentsImporter
from knowtrace.importers.catalog_files import ConceptGraphImporter, ItemCatalogImporter
from knowtrace.importers.dkvmn import DkvmnImporter
from knowtrace.importers.ednet import EdnetKt1Importer
from knowtrace.importers.matrix import MatrixImporter
from knowtrace.importers.table import CsvImporter, ParquetImporter

__all__ = [
    "IMPORTERS",
    "AssistmentsImporter",
    "ConceptGraphImporter",
    "CsvImporter",
    "DkvmnImporter",
    "EdnetKt1Importer",
    "Importer",
    "ItemCatalogImporter",
    "MatrixImporter",
    "ParquetImporter",
    "RawEvent",
    "Record",
    "Rejection",
    "get_importer",
]
