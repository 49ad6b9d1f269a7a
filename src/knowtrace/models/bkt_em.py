"""Vectorised Baum–Welch and forward filtering for many two-state BKT hidden Markov models at once.

Every sequence (one learner's answers on one concept, in history order) belongs to a *task*: an
independent parameter set ``(prior, learn, guess, slip, forget)``. Sequences are laid out
time-major: sorted by decreasing length, the answers at time ``t`` of every sequence still alive
at ``t`` are contiguous, so forward and backward passes loop over time steps only (at most the
longest sequence) with numpy operations across all sequences and tasks, never over learners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PARAMS", "Bounds", "EMResult", "Layout", "baum_welch", "forward_filter", "layout"]

#: column order of a parameter matrix
PARAMS = ("prior", "learn", "guess", "slip", "forget")
PRIOR, LEARN, GUESS, SLIP, FORGET = range(5)


@dataclass(frozen=True)
class Bounds:
    """Closed lower and upper bounds of each parameter, in ``PARAMS`` order."""

    lower: np.ndarray
    upper: np.ndarray

    def clip(self, params: np.ndarray) -> np.ndarray:
        """``params`` (tasks x 5) clipped into the bounds."""
        return np.clip(params, self.lower, self.upper)


@dataclass(frozen=True)
class Layout:
    """Sequences in time-major order.

    ``order[k]`` is the sequence at rank ``k`` (ranks sorted by decreasing length); the answers at
    time ``t`` are the flat positions ``offsets[t]:offsets[t] + alive[t]``, of ranks
    ``0..alive[t]-1``; ``gather[j]`` is the element (in sequence-major order) at flat position ``j``.
    """

    order: np.ndarray
    alive: np.ndarray
    offsets: np.ndarray
    gather: np.ndarray
    rank: np.ndarray
    has_next: np.ndarray

    @property
    def steps(self) -> int:
        """Length of the longest sequence."""
        return len(self.alive)


def layout(lengths: np.ndarray, starts: np.ndarray | None = None) -> Layout:
    """The time-major layout of sequences of ``lengths`` whose elements begin at ``starts`` (by
    default one after another, in sequence order)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if starts is None:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    order = np.argsort(-lengths, kind="stable")
    steps = int(lengths.max()) if len(lengths) else 0
    counts = np.bincount(lengths, minlength=steps + 1)
    alive = (len(lengths) - np.cumsum(counts))[:steps]  # sequences longer than t
    offsets = np.concatenate(([0], np.cumsum(alive))).astype(np.int64)
    t_flat = np.repeat(np.arange(steps, dtype=np.int64), alive)
    rank = np.arange(offsets[-1], dtype=np.int64) - offsets[t_flat]
    gather = starts[order][rank] + t_flat
    alive_next = np.append(alive, 0)[1:]
    has_next = rank < alive_next[t_flat]
    return Layout(order, alive, offsets, gather, rank, has_next)


