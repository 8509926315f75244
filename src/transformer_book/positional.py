"""Positional information: sinusoidal, learned, and T5's relative bias. See chapter 3.

Self-attention is permutation-equivariant: without one of these, "dog bites man" and
"man bites dog" produce the same bag of outputs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .checks import fail_if

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "relative_position_bucket",
    "RelativePositionBias",
]


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0,
                        dtype=torch.float32) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d)).

    Returns:
        (max_len, d_model) tensor of ``dtype`` (computed in float64, then cast).
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (C/2,)
    angles = pos * inv_freq  # (T, C/2)
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.to(dtype)


def _check_positions(x: torch.Tensor, d_model: int, max_len: int, offset: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"expected input of shape (B, T, d_model={d_model}), got {tuple(x.shape)}")
    if offset + x.shape[1] > max_len:
        raise ValueError(f"sequence of length {offset + x.shape[1]} (offset {offset} + T "
                         f"{x.shape[1]}) is longer than max_len={max_len}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to (B, T, C) inputs; no parameters."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, self.d_model, self.max_len, offset)
        T = x.shape[1]
        return x + self.pe[offset:offset + T].to(x.dtype)  # (B, T, C)


class LearnedPositionalEmbedding(nn.Module):
    """A trainable vector per absolute position (GPT, BERT); adds it to (B, T, C) inputs."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.zeros(max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) plus the vectors of positions offset .. offset + T - 1, or of
        ``positions`` (B, T) when given (a left-padded batch: each row's own positions)."""
        _check_positions(x, self.d_model, self.max_len, offset)
        T = x.shape[1]
        if positions is None:
            return x + self.weight[offset:offset + T]  # (B, T, C)
        if (not isinstance(positions, torch.Tensor) or positions.shape != x.shape[:2]
                or positions.dtype not in (torch.int64, torch.int32)):
            got = (f"{tuple(positions.shape)} {positions.dtype}"
                   if isinstance(positions, torch.Tensor) else type(positions).__name__)
            raise ValueError(f"position_ids must be integers of shape (B, T) = "
                             f"{tuple(x.shape[:2])}, got {got}")

        def explain(positions=positions):  # as given (replaced below when deferred)
            raise ValueError(f"position_ids must lie in [0, max_len={self.max_len}), got "
                             f"values from {int(positions.min())} to {int(positions.max())}")

        if fail_if((positions < 0) | (positions >= self.max_len), explain):
            positions = positions.clamp(0, self.max_len - 1)  # deferred: see checks.py
        return x + self.weight[positions]  # (B, T, C)


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """T5's bucketing of ``key_pos - query_pos`` into a small number of ids.

    Half of the buckets (per direction) hold exact small distances; the rest cover
    distances up to ``max_distance`` on a log scale; anything farther shares the last bucket.
    A causal decoder (bidirectional=False) only distinguishes keys at or before the query.
    """
    n = relative_position
    ret = torch.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n > 0).long() * num_buckets  # keys after the query use the upper half
        n = n.abs()
    else:
        n = (-n).clamp(min=0)  # distance back in time; the future all falls in bucket 0
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # same operation order as the reference implementation, so the float rounding agrees
    log_ratio = torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).to(torch.long)
    large = large.clamp(max=num_buckets - 1)
    return ret + torch.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """One learned scalar per (bucket, head), added to the attention scores (T5).

    forward(T_q, T_k) -> (1, H, T_q, T_k). Queries are aligned to the last T_q of the T_k
    positions, which is what a decoder with a KV cache needs.
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True):
        super().__init__()
        self.n_heads, self.num_buckets = n_heads, num_buckets
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.embedding = nn.Embedding(num_buckets, n_heads)

    def forward(self, T_q: int, T_k: int) -> torch.Tensor:
        device = self.embedding.weight.device
        q_pos = torch.arange(T_k - T_q, T_k, device=device)[:, None]  # (T_q, 1)
        k_pos = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
        buckets = relative_position_bucket(k_pos - q_pos, self.bidirectional,
                                           self.num_buckets, self.max_distance)  # (T_q, T_k)
        bias = self.embedding(buckets)  # (T_q, T_k, H)
        return bias.permute(2, 0, 1)[None]  # (1, H, T_q, T_k)
