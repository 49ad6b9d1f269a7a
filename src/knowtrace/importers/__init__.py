"""Importers: one module per input format, all producing canonical events for the lake."""

from knowtrace.importers.base import IMPORTERS, Importer, RawEvent, Record, Rejection, get_importer
from knowtrace.importers.catalog_files import ConceptGraphImporter, ItemCatalogImporter
from knowtrace.importers.dkvmn import DkvmnImporter

__all__ = [
    "IMPORTERS",
    "ConceptGraphImporter",
    "DkvmnImporter",
    "ItemCatalogImporter",
    "Importer", "RawEvent", "Record", "Rejection", "get_importer"]
