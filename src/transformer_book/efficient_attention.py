"""Attention that costs less than O(T^2): sparse (local window, strided) and linearised.
See chapter 12.

Sparse attention (Child et al. 2019) keeps softmax attention but lets each query see only a
pattern of keys:
  local:   the last ``window`` positions (itself included), O(T w) work and memory;
  strided: the last ``stride`` positions plus every ``stride``-th position before them
           (Child et al.'s two strided heads merged into one pattern), O(T (s + T/s));
  local + global: the local window plus the first ``n_global`` positions, which every
           query sees (the global tokens of Longformer, Beltagy et al. 2020, and BigBird,
           Zaheer et al. 2020), O(T (w + g)).
Linearised attention (Katharopoulos et al. 2020) replaces exp(q.k) by phi(q).phi(k) with
phi = elu + 1, so that sum_j phi(k_j) v_j^T is computed once (non-causal) or as a running
prefix sum (causal): O(T D^2) work, no T x T matrix.

The fast paths below never build a T x T tensor. When a padding mask, a KV cache (decoding)
or the weights are asked for, the same attention is computed from its explicit T_q x T_k
form instead (the pattern as a bool mask, bottom-right aligned like ``masks.causal_mask``).

``EfficientSelfAttention`` is a drop-in ``MultiHeadAttention`` (same parameters, same
forward signature) and ``swap_attention(model, kind, window)`` puts it into a built model.

Two more ways to spend less, which keep exact softmax attention:
  grouped-query attention (Ainslie et al. 2023): H query heads share G key/value heads
      (``GroupedQueryAttention``; G = H is multi-head attention, G = 1 multi-query attention,
      Shazeer 2019), so a decoder's KV cache holds G heads instead of H;
  online softmax (Milakov & Gimelshein 2018; the idea of FlashAttention, Dao et al. 2022):
      ``online_softmax_attention`` visits the keys block by block with a running maximum and a
      running sum, so no T_q x T_k matrix is ever held, and gives softmax attention exactly.
Shape legend: see ``attention.py``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention, _check_qkv, scaled_dot_product_attention
from .masks import check_mask, combine_masks
from .positional import RelativePositionBias

__all__ = ["local_mask", "strided_mask", "local_global_mask", "local_attention",
           "strided_attention", "local_global_attention",
           "elu_feature_map", "linear_attention", "EfficientSelfAttention", "swap_attention",
           "KINDS", "GroupedQueryAttention", "online_softmax_attention"]

KINDS = ("local", "strided", "local_global", "linear")


def _check_width(name: str, w) -> int:
    if not isinstance(w, int) or isinstance(w, bool):
        raise TypeError(f"{name} must be an int, got {type(w).__name__}")
    if w < 1:
        raise ValueError(f"{name} must be >= 1, got {w}")
    return w


def _offsets(T_q: int, T_k: int | None, device):
    """i - j for every (query, key), with query i at absolute position T_k - T_q + i."""
    T_k = T_q if T_k is None else T_k
    if T_k < T_q:
        raise ValueError(f"T_k must be >= T_q (the queries are the last T_q positions), "
                         f"got T_q={T_q}, T_k={T_k}")
    i = torch.arange(T_k - T_q, T_k, device=device)[:, None]
    j = torch.arange(T_k, device=device)[None, :]
    return i - j  # (T_q, T_k)


def local_mask(T_q: int, T_k: int | None = None, window: int = 1, causal: bool = True,
               device=None) -> torch.Tensor:
    """Bool (T_q, T_k), True = may attend: keys within ``window`` positions of the query.

    causal: 0 <= i - j < window (the query and the window - 1 keys before it);
    otherwise |i - j| < window. Bottom-right aligned (right with a KV cache).
    """
    window = _check_width("window", window)
    d = _offsets(T_q, T_k, device)
    return ((d >= 0) & (d < window)) if causal else (d.abs() < window)


def strided_mask(T_q: int, T_k: int | None = None, stride: int = 1, causal: bool = True,
                 device=None) -> torch.Tensor:
    """Bool (T_q, T_k): the local pattern of width ``stride`` plus every key a multiple of
    ``stride`` away (Child et al. 2019's strided pattern, both heads in one)."""
    stride = _check_width("stride", stride)
    d = _offsets(T_q, T_k, device)
    allowed = (d.abs() < stride) | (d % stride == 0)
    return allowed & (d >= 0) if causal else allowed


def local_global_mask(T_q: int, T_k: int | None = None, window: int = 1, n_global: int = 1,
                      causal: bool = True, device=None) -> torch.Tensor:
    """Bool (T_q, T_k): the local pattern of ``local_mask`` plus the first ``n_global`` keys,
    which every query may see (causal: every query at or after them). The global tokens of
    Longformer (Beltagy et al. 2020) and BigBird (Zaheer et al. 2020), seen from the queries'
    side: O(T (window + n_global)) pairs."""
    n_global = _check_width("n_global", n_global)
    local = local_mask(T_q, T_k, window, causal, device)
    j = torch.arange(local.shape[1], device=device)[None, :]
    glob = j < n_global  # (1, T_k)
    if causal:
        glob = glob & (_offsets(T_q, T_k, device) >= 0)
    return local | glob


# ----------------------------------------------------------------------------- sparse, fast path

def _blocked_local_scores(q, k, w, causal, scale):
    """Scores of each query against the keys of its block and the block(s) around it.

    q, k: (B, H, T, D). Returns scores (B, H, n, w, K) with K = 2w (causal) or 3w, already
    masked to the local pattern, the padded length n*w, and the key layout (for v)."""
    B, H, T, D = q.shape
    n = -(-T // w)
    pad = n * w - T
    q, k = (F.pad(t, (0, 0, 0, pad)) for t in (q, k))  # (B, H, n w, D)
    qb = q.view(B, H, n, w, D)
    kb = _neighbour_blocks(k.view(B, H, n, w, D), causal)  # (B, H, n, K, D)
    scores = (qb @ kb.transpose(-2, -1)) * scale  # (B, H, n, w, K)
    blk = torch.arange(n, device=q.device)[:, None, None]
    i = blk * w + torch.arange(w, device=q.device)[None, :, None]  # (n, w, 1)
    j = (blk - 1) * w + torch.arange(kb.shape[3], device=q.device)[None, None, :]  # (n, 1, K)
    d = i - j
    ok = (j >= 0) & (j < T) & (((d >= 0) & (d < w)) if causal else (d.abs() < w))
    return scores.masked_fill(~ok, torch.finfo(scores.dtype).min), n


def _neighbour_blocks(x, causal):
    """(B, H, n, w, D) -> each block next to its previous (and, non-causal, next) block."""
    prev = F.pad(x, (0, 0, 0, 0, 1, 0))[:, :, :-1]  # block b-1 at index b (zeros first)
    if causal:
        return torch.cat([prev, x], dim=3)  # (B, H, n, 2w, D)
    nxt = F.pad(x, (0, 0, 0, 0, 0, 1))[:, :, 1:]
    return torch.cat([prev, x, nxt], dim=3)  # (B, H, n, 3w, D)


def _column_scores(q, k, s, causal, scale):
    """Scores against the keys a non-zero multiple of s away: positions are regrouped by
    their residue mod s, so that they form s sequences of length n = T/s.

    Returns scores (B, H, s, n, n), masked, and n."""
    B, H, T, D = q.shape
    n = -(-T // s)
    pad = n * s - T
    q, k = (F.pad(t, (0, 0, 0, pad)).view(B, H, n, s, D).transpose(2, 3) for t in (q, k))
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, s, n, n): (residue, m_q, m_k)
    r = torch.arange(s, device=q.device)[:, None, None]
    mq = torch.arange(n, device=q.device)[None, :, None]
    mk = torch.arange(n, device=q.device)[None, None, :]
    ok = ((mk < mq) if causal else (mk != mq)) & (mk * s + r < T)
    return scores.masked_fill(~ok, torch.finfo(scores.dtype).min), n


def _to_columns(x, s, n):
    B, H, T, D = x.shape
    return F.pad(x, (0, 0, 0, n * s - T)).view(B, H, n, s, D).transpose(2, 3)  # (B,H,s,n,D)


def _from_columns(x, T):
    B, H, s, n, D = x.shape
    return x.transpose(2, 3).reshape(B, H, n * s, D)[:, :, :T]  # (B, H, T, D)


def _sparse_checks(q, k, v, mask, dropout_p):
    _check_qkv(q, k, v)
    if q.dim() != 4:
        raise ValueError(f"q, k, v must have shape (B, H, T, D), got q {tuple(q.shape)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    check_mask(mask, *q.shape[:2], q.shape[2], k.shape[2])


def _explicit(q, k, v, pattern, mask, dropout_p, scale, return_weights):
    """The pattern as a bool mask, through the package's (dense) attention."""
    return scaled_dot_product_attention(q, k, v, mask=combine_masks(mask, pattern),
                                        dropout_p=dropout_p, scale=scale,
                                        return_weights=return_weights)


def _sparse_prologue(name, width, pattern_fn, q, k, v, causal, mask, dropout_p, scale,
                     return_weights):
    """The checks shared by the sparse patterns, and their explicit fallback: with a mask,
    the weights asked for, or T_q != T_k, the pattern goes through the dense attention.
    Returns (width, output or None when the fast path applies)."""
    width = _check_width(name, width)
    _sparse_checks(q, k, v, mask, dropout_p)
    T_q, T_k = q.shape[2], k.shape[2]
    if mask is None and not return_weights and T_q == T_k:
        return width, None
    pattern = pattern_fn(T_q, T_k, width, causal, q.device)
    return width, _explicit(q, k, v, pattern, mask, dropout_p, scale, return_weights)


def _value_blocks(v, w, n, causal):
    """v (B, H, T, D) padded to n blocks of w, each block with its neighbour(s)."""
    B, H, T, D = v.shape
    return _neighbour_blocks(F.pad(v, (0, 0, 0, n * w - T)).view(B, H, n, w, D), causal)


def local_attention(q, k, v, window: int, causal: bool = True, mask=None,
                    dropout_p: float = 0.0, scale=None, return_weights: bool = False):
    """Softmax attention restricted to a local window (see ``local_mask``).

    Args:
        q: (B, H, T_q, D); k, v: (B, H, T_k, D); window: keys per query (causal) or the
            half-width + 1 (non-causal); mask: optional bool, True = may attend, broadcastable
            to (B, H, T_q, T_k), combined with the window; scale: default 1/sqrt(D).
    Returns:
        (B, H, T_q, D), and the weights (B, H, T_q, T_k) with return_weights.
    Without mask and weights and with T_q == T_k, blocks of ``window`` queries attend to
    their own and the neighbouring block(s): O(T window) time and memory.
    """
    window, explicit = _sparse_prologue("window", window, local_mask, q, k, v, causal, mask,
                                        dropout_p, scale, return_weights)
    if explicit is not None:
        return explicit
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores, n = _blocked_local_scores(q, k, window, causal, scale)  # (B, H, n, w, K)
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout_p) if dropout_p else \
        torch.softmax(scores, dim=-1)
    B, H, T, D = v.shape
    vb = _value_blocks(v, window, n, causal)  # (B, H, n, K, D)
    return (weights @ vb).reshape(B, H, n * window, D)[:, :, :T]  # (B, H, T, D)


def strided_attention(q, k, v, stride: int, causal: bool = True, mask=None,
                      dropout_p: float = 0.0, scale=None, return_weights: bool = False):
    """Softmax attention over the strided pattern (see ``strided_mask``).

    Same arguments as ``local_attention``, with ``stride`` for the window. The fast path
    splits the pattern into its local part (blocks) and its column part (positions grouped
    by residue mod stride) and normalises the two together through their log-sum-exps:
    O(T (stride + T / stride)), which is O(T^1.5) for stride ~ sqrt(T).
    """
    stride, explicit = _sparse_prologue("stride", stride, strided_mask, q, k, v, causal, mask,
                                        dropout_p, scale, return_weights)
    if explicit is not None:
        return explicit
    B, H, T, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    s_loc, n = _blocked_local_scores(q, k, stride, causal, scale)  # (B, H, n, s, K)
    s_col, m = _column_scores(q, k, stride, causal, scale)  # (B, H, s, m, m)
    lse_loc = s_loc.logsumexp(-1).reshape(B, H, n * stride)[:, :, :T]  # (B, H, T)
    lse_col = _from_columns(s_col.logsumexp(-1)[..., None], T)[..., 0]  # (B, H, T)
    lse = torch.logaddexp(lse_loc, lse_col)  # (B, H, T): the joint normaliser
    p_loc = (s_loc - F.pad(lse, (0, n * stride - T)).view(B, H, n, stride, 1)).exp()
    p_col = (s_col - _to_columns(lse[..., None], stride, m)).exp()  # (B, H, s, m, m)
    if dropout_p:
        p_loc, p_col = F.dropout(p_loc, dropout_p), F.dropout(p_col, dropout_p)
    v_loc = _value_blocks(v, stride, n, causal)  # (B, H, n, K, D)
    out = (p_loc @ v_loc).reshape(B, H, n * stride, D)[:, :, :T]
    return out + _from_columns(p_col @ _to_columns(v, stride, m), T)  # (B, H, T, D)


def local_global_attention(q, k, v, window: int, n_global: int = 1, causal: bool = True,
                           mask=None, dropout_p: float = 0.0, scale=None,
                           return_weights: bool = False):
    """Softmax attention over the local window plus the first ``n_global`` keys (see
    ``local_global_mask``). Same arguments as ``local_attention``, plus ``n_global``.

    The fast path scores each query against its local blocks and against the global keys
    that lie outside its window, and normalises the two together through their
    log-sum-exps: O(T (window + n_global)) time and memory.
    """
    n_global = _check_width("n_global", n_global)

    def pattern(T_q, T_k, w, causal_, device):
        return local_global_mask(T_q, T_k, w, n_global, causal_, device)

    window, explicit = _sparse_prologue("window", window, pattern, q, k, v, causal, mask,
                                        dropout_p, scale, return_weights)
    if explicit is not None:
        return explicit
    B, H, T, D = q.shape
    g = min(n_global, T)
    scale = D ** -0.5 if scale is None else scale
    s_loc, n = _blocked_local_scores(q, k, window, causal, scale)  # (B, H, n, w, K)
    s_glb = (q @ k[:, :, :g].transpose(-2, -1)) * scale  # (B, H, T, g)
    d = (torch.arange(T, device=q.device)[:, None]
         - torch.arange(g, device=q.device)[None, :])  # (T, g): i - j
    outside = (d >= window) if causal else (d.abs() >= window)  # not already in the window
    s_glb = s_glb.masked_fill(~outside, torch.finfo(s_glb.dtype).min)
    lse_loc = s_loc.logsumexp(-1).reshape(B, H, n * window)[:, :, :T]  # (B, H, T)
    lse = torch.logaddexp(lse_loc, s_glb.logsumexp(-1))  # (B, H, T): the joint normaliser
    p_loc = (s_loc - F.pad(lse, (0, n * window - T)).view(B, H, n, window, 1)).exp()
    p_glb = (s_glb - lse[..., None]).exp() * outside  # (B, H, T, g)
    if dropout_p:
        p_loc, p_glb = F.dropout(p_loc, dropout_p), F.dropout(p_glb, dropout_p)
    out = p_loc @ _value_blocks(v, window, n, causal)  # (B, H, n, w, D)
    out = out.reshape(B, H, n * window, D)[:, :, :T]
    return out + p_glb @ v[:, :, :g]  # (B, H, T, D)


# ----------------------------------------------------------------------------- linearised

def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al. 2020)."""
    return F.elu(x) + 1.0


def linear_attention(q, k, v, causal: bool = True, mask=None, eps: float = 1e-6,
                     chunk: int = 64, return_weights: bool = False, feature_map=elu_feature_map):
    """Linearised attention: out_i = sum_j phi(q_i).phi(k_j) v_j / (sum_j phi(q_i).phi(k_j) + eps)
    over the keys j that query i may see (j <= i when causal).

    Args:
        q: (B, H, T_q, D); k: (B, H, T_k, D); v: (B, H, T_k, D_v); mask: optional bool,
            True = may attend, broadcastable to (B, H, T_q, T_k); chunk: block length of
            the causal prefix sum. There is no softmax, hence no scale.
    Returns:
        (B, H, T_q, D_v), and the normalised weights (B, H, T_q, T_k) with return_weights.
    Fast paths (no mask, no weights, T_q == T_k): non-causal, phi(K)^T V once, O(T D D_v);
    causal, a prefix sum of phi(k_j) v_j^T over blocks of ``chunk`` positions plus an
    explicit masked product inside each block, O(T (chunk + D) D_v), never T x T.
    """
    _check_qkv(q, k, v)
    if q.dim() != 4:
        raise ValueError(f"q, k, v must have shape (B, H, T, D), got q {tuple(q.shape)}")
    chunk = _check_width("chunk", chunk)
    if not callable(feature_map):
        raise TypeError(f"feature_map must be callable, got {type(feature_map).__name__}")
    T_q, T_k = q.shape[2], k.shape[2]
    check_mask(mask, *q.shape[:2], T_q, T_k)
    fq, fk = feature_map(q), feature_map(k)  # (B, H, T, D), positive
    if mask is not None or return_weights or T_q != T_k:
        a = fq @ fk.transpose(-2, -1)  # (B, H, T_q, T_k)
        allowed = combine_masks(mask, _offsets(T_q, T_k, q.device) >= 0 if causal else None)
        if allowed is not None:
            a = a * allowed
        w = a / (a.sum(-1, keepdim=True) + eps)
        out = w @ v  # (B, H, T_q, D_v)
        return (out, w) if return_weights else out
    if not causal:
        kv = fk.transpose(-2, -1) @ v  # (B, H, D, D_v)
        z = fk.sum(-2)  # (B, H, D)
        return (fq @ kv) / ((fq @ z[..., None]) + eps)  # (B, H, T, D_v)
    B, H, T, D = fq.shape
    Dv = v.shape[-1]
    chunk = min(chunk, T)
    n = -(-T // chunk)
    pad = n * chunk - T
    fq, fk, vv = (F.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v))  # padded keys are zero
    fq, fk = fq.view(B, H, n, chunk, D), fk.view(B, H, n, chunk, D)
    vv = vv.view(B, H, n, chunk, Dv)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    a = (fq @ fk.transpose(-2, -1)) * tril  # (B, H, n, c, c): inside each block
    kv = fk.transpose(-2, -1) @ vv  # (B, H, n, D, Dv): each block's sum of phi(k) v^T
    state = kv.cumsum(2) - kv  # (B, H, n, D, Dv): sum over the blocks before
    zk = fk.sum(-2)  # (B, H, n, D)
    zstate = zk.cumsum(2) - zk
    num = a @ vv + fq @ state  # (B, H, n, c, Dv)
    den = a.sum(-1) + (fq @ zstate[..., None])[..., 0]  # (B, H, n, c)
    out = num / (den[..., None] + eps)
    return out.reshape(B, H, n * chunk, Dv)[:, :, :T]  # (B, H, T, D_v)


# ----------------------------------------------------------------------------- the module

class EfficientSelfAttention(MultiHeadAttention):
    """``MultiHeadAttention`` whose self-attention is sparse or linearised.

    Same parameters (q/k/v/out projections) and forward signature as MultiHeadAttention, so
    it can take the place of a model's self-attention (``swap_attention``) and load its
    weights. Args as MultiHeadAttention's, plus:
        kind: "local", "strided", "local_global" or "linear".
        window: the local window or the stride (required for the sparse kinds).
        n_global: the number of leading global positions ("local_global" only).
    Self-attention only: ``kv`` and an additive ``bias`` (T5) raise ValueError. With a
    ``cache`` (decoding) or a ``mask`` the explicit form of the same attention is used.
    Linear attention has no weights to drop out: ``dropout`` applies to the sparse kinds.
    """

    def __init__(self, d_model: int, n_heads: int, kind: str, window: int | None = None,
                 n_global: int = 1, **kwargs):
        super().__init__(d_model, n_heads, **kwargs)
        self.n_global = _check_width("n_global", n_global)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "linear":
            if window is not None:
                raise ValueError(f"linear attention has no window; got window={window}")
        else:
            window = _check_width("window", window) if window is not None else None
            if window is None:
                raise ValueError(f"{kind} attention needs a window (an int >= 1)")
        self.kind, self.window = kind, window

    def extra_repr(self) -> str:
        w = "" if self.window is None else f", window={self.window}"
        if self.kind == "local_global":
            w += f", n_global={self.n_global}"
        return f"kind={self.kind!r}{w}, causal={self.causal}"

    def forward(self, x, kv=None, mask=None, cache=None, bias=None, return_weights=False):
        if kv is not None:
            raise ValueError(f"{self.kind} attention is self-attention only (kv must be None)")
        if bias is not None:
            raise ValueError(f"{self.kind} attention takes no additive bias")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, d_model={self.d_model}), "
                             f"got {tuple(x.shape)}")
        B, T, C = x.shape
        q, k, v = (self._split(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_cached + T, D); checks the batch
        p = self.dropout if self.training else 0.0
        if self.kind == "linear":
            res = linear_attention(q, k, v, causal=self.causal, mask=mask,
                                   return_weights=return_weights)
        elif self.kind == "local_global":
            res = local_global_attention(q, k, v, self.window, self.n_global,
                                         causal=self.causal, mask=mask, dropout_p=p,
                                         scale=self.scale, return_weights=return_weights)
        else:
            fn = local_attention if self.kind == "local" else strided_attention
            res = fn(q, k, v, self.window, causal=self.causal, mask=mask, dropout_p=p,
                     scale=self.scale, return_weights=return_weights)
        out, weights = res if return_weights else (res, None)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head))
        return out, weights  # (B, T, C), (B, H, T, T_k) or None


def swap_attention(model: nn.Module, kind: str, window: int | None = None,
                   n_global: int = 1) -> nn.Module:
    """Replace every self-attention of ``model`` (each ``Block.self_attn``) by an
    ``EfficientSelfAttention`` of ``kind`` with the same weights; cross-attention stays.

    Returns the model (changed in place). Raises ValueError if it has no self-attention, or
    if it adds a relative position bias to its scores (T5), which these kinds do not take.
    See chapter 12.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if any(isinstance(m, RelativePositionBias) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} adds a relative position bias (T5) to its "
                         "attention scores, which sparse and linear attention do not take: "
                         "it cannot be swapped")
    owners = [m for m in model.modules()
              if isinstance(getattr(m, "self_attn", None), MultiHeadAttention)]
    if not owners:
        raise ValueError(f"{type(model).__name__} has no module with a self_attn "
                         "(MultiHeadAttention) to replace")
    for owner in owners:
        old = owner.self_attn
        new = EfficientSelfAttention(
            old.d_model, old.n_heads, kind, window, n_global, d_head=old.d_head,
            dropout=old.dropout,
            bias=old.q_proj.bias is not None, scale=old.scale, causal=old.causal)
        new.load_state_dict(old.state_dict())
        owner.self_attn = new.to(old.q_proj.weight.device, old.q_proj.weight.dtype)
    return model


