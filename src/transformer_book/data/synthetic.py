"""Generated tasks for the lessons: small, exactly controlled, no download.

Each function returns tensors ready for a model and is seeded by a ``torch.Generator``,
so a chapter's numbers are reproducible. See chapters 1-5.
"""
from __future__ import annotations

import torch

__all__ = [
    "recall_batch",
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
