"""Encoding answers as tokens and cutting histories into windows (knowtrace.models.deep.sequences)."""

from __future__ import annotations

import numpy as np
import pytest

from knowtrace.models.data import Interactions
from knowtrace.models.deep.sequences import (
    FIRST,
    PAD,
    UNK,
    Encoded,
    Vocabulary,
    batches,
    make_batch,
    plan_windows,
    window_of,
)


def predicted_by(windows, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row: how many windows predict it, and (window start, row offset) of the last one."""
    times = np.zeros(n_rows, dtype=np.int64)
    first_row = np.full(n_rows, -1)
    window_start = np.full(n_rows, -1)
    for w in range(len(windows)):
        rows = np.arange(windows.row[w] + windows.pred_from[w], windows.row[w] + windows.length[w])
        times[rows] += 1
        first_row[rows] = windows.row[w]
        window_start[rows] = windows.start[w]
    return times, first_row, window_start


@pytest.mark.parametrize("window", [2, 4, 10, 200])
def test_every_answer_is_predicted_once_with_at_most_window_answers_before_it(window: int) -> None:
    lengths = np.array([1, window - 1, window, window + 1, 3 * window + 5, 7 * window // 2], dtype=np.int64)
    row0 = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    zeros = np.zeros(len(lengths), dtype=np.int64)
    windows = plan_windows(row0, lengths, zeros, zeros, window)
    times, first_row, _ = predicted_by(windows, int(lengths.sum()))
    np.testing.assert_array_equal(times, 1)
    assert np.all(windows.length <= window) and np.all(windows.resumed == 0)
    seq = np.repeat(np.arange(len(lengths)), lengths)
    g = np.arange(int(lengths.sum())) - row0[seq]
    history = np.arange(int(lengths.sum())) - first_row  # answers of its window before the row
    assert np.all(history <= window - 1)
    # short histories are seen whole; longer ones keep at least half a window of context
    np.testing.assert_array_equal(history[g < window], g[g < window])
    assert np.all(history[g >= window] >= window // 2)
    np.testing.assert_array_equal(window_of(g, window), windows.k[np.searchsorted(windows.row, first_row)])
    # windows start at multiples of the stride and stay within their sequence
    assert np.all(windows.start % (window // 2) == 0)
    assert np.all(windows.row + windows.length <= row0[windows.seq] + lengths[windows.seq])


def test_windows_resume_from_stored_states_and_cached_answers() -> None:
    window, stride = 8, 4
    # a learner with 13 earlier answers (in a stored state) and 10 new rows
    resumed = plan_windows(np.array([0]), np.array([10]), np.array([13]), np.array([13]), window)
    times, first_row, start = predicted_by(resumed, 10)
    np.testing.assert_array_equal(times, 1)
    g = 13 + np.arange(10)
    np.testing.assert_array_equal(start, window_of(g, window) * stride)
    assert resumed.resumed.tolist()[:2] == [1, 2]  # answers 13.. continue window 2 (from 8) and window 3 (from 12)
    assert set(resumed.resumed.tolist()[2:]) <= {0}
    # the same learner with its last 8 answers cached as context rows: same windows, full rows
    cached = plan_windows(np.array([0]), np.array([18]), np.array([5]), np.array([13]), window)
    times, first_row, start2 = predicted_by(cached, 18)
    np.testing.assert_array_equal(times[:8], 0)
    np.testing.assert_array_equal(times[8:], 1)
    np.testing.assert_array_equal(start2[8:], start)
    assert np.all(5 + cached.row == cached.start)  # each window starts at its first answer
    # nothing to predict: no window
    assert len(plan_windows(np.array([0]), np.array([3]), np.array([0]), np.array([3]), window)) == 0


def test_batches_group_similar_lengths_and_shuffle_with_a_generator() -> None:
    lengths = np.array([5, 1, 9, 9, 2, 7, 3], dtype=np.int64)
    plain = batches(lengths, 3)
    assert [lengths[b].tolist() for b in plain] == [[9, 9, 7], [5, 3, 2], [1]]
    shuffled = batches(lengths, 3, np.random.default_rng(0))
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(7))
    assert all(len(b) <= 3 for b in shuffled)
    assert batches(np.zeros(0, dtype=np.int64), 4) == []


def test_make_batch_pads_and_marks_predicted_cells() -> None:
    enc = Encoded(np.arange(10, dtype=np.int64)[:, None] + FIRST, np.arange(10, dtype=np.int64) + 1,
                  np.arange(10, dtype=np.int64) % 2)
    windows = plan_windows(np.array([0, 6]), np.array([6, 4]), np.zeros(2, np.int64), np.zeros(2, np.int64), 4)
    batch = make_batch(enc, windows, np.arange(len(windows)))
    assert batch.tokens.shape == (len(windows), 4, 1)
    assert np.all(batch.tokens[~batch.valid] == PAD) and np.all(batch.rows[~batch.valid] == -1)
    assert np.sort(batch.rows[batch.target]).tolist() == list(range(10))
    np.testing.assert_array_equal(batch.pos[0], np.arange(4))


def test_vocabulary_encodes_items_concepts_and_unknown_ids(make_table) -> None:
    train = Interactions.from_table(make_table([
        ("a", "q1", ("c1", "c2"), 1), ("a", "q2", ("c2",), 0), ("b", "q1", ("c1", "c2"), 1),
        ("b", "q3", (), 1),
    ]))
    concept = Vocabulary.from_view(train, "concept")
    test = Interactions.from_table(make_table([
        ("x", "q1", ("c1", "c2"), 1), ("x", "q9", ("c2", "c7"), 0), ("x", "q2", (), 1), ("x", "q8", (), 0),
    ]))
    enc = concept.encode(test)
    c1, c2 = FIRST, FIRST + 1
    assert enc.tokens.tolist() == [[c1, c2], [c2, UNK], [c2, PAD], [UNK, PAD]]
    assert enc.item.tolist() == [1, 0, 2, 0]  # q9 and q8 are unknown items
    assert enc.correct.tolist() == [1, 0, 1, 0]
    one = concept.encode_one("q2", ())
    assert one.tokens.tolist() == [[c2]] and one.item.tolist() == [2]
    assert concept.encode_one("q9", ()).tokens.tolist() == [[UNK]]
    # q3 was answered without concepts in fit: its answers are UNK
    assert concept.encode(train).tokens[3].tolist()[0] == UNK
    assert concept.n_tokens == FIRST + 2 and concept.n_items == 4

    item = Vocabulary.from_view(train, "item")
    assert item.encode(test).tokens[:, 0].tolist() == [FIRST, UNK, FIRST + 1, UNK]
    queries = item.concept_queries()  # the typical item of c1 and of c2 is q1 (answered twice)
    assert queries.tokens[:, 0].tolist() == [FIRST, FIRST] and queries.item.tolist() == [1, 1]
    assert concept.concept_queries().tokens[:, 0].tolist() == [c1, c2]
    restored = Vocabulary.from_state(concept.to_state())
    np.testing.assert_array_equal(restored.encode(test).tokens, enc.tokens)
