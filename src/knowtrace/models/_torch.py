"""What the PyTorch models share. Imported only by modules that run torch (never at package import)."""

from __future__ import annotations

import torch

from knowtrace.exceptions import InputError

__all__ = ["resolve_device"]


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
