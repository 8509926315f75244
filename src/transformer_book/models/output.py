"""What every model of the book returns, and the loss they share.

    out = model(ids, targets=targets, attention_mask=mask, return_weights=True)
    out.logits    # (B, T, V) (a classifier: (B, n_classes))
    out.loss      # scalar cross-entropy over targets != -100, or None without targets
    out.weights   # {"self": [per layer], "cross": [per layer]} or None
    out.hidden    # last hidden states (B, T, C), where the model has them
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ModelOutput", "cross_entropy", "IGNORE_INDEX"]

IGNORE_INDEX = -100


@dataclass
class ModelOutput:
    """The result of every model's ``forward``.

    Attributes:
        logits: (B, T, V) next-token or token scores, (B, n_classes) for a classifier;
            None only for the bare BERT encoder, which has no head (see ``hidden``).
        loss: mean cross-entropy over the targets that are not -100; None without targets.
        weights: None unless ``return_weights=True``; then a dict of lists with one
            (B, H, T_q, T_k) tensor per layer: "self" (the decoder's self-attention in an
            encoder-decoder) and "cross" (empty for single-stack models); encoder-decoders
            add "encoder", the encoder's self-attention.
        hidden: the last hidden states (B, T, C) the head reads, where the model has them.
    """

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    weights: dict | None = None
    hidden: torch.Tensor | None = None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, name: str = "targets"):
    """Mean cross-entropy of ``logits`` (..., V) against ``targets`` (...), -100 ignored,
    computed in float32 (safe under bf16 autocast)."""
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {tuple(logits.shape[:-1])}, "
                        f"got {type(targets).__name__}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{name} must have shape {tuple(logits.shape[:-1])}, "
                         f"got {tuple(targets.shape)}")
    if targets.dtype not in (torch.long, torch.int32):
        raise TypeError(f"{name} must be integer class ids (int64 or int32), got {targets.dtype}")
    V = logits.shape[-1]
    t = targets.reshape(-1).long()  # (N,)
    total = F.cross_entropy(logits.reshape(-1, V).float(), t, ignore_index=IGNORE_INDEX,
                            reduction="sum")
    # divide on the device (no host sync); no target at all gives 0, not NaN
    return total / (t != IGNORE_INDEX).sum().clamp(min=1)
