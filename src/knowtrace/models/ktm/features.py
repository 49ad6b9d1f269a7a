"""Sparse features of Knowledge Tracing Machines, built from the learner's earlier answers only.

A feature set is a string of letters, one per feature group (e.g. ``"iswf"``, ``"uiswfp"``); the
columns of the design matrix are the groups' blocks in the order the letters are given:

======  ===============  ============================================================================
letter  columns          value of row ``r`` (learner ``L``, item ``j`` with concepts ``C``)
======  ===============  ============================================================================
``u``   one per learner  1 in the column of ``L`` (no column for a learner not seen in ``fit``)
``i``   one per item     1 in the column of ``j`` (no column for an item not seen in ``fit``)
``s``   one per concept  1 in the column of every concept of ``C``
``w``   one per concept  for every ``c`` in ``C``: scale(answers of ``L`` on ``c`` before ``r`` that were right)
``f``   one per concept  for every ``c`` in ``C``: scale(... that were wrong)
``a``   one per concept  for every ``c`` in ``C``: scale(answers of ``L`` on ``c`` before ``r``), AFM-like
``W``   one per item     scale(answers of ``L`` to item ``j`` itself before ``r`` that were right)
``F``   one per item     scale(... that were wrong)
``A``   one per item     scale(answers of ``L`` to item ``j`` before ``r``)
``r``   1                scale(answers of ``L`` before ``r`` that were right, on any concept): the
                         learner's overall record, which carries ability across concepts ("good
                         students keep doing well") also for learners not seen in ``fit``
``x``   1                scale(... that were wrong, on any concept)
``p``   4 per concept    for every prerequisite ``q`` of a concept of ``C`` one level back (its direct
                         prerequisites) and two levels back (theirs, shortest path): scale(right) and
                         scale(wrong) answers of ``L`` on ``q`` before ``r``, in four blocks (level 1
                         right, level 1 wrong, level 2 right, level 2 wrong). Needs the concept graph
                         given to ``fit``: without one the group has no columns.
``e``   1                log(1 + seconds) the learner's previous answer took (its ``elapsed_ms``);
                         nothing on a learner's first answer or when unknown. The current answer's
                         own time is not known before it is given, so it is never used.
``t``   25               one-hot of ``min(floor(log2(1 + seconds since the learner's previous
                         answer)), 24)`` (bucket 24 is about 194 days and more); nothing on a first
                         answer or when either timestamp is unknown.
======  ===============  ============================================================================

``scale`` is ``log(1 + count)`` (``count_scale="log"``, as in DAS3H) or the raw count (``"raw"``,
as in the KTM paper's PFA encoding). A count is zero (no entry) when the learner has no such
earlier answer. "Before ``r``" means the learner's rows with a smaller ``step`` in the same view,
plus the ``Prior`` (what the model remembers of the learner from ``fit`` and ``learn_one``).
Learners, items and concepts unknown to the ``FeatureSpace`` have no columns, so their rows fall
back to what the model learned for the population.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError
from knowtrace.models.data import Interactions, lookup

__all__ = ["LETTERS", "TIME_BUCKETS", "FeatureSpace", "Prior", "design_matrix", "parse_features"]

#: feature letter -> short description
LETTERS: dict[str, str] = {
    "u": "learner one-hot",
    "i": "item one-hot",
    "s": "concepts of the item",
    "w": "earlier right answers per concept",
    "f": "earlier wrong answers per concept",
    "a": "earlier answers per concept",
    "W": "earlier right answers to the item",
    "F": "earlier wrong answers to the item",
    "A": "earlier answers to the item",
    "r": "earlier right answers on any concept",
    "x": "earlier wrong answers on any concept",
    "p": "earlier right/wrong answers on prerequisite concepts, 1 and 2 levels back",
    "e": "log seconds the previous answer took",
    "t": "log2-bucketed time since the previous answer",
}
#: number of ``t`` buckets
TIME_BUCKETS = 25
CONCEPT_COUNTS = frozenset("wfap")
ITEM_COUNTS = frozenset("WFA")
LEARNER_COUNTS = frozenset("rx")


def parse_features(features: str) -> str:
    """The feature letters, checked: known letters, each at most once, at least one."""
    if not isinstance(features, str) or not features:
        raise InputError(f"features must be a non-empty string of letters from {''.join(LETTERS)}, got {features!r}",
                         field="features")
    unknown = sorted(set(features) - set(LETTERS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in LETTERS.items())
        raise InputError(f"unknown feature letter(s) {', '.join(map(repr, unknown))} in {features!r}; known: {known}",
                         field="features")
    repeated = sorted({c for c in features if features.count(c) > 1})
    if repeated:
        raise InputError(f"feature letter(s) {', '.join(map(repr, repeated))} repeated in {features!r}",
                         field="features")
    return features


def _csr_levels(concept_ids: np.ndarray, graph: ConceptGraph | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets, concept codes) of the known concepts exactly ``k`` levels back from each concept."""
    if graph is None:
        return np.zeros(len(concept_ids) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lists = []
    for concept in concept_ids.tolist():
        codes = lookup(concept_ids, np.array(graph.levels_back(concept, k), dtype=str))
        lists.append(np.sort(codes[codes >= 0]))
    ptr = np.concatenate(([0], np.cumsum([len(c) for c in lists]))).astype(np.int64)
    index = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, dtype=np.int64)
    return ptr, index


