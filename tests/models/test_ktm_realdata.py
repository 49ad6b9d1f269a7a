"""KTM against PFA, BKT and the item correct rate on the DKVMN splits (train1 -> test, valid1 to stop early)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from knowtrace.evaluation.metrics import auc
from knowtrace.events.event import InteractionEvent
from knowtrace.importers import DkvmnImporter, RawEvent
from knowtrace.lake.frames import events_to_table
from knowtrace.models import get_model
from knowtrace.models.ktm import KTM

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

SPLITS = {
    "STATICS": ("STATICS", "STATICS", lambda folder: DkvmnImporter(concept_map=folder / "Qmatrix.csv")),
    "ASSIST2009": ("assist2009_updated", "assist2009_updated", lambda folder: DkvmnImporter(ids_are="concepts")),
}


def read_split(importer: DkvmnImporter, path: Path) -> pa.Table:
    events = [InteractionEvent(**r.fields) for r in importer.read(path) if isinstance(r, RawEvent)]
    return events_to_table(events)


@pytest.mark.parametrize("dataset", list(SPLITS))
def test_ktm_beats_pfa_bkt_and_item_rate_and_counts_help(dataset: str, shared_data: Path) -> None:
    folder_name, stem, importer = SPLITS[dataset]
    folder = shared_data / folder_name
    train, valid, test = (read_split(importer(folder), folder / f"{stem}_{part}.csv")
                          for part in ("train1", "valid1", "test"))
    y = test.column("correct").to_numpy()
    scores = {name: auc(y, get_model(name).fit(train, valid=valid).predict_proba(test))
              for name in ("item_rate", "pfa", "bkt")}
    for label, params in {"default": {}, "iswf": {"features": "iswf"}, "is": {"features": "is", "dim": 0}}.items():
        scores[label] = auc(y, KTM(**params).fit(train, valid=valid).predict_proba(test))
    assert scores["iswf"] > max(scores["pfa"], scores["item_rate"]) + 0.005, scores
    assert scores["iswf"] > scores["is"] + 0.02, scores
    # the learner's overall record (r, x) is what lifts the default above BKT where ids are skills
    assert scores["default"] > max(scores["pfa"], scores["bkt"], scores["item_rate"]) + 0.005, scores
