"""A load generator that behaves like a class of tablets: learners answer items over time.

Each learner follows the classroom simulator's generating model (item difficulty, learning with
prerequisites, forgetting; see ``knowtrace.simulate.classroom``) in its own random stream; the
learners' answers are merged in the order their simulated clocks give (sessions, think times and
pauses between answers) and sent to the ingest API at a target rate, stamped with the real time.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.simulate.classroom import ClassroomSimulator

__all__ = ["TabletLoad", "TabletReport", "tablet_answers"]


def tablet_answers(learners: int, *, items: int = 200, concepts: int = 12, seed: int = 0,
                   tenant: str | None = None) -> Iterator[dict[str, Any]]:
    """Answers of a simulated class, learners interleaved by their simulated clocks, without end
    (a learner who finishes the course starts a new term). Fields follow ``InteractionEvent``;
    ``timestamp`` is left to the sender."""
    sim = ClassroomSimulator(learners=learners, items=items, concepts=concepts, weeks=12, seed=seed)
    rng = np.random.default_rng(seed)
    prereqs = sim._concept_graph(rng)
    item_concepts, a, b = sim._items(rng, prereqs)
    items_of = [[j for j in range(items) if k in item_concepts[j]] for k in range(concepts)]
    concept_ids = [f"concept-{k + 1:02d}" for k in range(concepts)]
    width = max(3, len(str(items)))
    item_ids = [f"sim-item-{j + 1:0{width}d}" for j in range(items)]
    width = max(4, len(str(learners)))

    def term(learner: int, number: int) -> Iterator[tuple[int, int, datetime, int, int, int]]:
        learner_rng = np.random.default_rng([seed, learner, number])
        return sim._learner(learner_rng, prereqs, item_concepts, items_of, a, b)

    streams = {learner: term(learner, 0) for learner in range(learners)}
    terms = dict.fromkeys(range(learners), 0)
    heap: list[tuple[float, int, tuple[int, int, datetime, int, int, int]]] = []

    def push(learner: int) -> None:
        answer = next(streams[learner], None)
        if answer is None:
            terms[learner] += 1
            streams[learner] = term(learner, terms[learner])
            answer = next(streams[learner])
        offset = terms[learner] * 1e8  # a new term starts after every learner's previous one
        heapq.heappush(heap, (answer[2].timestamp() + offset, learner, answer))

    for learner in range(learners):
        push(learner)
    seq: dict[int, int] = {}
    while True:
        _, learner, (j, correct, _, elapsed_ms, session, _) = heapq.heappop(heap)
        learner_id = f"sim-learner-{learner + 1:0{width}d}"
        seq[learner] = seq.get(learner, -1) + 1
        answer: dict[str, Any] = {
            "learner_id": learner_id, "item_id": item_ids[j],
            "concept_ids": [concept_ids[k] for k in item_concepts[j]], "correct": correct,
            "elapsed_ms": elapsed_ms, "seq": seq[learner], "attempt": 1,
            "session_id": f"{learner_id}/t{terms[learner]}s{session + 1:03d}",
        }
        if tenant is not None:
            answer["tenant"] = tenant
        yield answer
        push(learner)


@dataclass
class TabletReport:
    """What a load run sent and how the API answered."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    failed_requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "sent": self.sent, "accepted": self.accepted, "rejected": self.rejected,
            "requests": self.requests, "failed_requests": self.failed_requests,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.accepted / self.seconds, 1) if self.seconds else 0.0,
            "request_ms_p50": round(float(np.percentile(lat, 50)), 2),
            "request_ms_p99": round(float(np.percentile(lat, 99)), 2),
            "errors": dict(self.errors),
        }


class TabletLoad:
    """Sends simulated answers to ``url`` (the API root) at ``rate`` events/s in batched POSTs."""

    def __init__(self, url: str, api_key: str, *, learners: int = 30, rate: float = 50.0, batch: int = 0,
                 seed: int = 0, timeout_s: float = 30.0, transport: Any = None) -> None:
        if learners < 1:
            raise InputError(f"learners must be >= 1, got {learners}", field="learners")
        if rate <= 0:
            raise InputError(f"rate must be > 0 events/s, got {rate}", field="rate")
        import httpx

        self.rate = float(rate)
        # about 10 requests a second, at least one event and at most the API's 10,000 each
        self.batch = batch or int(min(10_000, max(1, round(rate / 10))))
        self.answers = tablet_answers(learners, seed=seed)
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, transport=transport,
                                   headers={"Authorization": f"Bearer {api_key}"})

    def run(self, *, events: int | None = None, seconds: float | None = None,
            on_progress: Callable[[TabletReport], None] | None = None) -> TabletReport:
        """Send until ``events`` were sent or ``seconds`` passed (at least one of them must be given)."""
        if events is None and seconds is None:
            raise InputError("give a number of events or a duration", field="events")
        report = TabletReport()
        start = time.perf_counter()
        try:
            while (events is None or report.sent < events) and (seconds is None or time.perf_counter() - start < seconds):
                n = self.batch if events is None else min(self.batch, events - report.sent)
                due = start + (report.sent + n) / self.rate
                now = datetime.now(timezone.utc).isoformat()
                body = [{**next(self.answers), "timestamp": now} for _ in range(n)]
                self._post(body, report)
                if on_progress is not None:
                    on_progress(report)
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        finally:
            report.seconds = time.perf_counter() - start
        return report

    def _post(self, body: list[dict[str, Any]], report: TabletReport) -> None:
        import httpx

        sent = time.perf_counter()
        report.requests += 1
        report.sent += len(body)
        try:
            response = self.client.post("/v1/events", json=body)
        except httpx.HTTPError as exc:
            report.failed_requests += 1
            key = type(exc).__name__
            report.errors[key] = report.errors.get(key, 0) + 1
            return
        report.latencies_ms.append((time.perf_counter() - sent) * 1000)
        if response.is_success:
            answer = response.json()
            report.accepted += int(answer.get("accepted", 0))
            report.rejected += len(answer.get("rejected", []))
        else:
            report.failed_requests += 1
            key = f"HTTP {response.status_code}"
            report.errors[key] = report.errors.get(key, 0) + 1

    def close(self) -> None:
        self.client.close()