@dataclass(frozen=True, eq=False)
class FeatureSpace:
    """The columns of a feature set: its letters, the vocabularies seen in ``fit`` and the prerequisites.

    ``prereq_ptr[k - 1]``/``prereq_index[k - 1]`` hold, per concept code, the codes of the known
    concepts ``k`` levels back (``k`` = 1, 2); ``has_graph`` says whether ``fit`` had a graph.
    """

    letters: str
    learner_ids: np.ndarray
    item_ids: np.ndarray
    concept_ids: np.ndarray
    prereq_ptr: tuple[np.ndarray, np.ndarray]
    prereq_index: tuple[np.ndarray, np.ndarray]
    has_graph: bool
    count_scale: str = "log"
    offsets: dict[str, int] = field(init=False)
    n_features: int = field(init=False)

    def __post_init__(self) -> None:
        if self.count_scale not in ("log", "raw"):
            raise InputError(f"count_scale must be 'log' or 'raw', got {self.count_scale!r}", field="count_scale")
        offsets, at = {}, 0
        for letter in parse_features(self.letters):
            offsets[letter] = at
            at += self.block_size(letter)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "n_features", at)

    @classmethod
    def from_view(cls, letters: str, data: Interactions, *, count_scale: str = "log") -> FeatureSpace:
        """The space of ``data``'s learners, items and concepts, with the prerequisites of ``data.graph``."""
        levels = [_csr_levels(data.concept_ids, data.graph, k) for k in (1, 2)]
        return cls(parse_features(letters), data.learner_ids.copy(), data.item_ids.copy(), data.concept_ids.copy(),
                   (levels[0][0], levels[1][0]), (levels[0][1], levels[1][1]), data.graph is not None, count_scale)

    def block_size(self, letter: str) -> int:
        """Number of columns of a feature group."""
        n_concepts = len(self.concept_ids)
        return {"u": len(self.learner_ids), "i": len(self.item_ids), "s": n_concepts, "w": n_concepts,
                "f": n_concepts, "a": n_concepts, "W": len(self.item_ids), "F": len(self.item_ids),
                "A": len(self.item_ids), "p": 4 * n_concepts if self.has_graph else 0, "r": 1, "x": 1, "e": 1,
                "t": TIME_BUCKETS}[letter]

    def column_names(self) -> list[str]:
        """A readable name per column (``"i:q17"``, ``"w:fractions"``, ``"p1w:division"``, ``"t:3"``)."""
        vocab = {"u": self.learner_ids, "i": self.item_ids, "W": self.item_ids, "F": self.item_ids,
                 "A": self.item_ids, "s": self.concept_ids, "w": self.concept_ids, "f": self.concept_ids,
                 "a": self.concept_ids}
        names: list[str] = []
        for letter in self.letters:
            if letter in vocab:
                names += [f"{letter}:{v}" for v in vocab[letter].tolist()]
            elif letter == "p" and self.has_graph:
                names += [f"p{k}{o}:{c}" for k in (1, 2) for o in "wf" for c in self.concept_ids.tolist()]
            elif letter in "rxe":
                names.append(letter)
            elif letter == "t":
                names += [f"t:{b}" for b in range(TIME_BUCKETS)]
        return names

    def to_state(self) -> dict[str, np.ndarray]:
        """The vocabularies and prerequisites as arrays (the model stores the letters and count scale)."""
        return {"learner_ids": self.learner_ids, "item_ids": self.item_ids, "concept_ids": self.concept_ids,
                "prereq1_ptr": self.prereq_ptr[0], "prereq1_index": self.prereq_index[0],
                "prereq2_ptr": self.prereq_ptr[1], "prereq2_index": self.prereq_index[1],
                "has_graph": np.array([int(self.has_graph)], dtype=np.int64)}

    @classmethod
    def from_state(cls, letters: str, count_scale: str, state: Mapping[str, np.ndarray]) -> FeatureSpace:
        """The space written by ``to_state``."""
        return cls(letters, state["learner_ids"], state["item_ids"], state["concept_ids"],
                   (state["prereq1_ptr"], state["prereq2_ptr"]), (state["prereq1_index"], state["prereq2_index"]),
                   bool(state["has_graph"][0]), count_scale)

    def scale(self, counts: np.ndarray) -> np.ndarray:
        """Counts as feature values."""
        counts = np.asarray(counts, dtype=np.float64)
        return np.log1p(counts) if self.count_scale == "log" else counts


