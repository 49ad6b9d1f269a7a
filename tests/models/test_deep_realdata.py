"""DKT, SAKT, AKT and simpleKT on the ASSIST2009 DKVMN split (train1 -> test, valid1 to stop early).

Small networks and few epochs so each case stays near two minutes on two CPU cores; the
thresholds sit about 0.02 under what these settings reached when the test was written (test AUC
DKT 0.808, SAKT 0.771, AKT 0.794, simpleKT 0.791; published DKT on this split: about 0.80-0.82;
the item rate alone: 0.619).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from knowtrace.evaluation.dkvmn_split import DkvmnSplit, read_dkvmn_split
from knowtrace.evaluation.metrics import auc
from knowtrace.models.deep import AKT, DKT, SAKT, SequenceModel, SimpleKT

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

CASES: dict[str, tuple[type[SequenceModel], dict[str, Any], float]] = {
    "dkt": (DKT, {"hidden": 64, "window": 100, "epochs": 3}, 0.79),
    "sakt": (SAKT, {"dim": 64, "heads": 4, "window": 100, "lr": 3e-3, "batch_size": 32, "dropout": 0.1,
                    "epochs": 10}, 0.75),
    "akt": (AKT, {"dim": 32, "heads": 2, "d_ff": 64, "window": 100, "lr": 3e-3, "batch_size": 32,
                  "epochs": 4}, 0.77),
    "simplekt": (SimpleKT, {"dim": 32, "heads": 2, "d_ff": 64, "window": 100, "lr": 3e-3, "batch_size": 32,
                            "epochs": 4}, 0.77),
}


@pytest.fixture(scope="module")
def assist2009(shared_data: Path) -> DkvmnSplit:
    return read_dkvmn_split(shared_data / "assist2009_updated", ids_are="concepts")


@pytest.mark.parametrize("name", list(CASES))
def test_deep_models_reach_their_auc_on_assist2009(name: str, assist2009: DkvmnSplit) -> None:
    cls, params, threshold = CASES[name]
    model = cls(**params).fit(assist2009.train, valid=assist2009.valid)
    score = auc(assist2009.test.column("correct").to_numpy(), model.predict_proba(assist2009.test))
    seconds = model.train_history_[:, 3]
    print(f"{name}: test AUC {score:.4f}, {len(seconds)} epochs (best {model.best_epoch_}), "
          f"{seconds.mean():.1f} s per epoch")
    assert score >= threshold, (name, score, model.train_history_)
