"""A simulated class of learners answering items over weeks (synthetic data, not real learners).

The generating model:

- concepts form a prerequisite DAG: every concept after the first depends on one or two earlier
  ones, so the index order is a topological order and the curriculum follows it;
- every item assesses one concept (a quarter of them also one of its prerequisites) and has true
  2PL parameters: difficulty ``b ~ N(0, 1)``, discrimination ``a ~ lognormal(0, 0.3)``;
- every learner has an ability ``theta ~ N(0, 1)``, a learning rate and a forgetting time; the
  learner's mastery of a concept grows with each answer on it (slower while its prerequisites are
  weak) and decays towards the starting level with the days away from it;
- ``P(correct) = g + (1 - g) * sigmoid(a * (theta + k - b))`` where ``k`` maps the mastery of the
  item's concepts to the logit scale and ``g`` is a small guessing floor.

Learners work a few sessions a week; in each session most answers practise the concept the class
is on, the rest review earlier ones. The true item parameters are emitted as ``Item`` records
marked ``metadata={"simulated": "true"}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from knowtrace.events.catalog import Concept, Item
from knowtrace.exceptions import InputError
from knowtrace.importers.base import Importer, RawEvent, Record

__all__ = ["ClassroomSimulator"]

CONCEPT_NAMES = (
    "Counting", "Place value", "Addition", "Subtraction", "Multiplication", "Division",
    "Fractions", "Decimals", "Percentages", "Ratios", "Negative numbers", "Powers",
    "Expressions", "Linear equations", "Inequalities", "Coordinates", "Functions", "Angles",
    "Area and perimeter", "Volume", "Probability", "Statistics", "Pythagoras", "Quadratics",
)

GUESS = 0.1  # chance of a correct answer without knowing (multiple choice with some options)
K_LOW, K_HIGH = -1.5, 1.5  # logit contribution of mastery 0 and mastery 1
FOCUS = 0.7  # share of answers on the concept the class is on (the rest review earlier ones)
SECOND_CONCEPT = 0.25  # share of items that also assess a prerequisite of their concept


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class ClassroomSimulator(Importer):
    """Simulated classroom: learners answer items over weeks (format ``simulated``, synthetic data).

    ``read`` ignores its path and yields the concepts, the items (true generating parameters) and
    then every learner's answers. The same hyperparameters and seed always give the same records.
    """

    format = "simulated"
    description = "Simulated classroom: synthetic learners answering items over weeks (not real data)"

    def __init__(
        self,
        *,
        tenant: str = "default",
        learners: int = 200,
        items: int = 60,
        concepts: int = 8,
        weeks: int = 6,
        sessions_per_week: int = 3,
        answers_per_session: int = 12,
        seed: int = 0,
        start: str = "2026-09-07T08:00:00+00:00",
    ) -> None:
        super().__init__(tenant=tenant)
        for name, value, low in (
            ("learners", learners, 1), ("items", items, 1), ("concepts", concepts, 1), ("weeks", weeks, 1),
            ("sessions_per_week", sessions_per_week, 1), ("answers_per_session", answers_per_session, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
        if sessions_per_week > 7:
            raise InputError("sessions_per_week must be at most 7", field="sessions_per_week")
        if items < concepts:
            raise InputError(f"need at least one item per concept: items={items} < concepts={concepts}",
                             field="items")
        try:
            start_at = datetime.fromisoformat(start)
        except (TypeError, ValueError):
            raise InputError(f"start must be an ISO 8601 date-time, got {start!r}", field="start") from None
        if start_at.tzinfo is None:
            raise InputError("start must carry a time zone, e.g. +00:00", field="start")
        self.learners = learners
        self.items = items
        self.concepts = concepts
        self.weeks = weeks
        self.sessions_per_week = sessions_per_week
        self.answers_per_session = answers_per_session
        self.seed = seed
        self.start = start
        self._start_at = start_at

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "learners": self.learners,
            "items": self.items,
            "concepts": self.concepts,
            "weeks": self.weeks,
            "sessions_per_week": self.sessions_per_week,
            "answers_per_session": self.answers_per_session,
            "seed": self.seed,
            "start": self.start,
        }

    @property
    def n_events(self) -> int:
        """How many answers ``read`` yields."""
        return self.learners * self.weeks * self.sessions_per_week * self.answers_per_session

    def read(self, path: Path | None = None) -> Iterator[Record]:
        """Yield concepts, items, then answers; ``path`` is ignored (the data is generated)."""
        rng = np.random.default_rng(self.seed)
        prereqs = self._concept_graph(rng)
        concept_ids = [f"concept-{k + 1:02d}" for k in range(self.concepts)]
        for k, cid in enumerate(concept_ids):
            name = CONCEPT_NAMES[k] if k < len(CONCEPT_NAMES) else f"Concept {k + 1}"
            yield Concept(concept_id=cid, tenant=self.tenant, name=name,
                          prerequisites=tuple(concept_ids[p] for p in prereqs[k]))

        item_concepts, a, b = self._items(rng, prereqs)
        width = max(3, len(str(self.items)))
        item_ids = [f"sim-item-{j + 1:0{width}d}" for j in range(self.items)]
        for j, iid in enumerate(item_ids):
            yield Item(
                item_id=iid, tenant=self.tenant, concept_ids=tuple(concept_ids[k] for k in item_concepts[j]),
                name=f"Simulated item {j + 1}", a=float(a[j]), b=float(b[j]), c=GUESS,
                metadata={"simulated": "true"},
            )

        items_of = [[j for j in range(self.items) if k in item_concepts[j]] for k in range(self.concepts)]
        event_concepts = [tuple(concept_ids[k] for k in ks) for ks in item_concepts]
        width = max(4, len(str(self.learners)))
        line = 0
        for learner in range(self.learners):
            learner_id = f"sim-learner-{learner + 1:0{width}d}"
            for answer in self._learner(rng, prereqs, item_concepts, items_of, a, b):
                j, correct, at, elapsed_ms, session, seq = answer
                line += 1
                self.rows_read += 1
                yield RawEvent(
                    {
                        "tenant": self.tenant,
                        "learner_id": learner_id,
                        "item_id": item_ids[j],
                        "concept_ids": event_concepts[j],
                        "correct": correct,
                        "timestamp": at,
                        "seq": seq,
                        "elapsed_ms": elapsed_ms,
                        "attempt": 1,
                        "session_id": f"{learner_id}/s{session + 1:03d}",
                        "source": "import",
                    },
                    "simulator",
                    line,
                )

    def _concept_graph(self, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """Prerequisites of each concept: one or two earlier concepts, recent ones more likely."""
        graph: list[tuple[int, ...]] = [()]
        for k in range(1, self.concepts):
            n = 1 if k == 1 or rng.random() < 0.5 else 2
            weights = np.arange(1, k + 1, dtype=float) ** 2
            chosen = rng.choice(k, size=n, replace=False, p=weights / weights.sum())
            graph.append(tuple(sorted(int(c) for c in chosen)))
        return graph

    def _items(
        self, rng: np.random.Generator, prereqs: list[tuple[int, ...]]
    ) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
        """Concepts of every item (every concept gets items) and the true 2PL parameters."""
        primary = rng.permutation(np.arange(self.items) % self.concepts)
        second = rng.random(self.items)
        item_concepts: list[tuple[int, ...]] = []
        for j, k in enumerate(primary.tolist()):
            if prereqs[k] and second[j] < SECOND_CONCEPT:
                item_concepts.append((k, prereqs[k][int(rng.integers(len(prereqs[k])))]))
            else:
                item_concepts.append((k,))
        b = rng.normal(0.0, 1.0, self.items)
        a = rng.lognormal(0.0, 0.3, self.items)
        return item_concepts, a, b

    def _learner(
        self,
        rng: np.random.Generator,
        prereqs: list[tuple[int, ...]],
        item_concepts: list[tuple[int, ...]],
        items_of: list[list[int]],
        a: np.ndarray,
        b: np.ndarray,
    ) -> Iterator[tuple[int, int, datetime, int, int, int]]:
        """One learner's answers: (item, correct, timestamp, elapsed_ms, session, seq)."""
        n_concepts, per_session = self.concepts, self.answers_per_session
        n_sessions = self.weeks * self.sessions_per_week
        n = n_sessions * per_session
        theta = float(rng.normal())
        rate = 0.07 * float(rng.lognormal(0.0, 0.4))
        forget_days = 30.0 * float(rng.lognormal(0.0, 0.3))
        pace = float(rng.uniform(0.85, 1.15))
        hour = float(rng.uniform(0.0, 8.0))
        initial = rng.beta(2.0, 5.0, n_concepts).tolist()
        u_focus, u_review, u_item, u_correct = (rng.random(n).tolist() for _ in range(4))
        z_elapsed = rng.normal(0.0, 0.45, n).tolist()
        gaps = (2.0 + rng.exponential(8.0, n)).tolist()
        jitter = rng.normal(0.0, 20.0, n_sessions).tolist()

        mastery = list(initial)
        last_day: list[float | None] = [None] * n_concepts
        a_list, b_list = a.tolist(), b.tolist()
        seq = 0
        for session in range(n_sessions):
            week, slot = divmod(session, self.sessions_per_week)
            day = week * 7 + (slot * 7) // self.sessions_per_week
            clock = day * 86400.0 + hour * 3600.0 + max(0.0, jitter[session]) * 60.0
            current = min(n_concepts - 1, int(session * pace * n_concepts / n_sessions))
            for _ in range(per_session):
                if current == 0 or u_focus[seq] < FOCUS:
                    concept = current
                else:
                    concept = int(u_review[seq] * current)
                candidates = items_of[concept]
                j = candidates[int(u_item[seq] * len(candidates))]
                now_day = clock / 86400.0
                knowledge = 0.0
                for k in item_concepts[j]:
                    if last_day[k] is not None:
                        keep = math.exp(-(now_day - last_day[k]) / forget_days)  # type: ignore[operator]
                        mastery[k] = initial[k] + (mastery[k] - initial[k]) * keep
                    knowledge += K_LOW + (K_HIGH - K_LOW) * mastery[k]
                knowledge /= len(item_concepts[j])
                p = GUESS + (1.0 - GUESS) * _sigmoid(a_list[j] * (theta + knowledge - b_list[j]))
                correct = int(u_correct[seq] < p)
                median_s = 15.0 * math.exp(0.25 * b_list[j]) * (1.0 if correct else 1.4)
                elapsed_ms = int(min(600_000.0, max(1_500.0, 1000.0 * median_s * math.exp(z_elapsed[seq]))))
                clock += elapsed_ms / 1000.0
                yield j, correct, self._start_at + timedelta(seconds=round(clock, 3)), elapsed_ms, session, seq
                clock += gaps[seq]
                for k in item_concepts[j]:
                    ready = min((mastery[p_] for p_ in prereqs[k]), default=1.0)
                    mastery[k] += rate * (0.3 + 0.7 * ready) * (1.0 - mastery[k])
                    last_day[k] = clock / 86400.0
                seq += 1