@dataclass(frozen=True, eq=False)
class Prior:
    """What is known of the view's learners before their first row (from ``fit`` and ``learn_one``).

    Counts are given as (view learner code, space concept or item code, right, wrong) entries;
    per view learner: ``right``/``wrong`` answers over all concepts, and ``last_time``/``last_elapsed_ms``
    the timestamp (seconds) and the time taken of the learner's last answer, NaN when unknown.
    """

    concept_learner: np.ndarray
    concept: np.ndarray
    concept_right: np.ndarray
    concept_wrong: np.ndarray
    item_learner: np.ndarray
    item: np.ndarray
    item_right: np.ndarray
    item_wrong: np.ndarray
    last_time: np.ndarray
    last_elapsed_ms: np.ndarray
    right: np.ndarray
    wrong: np.ndarray

    @classmethod
    def empty(cls, n_learners: int) -> Prior:
        """Nothing known of any learner."""
        i, f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        nan = np.full(n_learners, np.nan)
        return cls(i, i, f, f, i, i, f, f, nan, nan.copy(), np.zeros(n_learners), np.zeros(n_learners))


def earlier_counts(event_key: np.ndarray, event_step: np.ndarray, event_right: np.ndarray, event_wrong: np.ndarray,
                   query_key: np.ndarray, query_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the summed right and wrong weights of the events with its key and a smaller step.

    Steps are >= -1 (the prior sits at step -1, before every row).
    """
    m = len(query_key)
    if len(event_key) == 0 or m == 0:
        return np.zeros(m), np.zeros(m)
    keys, event_rank = np.unique(event_key, return_inverse=True)
    at = np.minimum(np.searchsorted(keys, query_key), len(keys) - 1)
    found = keys[at] == query_key
    span = int(max(event_step.max(), query_step.max())) + 2
    if len(keys) * span >= 2**62:
        raise InputError("too many learners x concepts x steps to count earlier answers")
    composite = event_rank.astype(np.int64) * span + (event_step + 1)
    order = np.argsort(composite, kind="stable")
    composite = composite[order]
    right = np.concatenate(([0.0], np.cumsum(np.asarray(event_right, dtype=np.float64)[order])))
    wrong = np.concatenate(([0.0], np.cumsum(np.asarray(event_wrong, dtype=np.float64)[order])))
    lo = np.searchsorted(composite, at * span)
    hi = np.searchsorted(composite, at * span + query_step + 1)
    return np.where(found, right[hi] - right[lo], 0.0), np.where(found, wrong[hi] - wrong[lo], 0.0)


def _previous(values: np.ndarray | None, data: Interactions, prior_values: np.ndarray) -> np.ndarray:
    """Per row, the value of the learner's previous row (the prior's value on a first row)."""
    previous = prior_values[data.learner].astype(np.float64, copy=True)
    later = np.flatnonzero(data.step > 0)
    previous[later] = values[later - 1] if values is not None else np.nan
    return previous


def time_bucket(seconds: np.ndarray) -> np.ndarray:
    """The ``t`` bucket of gaps in seconds (gaps must be finite and >= 0)."""
    return np.minimum(np.floor(np.log2(1.0 + seconds)), TIME_BUCKETS - 1).astype(np.int64)


def design_matrix(space: FeatureSpace, data: Interactions, prior: Prior | None = None) -> scipy.sparse.csr_matrix:
    """The (rows x ``space.n_features``) float32 features of every row of ``data``, from the
    learner's rows of ``data`` with a smaller step and the ``prior`` only."""
    builder = _Builder(space, data, prior if prior is not None else Prior.empty(len(data.learner_ids)))
    builder.one_hots()
    builder.concept_groups()
    builder.item_groups()
    builder.learner_groups()
    builder.time_groups()
    return builder.matrix()


