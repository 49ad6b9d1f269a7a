"""The diagnosis report: levels per concept from the items' tags, HTML with the convergence plot."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from knowtrace.cat import (
    AbilityState,
    CatConfig,
    CatEngine,
    EstimatorConfig,
    ItemBank,
    LevelScale,
    make_estimator,
    parse_stop,
)


@pytest.fixture(scope="module")
def finished(bank2: ItemBank):  # type: ignore[no-untyped-def]
    config = CatConfig(estimator=EstimatorConfig(method="map"), stopping=parse_stop("max:24"),
                       levels=LevelScale(cuts=(-0.5, 0.5), labels=("low", "middle", "high")))
    session = CatEngine(bank2, config).start("learner-7", seed=3)
    rng = np.random.default_rng(2)
    while (item := session.next_item()) is not None:
        session.record(item, bool(rng.random() < bank2.probability(0.9, np.array([bank2.index(item)]))[0]))
    return session


def test_result_has_overall_concepts_and_trace(finished, bank2: ItemBank) -> None:  # type: ignore[no-untyped-def]
    result = finished.result()
    assert result.session_id == "learner-7" and result.method == "map" and result.n_items == 24
    assert result.theta == finished.theta and result.se == finished.se
    assert result.level == LevelScale(cuts=(-0.5, 0.5), labels=("low", "middle", "high")).label(result.theta)
    assert [s.item_id for s in result.trace] == finished.items
    assert [s.position for s in result.trace] == list(range(1, 25))
    assert sum(c.items for c in result.concepts) == 24          # one concept per generated item
    eap = make_estimator(EstimatorConfig())
    for concept in result.concepts:
        positions = [k for k, i in enumerate(finished.items) if concept.concept in bank2.concepts[bank2.index(i)]]
        state = AbilityState.empty(eap.nodes)
        for k in positions:
            state.add(bank2, bank2.index(finished.items[k]), finished.responses[k])
        est = eap.estimate(state, bank2)
        assert concept.items == len(positions) and concept.correct == sum(finished.responses[k] for k in positions)
        assert concept.theta == pytest.approx(est.theta) and concept.se == pytest.approx(est.se)
        assert concept.level in ("low", "middle", "high")
        assert concept.se > result.se                            # fewer items, less precise


def test_html_report_embeds_the_convergence_plot(finished, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = finished.result(levels=LevelScale())
    path = result.write_html(tmp_path / "report.html")
    text = path.read_text()
    png = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert png is not None
    assert base64.b64decode(png.group(1)).startswith(b"\x89PNG")
    for concept in result.concepts:
        assert concept.concept in text
    assert result.level in ("beginning", "developing", "proficient", "advanced") and result.level in text


def test_level_scale_labels_and_validation() -> None:
    scale = LevelScale(cuts=(-1.0, 1.0), labels=("a", "b", "c"))
    assert [scale.label(t) for t in (-2.0, -1.0, 0.0, 1.0, 3.0)] == ["a", "b", "b", "c", "c"]
    with pytest.raises(ValueError, match="labels"):
        LevelScale(cuts=(0.0,), labels=("a",))
    with pytest.raises(ValueError, match="increasing"):
        LevelScale(cuts=(1.0, 0.0), labels=("a", "b", "c"))


def test_result_of_an_unstarted_mle_session_has_no_se() -> None:
    bank = ItemBank.generate(20, seed=1)
    session = CatEngine(bank, CatConfig(estimator=EstimatorConfig(method="mle"))).start("x", seed=0)
    result = session.result()
    assert result.se is None and result.n_items == 0 and result.trace == []
    assert "<img" in result.to_html()