@dataclass(frozen=True)
class EMResult:
    """Fitted parameters (tasks x 5), log-likelihood and E-steps run per task, and convergence."""

    params: np.ndarray
    loglik: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def _emissions(obs: np.ndarray, guess: np.ndarray, slip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(observation | learned), P(observation | not learned)."""
    e1 = np.where(obs, 1.0 - slip, slip)
    e0 = np.where(obs, guess, 1.0 - guess)
    return e1, e0


def _forward(lay: Layout, start: np.ndarray, learn: np.ndarray, forget: np.ndarray, e1: np.ndarray,
             e0: np.ndarray, *, predicted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filtered P(learned) after each answer and the scale (P(answer | earlier)) of each, flat;
    P(learned) before the next answer per rank. ``predicted`` receives P(learned) before each answer."""
    p = start.astype(np.float64, copy=True)
    stay = 1.0 - forget - learn  # p_next = learn + filtered * (1 - forget - learn)
    filtered = np.empty(lay.offsets[-1])
    scale = np.empty(lay.offsets[-1])
    for t, n in enumerate(lay.alive.tolist()):
        a, b = lay.offsets[t], lay.offsets[t] + n
        pn = p[:n]
        if predicted is not None:
            predicted[a:b] = pn
        x = pn * e1[a:b]
        c = x + (1.0 - pn) * e0[a:b]
        f = x / c
        filtered[a:b] = f
        scale[a:b] = c
        p[:n] = learn[:n] + f * stay[:n]
    return filtered, scale, p


def _backward(lay: Layout, learn: np.ndarray, forget: np.ndarray, e1: np.ndarray, e0: np.ndarray,
              filtered: np.ndarray, scale: np.ndarray, *, forgets: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed P(learned) at each answer and the expected learn (0 -> 1) and forget (1 -> 0)
    transitions out of each answer, flat."""
    total = lay.offsets[-1]
    b1 = np.ones(len(lay.order))
    b0 = np.ones(len(lay.order))
    smoothed = np.empty(total)
    learned = np.zeros(total)
    forgot = np.zeros(total) if forgets else learned
    alive = lay.alive.tolist()
    offsets = lay.offsets.tolist()
    for t in range(len(alive) - 1, -1, -1):
        n, a = alive[t], offsets[t]
        m = alive[t + 1] if t + 1 < len(alive) else 0
        if m:
            a1 = offsets[t + 1]
            c = scale[a1:a1 + m]
            x1 = e1[a1:a1 + m] * b1[:m] / c
            x0 = e0[a1:a1 + m] * b0[:m] / c
            f = filtered[a:a + m]
            lm = learn[:m]
            learned[a:a + m] = (1.0 - f) * lm * x1
            if forgets:
                fm = forget[:m]
                forgot[a:a + m] = f * fm * x0
                b1[:m] = x1 + fm * (x0 - x1)
            else:
                b1[:m] = x1
            b0[:m] = x0 + lm * (x1 - x0)
        f = filtered[a:a + n]
        u = f * b1[:n]
        smoothed[a:a + n] = u / (u + (1.0 - f) * b0[:n])
    return smoothed, learned, forgot


def baum_welch(obs: np.ndarray, lengths: np.ndarray, seq_task: np.ndarray, init: np.ndarray, *, bounds: Bounds,
               forgets: bool, max_iter: int, tol: float, pseudo: float = 0.0, centre: np.ndarray | None = None
               ) -> EMResult:
    """EM for independent BKT tasks from the initial parameters ``init`` (tasks x 5).

    ``obs`` holds the 0/1 answers of all sequences one after another; ``lengths`` and ``seq_task``
    give each sequence's length and task. A task stops when its log-likelihood rises by at most
    ``tol`` per answer between two E-steps, or after ``max_iter`` E-steps; its parameters are then
    the ones that log-likelihood belongs to. M-steps maximise within ``bounds`` (each parameter's
    expected complete-data log-likelihood is concave in it alone, so clipping is the exact
    constrained maximum); ``forget`` stays 0 unless ``forgets``. With ``pseudo > 0`` the M-step
    adds ``pseudo`` pseudo-observations at ``centre`` (5 values, or tasks x 5) to every
    parameter's expected counts: MAP estimation under Beta priors of mean ``centre``, and
    ``loglik`` then includes their log-density.
    """
    n_tasks = len(init)
    params = bounds.clip(np.asarray(init, dtype=np.float64))
    centre_t = np.broadcast_to(np.zeros(5) if centre is None else np.asarray(centre, dtype=np.float64), (n_tasks, 5))
    active_params = [PRIOR, LEARN, GUESS, SLIP] + ([FORGET] if forgets else [])
    if not forgets:
        params[:, FORGET] = 0.0
    obs = np.asarray(obs).astype(bool)
    lengths = np.asarray(lengths, dtype=np.int64)
    seq_task = np.asarray(seq_task, dtype=np.int64)
    task_answers = np.bincount(seq_task, weights=lengths, minlength=n_tasks)
    starts_all = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    loglik = np.full(n_tasks, -np.inf)
    n_iter = np.zeros(n_tasks, dtype=np.int64)
    done = task_answers == 0
    converged = done.copy()

    active_seqs = np.flatnonzero(~done[seq_task])
    lay = None
    for iteration in range(max_iter):
        if lay is None:
            lay = layout(lengths[active_seqs], starts_all[active_seqs])
            task_rank = seq_task[active_seqs][lay.order]
            task_flat = task_rank[lay.rank]
            o = obs[lay.gather]
            answers = np.bincount(task_flat, minlength=n_tasks)
            right = np.bincount(task_flat, weights=o, minlength=n_tasks)
            transitions = np.bincount(task_flat, weights=lay.has_next, minlength=n_tasks)
            sequences = np.bincount(task_rank, minlength=n_tasks)
            first = lay.alive[0] if lay.steps else 0
        if lay.steps == 0:
            break
        learn, forget = params[task_rank, LEARN], params[task_rank, FORGET]
        e1, e0 = _emissions(o, params[task_flat, GUESS], params[task_flat, SLIP])
        filtered, scale, _ = _forward(lay, params[task_rank, PRIOR], learn, forget, e1, e0)
        smoothed, learned, forgot = _backward(lay, learn, forget, e1, e0, filtered, scale, forgets=forgets)

        new_loglik = np.bincount(task_flat, weights=np.log(scale), minlength=n_tasks)
        if pseudo:  # log Beta(pseudo * centre + 1, pseudo * (1 - centre) + 1) density, up to a constant
            p, m = params[:, active_params], centre_t[:, active_params]
            new_loglik += pseudo * (m * np.log(p) + (1 - m) * np.log1p(-p)).sum(axis=1)
        running = ~done
        n_iter[running] += 1
        gain = new_loglik - loglik
        stop = running & (iteration > 0) & (gain <= tol * np.maximum(task_answers, 1))
        converged |= stop
        if iteration == max_iter - 1:
            stop = running.copy()
        keep = running & ~stop  # tasks whose parameters take the M-step
        loglik[running] = new_loglik[running]
        done |= stop

        g1 = np.bincount(task_flat, weights=smoothed, minlength=n_tasks)
        g1_right = np.bincount(task_flat, weights=smoothed * o, minlength=n_tasks)
        g1_next = np.bincount(task_flat, weights=smoothed * lay.has_next, minlength=n_tasks)
        g0 = answers - g1
        new = params.copy()
        a, m = pseudo, centre_t
        _ratio(new[:, PRIOR], np.bincount(task_rank[:first], weights=smoothed[:first], minlength=n_tasks)
               + a * m[:, PRIOR], sequences + a)
        _ratio(new[:, LEARN], np.bincount(task_flat, weights=learned, minlength=n_tasks) + a * m[:, LEARN],
               transitions - g1_next + a)
        _ratio(new[:, GUESS], right - g1_right + a * m[:, GUESS], g0 + a)
        _ratio(new[:, SLIP], g1 - g1_right + a * m[:, SLIP], g1 + a)
        if forgets:
            _ratio(new[:, FORGET], np.bincount(task_flat, weights=forgot, minlength=n_tasks) + a * m[:, FORGET],
                   g1_next + a)
        params[keep] = bounds.clip(new[keep])
        if not forgets:
            params[:, FORGET] = 0.0

        if done.all():
            break
        still = ~done[task_rank]
        if answers[~done].sum() < 0.7 * lay.offsets[-1]:  # drop finished tasks' sequences
            active_seqs = active_seqs[lay.order[still]]
            lay = None
    return EMResult(params, loglik, n_iter, converged)


def _ratio(out: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> None:
    """``out = numerator / denominator`` where the denominator is positive (else ``out`` is kept)."""
    ok = denominator > 1e-12
    out[ok] = numerator[ok] / denominator[ok]


def forward_filter(obs: np.ndarray, lengths: np.ndarray, start: np.ndarray, params: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """P(learned) before each answer (sequence-major, like ``obs``) and after the last answer of
    each sequence (the state for its next answer), for sequences starting at P(learned) ``start``
    with their own parameter rows ``params`` (sequences x 5)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    lay = layout(lengths)
    before = np.empty(len(obs))
    if lay.steps == 0:
        return before, np.asarray(start, dtype=np.float64).copy()
    p_rank = params[lay.order]
    seq_flat = lay.rank
    o = np.asarray(obs).astype(bool)[lay.gather]
    e1, e0 = _emissions(o, p_rank[seq_flat, GUESS], p_rank[seq_flat, SLIP])
    predicted = np.empty(lay.offsets[-1])
    _, _, after_rank = _forward(lay, np.asarray(start, dtype=np.float64)[lay.order], p_rank[:, LEARN],
                                p_rank[:, FORGET], e1, e0, predicted=predicted)
    before[lay.gather] = predicted
    after = np.empty(len(lengths))
    after[lay.order] = after_rank
    return before, after
