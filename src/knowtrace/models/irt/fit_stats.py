"""Item fit: infit/outfit mean squares (with their standardised t and p-values) and Orlando & Thissen's S-X².

- Infit and outfit compare each answer with P(correct) at the learner's maximum-likelihood
  ability (learners whose estimate sits at a bound, such as all-correct patterns, are left out,
  as in Rasch practice): outfit = mean of squared standardised residuals, infit =
  information-weighted mean square; ``*_t`` is the Wilson–Hilferty standardisation and ``*_p``
  its two-sided normal p-value. Both are Rasch statistics: with short tests the estimated
  abilities shrink the residuals and the mean squares fall below 1.
- S-X² (Orlando & Thissen 2000) compares, in every summed-score group, the observed proportion
  correct with the one the model implies (ability integrated over the calibration's N(0, 1)
  prior, summed-score likelihoods by the Lord–Wingersky recursion). Adjacent score groups are
  merged until each holds at least ``min_expected`` expected correct and wrong answers; the
  statistic is referred to chi-square with (groups - item parameters) degrees of freedom. It is
  defined on learners who answered every item; it is NaN when there are none or df < 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2, norm

from knowtrace.models.irt.ability import _aligned, _blocks, mle
from knowtrace.models.irt.params import ItemParameters, quadrature
from knowtrace.models.irt.response_matrix import ResponseMatrix

__all__ = ["ItemFit", "item_fit", "PARAMETERS_PER_ITEM"]

#: free parameters per item of each model, for S-X² degrees of freedom
PARAMETERS_PER_ITEM = {"rasch": 1, "1pl": 1, "2pl": 2, "3pl": 3, "4pl": 4}


@dataclass(frozen=True, eq=False)
class ItemFit:
    """Fit statistics per item (aligned with ``item_ids``)."""

    item_ids: np.ndarray
    n_answers: np.ndarray
    infit: np.ndarray
    infit_t: np.ndarray
    infit_p: np.ndarray
    outfit: np.ndarray
    outfit_t: np.ndarray
    outfit_p: np.ndarray
    sx2: np.ndarray
    sx2_df: np.ndarray
    sx2_p: np.ndarray
    n_complete: int

    def row(self, k: int) -> dict[str, Any]:
        """The statistics of item ``k`` as a JSON-ready dict (None where undefined)."""
        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None
        return {"infit": num(self.infit[k]), "infit_t": num(self.infit_t[k]), "infit_p": num(self.infit_p[k]),
                "outfit": num(self.outfit[k]), "outfit_t": num(self.outfit_t[k]), "outfit_p": num(self.outfit_p[k]),
                "sx2": num(self.sx2[k]), "sx2_df": int(self.sx2_df[k]), "sx2_p": num(self.sx2_p[k])}

    def by_item(self) -> dict[str, dict[str, Any]]:
        """item_id -> its statistics."""
        return {item: self.row(k) for k, item in enumerate(self.item_ids.tolist())}


def item_fit(responses: ResponseMatrix, params: ItemParameters, *, model: str = "2pl",
             min_expected: float = 1.0) -> ItemFit:
    """Infit/outfit and S-X² of every calibrated item answered in ``responses``."""
    data, items = _aligned(responses, params)
    ability = mle(data, items)
    theta = ability.theta
    usable = np.isfinite(theta) & ~ability.at_bound
    m = len(items)
    sums = {k: np.zeros(m) for k in ("n", "z2", "r2", "w", "c_w2", "c_minus_w2")}
    for rows_block, rows, cols, x in _blocks(data):
        keep = usable[rows]
        rows, cols, x = rows[keep], cols[keep], x[keep]
        t = theta[rows]
        z = items.a[cols] * (t - items.b[cols])
        p = items.c[cols] + (items.d[cols] - items.c[cols]) / (1.0 + np.exp(-z))
        w = np.maximum(p * (1.0 - p), 1e-12)
        c = w * (1.0 - 3.0 * w)  # fourth central moment of a 0/1 answer
        r2 = (x - p) ** 2
        for key, values in (("n", np.ones_like(p)), ("z2", r2 / w), ("r2", r2), ("w", w), ("c_w2", c / (w * w)),
                            ("c_minus_w2", c - w * w)):
            sums[key] += np.bincount(cols, weights=values, minlength=m)
    n = sums["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        outfit = sums["z2"] / n
        infit = sums["r2"] / sums["w"]
        q_out = np.sqrt(np.maximum(sums["c_w2"] / n ** 2 - 1.0 / n, 0.0))
        q_in = np.sqrt(np.maximum(sums["c_minus_w2"] / sums["w"] ** 2, 0.0))
        outfit_t = (np.cbrt(outfit) - 1.0) * (3.0 / q_out) + q_out / 3.0
        infit_t = (np.cbrt(infit) - 1.0) * (3.0 / q_in) + q_in / 3.0
    outfit_t = np.where(np.isfinite(outfit_t), outfit_t, np.nan)
    infit_t = np.where(np.isfinite(infit_t), infit_t, np.nan)
    sx2, df, p_sx2, n_complete = _s_x2(data, items, PARAMETERS_PER_ITEM.get(model, 2), min_expected)
    return ItemFit(items.item_ids, n.astype(np.int64), infit, infit_t, 2 * norm.sf(np.abs(infit_t)), outfit,
                   outfit_t, 2 * norm.sf(np.abs(outfit_t)), sx2, df, p_sx2, n_complete)


def _summed_score_likelihoods(p: np.ndarray) -> np.ndarray:
    """Lord–Wingersky: P(summed score = k | node) for k = 0..items (rows) at every node (columns)."""
    m, q = p.shape
    f = np.zeros((m + 1, q))
    f[0] = 1.0
    for i in range(m):
        shifted = f[:i + 1] * p[i]
        f[:i + 1] *= 1.0 - p[i]
        f[1:i + 2] += shifted
    return f


def _s_x2(data: ResponseMatrix, items: ItemParameters, n_params: int,
          min_expected: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    m = len(items)
    nan = np.full(m, np.nan)
    zero = np.zeros(m, dtype=np.int64)
    complete = data.learner_counts() == m
    n_complete = int(complete.sum())
    if m < 2 or n_complete == 0:
        return nan, zero, nan.copy(), n_complete
    x = data.subset(learners=complete).to_dense()
    score = x.sum(axis=1).astype(np.int64)
    groups = np.arange(1, m)  # scores 0 and m carry no information on any item
    count = np.bincount(score, minlength=m + 1)[groups].astype(np.float64)
    observed_correct = np.stack([np.bincount(score, weights=x[:, i], minlength=m + 1)[groups] for i in range(m)])
    grid = quadrature(61, "uniform")
    p = np.clip(items.prob(grid.nodes), 1e-12, 1 - 1e-12)
    f = _summed_score_likelihoods(p)
    denominator = f @ grid.weights  # P(score = k)
    # P(item correct and score = k) = sum_q w_q P_i(q) f_-i(k - 1 | q)
    joint = _joint_correct(f, p, grid.weights)
    expected = joint[:, groups - 1] / np.maximum(denominator[groups], 1e-300)[None, :]
    sx2 = np.full(m, np.nan)
    df = np.zeros(m, dtype=np.int64)
    for i in range(m):
        stat, n_groups = _collapsed_statistic(count, observed_correct[i], expected[i], min_expected)
        df[i] = n_groups - n_params
        if df[i] >= 1:
            sx2[i] = stat
    p_value = np.where(df >= 1, chi2.sf(sx2, np.maximum(df, 1)), np.nan)
    return sx2, df, p_value, n_complete


def _joint_correct(f: np.ndarray, p: np.ndarray, weights: np.ndarray, chunk: int = 32) -> np.ndarray:
    """P(item correct and rest score = k) for every item (rows) and k = 0..items-1 (columns):
    the summed-score likelihoods without the item come from dividing its factor out of the full
    ones, forwards where P < 1/2 and backwards where P >= 1/2 (both stable there)."""
    m, q = p.shape
    out = np.empty((m, m))
    for start in range(0, m, chunk):
        pc = p[start:start + chunk]
        one_minus = 1.0 - pc
        forward = np.empty((len(pc), m, q))
        forward[:, 0] = f[0][None, :] / one_minus
        for k in range(1, m):
            forward[:, k] = (f[k][None, :] - pc * forward[:, k - 1]) / one_minus
        backward = np.empty_like(forward)
        backward[:, m - 1] = f[m][None, :] / pc
        for k in range(m - 1, 0, -1):
            backward[:, k - 1] = (f[k][None, :] - one_minus * backward[:, k]) / pc
        without = np.maximum(np.where((pc < 0.5)[:, None, :], forward, backward), 0.0)
        out[start:start + chunk] = np.einsum("ikq,iq,q->ik", without, pc, weights)
    return out


def _collapsed_statistic(count: np.ndarray, observed_correct: np.ndarray, expected: np.ndarray,
                         min_expected: float) -> tuple[float, int]:
    """S-X² over score groups merged left to right until each has ``min_expected`` expected correct
    and wrong answers (a short last group joins the one before); (statistic, number of groups)."""
    merged: list[list[float]] = []  # [learners, observed correct, expected correct]
    current = [0.0, 0.0, 0.0]
    for n_k, o_k, e_k in zip(count.tolist(), observed_correct.tolist(), expected.tolist()):
        if n_k == 0:
            continue
        current = [current[0] + n_k, current[1] + o_k, current[2] + n_k * e_k]
        if current[2] >= min_expected and current[0] - current[2] >= min_expected:
            merged.append(current)
            current = [0.0, 0.0, 0.0]
    if current[0] > 0:
        if merged:
            last = merged[-1]
            merged[-1] = [last[0] + current[0], last[1] + current[1], last[2] + current[2]]
        else:
            merged.append(current)
    stat = 0.0
    for n_g, o_g, e_g in merged:
        pe = e_g / n_g
        stat += n_g * (o_g / n_g - pe) ** 2 / max(pe * (1.0 - pe), 1e-12)
    return stat, len(merged)
