"""The HTML report: one self-contained file with the sections and embedded PNG figures."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation import Evaluation, evaluate_holdout, evaluate_kfold, write_report
from knowtrace.models import Elo

SECTIONS = ("Metrics on the test answers", "ROC curves", "Calibration", "Item characteristic curves", "Mastery",
            "Per concept")


class _CurvedElo(Elo):
    """Elo exposing the optional ``item_characteristic`` hook (not registered: no ``name``)."""

    def item_characteristic(self, item_id: str, thetas: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(thetas - self.item_difficulty_[item_id])))


def images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return {alt: base64.b64decode(data) for alt, data in found}


@pytest.fixture(scope="module")
def holdout(simulated_table: pa.Table) -> Evaluation:
    return evaluate_holdout(["global_rate", "item_rate", _CurvedElo()], simulated_table, seed=1)


def test_report_has_every_section_and_figure(holdout: Evaluation, tmp_path: Path) -> None:
    path = write_report(holdout.results, holdout.predictions, tmp_path / "out", title="sim <test>")
    assert path == tmp_path / "out" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "<title>sim &lt;test&gt;</title>" in page
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page
    figures = images(page)
    assert set(figures) == {"ROC curves", "calibration curves", "empirical item characteristic curves",
                            "elo item curves", "mastery heatmap", "per-concept AUC"}
    for png in figures.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    for result in holdout.results:
        assert f"<td>{result['model']}</td>" in page and f"{result['auc']:.4f}" in page
    assert "src=\"http" not in page and "<script" not in page  # self-contained


def test_kfold_report_shows_spread(simulated_table: pa.Table, tmp_path: Path) -> None:
    evaluation = evaluate_kfold(["item_rate"], simulated_table, folds=2)
    page = write_report(evaluation.results, evaluation.predictions, tmp_path, title="k").read_text()
    [row] = evaluation.results
    assert f"{row['auc']:.4f} ± {row['auc_std']:.4f}" in page and "fold-1 models" in page


def test_report_without_predictions(holdout: Evaluation, tmp_path: Path) -> None:
    page = write_report(holdout.results, [], tmp_path, title="metrics only").read_text()
    assert "ROC curves has nothing to draw" in page and images(page).keys() == {"per-concept AUC"}
