"""What every model of the book returns, and the check of token ids they share. The loss
they share is ``losses.cross_entropy``.

    out = model(ids, targets=targets, attention_mask=mask, return_weights=True)
    out.logits    # (B, T, V) (a classifier: (B, n_classes))
    out.loss      # scalar cross-entropy over targets != -100, or None without targets
    out.weights   # {"self": [per layer], "cross": [per layer]} or None
    out.hidden    # last hidden states (B, T, C), where the model has them
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import fail_if

__all__ = ["ModelOutput", "check_token_ids"]


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
        lm_loss: a classifier's auxiliary language-modelling loss, already included in
            ``loss`` (GPT-1's fine-tuning objective); None elsewhere.
    """

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None
    weights: dict | None = None
    hidden: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None


def check_token_ids(ids, vocab_size: int | None, max_len: int | None = None, name: str = "idx",
                    offset: int = 0) -> torch.Tensor:
    """The one check of token ids that every model runs before its embedding; returns the
    ids to embed (``ids`` itself, or inside a training step that defers its checks on a GPU,
    a clamped copy while the check waits for the step's one read; see ``checks.py``).

    ``ids`` must be an int64 or int32 tensor of shape (B, T) with B, T >= 1, every id in
    [0, vocab_size), and ``offset + T <= max_len`` (``offset``: positions already in a cache).
    The range test is one reduction and one host sync (``checks.fail_if``), so that an id out
    of range raises a ValueError naming the id, its position and the vocabulary size instead
    of an IndexError (CPU) or a device-side assert (CUDA). Skipped under torch.compile, and
    when ``vocab_size`` is None (callers that hand the ids on to a model, which checks them).

    Raises:
        TypeError for a non-tensor or a non-integer dtype, ValueError for the rest.
    """
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, shape (B, T), "
                        f"got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer token ids (torch.int64 or torch.int32), "
                        f"got {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, T), got {tuple(ids.shape)}")
    B, T = ids.shape
    if B == 0 or T == 0:
        raise ValueError(f"{name} must hold at least one sequence of at least one token, "
                         f"got shape {tuple(ids.shape)} (an empty batch)")
    if max_len is not None and offset + T > max_len:
        where = f" after {offset} cached positions" if offset else ""
        raise ValueError(f"{name} has length {T}{where}, more than max_len={max_len} "
                         f"positions the model has")
    if vocab_size is None:
        return ids
    bad = (ids < 0) | (ids >= vocab_size)  # (B, T)

    def explain():
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}[{b}, {t}] = {int(ids[b, t])} is not a token id: ids must lie "
                         f"in [0, vocab_size={vocab_size})")

    if fail_if(bad, explain):  # deferred to the training step's one read (checks.py)
        return ids.clamp(0, vocab_size - 1)  # so that the embedding can run meanwhile
    return ids