class GroupedQueryAttention(MultiHeadAttention):
    """Multi-head attention whose ``n_heads`` query heads share ``n_kv_heads`` key/value heads
    (grouped-query attention, Ainslie et al. 2023): query head h reads key/value head
    ``h // (n_heads // n_kv_heads)``. ``n_kv_heads == n_heads`` is multi-head attention,
    ``n_kv_heads == 1`` multi-query attention (Shazeer 2019). The key and value projections,
    and a decoder's KV cache, are ``n_heads / n_kv_heads`` times smaller.

    Same arguments and forward as ``MultiHeadAttention``, plus ``n_kv_heads`` (which must
    divide ``n_heads``); ``cache`` then holds (B, n_kv_heads, T, D) keys and values.
    ``GroupedQueryAttention.from_multi_head(mha, n_kv_heads)`` converts a trained
    ``MultiHeadAttention`` by averaging the key and value projections of each group's heads
    (the paper's conversion before its short further training).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, **kwargs):
        super().__init__(d_model, n_heads, **kwargs)
        for name, n in (("n_heads", n_heads), ("n_kv_heads", n_kv_heads)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise TypeError(f"{name} must be a positive int, got {n!r}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        self.n_kv_heads = n_kv_heads
        inner = n_kv_heads * self.d_head
        bias = self.q_proj.bias is not None
        self.k_proj = nn.Linear(self.k_proj.in_features, inner, bias=bias)
        self.v_proj = nn.Linear(self.v_proj.in_features, inner, bias=bias)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, T, width = t.shape
        return t.view(B, T, width // self.d_head, self.d_head).transpose(1, 2)  # (B, h, T, D)

    def forward(self, x, kv=None, mask=None, cache=None, bias=None, return_weights=False):
        self._check_inputs(x, kv)
        B, T, _ = x.shape
        q = self._split(self.q_proj(x))  # (B, H, T_q, D)
        if kv is None:  # self-attention
            k, v = self._split(self.k_proj(x)), self._split(self.v_proj(x))  # (B, G, T, D)
            if cache is not None:
                k, v = cache.append(k, v)  # the cache holds G heads
        elif cache is not None and len(cache):  # cross-attention, memory already projected
            k, v = cache.source(kv)
        else:  # cross-attention
            k, v = self._split(self.k_proj(kv)), self._split(self.v_proj(kv))
            if cache is not None:
                cache.store_source(kv, k, v)
        group = self.n_heads // self.n_kv_heads  # each key/value head serves `group` queries
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        p = self.dropout if self.training else 0.0
        res = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p, scale=self.scale,
                                           return_weights=return_weights, bias=bias,
                                           is_causal=self.causal)
        out, weights = res if return_weights else (res, None)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)  # (B, T, H*D)
        return self.out_proj(out), weights

    @classmethod
    def from_multi_head(cls, mha: MultiHeadAttention, n_kv_heads: int):
        """A ``GroupedQueryAttention`` with ``mha``'s query and output projections and, for each
        group of ``n_heads // n_kv_heads`` heads, the mean of their key and value projections."""
        if type(mha) is not MultiHeadAttention:
            raise TypeError(f"mha must be a MultiHeadAttention, got {type(mha).__name__}")
        gqa = cls(mha.d_model, mha.n_heads, n_kv_heads, d_head=mha.d_head,
                  dropout=mha.dropout, bias=mha.q_proj.bias is not None, scale=mha.scale,
                  causal=mha.causal, d_kv_in=mha.k_proj.in_features)
        group, D = mha.n_heads // n_kv_heads, mha.d_head
        with torch.no_grad():
            for name in ("q_proj", "out_proj"):
                getattr(gqa, name).load_state_dict(getattr(mha, name).state_dict())
            for name in ("k_proj", "v_proj"):
                src, dst = getattr(mha, name), getattr(gqa, name)
                w = src.weight.view(n_kv_heads, group, D, -1).mean(1)  # (G, D, C_in)
                dst.weight.copy_(w.reshape(n_kv_heads * D, -1))
                if src.bias is not None:
                    dst.bias.copy_(src.bias.view(n_kv_heads, group, D).mean(1).reshape(-1))
        return gqa.to(mha.q_proj.weight.device)


