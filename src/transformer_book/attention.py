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

from .masks import causal_mask, check_mask, combine_masks, to_additive

__all__ = ["scaled_dot_product_attention", "MultiHeadAttention", "KVCache", "Cache"]

# Inputs of at most this many rows (tokens) go through ``decode_linear``'s transposed weights.
DECODE_ROWS = 16


def _weights_frozen(tensors) -> bool:
    """True when no gradient will be taken through these tensors (inference)."""
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)


def _decode_weight(owner: nn.Module, tensors, build):
    """``build(tensors)``, kept on ``owner`` until one of the tensors changes (an optimizer step,
    ``load_state_dict``) or moves (``.to``): the key holds each tensor's address and version."""
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
    cached = owner.__dict__.get("_decode_cache")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, build(tensors))
        owner.__dict__["_decode_cache"] = cached
    return cached[1]


def project(lin: nn.Linear, x: torch.Tensor, decoding: bool) -> torch.Tensor:
    """``lin(x)``: through ``decode_linear`` in a cached incremental decoding step
    (``decoding``), the plain ``nn.Linear`` product in every other forward."""
    return decode_linear(lin, x) if decoding else lin(x)


def decode_linear(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)``; in inference on the CPU, for an input of one row (a decoding step of one
    token), one batched product of the weight's two halves (``_one_row_product``); for a few
    rows (a short prompt), one ``addmm`` with a contiguous copy of the transposed weight,
    (in, out), kept until the weight changes. A product of a few rows is bound by reading
    the weight, and the CPU's kernels read it almost twice as fast in that layout when the
    output is at least as wide as the input (a narrowing product, such as the FFN's down
    projection, reads its weight faster as it lies; benchmarks/README.md). From 4 rows on
    the result is the same to the last bit as ``lin(x)`` on this machine; with 2 rows
    another kernel sums in another order (last-digit differences). So the modules call it
    only in cached incremental decoding (a forward given a KV cache); every other forward,
    training or evaluation, is the plain ``nn.Linear`` product. Training (gradients wanted)
    never takes this path either."""
    w, b = lin.weight, lin.bias  # read once: each module attribute read costs a lookup
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    tensors = (w,) if b is None else (w, b)
    if (not 0 < rows <= DECODE_ROWS or x.dtype != w.dtype or x.device.type != "cpu"
            or not _weights_frozen(tensors)):
        return lin(x)
    if rows == 1 and _halves_fit(w):  # one token: the batched product of two halves
        return _one_row_product(w, b, x)
    if lin.out_features < lin.in_features:  # narrowing: the weight as it lies is faster
        return lin(x)
    return _transposed_product(x, _decode_weight(lin, tensors, _transposed), b)


def _transposed_product(x: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None):
    """x @ wt + b for an x (..., in) of a few rows, given the weight's transposed copy
    ``wt`` (in, out): one ``addmm`` (see ``decode_linear``)."""
    x2 = x.reshape(-1, x.shape[-1])  # (rows, in)
    y = x2 @ wt if b is None else torch.addmm(b, x2, wt)  # (rows, out)
    return y.view(*x.shape[:-1], wt.shape[1])


def _halves_fit(w: torch.Tensor) -> bool:
    return w.shape[0] % 2 == 0 and w.is_contiguous()


def _one_row_product(w: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """x @ w.T + b for an x (..., in) that holds one row (a decoding step of one token), as
    one batched product of the weight's two halves (2, out/2, in) -- views, no copy -- with x
    as a column. torch runs the two halves on two threads, and its batched kernel reads a
    weight as it lies, (out, in), faster than the one-row ``nn.Linear`` product does (with
    this step, the benchmark's 200-token GPT-2 generation ran 1.7x faster at two threads and
    1.3x at one; benchmarks/README.md). The column must be a transposed view of the row (strides
    (1, in)): a contiguous (in, 1) column sends the same call to a several times slower
    kernel on this machine. The sums run in another order than ``nn.Linear``'s (last-digit
    differences), which is why only cached decoding steps come here."""
    n_out, n_in = w.shape
    halves = w.view(2, n_out // 2, n_in)  # (2, out/2, in)
    col = x.reshape(1, n_in).t().expand(2, n_in, 1)  # (2, in, 1), strides (0, 1, in)
    y = (torch.bmm(halves, col) if b is None
         else torch.baddbmm(b.view(2, n_out // 2, 1), halves, col))  # (2, out/2, 1)
    return y.view(*x.shape[:-1], n_out)


def _transposed(tensors):
    return tensors[0].t().contiguous()  # the weight (out, in) -> (in, out), contiguous


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


class KVCache:
    """Keys and values that one attention module has already computed.

    Self-attention appends the new tokens' keys and values at every decoding step;
    cross-attention stores the encoder's keys and values once and reuses them.
    ``k`` and ``v`` are (B, H, T, D) views of buffers that grow by doubling and are written in
    place, so that a step copies only its own keys and values, not the whole history
    (appends that need gradients concatenate instead, as autograd cannot see through the
    in-place writes).
    """

    def __init__(self):
        self._k: torch.Tensor | None = None  # (B, H, capacity, D)
        self._v: torch.Tensor | None = None
        self._n = 0  # positions held

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, :self._n]  # (B, H, T, D)

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, :self._n]  # (B, H, T, D)

    def __len__(self) -> int:
        return self._n

    def reset(self) -> None:
        """Forget everything (start a new sequence, or a new source for cross-attention)."""
        self._k = self._v = None
        self._n = 0

    def append(self, k: torch.Tensor, v: torch.Tensor):
        n, T = self._n, k.shape[2]
        if n and k.shape[0] != self._k.shape[0]:
            raise ValueError(f"this cache holds a batch of {self._k.shape[0]}, the new keys "
                             f"have {k.shape[0]}: call cache.reset() before a new batch")
        if self._k is None or k.requires_grad or v.requires_grad or self._k.requires_grad:
            if self._k is None:
                self._k, self._v = k, v
            else:
                self._k = torch.cat([self.k, k], dim=2)  # (B, H, T_old + T_new, D)
                self._v = torch.cat([self.v, v], dim=2)
            self._n = n + T
            return self.k, self.v
        if n + T > self._k.shape[2]:  # grow: double the capacity (amortised O(1) per token)
            cap = max(2 * self._k.shape[2], n + T, 16)
            for name in ("_k", "_v"):
                old = getattr(self, name)
                buf = old.new_empty(*old.shape[:2], cap, old.shape[3])  # (B, H, cap, D)
                buf[:, :, :n] = old[:, :, :n]
                setattr(self, name, buf)
        self._k[:, :, n:n + T] = k
        self._v[:, :, n:n + T] = v
        self._n = n + T
        return self.k, self.v

    def source(self, kv: torch.Tensor):
        """The keys and values stored for cross-attention over ``kv`` (B, S, C), checked to
        come from a source of the same batch and length."""
        k, v = self.k, self.v  # (B, H, S, D)
        if k.shape[0] != kv.shape[0] or k.shape[2] != kv.shape[1]:
            raise ValueError(f"this cross-attention cache holds a source of batch "
                             f"{k.shape[0]} and length {k.shape[2]}, but kv is "
                             f"{tuple(kv.shape)}: call cache.reset() before a new source")
        return k, v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search picks which hypotheses survive)."""
        if self._k is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)


