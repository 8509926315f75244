"""Attention masks. See chapter 4.

One convention throughout the package: a mask is a **bool** tensor in which ``True`` means
"this query may attend to this key". It must broadcast to ``(B, H, T_q, T_k)``; masks are
combined with ``&``. Additive masks (0 / very negative) and torch.nn.MultiheadAttention's
inverted polarity are produced only at the edges, by the converters below.
"""
from __future__ import annotations

import torch

from .checks import fail_if

__all__ = [
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "to_additive",
    "to_torch_mha",
    "check_mask",
    "as_padding_mask",
]


def causal_mask(T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """Lower-triangular mask aligned to the bottom-right corner.

    Query ``i`` sits at absolute position ``T_k - T_q + i`` and may see keys up to and
    including that position. With ``T_q == T_k`` this is the usual triangle; with a KV cache
    (``T_q`` new tokens, ``T_k`` = cached + new) it stays correct.

    Returns:
        bool tensor of shape (1, 1, T_q, T_k).
    """
    T_k = T_q if T_k is None else T_k
    if T_q < 0 or T_k < T_q:
        raise ValueError(f"causal_mask expects 0 <= T_q <= T_k, got T_q={T_q}, T_k={T_k}")
    q_pos = torch.arange(T_k - T_q, T_k, device=device)[:, None]  # (T_q, 1)
    k_pos = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
    return (k_pos <= q_pos)[None, None]  # (1, 1, T_q, T_k)


def padding_mask(tokens_or_lengths: torch.Tensor, pad_id: int | None = None,
                 max_len: int | None = None) -> torch.Tensor:
    """Mask that hides padding keys.

    Args:
        tokens_or_lengths: either token ids (B, T) together with ``pad_id``, or lengths (B,)
            together with ``max_len``.
    Returns:
        bool tensor of shape (B, 1, 1, T): True at real tokens.
    """
    x = tokens_or_lengths
    if pad_id is not None:
        if x.dim() != 2:
            raise ValueError(f"padding_mask expects token ids of shape (B, T), got {tuple(x.shape)}")
        keep = x != pad_id  # (B, T)
    else:
        if x.dim() != 1 or max_len is None:
            raise ValueError("padding_mask expects token ids (B, T) with pad_id, "
                             f"or lengths (B,) with max_len; got shape {tuple(x.shape)}, "
                             f"pad_id={pad_id}, max_len={max_len}")
        keep = torch.arange(max_len, device=x.device)[None, :] < x[:, None]  # (B, T)
    return keep[:, None, None, :]  # (B, 1, 1, T)


def as_padding_mask(mask: torch.Tensor | None, B: int, T: int,
                    name: str = "attention_mask") -> torch.Tensor | None:
    """The one way every model reads a padding mask.

    Accepts ``None``, a (B, T) tensor of bool or integer 0/1 (1/True = real token, the
    Hugging Face convention), or the broadcast form: bool (B, 1, 1, T).

    A float mask is refused, even one holding only 0 and 1: an additive mask's 0 means
    "keep" (it adds nothing to the score) while a 0/1 mask's 0 means "drop", so an all-zero
    float mask means "nothing masked" in one convention and "everything masked" in the other.
    The package does not guess: pass ``mask.bool()`` for a 0/1 mask, ``mask == 0`` for an
    additive one.

    Returns:
        bool (B, 1, 1, T), True at real tokens, or None.
    Raises:
        TypeError for a non-tensor or a float (or complex) mask; ValueError for an integer
        mask holding values other than 0 and 1, and for any other shape.
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({B}, {T}) or None, "
                        f"got {type(mask).__name__}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"{name} must be bool or integer 0/1 (1 = real token), got a "
                        f"{mask.dtype} tensor: a float mask is ambiguous (an additive mask's 0 "
                        f"means keep, a 0/1 mask's 0 means drop), so it is refused; pass "
                        f"mask.bool() for a 0/1 mask or (mask == 0) for an additive one")
    if mask.dim() == 2 and tuple(mask.shape) == (B, T):
        if mask.dtype != torch.bool:
            def explain(m=mask):
                raise ValueError(f"{name} must hold only 0 and 1 (1 = real token), got values "
                                 f"in [{int(m.min())}, {int(m.max())}] in a {m.dtype} tensor")

            fail_if((mask != 0) & (mask != 1), explain)  # 0/1 or not: read once (checks.py)
            mask = mask != 0
        return mask[:, None, None, :]  # (B, 1, 1, T)
    if mask.dim() == 4 and tuple(mask.shape) == (B, 1, 1, T):
        if mask.dtype != torch.bool:
            raise TypeError(f"{name} of shape (B, 1, 1, T) must be bool, got {mask.dtype}")
        return mask
    raise ValueError(f"{name} must have shape (B, T) = ({B}, {T}) (bool or 0/1) or bool "
                     f"(B, 1, 1, T) = ({B}, 1, 1, {T}), got {tuple(mask.shape)} {mask.dtype}")


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """``&`` of all masks that are not None (None means "attend everywhere")."""
    out = None
    for m in masks:
        if m is None:
            continue
        if m.dtype != torch.bool:
            raise TypeError(f"masks must be bool (True = may attend), got {m.dtype}")
        out = m if out is None else out & m
    return out


def to_additive(mask: torch.Tensor | None, dtype=torch.float32) -> torch.Tensor | None:
    """Bool mask -> additive mask: 0 where allowed, ``finfo(dtype).min`` where not.

    The finite minimum (not ``-inf``) keeps a fully masked row finite: softmax then gives a
    uniform row instead of NaN.
    """
    if mask is None:
        return None
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    neg = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    return torch.where(mask, zero, neg)


def to_torch_mha(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Convert our mask to torch.nn.MultiheadAttention's convention.

    torch.nn.MultiheadAttention (and nn.Transformer*) read a bool ``attn_mask`` or
    ``key_padding_mask`` with the **opposite** polarity: True there means "may NOT attend".
    Passing one of our masks unchanged silently attends exactly where it should not.
    This function flips the polarity: ``~mask``.
    """
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"expected a bool mask, got {mask.dtype}")
    return ~mask


def check_mask(mask: torch.Tensor | None, *expected: int) -> None:
    """Raise a clear error unless ``mask`` is bool and broadcasts to ``expected``.

    ``expected`` is usually (B, H, T_q, T_k).
    """
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}")
    what = "(B, H, T_q, T_k) = " if len(expected) == 4 else ""
    ok = mask.dim() <= len(expected)
    if ok:
        shape = (1,) * (len(expected) - mask.dim()) + tuple(mask.shape)
        ok = all(got in (1, want) for got, want in zip(shape, expected))
    if not ok:
        raise ValueError(f"mask must broadcast to {what}{tuple(expected)}, "
                         f"got shape {tuple(mask.shape)}")
