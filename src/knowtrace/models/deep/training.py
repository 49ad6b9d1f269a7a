"""The training loop shared by the sequence models, and running a network over windows.

Training minimises the log-loss of the predicted answers, every answer weighing alike (each batch's
summed log-loss over the mean number of answers per batch so far, plus the network's ``penalty``),
with Adam on length-bucketed batches of windows (``window_batches`` over arrays held in memory, or
batches a caller streams: each epoch asks its factory for a new iterable of batches, and validation
for a new iterable of blocks of windows), clipping the gradient norm at ``CLIP``. Each epoch ends with the validation AUC (the log-loss when the validation answers are
all right or all wrong); after an epoch without improvement the learning rate is multiplied by
``lr_decay``, training stops after ``patience`` epochs without improvement and keeps the best
epoch's weights. Runs are reproducible: the seed fixes the initial weights, dropout and
the batch order, and torch's deterministic algorithms are on (with one intra-op thread on CPU)
for the duration of the fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from knowtrace.evaluation.metrics import auc as auc_score
from knowtrace.exceptions import InputError
from knowtrace.models._torch import epoch_progress, resolve_device
from knowtrace.models.deep.sequences import Batch, Encoded, Windows, batches, make_batch

__all__ = ["CLIP", "EpochBatches", "Net", "TorchBatch", "TrainResult", "ValidBlocks", "deterministic", "inference",
           "resolve_device", "run_windows", "train", "window_batches"]

#: maximum gradient norm
CLIP = 10.0
#: the training batches of one epoch, from the generator that shuffles them (one per fit)
EpochBatches = Callable[[np.random.Generator], Iterable[Batch]]
#: the validation answers, in blocks of windows over encoded answers
ValidBlocks = Callable[[], Iterable[tuple[Encoded, Windows]]]


@dataclass
class TorchBatch:
    """A ``Batch`` as tensors on a device; ``init`` (n_parts, b, hidden) holds the recurrent state
    each window starts from (None: the learned start state)."""

    tokens: torch.Tensor
    item: torch.Tensor
    correct: torch.Tensor
    pos: torch.Tensor
    valid: torch.Tensor
    target: torch.Tensor
    init: torch.Tensor | None = None

    @classmethod
    def of(cls, batch: Batch, device: str, dtype: torch.dtype, init: np.ndarray | None = None) -> TorchBatch:
        """The tensors of ``batch``."""
        def long(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

        return cls(long(batch.tokens), long(batch.item), long(batch.correct), long(batch.pos),
                   torch.from_numpy(batch.valid).to(device), torch.from_numpy(batch.target).to(device),
                   torch.from_numpy(np.ascontiguousarray(init)).to(device=device, dtype=dtype)
                   if init is not None else None)


class Net(torch.nn.Module):
    """A sequence network: ``forward(batch)`` gives the logit of every cell of the batch, each from
    the answers before it in its window (and the window's start state)."""

    def forward(self, batch: TorchBatch) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def penalty(self, batch: TorchBatch) -> torch.Tensor | float:
        """A regularisation term added to the batch's mean log-loss (0 by default)."""
        return 0.0


@dataclass(frozen=True)
class TrainResult:
    """The best epoch's weights (numpy arrays by parameter name), the per-epoch history (train
    log-loss, validation AUC, validation log-loss, seconds; NaN without validation data), the best
    epoch."""

    weights: dict[str, np.ndarray]
    history: np.ndarray
    best_epoch: int
    device: str


@contextmanager
def deterministic(device: str, seed: int | None = None) -> Iterator[None]:
    """Torch's deterministic algorithms (warnings only on CUDA), one intra-op thread on CPU and,
    with ``seed``, torch's random generators forked and seeded; all restored afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        if seed is None:
            yield
        else:
            cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(threads)


@contextmanager
def inference() -> Iterator[None]:
    """No gradients and one intra-op thread (restored afterwards): the inference batches are small,
    and on a loaded machine two threads were many times slower than one in our runs."""
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def run_windows(net: Net, encoded: Encoded, windows: Windows, *, batch_size: int, device: str,
                dtype: torch.dtype, init: Callable[[np.ndarray], np.ndarray | None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, logits as float64) of every predicted cell of ``windows``, with the network in eval
    mode and no gradients; ``init(which)`` gives the start states of the windows ``which``."""
    rows, logits = [], []
    was_training = net.training
    net.eval()
    try:
        with inference():
            for which in batches(windows.length, batch_size):
                batch = make_batch(encoded, windows, which)
                tb = TorchBatch.of(batch, device, dtype, init(which) if init is not None else None)
                z = net(tb)
                rows.append(batch.rows[batch.target])
                logits.append(z[tb.target].detach().to("cpu", torch.float64).numpy())
    finally:
        net.train(was_training)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return np.concatenate(rows), np.concatenate(logits)


def _validate(net: Net, valid: ValidBlocks, batch_size: int, device: str) -> tuple[float, float]:
    """(AUC, mean log-loss) on the validation windows."""
    ys, zs = [], []
    for encoded, windows in valid():
        rows, z = run_windows(net, encoded, windows, batch_size=batch_size, device=device, dtype=torch.float32)
        ys.append(encoded.correct[rows].astype(np.float64))
        zs.append(z)
    y = np.concatenate(ys) if ys else np.zeros(0)
    z = np.concatenate(zs) if zs else np.zeros(0)
    if len(y) == 0:
        return float("nan"), float("nan")
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y)).item())
    if not 0 < y.mean() < 1:
        return float("nan"), loss
    return auc_score(y, 1.0 / (1.0 + np.exp(-z))), loss


