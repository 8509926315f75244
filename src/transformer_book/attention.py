"""Scaled dot-product attention and multi-head attention. See chapters 2 and 5.

Shape legend, used in every shape comment of the package:
    B  batch size            H  number of heads
    T  sequence length       T_q / T_k  query / key lengths (cross-attention, KV cache)
    C  model width d_model   D  head width d_head
    V  vocabulary size
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import KVCache
from .masks import causal_mask, check_mask, combine_masks, to_additive

__all__ = ["scaled_dot_product_attention", "MultiHeadAttention"]

def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., T, D), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension D: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length T_k: k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError("q, k, v must share their leading (batch, head) dimensions: "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")


def scaled_dot_product_attention(q, k, v, mask=None, dropout_p: float = 0.0, scale=None,
                                 return_weights: bool = False, bias=None, fused: bool | None = None,
                                 is_causal: bool = False):
    """softmax(q k^T * scale + bias, masked) v.

    Args:
        q: (B, H, T_q, D)   (any leading dims; 3-D (B, T, D) works too)
        k: (B, H, T_k, D)
        v: (B, H, T_k, D_v)
        mask: bool, True = may attend, broadcastable to (B, H, T_q, T_k); None = no mask.
        dropout_p: dropout on the attention weights (the caller passes 0 in eval mode).
        scale: multiplier of q k^T; default 1/sqrt(D). T5 uses 1.0.
        return_weights: also return the weights (forces the explicit path).
        bias: optional additive bias broadcastable to (B, H, T_q, T_k) (T5's relative bias).
        fused: True = torch.nn.functional.scaled_dot_product_attention, False = explicit
            matrix products; None picks fused unless the weights are requested.
        is_causal: add a causal mask (bottom-right aligned, as ``masks.causal_mask``); when it is
            the only mask and T_q == T_k, the fused path hands it to torch's kernels, which then
            skip the masked half instead of reading a mask tensor.
    Returns:
        out (B, H, T_q, D_v), and the weights (B, H, T_q, T_k) when return_weights is True.

    Masked scores are filled with ``finfo(dtype).min`` rather than ``-inf``, so a fully masked
    row yields uniform weights (the mean of v) instead of NaN, on both paths.
    """
    _check_qkv(q, k, v)
    T_q, T_k = q.shape[-2], k.shape[-2]
    check_mask(mask, *q.shape[:-2], T_q, T_k)
    if fused is None:
        fused = not return_weights
    if is_causal and T_q == 1:
        is_causal = False  # one query, aligned with the last key: it may see every key
    if is_causal and fused and mask is None and bias is None and T_q == T_k:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale,
                                              is_causal=True)
    if is_causal:
        mask = combine_masks(mask, causal_mask(T_q, T_k, device=q.device))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if fused and return_weights:
        raise ValueError("the fused path cannot return the weights; use fused=False")

    if fused:
        attn_mask = _additive_mask(mask, bias, q.dtype)
        if attn_mask is not None and attn_mask.dim() == 4 and q.dim() == 4:
            # torch's kernels want a mask that matches (B, H, T_q, T_k) up to broadcasting
            attn_mask = attn_mask.expand(q.shape[0], q.shape[1], T_q, T_k)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                              dropout_p=dropout_p, scale=scale)

    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # (B, H, T_q, T_k)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ v  # (B, H, T_q, D_v)
    return (out, weights) if return_weights else out


def _additive_mask(mask, bias, dtype):
    """The one additive mask that the fused kernel reads for a bool ``mask`` and an additive
    ``bias`` (either may be None): 0 or the bias where allowed, ``finfo(dtype).min`` where not."""
    if bias is None:
        return to_additive(mask, dtype)
    if mask is None:
        return bias.to(dtype)
    # where, not bias + finfo.min: that sum overflows to -inf in fp16 (NaN rows)
    return torch.where(mask, bias.to(dtype), torch.finfo(dtype).min)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, for self-attention (``kv=None``) and cross-attention.

    Args:
        d_model: width C of the input and the output.
        n_heads: number of heads H.
        d_head: width D of each head; default C // H (T5 v1.1 uses other values).
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases (T5: no).
        scale: None for 1/sqrt(D), or a number (T5: 1.0, the scale is folded into the init).
        causal: a decoder's self-attention; adds a bottom-right-aligned causal mask,
            which stays correct when a KV cache holds earlier positions.
        d_kv_in: width of the memory that cross-attention reads (default C).

    forward(x, kv=None, mask=None, cache=None, bias=None, return_weights=False):
        x: (B, T_q, C); kv: (B, T_k, d_kv_in) or None; mask: bool, True = may attend,
        broadcastable to (B, H, T_q, T_k); cache: a KVCache (``cache.py``); bias: additive
        (1|B, H, T_q, T_k).
        Returns (out, weights): out (B, T_q, C), and the attention weights (B, H, T_q, T_k)
        when return_weights is True, None otherwise.
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int | None = None, dropout: float = 0.0,
                 bias: bool = True, scale: float | None = None, causal: bool = False,
                 d_kv_in: int | None = None):
        super().__init__()
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                                 "pass d_head explicitly")
            d_head = d_model // n_heads
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_head
        self.dropout, self.causal = dropout, causal
        if scale is not None and not isinstance(scale, (int, float)):
            raise TypeError(f"scale must be None (1/sqrt(d_head)) or a number, got {scale!r}")
        self.scale = None if scale is None else float(scale)
        inner = n_heads * d_head
        d_kv_in = d_model if d_kv_in is None else d_kv_in
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.k_proj = nn.Linear(d_kv_in, inner, bias=bias)
        self.v_proj = nn.Linear(d_kv_in, inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, D)

    def _check_inputs(self, x, kv) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), got {tuple(x.shape)}")
        B, width = x.shape[0], self.k_proj.in_features
        if kv is not None and (kv.dim() != 3 or kv.shape[0] != B or kv.shape[-1] != width):
            raise ValueError(f"kv must have shape (B={B}, T_k, {width}), got {tuple(kv.shape)}")

    def forward(self, x, kv=None, mask=None, cache: KVCache | None = None, bias=None,
                return_weights: bool = False):
        self._check_inputs(x, kv)
        B, T, C = x.shape

        q = self._split(self.q_proj(x))  # (B, H, T_q, D)
        if kv is None:  # self-attention: keys and values from x
            k = self._split(self.k_proj(x))  # (B, H, T, D)
            v = self._split(self.v_proj(x))
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H, T_cached + T, D)
        elif cache is not None and len(cache):  # cross-attention, the memory already projected
            k, v = cache.source(kv)  # (B, H, S, D)
        else:  # cross-attention: keys and values from the memory kv
            k = self._split(self.k_proj(kv))  # (B, H, S, D)
            v = self._split(self.v_proj(kv))
            if cache is not None:
                cache.store_source(kv, k, v)

        p = self.dropout if self.training else 0.0
        res = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p, scale=self.scale,
                                           return_weights=return_weights, bias=bias,
                                           is_causal=self.causal)
        out, weights = res if return_weights else (res, None)
        out = out.transpose(1, 2).contiguous().view(B, T, self.n_heads * self.d_head)  # (B, T, H*D)
        return self.out_proj(out), weights  # (B, T, C), (B, H, T_q, T_k) or None
