"""How a chapter runs: its seeds, its size and its length. See chapter 0.

The first cell of every chapter calls ``setup()``. Three environment variables then change a
whole chapter without editing it:

    BOOK_SCALE   "small" (CPU presets and budgets) or "large" (GPU); default: by the device
    BOOK_SMOKE   "1": a handful of steps of the large code paths (CI); result asserts skipped
    BOOK_SEED    n: every seed the chapter uses shifted by n (``book_seed``)
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .device import get_device

__all__ = ["setup", "seed_everything", "seed_offset", "book_seed", "scale", "smoke", "budget"]


def setup(seed: int = 0, verbose: bool = True) -> torch.device:
    """What the first cell of every chapter does: seed (with ``book_seed(seed)``, so
    $BOOK_SEED shifts it), pick the device, make Korean plot labels render. Returns the
    device."""
    seed_everything(book_seed(seed))
    device = get_device()
    from . import plotting  # noqa: F401  (registers the Korean font with matplotlib)
    if verbose:
        mode = " | SMOKE MODE: a few steps, result asserts skipped" if smoke() else ""
        shift = f" | BOOK_SEED={seed_offset()}: every seed shifted" if seed_offset() else ""
        print(f"device: {device} | scale: {scale(device)} | torch {torch.__version__}"
              f"{mode}{shift}")
    return device


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) for repeatable lessons."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_offset() -> int:
    """$BOOK_SEED as an int (0 when unset): the offset ``book_seed`` adds to every seed a
    chapter uses. Anything but a non-negative integer is an error."""
    env = os.environ.get("BOOK_SEED", "").strip()
    if env == "":
        return 0
    if not env.isdigit():
        raise ValueError(f"BOOK_SEED must be a non-negative integer, got {env!r}")
    return int(env)


def book_seed(n: int) -> int:
    """The seed a chapter writes as ``n``, shifted by $BOOK_SEED (``n + seed_offset()``).

    Every seed in a notebook goes through this (``torch.manual_seed(book_seed(0))``,
    ``torch.Generator().manual_seed(book_seed(1))``, ``batch_stream(..., seed=book_seed(0))``),
    so that one variable reruns a whole chapter on other seeds: the claims check
    (``tools/check_claims.py``) and CI's test pass (``BOOK_SEED=1``) do, and an asserted claim
    must hold there too. With $BOOK_SEED unset, ``book_seed(n) == n``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"a seed must be a non-negative int, got {n!r}")
    return n + seed_offset()


def scale(device: torch.device | str | None = None) -> str:
    """"small" on a CPU, "large" on a GPU; $BOOK_SCALE ("small" or "large") overrides.

    Chapters read this once to choose a preset and a training budget.
    """
    env = os.environ.get("BOOK_SCALE")
    if env:
        if env not in ("small", "large"):
            raise ValueError(f"BOOK_SCALE must be 'small' or 'large', got {env!r}")
        return env
    device = torch.device(device) if device is not None else get_device()
    return "large" if device.type == "cuda" else "small"


def smoke() -> bool:
    """True when $BOOK_SMOKE is "1": the smoke mode CI uses with BOOK_SCALE=large, so that the
    code a GPU reader runs (large presets, data and code paths) executes on a CPU with a
    handful of steps. A chapter skips, and says that it skips, the asserts that need full
    training; everything else runs. Anything other than "", "0" or "1" is an error."""
    env = os.environ.get("BOOK_SMOKE", "")
    if env not in ("", "0", "1"):
        raise ValueError(f"BOOK_SMOKE must be '0' or '1', got {env!r}")
    return env == "1"


def budget(n: int, smoke_n: int = 2) -> int:
    """A step (or example) count: ``n`` normally, ``min(n, smoke_n)`` in smoke mode."""
    for name, v in (("n", n), ("smoke_n", smoke_n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return min(n, smoke_n) if smoke() else n