def window_batches(encoded: Encoded, windows: Windows, batch_size: int) -> EpochBatches:
    """Every epoch, all ``windows`` in length-bucketed batches of ``batch_size``, in shuffled order."""
    def epoch(rng: np.random.Generator) -> Iterator[Batch]:
        for which in batches(windows.length, batch_size, rng):
            yield make_batch(encoded, windows, which)

    return epoch


def train(build: Callable[[], Net], data: EpochBatches, *, valid: ValidBlocks | None, epochs: int, lr: float,
          batch_size: int, patience: int, seed: int, device: str, verbose: bool, name: str,
          lr_decay: float = 1.0) -> TrainResult:
    """Build a network with ``build`` and fit it to the predicted answers of the batches ``data(rng)``
    gives every epoch (``valid``: the validation windows, None for none)."""
    rng = np.random.default_rng(seed)
    with deterministic(device, seed):
        net = build().to(device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        # threshold 0: the rate drops exactly after the epochs that early stopping counts as no gain
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=lr_decay, patience=0,
                                                             threshold=0.0) if lr_decay < 1 else None
        history: list[tuple[float, float, float, float]] = []
        best, best_epoch, best_weights = -np.inf, 0, _weights(net)
        seen_answers, seen_batches = 0, 0
        with epoch_progress(verbose, epochs, name) as advance:
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                net.train()
                total, count = 0.0, 0
                for batch in data(rng):
                    tb = TorchBatch.of(batch, device, torch.float32)
                    z = net(tb)[tb.target]
                    y = tb.correct[tb.target].to(z.dtype)
                    data_loss = F.binary_cross_entropy_with_logits(z, y, reduction="sum")
                    seen_answers += len(y)
                    seen_batches += 1
                    # every answer weighs alike: a batch's summed log-loss over the mean answers per batch so
                    # far, not over its own answers (length-bucketed batches of short windows hold few
                    # answers, which the batch mean would weigh like many answers of long windows)
                    loss = data_loss / max(seen_answers / seen_batches, 1) + net.penalty(tb)
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
                    opt.step()
                    total += float(data_loss.detach())
                    count += len(y)
                if count == 0:
                    raise InputError("no answers to train on")
                train_loss = total / max(count, 1)
                valid_auc, valid_loss = _validate(net, valid, batch_size, device) if valid else (np.nan, np.nan)
                history.append((train_loss, valid_auc, valid_loss, time.perf_counter() - started))
                advance(epoch, train_loss, valid_auc, valid_loss)
                if not np.isfinite(train_loss):
                    raise InputError(f"training diverged at epoch {epoch} (log-loss {train_loss}); lower lr",
                                     field="lr")
                if valid is None:
                    best_epoch, best_weights = epoch, None
                    continue
                score = valid_auc if np.isfinite(valid_auc) else -valid_loss
                if plateau is not None:
                    plateau.step(score)
                if score > best:
                    best, best_epoch, best_weights = score, epoch, _weights(net)
                elif epoch - best_epoch >= patience:
                    break
        weights = best_weights if best_weights is not None else _weights(net)
    return TrainResult(weights, np.array(history, dtype=np.float64).reshape(-1, 4), best_epoch, device)


def _weights(net: Net) -> dict[str, np.ndarray]:
    return {key: value.detach().to("cpu").numpy().copy() for key, value in net.state_dict().items()}
