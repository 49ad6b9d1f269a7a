"""A factorization machine (Rendle 2010) for 0/1 outcomes, trained in PyTorch on sparse rows.

``logit P(correct | x) = bias + sum_j w_j x_j + sum_{j<k} <v_j, v_k> x_j x_k`` with ``v_j`` in
``R^dim`` (``dim = 0`` is a logistic regression). Training minimises

    (sum over rows of the log-loss + l2 / 2 * |w|^2 + l2_factors / 2 * |V|^2) / n_rows

(the bias is not penalised) with Adam on shuffled mini-batches or full-batch L-BFGS. Each epoch
ends with the validation AUC (or log-loss when the validation answers are all right or all
wrong); training stops after ``patience`` epochs without improvement and keeps the best epoch's
weights. Runs are reproducible: a seeded generator draws the initial factors and the batch
order, and torch's deterministic algorithms are switched on for the duration of the fit.
Scoring (``logits``) uses the learned weights as numpy arrays, without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F  # noqa: N812

from knowtrace.evaluation.metrics import auc as auc_score
from knowtrace.exceptions import InputError
from knowtrace.models._torch import epoch_progress, resolve_device

__all__ = ["FMWeights", "TrainResult", "logits", "resolve_device", "train"]

#: standard deviation of the initial factors
INIT_STD = 0.01
#: L-BFGS iterations per epoch
LBFGS_ITERATIONS = 20
#: rows scored at once outside training
CHUNK = 1 << 16


@dataclass(frozen=True)
class FMWeights:
    """The learned parameters: ``bias``, ``weight`` (n_features,) and ``factors`` (n_features, dim)."""

    bias: float
    weight: np.ndarray
    factors: np.ndarray


@dataclass(frozen=True)
class TrainResult:
    """The weights of the best epoch and the per-epoch history (train objective, validation AUC,
    validation log-loss; NaN where there is no validation data)."""

    weights: FMWeights
    history: np.ndarray
    best_epoch: int
    device: str


def logits(weights: FMWeights, x: scipy.sparse.csr_matrix) -> np.ndarray:
    """The FM's logit for every row of ``x`` (float64)."""
    x = scipy.sparse.csr_matrix(x, dtype=np.float64)
    z = weights.bias + x @ weights.weight
    if weights.factors.shape[1]:
        xv = x @ weights.factors
        squares = x.multiply(x) @ (weights.factors * weights.factors)
        z = z + 0.5 * np.sum(xv * xv - squares, axis=1)
    return np.asarray(z, dtype=np.float64)


