"""What several models of the book do the same way, written once.

    run_blocks(blocks, x, ...)        every block in turn, collecting attention weights
    source_mask(src, src_mask, pad)   the one source mask an encoder-decoder uses everywhere
    check_memory(memory, B, width)    the encoder output a decoder is handed
    last_real_index(keep)             where each right-padded row's last real token sits
"""
from __future__ import annotations

import torch

from ..checks import fail_if
from ..masks import as_padding_mask, padding_mask

__all__ = ["run_blocks", "source_mask", "check_memory", "last_real_index"]


def run_blocks(blocks, x: torch.Tensor, *, mask=None, memory=None, memory_mask=None,
               cache=None, self_bias=None, return_weights: bool = False):
    """x (B, T, C) through every ``Block`` of ``blocks``, in order.

    ``cache`` is a ``Cache`` (one entry per block) or None; ``self_bias`` is added to every
    block's self-attention scores (T5's relative positions).
    Returns:
        (x, weights): x (B, T, C); weights None, or with ``return_weights`` a dict
        {"self": [(B, H, T, T_k)] * n_blocks, "cross": [(B, H, T, S)] * n_blocks or []}.
    """
    weights = {"self": [], "cross": []} if return_weights else None
    for i, block in enumerate(blocks):
        x = block(x, mask=mask, memory=memory, memory_mask=memory_mask,
                  cache=cache[i] if cache is not None else None, self_bias=self_bias,
                  return_weights=return_weights)
        if return_weights:
            x, w = x
            for kind in w:  # "self", and "cross" in a decoder
                weights[kind].append(w[kind])
    return x, weights


def source_mask(src: torch.Tensor, src_mask, pad_id: int | None) -> torch.Tensor | None:
    """The source's padding mask, bool (B, 1, 1, S), True at real tokens: ``src_mask`` in any
    form ``as_padding_mask`` accepts, or when None, built from ``src != pad_id`` (None when
    there is no pad id: every position is real)."""
    if src_mask is not None:
        return as_padding_mask(src_mask, src.shape[0], src.shape[1], "src_mask")
    return None if pad_id is None else padding_mask(src, pad_id)


def check_memory(memory, B: int, width: int, what: str = "the output of encode") -> None:
    """Raise a ValueError unless ``memory`` is a tensor (B, S, width) with S >= 1."""
    if (not isinstance(memory, torch.Tensor) or memory.dim() != 3 or memory.shape[0] != B
            or memory.shape[2] != width or memory.shape[1] == 0):
        got = (tuple(memory.shape) if isinstance(memory, torch.Tensor)
               else type(memory).__name__)
        raise ValueError(f"memory must have shape (B={B}, S, {width}) ({what}), got {got}")


def last_real_index(keep: torch.Tensor, name: str = "attention_mask") -> torch.Tensor:
    """keep (B, T) bool, True at real tokens, right-padded -> (B,) index of each row's last
    real token. Raises a ValueError for a row with no real token (there is nothing to read)."""
    n_real = keep.long().sum(1)  # (B,)

    def explain():
        row = int((n_real == 0).nonzero()[0])
        raise ValueError(f"{name} row {row} has no real token: every row needs at least one "
                         "real (non-pad) token")

    fail_if(n_real == 0, explain)  # (deferred, an empty row reads index -1 meanwhile)
    return n_real - 1  # (B,)
