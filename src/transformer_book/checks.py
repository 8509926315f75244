"""Input checks that must read a tensor's values, and how a training step reads them at once.

"Every token id lies in [0, V)" can only be answered by reading the ids: the question is
computed where the ids live, and the answer must come back to Python (a host sync). On the
CPU that costs nothing. On a GPU each such read makes Python wait for the queued work, and a
training step of the book used to make about five of them (the ids, the targets, the mask,
the loss twice).

``fail_if(bad, explain)`` is the one way the package asks such a question. Normally it reads
the answer at once and, when ``bad`` holds a True, calls ``explain()``, which raises the
check's ValueError. Inside ``deferred()`` (the ``Trainer`` opens it around each step on an
accelerator) it only records the question and returns True, and the caller makes its input
safe to compute with (an out-of-range id clamped, a bad target ignored) so that no kernel
trips over it; ``Deferred.read(loss)`` then brings the loss and every recorded answer back in
one transfer and raises the first failed check's own error, before the step's backward.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["fail_if", "deferred", "Deferred"]


class Deferred(list):
    """The checks recorded inside one ``deferred()`` block: (flag (), explain) pairs."""

    include_cpu = False

    def read(self, value: torch.Tensor) -> float:
        """``value.item()``, with every recorded flag read in the same transfer; a flag that
        is True calls its ``explain()``, which raises that check's error."""
        parts = [value.detach().reshape(()).float()]
        parts += [flag.to(value.device).float() for flag, _ in self]
        got = torch.stack(parts).tolist()  # the one host sync
        for (_, explain), failed in zip(self, got[1:]):
            if failed:
                explain()
        return got[0]


_pending: Deferred | None = None  # the open deferred() block, if any


def fail_if(bad: torch.Tensor, explain) -> bool:
    """Raise ``explain()``'s error if any element of the bool tensor ``bad`` is True.

    Returns False when the answer was read now (nothing was wrong), True when the check was
    recorded for ``Deferred.read`` instead: the caller must then keep computing with inputs
    made safe (the values ``bad`` marks replaced by harmless ones). Skipped under
    torch.compile (returns False).
    """
    if torch.compiler.is_compiling():
        return False
    if _pending is not None and (bad.device.type != "cpu" or _pending.include_cpu):
        _pending.append((bad.any(), explain))
        return True
    if bool(bad.any()):  # one host sync
        explain()
    return False


@contextlib.contextmanager
def deferred(include_cpu: bool = False):
    """Inside the block, checks of tensors on an accelerator (and on the CPU too, with
    ``include_cpu``, which the tests use) are recorded, not read; yields the ``Deferred``
    list whose ``read(loss)`` reads them all with the loss."""
    global _pending
    outer = _pending
    _pending = Deferred()
    _pending.include_cpu = include_cpu
    try:
        yield _pending
    finally:
        _pending = outer
