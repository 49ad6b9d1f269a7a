"""Metrics broken down by concept: an answer tagged with several concepts counts in each of their rows.

This is a breakdown, not the headline: the overall metrics score every answer exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike

from knowtrace.evaluation.metrics import METRICS, score_all
from knowtrace.exceptions import InputError

__all__ = ["concept_rows", "mean_per_concept", "per_concept_metrics"]


def concept_rows(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(row, concept id) of every distinct (answer, concept) pair of the ``concept_ids`` column, in row order.

    Rows without concepts (or a table without the column) contribute no pair; a concept listed twice
    on one row counts once.
    """
    if "concept_ids" not in table.column_names or table.num_rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    column = table.column("concept_ids").combine_chunks()
    flat = pc.list_flatten(column)
    if len(flat) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    rows = np.asarray(pc.list_parent_indices(column).to_numpy(), dtype=np.int64)
    concepts = np.asarray(flat.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    vocabulary, codes = np.unique(concepts, return_inverse=True)
    pairs = np.unique(np.stack([rows, codes]), axis=1)
    return pairs[0], vocabulary[pairs[1]]


def _natural(concept: str) -> tuple[int, int, str]:
    return (0, int(concept), "") if concept.isdigit() else (1, 0, concept)


def per_concept_metrics(table: pa.Table, y: ArrayLike, p: ArrayLike) -> list[dict[str, Any]]:
    """One dict per concept (natural order of ids): concept_id, n, correct_rate and the metrics of
    ``score_all`` over the answers tagged with the concept (AUC is NaN when they are all right or all
    wrong). ``y`` and ``p`` are the outcomes and predictions of the rows of ``table``."""
    y_arr, p_arr = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y_arr.shape != (table.num_rows,) or p_arr.shape != (table.num_rows,):
        raise InputError(f"{table.num_rows} answers but {y_arr.size} outcomes and {p_arr.size} predictions")
    rows, concepts = concept_rows(table)
    if len(rows) == 0:
        return []
    order = np.argsort(concepts, kind="stable")
    rows, concepts = rows[order], concepts[order]
    bounds = np.r_[0, np.flatnonzero(concepts[1:] != concepts[:-1]) + 1, len(concepts)]
    out = []
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        ys, ps = y_arr[rows[start:stop]], p_arr[rows[start:stop]]
        out.append({"concept_id": str(concepts[start]), "n": stop - start, "correct_rate": float(ys.mean()),
                    **score_all(ys, ps)})
    out.sort(key=lambda row: _natural(row["concept_id"]))
    return out


def mean_per_concept(breakdowns: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The per-concept rows of several runs on the same test answers (the folds of a k-fold
    evaluation), each metric averaged over the runs that define it (NaN when none does)."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for rows in breakdowns:
        for row in rows:
            merged.setdefault(row["concept_id"], []).append(row)
    out = []
    for concept, rows in merged.items():
        row = {"concept_id": concept, "n": rows[0]["n"], "correct_rate": rows[0]["correct_rate"]}
        for metric in METRICS:
            values = np.array([r[metric] for r in rows], dtype=np.float64)
            row[metric] = float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else float("nan")
        out.append(row)
    out.sort(key=lambda row: _natural(row["concept_id"]))
    return out