def _events(learner: np.ndarray, code: np.ndarray, step: np.ndarray, correct: np.ndarray, size: int,
            prior_learner: np.ndarray, prior_code: np.ndarray, prior_right: np.ndarray, prior_wrong: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(key, step, right, wrong) of the answers and prior counts keyed by ``learner * size + code``."""
    right = correct.astype(np.float64)
    return (np.concatenate((learner * size + code, prior_learner * size + prior_code)),
            np.concatenate((step, np.full(len(prior_code), -1, dtype=np.int64))),
            np.concatenate((right, prior_right)), np.concatenate((1.0 - right, prior_wrong)))


class _Builder:
    """Collects the (row, column, value) entries of ``design_matrix`` group by group."""

    def __init__(self, space: FeatureSpace, data: Interactions, prior: Prior) -> None:
        self.space, self.data, self.prior, self.letters = space, data, prior, set(space.letters)
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.item = lookup(space.item_ids, data.item_ids)[data.item] if data.n else np.zeros(0, dtype=np.int64)

    def put(self, letter: str, rows: np.ndarray, cols: np.ndarray, values: np.ndarray | float) -> None:
        if letter in self.letters:
            values = np.broadcast_to(np.asarray(values, dtype=np.float64), rows.shape)
            keep = values != 0
            self.entries.append((rows[keep], self.space.offsets[letter] + cols[keep], values[keep]))

    def one_hots(self) -> None:
        """``u`` and ``i``."""
        data = self.data
        if "u" in self.letters:
            learner = lookup(self.space.learner_ids, data.learner_ids)[data.learner]
            self.put("u", np.flatnonzero(learner >= 0), learner[learner >= 0], 1.0)
        self.put("i", np.flatnonzero(self.item >= 0), self.item[self.item >= 0], 1.0)

    def concept_groups(self) -> None:
        """``s``, ``w``, ``f``, ``a`` and ``p``."""
        space, data, prior = self.space, self.data, self.prior
        size = len(space.concept_ids)
        if not self.letters & (CONCEPT_COUNTS | {"s"}) or size == 0:
            return
        row = data.row_concepts()
        concept = lookup(space.concept_ids, data.concept_ids)[data.concept_index]
        key = np.unique(row[concept >= 0] * size + concept[concept >= 0])  # a concept listed twice counts once
        row, concept = key // size, key % size
        self.put("s", row, concept, 1.0)
        if not self.letters & CONCEPT_COUNTS:
            return
        events = _events(data.learner[row], concept, data.step[row], data.correct[row], size,
                         prior.concept_learner, prior.concept, prior.concept_right, prior.concept_wrong)

        def counts(rows: np.ndarray, concepts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return earlier_counts(*events, data.learner[rows] * size + concepts, data.step[rows])

        right, wrong = counts(row, concept)
        self.put("w", row, concept, space.scale(right))
        self.put("f", row, concept, space.scale(wrong))
        self.put("a", row, concept, space.scale(right + wrong))
        if "p" not in self.letters or not space.has_graph:
            return
        for level in (0, 1):
            ptr, index = space.prereq_ptr[level], space.prereq_index[level]
            lengths = ptr[concept + 1] - ptr[concept]
            gather = np.repeat(ptr[concept] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            key = np.unique(np.repeat(row, lengths) * size + index[gather])  # a prerequisite counts once per row
            q_row, q_concept = key // size, key % size
            right, wrong = counts(q_row, q_concept)
            self.put("p", q_row, 2 * level * size + q_concept, space.scale(right))
            self.put("p", q_row, (2 * level + 1) * size + q_concept, space.scale(wrong))

    def item_groups(self) -> None:
        """``W``, ``F`` and ``A``."""
        if not self.letters & ITEM_COUNTS:
            return
        data, prior, size = self.data, self.prior, len(self.space.item_ids)
        row = np.flatnonzero(self.item >= 0)
        item = self.item[row]
        events = _events(data.learner[row], item, data.step[row], data.correct[row], size,
                         prior.item_learner, prior.item, prior.item_right, prior.item_wrong)
        right, wrong = earlier_counts(*events, data.learner[row] * size + item, data.step[row])
        self.put("W", row, item, self.space.scale(right))
        self.put("F", row, item, self.space.scale(wrong))
        self.put("A", row, item, self.space.scale(right + wrong))

    def learner_groups(self) -> None:
        """``r`` and ``x``."""
        if not self.letters & LEARNER_COUNTS:
            return
        data, prior = self.data, self.prior
        row = np.arange(data.n)
        known = np.flatnonzero((prior.right > 0) | (prior.wrong > 0))
        right, wrong = earlier_counts(
            np.concatenate((data.learner, known)), np.concatenate((data.step, np.full(len(known), -1))),
            np.concatenate((data.correct.astype(np.float64), prior.right[known])),
            np.concatenate((1.0 - data.correct, prior.wrong[known])), data.learner, data.step)
        zero = np.zeros(data.n, dtype=np.int64)
        self.put("r", row, zero, self.space.scale(right))
        self.put("x", row, zero, self.space.scale(wrong))

    def time_groups(self) -> None:
        """``e`` and ``t``."""
        data, prior = self.data, self.prior
        if "e" in self.letters:
            seconds = _previous(data.elapsed_ms, data, prior.last_elapsed_ms) / 1000.0
            ok = np.flatnonzero(np.isfinite(seconds) & (seconds >= 0))
            self.put("e", ok, np.zeros(len(ok), dtype=np.int64), np.log1p(seconds[ok]))
        if "t" in self.letters and data.timestamp_s is not None:
            gap = data.timestamp_s - _previous(data.timestamp_s, data, prior.last_time)
            ok = np.flatnonzero(np.isfinite(gap) & (gap >= 0))
            self.put("t", ok, time_bucket(gap[ok]), 1.0)

    def matrix(self) -> scipy.sparse.csr_matrix:
        rows, cols, values = (np.concatenate([e[k] for e in self.entries]) if self.entries
                              else np.zeros(0, dtype=np.int64) for k in range(3))
        matrix = scipy.sparse.csr_matrix((values.astype(np.float32), (rows, cols)),
                                         shape=(self.data.n, self.space.n_features), dtype=np.float32)
        matrix.sort_indices()
        return matrix