class Cache(list):
    """A model's cache: one entry per layer, each holding one or two ``KVCache``.

    ``len(cache.layers[0].self_attn)``-style bookkeeping is hidden behind ``seq_len``:
    the number of positions already processed, which is where new positions start.
    """

    def __init__(self, n_layers: int, cross: bool = False):
        super().__init__(LayerCache(cross) for _ in range(n_layers))

    @property
    def seq_len(self) -> int:
        return len(self[0].self_attn) if len(self) else 0

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self:
            layer.reorder(index)

    def reset(self) -> None:
        """Empty every layer's caches, so that the cache can serve a new batch or source."""
        for layer in self:
            layer.self_attn.reset()
            if layer.cross_attn is not None:
                layer.cross_attn.reset()


class LayerCache:
    """The caches of one block: its self-attention and, in a decoder, its cross-attention."""

    def __init__(self, cross: bool = False):
        self.self_attn = KVCache()
        self.cross_attn = KVCache() if cross else None

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        if self.cross_attn is not None:
            self.cross_attn.reorder(index)


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
        broadcastable to (B, H, T_q, T_k); cache: a KVCache; bias: additive (1|B, H, T_q, T_k).
        Returns (B, T_q, C), and the weights (B, H, T_q, T_k) when requested.
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

    def _qkv(self, x: torch.Tensor, decoding: bool = False):
        """q_proj(x), k_proj(x), v_proj(x). In cached incremental decoding (``decoding``, no
        gradients), one product with the three matrices stacked (one larger matrix product
        runs faster than three small ones; the parameters stay the three separate projections
        that the lessons read and write): for one row, the two halves of ``decode_linear``; for
        a few rows, the transposed copy. Every
        other forward, training or evaluation, takes the three plain products: the stacked
        product's backward sums the gradient for x in another order (it changed a chapter's
        trained results), and an ordinary forward must not depend on whether it runs in
        ``no_grad`` (benchmarks/README.md)."""
        y = self._qkv_stacked(x) if decoding else None  # (B, T, 3 H D)
        if y is None:
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)  # 3 x (B, T, H D)
        return y.split(self.n_heads * self.d_head, dim=-1)  # 3 x (B, T, H D)

    def _qkv_stacked(self, x: torch.Tensor) -> torch.Tensor | None:
        """q, k and v side by side, (B, T, 3 H D), from one product with the stacked matrices
        (decoding only, see ``_qkv``); None when gradients are wanted through the weights."""
        ps = (self.q_proj, self.k_proj, self.v_proj)
        tensors = [p.weight for p in ps] + ([p.bias for p in ps] if ps[0].bias is not None else [])
        if not _weights_frozen(tensors):
            return None
        # stack once, restack only when a weight changed (or moved)
        w, b, wt = _decode_weight(self, tensors, self._stack)
        rows = x.numel() // x.shape[-1]
        if rows == 1 and x.dtype == w.dtype and x.device.type == "cpu" and _halves_fit(w):
            return _one_row_product(w, b, x)  # (B, 1, 3 H D), see ``decode_linear``
        if wt is not None and 0 < rows <= DECODE_ROWS and x.dtype == w.dtype:
            return _transposed_product(x, wt, b)  # a few rows (see ``decode_linear``)
        return F.linear(x, w, b)  # (B, T, 3 H D)

    @staticmethod
    def _stack(tensors):
        w = torch.cat(tensors[:3])  # (3 H D, C)
        b = torch.cat(tensors[3:]) if len(tensors) > 3 else None
        wt = w.t().contiguous() if w.device.type == "cpu" else None  # (C, 3 H D), decoding
        return w, b, wt

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x, kv=None, mask=None, cache: KVCache | None = None, bias=None,
                return_weights: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), got {tuple(x.shape)}")
        B, T, C = x.shape
        if kv is not None and (kv.dim() != 3 or kv.shape[0] != B
                               or kv.shape[-1] != self.k_proj.in_features):
            raise ValueError(f"kv must have shape (B={B}, T_k, {self.k_proj.in_features}), "
                             f"got {tuple(kv.shape)}")

        if (cache is not None and T == 1 and not return_weights
                and not (self.training and self.dropout > 0)):
            out = self._one_token_step(x, kv, mask, cache, bias)  # a decoding step: short way
            if out is not None:
                return out

        if kv is None:  # self-attention: one matrix product for q, k and v
            q, k, v = (self._split(t) for t in self._qkv(x, decoding=cache is not None))
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H, T_cached + T, D)
        else:  # cross-attention
            q = self._split(project(self.q_proj, x, cache is not None))  # (B, H, T_q, D)
            if cache is not None and len(cache):  # the memory is already projected
                k, v = cache.source(kv)  # (B, H, S, D)
            else:
                k = self._split(self.k_proj(kv))  # (B, H, T_k, D)
                v = self._split(self.v_proj(kv))
                if cache is not None:
                    cache.append(k, v)

        T_k = k.shape[2]
        check_mask(mask, B, self.n_heads, T, T_k)
        p = self.dropout if self.training else 0.0
        res = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p, scale=self.scale,
                                           return_weights=return_weights, bias=bias,
                                           is_causal=self.causal)
        out, weights = res if return_weights else (res, None)
        out = out.transpose(1, 2).contiguous().view(B, T, self.n_heads * self.d_head)  # (B, T, H*D)
        out = project(self.out_proj, out, cache is not None)  # (B, T, C)
        return (out, weights) if return_weights else out

    def _one_token_step(self, x, kv, mask, cache: KVCache, bias) -> torch.Tensor | None:
        """Attention of one new token (B, 1, C) in cached decoding: the same operations as the
        rest of ``forward``, with fewer steps between them (a decoding step is short, so each
        step counts). With one token, the stacked product's (B, 1, 3, H, D) and (B, 3, H, 1, D)
        are the same memory, so q, k and v come out shaped (B, H, 1, D) with no transposes;
        the new query comes after every cached key, so no causal mask is needed; and the
        heads' outputs (B, H, 1, D) are already laid out as (B, 1, H D). Returns None (the
        long way) when gradients are wanted, or when cross-attention's cache is still empty."""
        B, H, D = x.shape[0], self.n_heads, self.d_head
        if kv is None:  # self-attention: append this token's key and value
            qkv = self._qkv_stacked(x)  # (B, 1, 3 H D)
            if qkv is None:
                return None
            q, k, v = qkv.view(B, 3, H, 1, D).unbind(1)  # 3 x (B, H, 1, D)
            k, v = cache.append(k, v)  # (B, H, T_k, D)
        else:  # cross-attention: the memory's keys and values are in the cache
            if not len(cache):
                return None
            k, v = cache.source(kv)  # (B, H, S, D)
            q = decode_linear(self.q_proj, x).view(B, H, 1, D)
        check_mask(mask, B, H, 1, k.shape[2])
        attn_mask = _additive_mask(mask, bias, q.dtype)  # as scaled_dot_product_attention
        if attn_mask is not None and attn_mask.dim() == 4:
            attn_mask = attn_mask.expand(B, H, 1, k.shape[2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return decode_linear(self.out_proj, out.reshape(B, 1, H * D))  # (B, 1, C)
