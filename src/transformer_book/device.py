"""Where a model runs and in what precision: the device choice and autocast. See chapter 0.

Models never call ``.cuda()``: ``get_device()`` picks, and training autocasts to half
precision on a GPU only (``autocast_dtype`` says which half).
"""
from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["get_device", "autocast_dtype", "autocast"]


def get_device(prefer: str | None = None) -> torch.device:
    """cuda if present, else Apple's mps, else cpu. ``prefer`` or $BOOK_DEVICE overrides."""
    prefer = prefer or os.environ.get("BOOK_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The half-precision type training uses on ``device``: bf16 on a GPU that supports it,
    fp16 on one that does not (Colab's T4; the Trainer then adds a gradient scaler), and
    None (full fp32) elsewhere: CPU bf16 is slow and changes the numbers. In smoke mode
    (``smoke()``) the CPU gets bf16 too, so that the autocast path a GPU reader runs executes
    in CI; normal CPU runs stay in fp32, bitwise unchanged."""
    from .runmode import smoke  # here, not at the top: runmode imports this module
    kind = torch.device(device).type
    if kind == "cpu" and smoke():
        return torch.bfloat16
    if kind != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device | str):
    """Autocast to ``autocast_dtype(device)`` on CUDA (and on the CPU in smoke mode); a no-op
    elsewhere."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
