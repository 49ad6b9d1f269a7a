"""What the PyTorch models share. Imported only by modules that run torch (never at package import)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from knowtrace.exceptions import InputError

__all__ = ["epoch_progress", "resolve_device"]


def resolve_device(device: str) -> str:
    """``"cuda"`` when ``device`` is ``"auto"`` and a GPU is present, else ``"cpu"``; or ``device`` checked."""
    if not isinstance(device, str):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}", field="device")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch sees no CUDA GPU", field="device")
        return device
    raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}", field="device")


@contextmanager
def epoch_progress(verbose: bool, epochs: int, name: str) -> Iterator[Callable[[int, float, float, float], None]]:
    """A callback ``(epoch, loss, valid_auc, valid_loss)`` that shows a rich progress bar when verbose."""
    if not verbose:
        yield lambda *_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task("fit", total=epochs, info="")

        def advance(epoch: int, loss: float, valid_auc: float, valid_loss: float) -> None:
            info = f"loss {loss:.4f}"
            if np.isfinite(valid_loss):
                info += f"  valid AUC {valid_auc:.4f}  valid log-loss {valid_loss:.4f}"
            progress.update(task, completed=epoch, info=info)

        yield advance
