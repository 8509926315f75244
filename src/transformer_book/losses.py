"""The book's losses, in one place. See chapter 6.

    cross_entropy(logits, targets)                     # what every model's targets= computes
    label_smoothed_cross_entropy(logits, targets, 0.1)  # the 2017 Transformer's training loss

Both average over the targets that are not ``IGNORE_INDEX`` (-100: padding, unmasked BERT
positions), compute in float32 (safe under bf16 autocast), return 0 rather than NaN when every
target is ignored, and name a target outside [0, V) instead of failing deep inside torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import fail_if

__all__ = ["cross_entropy", "label_smoothed_cross_entropy", "IGNORE_INDEX"]

IGNORE_INDEX = -100


def _mean_cross_entropy(logits, targets, name: str, ignore_index: int, smoothing: float):
    """Checked targets, then F.cross_entropy summed and divided by the number of targets."""
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
        raise TypeError(f"logits must be a torch.Tensor of shape (..., V), "
                        f"got {type(logits).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {tuple(logits.shape[:-1])}, "
                        f"got {type(targets).__name__}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{name} must have shape {tuple(logits.shape[:-1])}, got "
                         f"{tuple(targets.shape)} (logits: {tuple(logits.shape)})")
    if targets.dtype not in (torch.long, torch.int32):
        raise TypeError(f"{name} must be integer class ids (int64 or int32), got {targets.dtype}")
    V = logits.shape[-1]
    t = targets.reshape(-1).long()  # (N,)
    bad = (t != ignore_index) & ((t < 0) | (t >= V))  # (N,)

    def explain(t=t):  # the targets as given (t is replaced below when deferred)
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name} holds {int(t[i])} at flat position {i}: targets must lie in "
                         f"[0, {V}) or be {ignore_index} (ignored)")

    if fail_if(bad, explain):  # deferred to the training step's one read (checks.py)
        t = t.masked_fill(bad, ignore_index)  # so that the loss kernel can run meanwhile
    # F.cross_entropy's label_smoothing=eps is the target (1 - eps) * one_hot + eps / V: the
    # eps is spread over all V classes, the true one included, as in Szegedy et al. (2016)
    total = F.cross_entropy(logits.reshape(-1, V).float(), t, ignore_index=ignore_index,
                            label_smoothing=smoothing, reduction="sum")
    # divide on the device (no host sync); no target at all gives 0 (with the graph), not NaN
    return total / (t != ignore_index).sum().clamp(min=1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, name: str = "targets"):
    """Mean cross-entropy of ``logits`` (..., V) against ``targets`` (...), -100 ignored.

    Raises:
        TypeError for targets that are not an integer tensor; ValueError for a shape that is
        not the logits' less the last dimension, or a target outside [0, V) that is not -100.
    """
    return _mean_cross_entropy(logits, targets, name, IGNORE_INDEX, 0.0)


def label_smoothed_cross_entropy(logits, targets, smoothing: float = 0.0,
                                 ignore_index: int = IGNORE_INDEX):
    """Cross-entropy against (1 - eps) * one_hot + eps / V, averaged over non-ignored tokens.

    Equal to (1 - eps) * NLL + eps * (cross-entropy with the uniform distribution). The
    Transformer (Vaswani et al., 2017) trains with eps = 0.1. See chapter 6.

    Args:
        logits: (N, V) or (B, T, V); targets: (N,) or (B, T) class ids, ``ignore_index`` skipped.
        smoothing: eps in [0, 1].
    Raises:
        as ``cross_entropy``, and ValueError for a smoothing outside [0, 1].
    """
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) \
            or not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be a number in [0, 1], got {smoothing!r}")
    return _mean_cross_entropy(logits, targets, "targets", ignore_index, float(smoothing))
