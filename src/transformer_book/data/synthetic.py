"""Generated tasks for the lessons: small, exactly controlled, no download.

Each function returns tensors ready for a model and is seeded by a ``torch.Generator``,
so a chapter's numbers are reproducible. See chapters 1-5.
"""
from __future__ import annotations

import torch

__all__ = [
    "recall_batch",
    "reverse_batch",
    "xor_batch",
    "progression_batch",
    "two_relation_batch",
]


def recall_batch(batch_size: int, k: int, n_symbols: int = 8, n_distractors: int = 8,
                 generator: torch.Generator | None = None, device=None):
    """The long-range recall task of chapter 1: remember the first token across k distractors.

    A sequence is ``[a, d_1, ..., d_k, ?]``: ``a`` is one of ``n_symbols`` symbols (ids
    ``0 .. n_symbols-1``), the ``d_i`` are drawn from ``n_distractors`` other ids, and ``?``
    (the last id) asks for ``a``. The answer depends only on a token k + 1 steps back.

    Returns:
        x: (B, k + 2) token ids; y: (B,) the symbol to recall. Vocabulary size:
        ``n_symbols + n_distractors + 1``; chance accuracy is ``1 / n_symbols``.
    """
    if k < 0 or n_symbols < 2 or n_distractors < 1:
        raise ValueError(f"expected k >= 0, n_symbols >= 2, n_distractors >= 1; got k={k}, "
                         f"n_symbols={n_symbols}, n_distractors={n_distractors}")
    query = n_symbols + n_distractors
    y = torch.randint(0, n_symbols, (batch_size,), generator=generator)
    noise = torch.randint(n_symbols, query, (batch_size, k), generator=generator)
    x = torch.cat([y[:, None], noise, torch.full((batch_size, 1), query)], dim=1)  # (B, k + 2)
    return x.to(device), y.to(device)


def reverse_batch(batch_size: int, length: int, vocab_size: int = 16,
                  generator: torch.Generator | None = None, device=None):
    """Reverse a sequence of distinct tokens: the chapter-3 task that needs word order.

    Tokens in a row are all different, so a model that cannot see positions (it only sees
    its own token and the bag of the others) can do no better than guess one of the other
    ``length - 1`` tokens: with an even ``length`` its accuracy is at most ``1 / (length - 1)``.

    Returns:
        x: (B, T) token ids in ``0 .. vocab_size - 1``; y: (B, T) the same row reversed.
    """
    if not 2 <= length <= vocab_size:
        raise ValueError(f"need 2 <= length <= vocab_size, got length={length}, "
                         f"vocab_size={vocab_size}")
    keys = torch.rand(batch_size, vocab_size, generator=generator)
    x = keys.argsort(dim=1)[:, :length]  # (B, T): a random arrangement of distinct ids
    return x.to(device), x.flip(1).to(device)


def xor_batch(batch_size: int, length: int, generator: torch.Generator | None = None,
              device=None):
    """Per-token XOR of two +-1 features (chapter 4): a label no linear map can produce.

    Returns:
        x: (B, T, 2) float features in {-1, +1}; y: (B, T) long, 1 where the two differ.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    x = torch.randint(0, 2, (batch_size, length, 2), generator=generator) * 2 - 1
    y = (x[..., 0] != x[..., 1]).long()
    return x.float().to(device), y.to(device)


def progression_batch(batch_size: int, length: int, vocab_size: int = 16, max_step: int = 4,
                      generator: torch.Generator | None = None, device=None):
    """Arithmetic progressions modulo ``vocab_size``: a tiny language for next-token prediction.

    A row is ``a, a + s, a + 2s, ...`` (mod ``vocab_size``) with ``a`` uniform and the step
    ``s`` uniform in ``1 .. max_step``. After the first two tokens everything is determined,
    so the best possible next-token loss, averaged over the ``length - 1`` predictions, is
    ``log(max_step) / (length - 1)`` nats: a model that does better has seen the future.

    Returns:
        (B, T) token ids. Use ``seq[:, :-1]`` as input and ``seq[:, 1:]`` as target.
    """
    if length < 2 or not 1 <= max_step < vocab_size:
        raise ValueError(f"need length >= 2 and 1 <= max_step < vocab_size, got length={length}, "
                         f"max_step={max_step}, vocab_size={vocab_size}")
    start = torch.randint(0, vocab_size, (batch_size, 1), generator=generator)
    step = torch.randint(1, max_step + 1, (batch_size, 1), generator=generator)
    seq = (start + step * torch.arange(length)) % vocab_size  # (B, T)
    return seq.to(device)


def two_relation_batch(batch_size: int, length: int, vocab_size: int = 16,
                       generator: torch.Generator | None = None, device=None):
    """Two relations at once (chapter 5): each position must report two other tokens.

    Relation 0 is "the previous token" (undefined at position 0: target -100, ignored by
    the loss); relation 1 is "the mirror token" at position ``length - 1 - t``.

    Returns:
        x: (B, T) token ids; y: (B, T, 2) targets for the two relations.
    """
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    x = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    prev = torch.cat([torch.full((batch_size, 1), -100), x[:, :-1]], dim=1)  # (B, T)
    y = torch.stack([prev, x.flip(1)], dim=-1)  # (B, T, 2)
    return x.to(device), y.to(device)