@contextmanager
def _deterministic(device: str) -> Iterator[None]:
    """Torch's deterministic algorithms on (warnings only on CUDA) and, on CPU, one intra-op thread
    (the per-batch operations are small: one thread was 1.5-2x faster than two in our runs);
    both restored afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(threads)


class _FM(torch.nn.Module):
    def __init__(self, n_features: int, dim: int, bias: float, generator: torch.Generator) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([bias], dtype=torch.float32))
        self.weight = torch.nn.Parameter(torch.zeros(n_features, 1))
        self.factors = torch.nn.Parameter(torch.randn(n_features, dim, generator=generator) * INIT_STD)

    def forward(self, batch: _Batch) -> torch.Tensor:
        dim = self.factors.shape[1]
        picked = F.embedding(batch.index, self.weight) * batch.value[:, None]  # one row per non-zero
        if dim:
            xv = F.embedding(batch.index, self.factors) * batch.value[:, None]
            picked = torch.cat((picked, xv, xv * xv), dim=1)
        sums = torch.zeros(batch.size, picked.shape[1], device=picked.device).index_add(0, batch.row, picked)
        z = self.bias + sums[:, 0]
        if dim:
            xv, squares = sums[:, 1:1 + dim], sums[:, 1 + dim:]
            z = z + 0.5 * (xv * xv - squares).sum(dim=1)
        return z

    def penalty(self, l2: float, l2_factors: float) -> torch.Tensor:
        return 0.5 * l2 * (self.weight * self.weight).sum() + 0.5 * l2_factors * (self.factors * self.factors).sum()

    def weights(self) -> FMWeights:
        return FMWeights(float(self.bias.detach().cpu()[0]), self.weight.detach().cpu().double().numpy()[:, 0].copy(),
                         self.factors.detach().cpu().double().numpy().copy())


@dataclass(frozen=True)
class _Batch:
    index: torch.Tensor
    value: torch.Tensor
    row: torch.Tensor
    size: int
    y: torch.Tensor


def _batch(x: scipy.sparse.csr_matrix, y: np.ndarray, rows: np.ndarray | None, device: str) -> _Batch:
    part = x[rows] if rows is not None else x
    size = part.shape[0]
    row = np.repeat(np.arange(size, dtype=np.int64), np.diff(part.indptr))
    return _Batch(torch.from_numpy(part.indices.astype(np.int64)).to(device),
                  torch.from_numpy(part.data.astype(np.float32)).to(device),
                  torch.from_numpy(row).to(device), size,
                  torch.from_numpy((y[rows] if rows is not None else y).astype(np.float32)).to(device))


def _chunks(x: scipy.sparse.csr_matrix, y: np.ndarray, device: str) -> list[_Batch]:
    return [_batch(x, y, np.arange(s, min(s + CHUNK, x.shape[0])), device) for s in range(0, x.shape[0], CHUNK)]


def _validation(model: _FM, chunks: list[_Batch], y: np.ndarray) -> tuple[float, float]:
    """(AUC, mean log-loss) of the model on the validation chunks."""
    with torch.no_grad():
        z = torch.cat([model(c) for c in chunks]).double().cpu()
    loss = float(F.binary_cross_entropy_with_logits(z, torch.from_numpy(y.astype(np.float64))).item())
    p = torch.sigmoid(z).numpy()
    return auc_score(y, np.clip(p, 0.0, 1.0)), loss


def train(x: scipy.sparse.csr_matrix, y: np.ndarray, *, valid: tuple[scipy.sparse.csr_matrix, np.ndarray] | None,
          dim: int, epochs: int, lr: float, batch_size: int, l2: float, l2_factors: float, seed: int,
          optimizer: str, patience: int, device: str, verbose: bool) -> TrainResult:
    """Fit a factorization machine to rows ``x`` (csr, float32) and outcomes ``y`` (0/1)."""
    n, n_features = x.shape
    if n == 0:
        raise InputError("no answers to train on")
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    with _deterministic(device):
        model = _FM(n_features, dim, float(np.log(rate / (1 - rate))), generator).to(device)
        x_valid, y_valid = valid if valid is not None and valid[0].shape[0] else (None, None)
        valid_chunks = _chunks(x_valid, y_valid, device) if x_valid is not None else None
        criterion = "auc" if y_valid is not None and 0 < y_valid.mean() < 1 else "logloss"
        if optimizer == "adam":
            step = _adam_epoch(model, x, y, lr, batch_size, l2, l2_factors, rng, device)
        else:
            step = _lbfgs_epoch(model, x, y, lr, l2, l2_factors, device)
        history, best, best_epoch, best_weights = [], -np.inf, 0, model.weights()
        with epoch_progress(verbose, epochs, "ktm") as advance:
            for epoch in range(1, epochs + 1):
                loss = step()
                valid_auc, valid_loss = _validation(model, valid_chunks, y_valid) if valid_chunks else (np.nan, np.nan)
                history.append((loss, valid_auc, valid_loss))
                advance(epoch, loss, valid_auc, valid_loss)
                if not np.isfinite(loss):
                    raise InputError(f"training diverged at epoch {epoch} (objective {loss}); lower lr", field="lr")
                if valid_chunks is None:
                    best_epoch, best_weights = epoch, None
                    continue
                score = valid_auc if criterion == "auc" else -valid_loss
                if score > best:
                    best, best_epoch, best_weights = score, epoch, model.weights()
                elif epoch - best_epoch >= patience:
                    break
    weights = best_weights if best_weights is not None else model.weights()
    return TrainResult(weights, np.array(history, dtype=np.float64).reshape(-1, 3), best_epoch, device)


def _adam_epoch(model: _FM, x: scipy.sparse.csr_matrix, y: np.ndarray, lr: float, batch_size: int, l2: float,
                l2_factors: float, rng: np.random.Generator, device: str) -> Callable[[], float]:
    n = x.shape[0]
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def epoch() -> float:
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            rows = np.sort(order[start:start + batch_size])
            batch = _batch(x, y, rows, device)
            opt.zero_grad()
            data_loss = F.binary_cross_entropy_with_logits(model(batch), batch.y, reduction="sum")
            objective = data_loss / batch.size + model.penalty(l2, l2_factors) / n
            objective.backward()
            opt.step()
            total += float(data_loss.detach())
        with torch.no_grad():
            return total / n + float(model.penalty(l2, l2_factors)) / n

    return epoch


def _lbfgs_epoch(model: _FM, x: scipy.sparse.csr_matrix, y: np.ndarray, lr: float, l2: float, l2_factors: float,
                 device: str) -> Callable[[], float]:
    n = x.shape[0]
    chunks = _chunks(x, y, device)
    opt = torch.optim.LBFGS(model.parameters(), lr=lr, max_iter=LBFGS_ITERATIONS, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        total = model.penalty(l2, l2_factors) / n
        for chunk in chunks:
            total = total + F.binary_cross_entropy_with_logits(model(chunk), chunk.y, reduction="sum") / n
        return total

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = objective()
        total.backward()
        return total

    def epoch() -> float:
        opt.step(closure)
        with torch.no_grad():
            return float(objective())

    return epoch
