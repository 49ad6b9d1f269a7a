"""Answers as token arrays, cut into overlapping windows and padded, length-bucketed batches.

Encoding (``Vocabulary.encode``): every answer becomes a row of ``tokens`` (its item, or its
concepts when the unit is ``"concept"``; 0 pads, ``UNK`` stands for ids unknown to the model), an
``item`` code (0 for an item unknown to the model) and its ``correct`` outcome.

Windows (``plan_windows``): a history is cut into windows of at most ``window`` answers started
every ``stride = window // 2`` answers. Window 0 covers answers ``[0, window)`` and predicts all of
them; window ``k >= 1`` covers ``[k * stride, k * stride + window)`` and predicts only its second
half ``[(k + 1) * stride, (k + 2) * stride)``. So every answer is predicted exactly once, from the
answers of its window before it (``stride`` to ``window - 1`` of them once a history is longer
than the window, all of them before). Answer ``g`` is predicted by window ``window_of(g)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.data import Interactions, lookup

__all__ = ["PAD", "UNK", "FIRST", "AnswerCounts", "Batch", "Encoded", "Vocabulary", "Windows", "batches", "make_batch",
           "history_windows", "pair_frequencies", "plan_windows", "trim_tokens", "window_of"]

#: token code of padding
PAD = 0
#: token code of an item or concept the model does not know (its embedding is the frequency-weighted
#: mean of the known ones, set after training)
UNK = 1
#: token code of the first known item or concept
FIRST = 2


def window_of(g: np.ndarray | int, window: int) -> np.ndarray | int:
    """The window that predicts answer ``g`` (0-based index in the learner's history)."""
    stride = window // 2
    if isinstance(g, (int, np.integer)):
        return 0 if g < window else int(g) // stride - 1
    g = np.asarray(g, dtype=np.int64)
    return np.where(g < window, 0, g // stride - 1)


@dataclass(frozen=True)
class Encoded:
    """Answers as model codes: ``tokens`` (n, k) int64 (PAD-padded), ``item`` (n,) int64 (0 = unknown
    item), ``correct`` (n,) int64."""

    tokens: np.ndarray
    item: np.ndarray
    correct: np.ndarray

    @property
    def n(self) -> int:
        """Number of answers."""
        return len(self.item)

    def take(self, rows: np.ndarray) -> Encoded:
        """The answers ``rows``."""
        return Encoded(self.tokens[rows], self.item[rows], self.correct[rows])

    def widened(self, k: int) -> Encoded:
        """The same answers with ``tokens`` padded to ``k`` columns."""
        if self.tokens.shape[1] >= k:
            return self
        pad = np.zeros((self.n, k - self.tokens.shape[1]), dtype=np.int64)
        return Encoded(np.concatenate([self.tokens, pad], axis=1), self.item, self.correct)

    @staticmethod
    def concat(parts: list[Encoded]) -> Encoded:
        """The answers of ``parts``, one after the other."""
        k = max((p.tokens.shape[1] for p in parts), default=1)
        parts = [p.widened(k) for p in parts]
        if not parts:
            return Encoded(np.zeros((0, 1), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Encoded(np.concatenate([p.tokens for p in parts]), np.concatenate([p.item for p in parts]),
                       np.concatenate([p.correct for p in parts]))


def pair_frequencies(encoded: Encoded, n_tokens: int) -> np.ndarray:
    """Answers per (token, outcome) pair, at ``2 * token + correct`` (PAD left out); an answer with
    several tokens counts once for each."""
    real = encoded.tokens > PAD
    pairs = (2 * encoded.tokens + encoded.correct[:, None])[real]
    return np.bincount(pairs, minlength=2 * n_tokens).astype(np.float64)


@dataclass(frozen=True)
class AnswerCounts:
    """What a ``Vocabulary`` (and ``pair_frequencies``) needs from the training answers, as counts that
    add up over chunks of learners (``merge``), so that answers read chunk by chunk give the same
    vocabulary as all of them at once.

    ``item_ids``/``concept_ids``: sorted ids. ``item_answers`` and ``bare_answers`` (n_items, 2): answers
    to each item by outcome, all of them and those naming no concept; ``concept_answers`` (n_concepts, 2):
    answers naming each concept by outcome (once per mention). ``pairs`` (m, 3): (concept code, item
    code, answers naming the concept on the item), sorted. ``first_tag`` (n_items, width): the concept
    codes (-1 pads) of each item's first answer with concepts, first in the order of learner id then
    position, whose learner is ``first_learner``; -1 in column 0 for an item never answered with
    concepts. ``width``: most concepts named by one answer. ``n``: answers.
    """

    item_ids: np.ndarray
    concept_ids: np.ndarray
    item_answers: np.ndarray
    bare_answers: np.ndarray
    concept_answers: np.ndarray
    pairs: np.ndarray
    first_tag: np.ndarray
    first_learner: np.ndarray
    width: int
    n: int

    @classmethod
    def from_view(cls, data: Interactions) -> AnswerCounts:
        """The counts of the answers of ``data``."""
        n_items, n_concepts = len(data.item_ids), len(data.concept_ids)
        lengths = np.diff(data.concept_ptr)
        correct = data.correct.astype(np.int64)
        bare = lengths == 0
        rows = data.row_concepts()
        keys, answers = np.unique(data.concept_index * max(n_items, 1) + data.item[rows], return_counts=True)
        pairs = np.stack([keys // max(n_items, 1), keys % max(n_items, 1), answers], axis=1).astype(np.int64)
        width = int(lengths.max(initial=0))
        first_tag = np.full((n_items, width), -1, dtype=np.int64)
        first_learner = np.full(n_items, "", dtype=data.learner_ids.dtype)
        tagged = np.flatnonzero(lengths)
        if len(tagged):
            _, first = np.unique(data.item[tagged], return_index=True)
            heads = tagged[first]
            for rows_of_len in _group_by(lengths[heads], heads):
                at = data.concept_ptr[rows_of_len][:, None] + np.arange(int(lengths[rows_of_len[0]]))
                first_tag[data.item[rows_of_len], :at.shape[1]] = data.concept_index[at]
            first_learner[data.item[heads]] = data.learner_ids[data.learner[heads]]
        return cls(data.item_ids, data.concept_ids, _by_outcome(data.item, correct, n_items),
                   _by_outcome(data.item[bare], correct[bare], n_items),
                   _by_outcome(data.concept_index, correct[rows], n_concepts), pairs, first_tag, first_learner,
                   width, data.n)

    def merge(self, other: AnswerCounts) -> AnswerCounts:
        """The counts of the answers of both (of different learners)."""
        items, concepts = np.union1d(self.item_ids, other.item_ids), np.union1d(self.concept_ids, other.concept_ids)
        sides = [(np.searchsorted(items, c.item_ids), np.searchsorted(concepts, c.concept_ids), c)
                 for c in (self, other)]
        totals = []
        for name, n in (("item_answers", len(items)), ("bare_answers", len(items)),
                        ("concept_answers", len(concepts))):
            total = np.zeros((n, 2), dtype=np.int64)
            for at_item, at_concept, c in sides:
                total[at_item if name != "concept_answers" else at_concept] += getattr(c, name)
            totals.append(total)
        keys = np.concatenate([at_concept[c.pairs[:, 0]] * len(items) + at_item[c.pairs[:, 1]]
                               for at_item, at_concept, c in sides])
        answers = np.concatenate([c.pairs[:, 2] for c in (self, other)])
        keys, inverse = np.unique(keys, return_inverse=True)
        pairs = np.stack([keys // max(len(items), 1), keys % max(len(items), 1),
                          np.bincount(inverse, weights=answers, minlength=len(keys)).astype(np.int64)], axis=1)
        width = max(self.width, other.width)
        first_tag = np.full((len(items), width), -1, dtype=np.int64)
        first_learner = np.full(len(items), "", dtype=np.result_type(self.first_learner, other.first_learner))
        for at_item, at_concept, c in sides:
            if not c.first_tag.size:
                continue
            tag = np.where(c.first_tag >= 0, at_concept[np.maximum(c.first_tag, 0)], -1)
            has = first_tag[at_item, 0] >= 0 if width else np.zeros(len(at_item), dtype=bool)
            take = (tag[:, 0] >= 0) & (~has | (c.first_learner < first_learner[at_item]))
            first_tag[at_item[take]] = -1
            first_tag[at_item[take], :tag.shape[1]] = tag[take]
            first_learner[at_item[take]] = c.first_learner[take]
        return AnswerCounts(items, concepts, *totals, pairs.reshape(-1, 3), first_tag, first_learner, width,
                            self.n + other.n)

    def pair_frequencies(self, vocab: Vocabulary) -> np.ndarray:
        """``pair_frequencies`` of these answers encoded with ``vocab`` (built from them)."""
        pairs = np.zeros((vocab.n_tokens, 2), dtype=np.float64)
        code = vocab.item_codes(self.item_ids)
        if vocab.unit == "item":
            np.add.at(pairs, np.where(code > 0, code - 1 + FIRST, UNK), self.item_answers)
            return pairs.ravel()
        np.add.at(pairs, vocab.concept_tokens(self.concept_ids), self.concept_answers)
        tokens = vocab.item_concepts[code]
        tokens[tokens[:, 0] == PAD, 0] = UNK
        for column in tokens.T:
            real = column > PAD
            np.add.at(pairs, column[real], self.bare_answers[real])
        return pairs.ravel()


def _by_outcome(codes: np.ndarray, correct: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) answers per code and outcome."""
    return np.bincount(codes * 2 + correct, minlength=2 * n).reshape(n, 2).astype(np.int64)


@dataclass(frozen=True)
class Vocabulary:
    """The items and concepts a model knows, and what a token stands for (``unit``).

    ``item_concepts`` (n_items + 1, k) holds, for every known item code, the concept tokens it had
    in fit (used for answers that name no concepts); ``concept_item`` the code of the most answered
    item of every concept in fit (its typical item, used by ``mastery`` when the unit is ``"item"``).
    """

    unit: str
    item_ids: np.ndarray
    concept_ids: np.ndarray
    item_concepts: np.ndarray
    concept_item: np.ndarray

    @property
    def n_tokens(self) -> int:
        """Size of the token vocabulary (PAD and UNK included)."""
        return FIRST + (len(self.item_ids) if self.unit == "item" else len(self.concept_ids))

    @property
    def n_items(self) -> int:
        """Number of item codes (0, the unknown item, included)."""
        return len(self.item_ids) + 1

    @classmethod
    def from_view(cls, data: Interactions, unit: str) -> Vocabulary:
        """The vocabulary of the training answers; ``unit`` is ``"item"`` or ``"concept"``."""
        return cls.from_counts(AnswerCounts.from_view(data), unit)

    @classmethod
    def from_counts(cls, counts: AnswerCounts, unit: str) -> Vocabulary:
        """The vocabulary of the training answers summed up in ``counts`` (equal to ``from_view`` of
        the same answers, however they were split into chunks)."""
        n_items, n_concepts = len(counts.item_ids), len(counts.concept_ids)
        item_concepts = np.zeros((n_items + 1, max(counts.width, 1)), dtype=np.int64)
        tag = counts.first_tag
        if tag.size:
            item_concepts[1:, :tag.shape[1]] = np.where(tag >= 0, tag + FIRST, PAD)
        concept_item = np.zeros(n_concepts, dtype=np.int64)
        if n_concepts and len(counts.pairs):
            concept, item, answers = counts.pairs.T
            order = np.lexsort((item, -answers, concept))  # most answered item first, ties by id
            concept, item = concept[order], item[order]
            head = np.concatenate(([True], concept[1:] != concept[:-1]))
            concept_item[concept[head]] = item[head] + 1
        return cls(unit, counts.item_ids.copy(), counts.concept_ids.copy(), item_concepts, concept_item)

    def item_codes(self, ids: np.ndarray) -> np.ndarray:
        """Model codes of item ids (0 where unknown)."""
        return lookup(self.item_ids, ids) + 1

    def concept_tokens(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of concept ids (UNK where unknown)."""
        codes = lookup(self.concept_ids, ids)
        return np.where(codes >= 0, codes + FIRST, UNK).astype(np.int64)

    def encode(self, data: Interactions) -> Encoded:
        """The answers of ``data`` in the model's codes, in the view's row order.

        Unit ``"item"``: the token is the item (UNK if unknown). Unit ``"concept"``: the tokens are
        the answer's concepts (UNK for unknown ones); an answer without concepts takes those its item
        had in fit, else UNK.
        """
        item = self.item_codes(data.item_ids)[data.item] if data.n else np.zeros(0, dtype=np.int64)
        correct = data.correct.astype(np.int64)
        if self.unit == "item":
            tokens = np.where(item > 0, item - 1 + FIRST, UNK)[:, None].astype(np.int64)
            return Encoded(tokens, item, correct)
        lengths = np.diff(data.concept_ptr)
        k = max(int(lengths.max(initial=0)), self.item_concepts.shape[1], 1)
        tokens = np.zeros((data.n, k), dtype=np.int64)
        if len(data.concept_index):
            codes = self.concept_tokens(data.concept_ids)[data.concept_index]
            rows = data.row_concepts()
            column = np.arange(len(rows)) - np.repeat(data.concept_ptr[:-1], lengths)
            tokens[rows, column] = codes
        bare = lengths == 0
        tokens[bare, :self.item_concepts.shape[1]] = self.item_concepts[item[bare]]
        tokens[bare & (tokens[:, 0] == PAD), 0] = UNK
        return Encoded(trim_tokens(tokens), item, correct)

    def encode_one(self, item_id: str, concept_ids: tuple[str, ...], correct: int = 0) -> Encoded:
        """One answer (or query) in the model's codes, encoded as ``encode`` would."""
        item = self.item_codes(np.array([item_id], dtype=str))
        if self.unit == "item":
            tokens = np.where(item > 0, item - 1 + FIRST, UNK)[:, None]
        elif concept_ids:
            tokens = self.concept_tokens(np.array(concept_ids, dtype=str))[None, :]
        else:
            tokens = trim_tokens(self.item_concepts[item])
            if tokens[0, 0] == PAD:
                tokens = np.array([[UNK]], dtype=np.int64)
        return Encoded(tokens.astype(np.int64), item.astype(np.int64), np.array([int(correct)], dtype=np.int64))

    def concept_queries(self) -> Encoded:
        """One query per known concept, on its typical item: the concept alone (with an unknown,
        i.e. average, item) when the unit is ``"concept"``, the concept's most answered item otherwise."""
        n = len(self.concept_ids)
        if self.unit == "concept":
            tokens = (np.arange(n, dtype=np.int64) + FIRST)[:, None]
            return Encoded(tokens, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
        item = self.concept_item
        tokens = np.where(item > 0, item - 1 + FIRST, UNK)[:, None].astype(np.int64)
        return Encoded(tokens, item.copy(), np.zeros(n, dtype=np.int64))

    def to_state(self) -> dict[str, np.ndarray]:
        """The vocabulary as named arrays."""
        return {"unit": np.array([self.unit], dtype=str), "item_ids": self.item_ids,
                "concept_ids": self.concept_ids, "item_concepts": self.item_concepts,
                "concept_item": self.concept_item}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Vocabulary:
        """The vocabulary written by ``to_state``."""
        vocab = cls(str(state["unit"][0]), np.asarray(state["item_ids"], dtype=str),
                    np.asarray(state["concept_ids"], dtype=str), np.asarray(state["item_concepts"], dtype=np.int64),
                    np.asarray(state["concept_item"], dtype=np.int64))
        if vocab.unit not in ("item", "concept"):
            raise ValueError(f"unknown unit {vocab.unit!r}")
        if vocab.item_concepts.ndim != 2 or len(vocab.item_concepts) != vocab.n_items:
            raise ValueError("item_concepts does not match the items")
        if vocab.concept_item.shape != (len(vocab.concept_ids),):
            raise ValueError("concept_item does not match the concepts")
        return vocab


def trim_tokens(tokens: np.ndarray) -> np.ndarray:
    """``tokens`` without trailing all-PAD columns (at least one column)."""
    used = np.flatnonzero((tokens != PAD).any(axis=0))
    k = int(used[-1]) + 1 if len(used) else 1
    return tokens[:, :k]


def _group_by(keys: np.ndarray, values: np.ndarray) -> Iterator[np.ndarray]:
    """``values`` grouped by equal ``keys``."""
    for key in np.unique(keys):
        yield values[keys == key]


@dataclass(frozen=True)
class Windows:
    """Windows over histories laid one after another in an ``Encoded``.

    Window ``w`` covers rows ``[row[w], row[w] + length[w])`` of sequence ``seq[w]`` and predicts its
    rows from offset ``pred_from[w]`` on; it is window number ``k[w]`` of that history and starts at
    answer ``start[w]`` of it (its first row may come later when earlier answers are held in a
    learner's stored state: ``resumed[w]`` is then 1 for the current window, 2 for the next, else 0).
    """

    row: np.ndarray
    length: np.ndarray
    pred_from: np.ndarray
    seq: np.ndarray
    k: np.ndarray
    start: np.ndarray
    resumed: np.ndarray

    def __len__(self) -> int:
        return len(self.row)


def plan_windows(row0: np.ndarray, length: np.ndarray, g0: np.ndarray, n0: np.ndarray, window: int) -> Windows:
    """The windows that predict every answer of each sequence ``s``: rows ``[row0[s], row0[s] + length[s])``
    hold answers ``g0[s], g0[s] + 1, ...`` of a history, of which those from ``n0[s]`` on are predicted
    (earlier ones are context, or were consumed into a stored state when ``g0 == n0 > 0``)."""
    stride = window // 2
    row0, length, g0, n0 = (np.asarray(a, dtype=np.int64) for a in (row0, length, g0, n0))
    end = g0 + length
    live = end > n0
    k_lo = np.where(live, window_of(np.minimum(n0, np.maximum(end - 1, 0)), window), 0)
    k_hi = np.where(live, window_of(np.maximum(end - 1, 0), window), -1)
    count = np.maximum(k_hi - k_lo + 1, 0)
    seq = np.repeat(np.arange(len(row0), dtype=np.int64), count)
    k = k_lo[seq] + np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    start = k * stride
    lo = np.maximum(start, g0[seq])
    hi = np.minimum(start + window, end[seq])
    pred_lo = np.maximum(np.where(k == 0, 0, start + stride), n0[seq])
    resumed = np.where(start >= n0[seq], 0, np.where(k == k_lo[seq], 1, 2))
    return Windows(row0[seq] + lo - g0[seq], hi - lo, pred_lo - lo, seq, k, start, resumed.astype(np.int64))


def history_windows(row0: np.ndarray, length: np.ndarray, window: int) -> Windows:
    """The windows that predict every answer of whole histories (rows ``[row0[s], row0[s] + length[s])``)."""
    zeros = np.zeros(len(row0), dtype=np.int64)
    return plan_windows(row0, length, zeros, zeros, window)


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Window indices grouped into batches of windows of similar length (longest first); with
    ``rng``, ties are broken at random and the batch order is shuffled."""
    n = len(lengths)
    if n == 0:
        return []
    if rng is None:
        order = np.lexsort((np.arange(n), -lengths))
    else:
        order = np.lexsort((rng.permutation(n), -lengths))
    out = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if rng is not None:
        out = [out[j] for j in rng.permutation(len(out))]
    return out


@dataclass(frozen=True)
class Batch:
    """Padded windows as numpy arrays: ``tokens`` (b, l, k), ``item``/``correct``/``pos`` (b, l),
    ``valid`` (b, l) real rows, ``target`` (b, l) rows whose prediction counts, ``rows`` (b, l) row
    of every cell in the ``Encoded`` (-1 on padding)."""

    tokens: np.ndarray
    item: np.ndarray
    correct: np.ndarray
    pos: np.ndarray
    valid: np.ndarray
    target: np.ndarray
    rows: np.ndarray


def make_batch(encoded: Encoded, windows: Windows, which: np.ndarray) -> Batch:
    """The windows ``which`` padded to their longest; ``pos`` counts from each window's first row."""
    length = windows.length[which]
    width = int(length.max(initial=1))
    offset = np.arange(width, dtype=np.int64)
    valid = offset[None, :] < length[:, None]
    rows = np.where(valid, windows.row[which][:, None] + offset[None, :], -1)
    safe = np.maximum(rows, 0)
    target = valid & (offset[None, :] >= windows.pred_from[which][:, None])
    tokens = encoded.tokens[safe] * valid[:, :, None]
    return Batch(tokens, encoded.item[safe] * valid, encoded.correct[safe] * valid,
                 np.broadcast_to(offset, valid.shape).copy(), valid, target, rows)