def online_softmax_attention(q, k, v, block: int = 64, causal: bool = False, scale=None):
    """Softmax attention computed over blocks of ``block`` keys, keeping for each query only a
    running maximum m, a running sum l of exp(score - m) and a running weighted sum of values:
    when a block raises the maximum, the earlier sums are rescaled by exp(m_old - m_new). The
    result equals softmax(q k^T * scale) v, with no T_q x T_k matrix held at once.

    q (B, H, T_q, D), k and v (B, H, T_k, D); ``causal`` masks bottom-right aligned (query i
    sees keys up to i + T_k - T_q). Returns (B, H, T_q, D).
    """
    _check_qkv(q, k, v)
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    T_q, T_k = q.shape[-2], k.shape[-2]
    if causal and T_q > T_k:
        raise ValueError(f"causal attention needs T_q <= T_k, got {T_q} > {T_k}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))  # running maximum (B, H, T_q, 1)
    l = q.new_zeros((*q.shape[:-1], 1))  # running sum of exp(s - m)
    acc = q.new_zeros((*q.shape[:-1], v.shape[-1]))  # running sum of exp(s - m) v
    rows = torch.arange(T_q, device=q.device)[:, None] + (T_k - T_q)
    for start in range(0, T_k, block):
        s = q @ k[..., start:start + block, :].transpose(-2, -1) * scale  # (B, H, T_q, b)
        if causal:
            cols = torch.arange(start, start + s.shape[-1], device=q.device)
            s = s.masked_fill(cols > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # no inf - inf
        p = torch.exp(s - safe)  # (B, H, T_q, b)
        fix = torch.exp(m - safe)  # rescales what was summed under the old maximum
        l = l * fix + p.sum(-1, keepdim=True)
        acc = acc * fix + p @ v[..., start:start + block, :]
        m = m_new
    return acc / l
