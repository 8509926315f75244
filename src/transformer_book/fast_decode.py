"""A faster cached decoding step, entered by the decoding loop. Not part of the lessons.

The modules the chapters read (``MultiHeadAttention``, ``FeedForward``, ``Block``) compute
every forward the plain way. ``decoding`` opens ``enabled(model)`` around the cached steps of
one generation (after the source is encoded); inside it, each ``MultiHeadAttention`` and
``FeedForward`` of the model (these exact classes; a subclass such as
``EfficientSelfAttention`` keeps its own forward) has an instance ``forward`` that shadows
the class's and does less work in a step of one new token:

  * self-attention computes q, k and v in one product with the three weights stacked (built
    once per context, at first use, and dropped at exit), whose output (B, 1, 3 H D) is
    already laid out as (B, 3, H, 1, D): no split, no transposes;
  * the one query follows every cached key, so no causal mask is built, and the heads'
    output (B, H, 1, D) is already (B, 1, H D);
  * on the CPU, each product of one row (batch 1) takes the faster of two layouts for its
    weight's shape, chosen by timing both on the first steps that use it, once per process
    (``layouts()`` says which ran): the plain ``F.linear``, or one ``baddbmm`` over the
    weight's two halves (views, no copy), which some CPUs' kernels spread over two threads
    and read faster. Timed in decoding itself, not in a loop of its own: a loop over one
    weight reads it from the cache, a decoding step reads it from memory, and the two
    rank the layouts differently.

Any other call (gradients wanted, training with dropout, weights requested, no cache, more
than one token) goes to the plain class forward. The overrides leave on exit, also on an
error. The weights must not change while the context is open (the stacked copy would be
stale); the decoding loop does not change them. The fast step sums in another order than the
plain one (last-digit differences); ``tests/test_fast_decode.py`` checks that greedy decoding
gives the same tokens and close logits either way.
Shape legend: see ``attention.py``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention, _additive_mask
from .layers import FeedForward
from .masks import check_mask

__all__ = ["enabled", "FastDecode", "layouts"]

# (out, in, bias?, dtype, device type, threads) -> "linear" or "halves", measured once
_LAYOUTS: dict = {}
_TRIALS: dict = {}  # the same key -> its _Trial


def layouts() -> dict:
    """The layout chosen for each one-row product measured so far in this process:
    {"(out x in) float32 bias, 2 threads": "halves" or "linear"}."""
    return {f"({o} x {i}) {str(dt).replace('torch.', '')}{' bias' if b else ''}, {dev}, "
            f"{n} threads": choice for (o, i, b, dt, dev, n), choice in _LAYOUTS.items()}


class FastDecode:
    """What one ``enabled`` context did: ``modules``, the modules given an override, and
    ``steps``, how many forwards took the fast step."""

    def __init__(self):
        self.modules: list[nn.Module] = []
        self.steps = 0


@contextmanager
def enabled(model: nn.Module):
    """Install the fast one-token step on ``model``'s attention and feed-forward modules for
    the duration of the ``with`` block; yields a ``FastDecode`` report."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    state = FastDecode()
    try:
        for m in model.modules():
            if "forward" in m.__dict__:  # an override already (a context opened outside)
                continue
            if type(m) is MultiHeadAttention:
                m.forward = _attention_forward(m, state)
            elif type(m) is FeedForward:
                m.forward = _feed_forward(m, state)
            else:
                continue
            state.modules.append(m)
        yield state
    finally:
        for m in state.modules:
            del m.forward  # the class's forward again


def _one_token(x: torch.Tensor, width: int, training_dropout: bool) -> bool:
    """True for an input (B, 1, width) in a no-grad forward without active dropout."""
    return (not torch.is_grad_enabled() and not training_dropout and x.dim() == 3
            and x.shape[1] == 1 and x.shape[2] == width)


def _attention_forward(mha: MultiHeadAttention, state: FastDecode):
    plain = MultiHeadAttention.forward.__get__(mha)
    H, D = mha.n_heads, mha.d_head
    products = {}  # built at the first fast step: "qkv", "q", "out" -> a function of x

    def forward(x, kv=None, mask=None, cache=None, bias=None, return_weights=False):
        if (cache is None or return_weights
                or not _one_token(x, mha.d_model, mha.training and mha.dropout > 0)
                or (kv is not None and (not len(cache) or kv.shape[0] != x.shape[0]))):
            return plain(x, kv, mask, cache, bias, return_weights)  # the plain forward
        if not products:
            products.update(_attention_products(mha))
        B = x.shape[0]
        if kv is None:  # self-attention: this token's key and value join the cache
            q, k, v = products["qkv"](x).view(B, 3, H, 1, D).unbind(1)  # 3 x (B, H, 1, D)
            k, v = cache.append(k, v)  # (B, H, T_k, D)
        else:  # cross-attention: the memory's keys and values are in the cache
            k, v = cache.source(kv)  # (B, H, S, D)
            q = products["q"](x).view(B, H, 1, D)  # (B, H, 1, D)
        check_mask(mask, B, H, 1, k.shape[2])
        attn_mask = _additive_mask(mask, bias, q.dtype)  # as scaled_dot_product_attention
        if attn_mask is not None and attn_mask.dim() == 4:
            attn_mask = attn_mask.expand(B, H, 1, k.shape[2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=mha.scale)
        state.steps += 1
        return products["out"](out.reshape(B, 1, H * D)), None  # (B, 1, C)

    return forward


def _attention_products(mha: MultiHeadAttention) -> dict:
    ps = (mha.q_proj, mha.k_proj, mha.v_proj)
    with torch.no_grad():
        w = torch.cat([p.weight for p in ps])  # (3 H D, C)
        b = None if ps[0].bias is None else torch.cat([p.bias for p in ps])  # (3 H D,)
    return {"qkv": _product(w, b), "q": _product(mha.q_proj.weight, mha.q_proj.bias),
            "out": _product(mha.out_proj.weight, mha.out_proj.bias)}


def _feed_forward(ffn: FeedForward, state: FastDecode):
    plain = FeedForward.forward.__get__(ffn)
    products = {}

    def forward(x):
        if not _one_token(x, ffn.up.in_features, ffn.training and ffn.dropout.p > 0):
            return plain(x)
        if not products:
            products.update((name, _product(lin.weight, lin.bias))
                            for name, lin in (("up", ffn.up), ("gate", ffn.gate),
                                              ("down", ffn.down)) if lin is not None)
        state.steps += 1
        up = products["up"](x)  # (B, 1, d_ff)
        h = ffn.act(products["gate"](x)) * up if ffn.gated else ffn.act(up)
        return products["down"](h)  # (B, 1, C)

    return forward


# ------------------------------------------------------------- one-row products, two layouts

def _product(w: torch.Tensor, b: torch.Tensor | None):
    """A function x (B, 1, in) -> x @ w.T + b (B, 1, out): for one row (B = 1) in the layout
    that ran faster for this weight's shape (``_Trial``), otherwise ``F.linear``."""
    w, b = w.detach(), None if b is None else b.detach()
    if not _halves_fit(w):
        return lambda x: F.linear(x, w, b)
    halves = _halves(w, b)
    key = (*w.shape, b is not None, w.dtype, w.device.type, torch.get_num_threads())
    trial = _TRIALS.setdefault(key, _Trial(key))

    def product(x):
        if x.shape[0] != 1 or x.dtype != w.dtype:
            return F.linear(x, w, b)
        layout = trial.choice
        if layout is None:  # still timing
            return trial.timed(x, lambda x: F.linear(x, w, b), halves)
        return halves(x) if layout == "halves" else F.linear(x, w, b)

    return product


def _halves_fit(w: torch.Tensor) -> bool:
    return w.device.type == "cpu" and w.shape[0] % 2 == 0 and w.is_contiguous()


def _halves(w: torch.Tensor, b: torch.Tensor | None):
    """x @ w.T + b for an x (..., in) of one row, as one batched product of the weight's two
    halves (2, out/2, in), views of it, with x as a column (2, in, 1). The column is a
    transposed view of the row (strides (1, in)), as torch's batched kernels read it without
    a copy."""
    n_out, n_in = w.shape
    halves = w.view(2, n_out // 2, n_in)  # (2, out/2, in)
    b2 = None if b is None else b.view(2, n_out // 2, 1)  # (2, out/2, 1)

    def product(x):
        col = x.reshape(1, n_in).t().expand(2, n_in, 1)  # (2, in, 1), strides (0, 1, in)
        y = torch.bmm(halves, col) if b2 is None else torch.baddbmm(b2, halves, col)
        return y.view(*x.shape[:-1], n_out)  # (..., out)

    return product


class _Trial:
    """Chooses a layout for one weight shape by timing both in decoding itself: the first
    ``2 * samples`` one-row products of that shape (every layer's weights, as they come from
    memory in a real step) alternate the two layouts and are timed one by one; then the
    layout with the lower median serves every later call in this process."""

    samples = 9

    def __init__(self, key):
        self.key, self.choice = key, None
        self.times = {"linear": [], "halves": []}

    def timed(self, x, linear, halves):
        name = "halves" if len(self.times["halves"]) < len(self.times["linear"]) else "linear"
        t0 = time.perf_counter()
        y = halves(x) if name == "halves" else linear(x)
        self.times[name].append(time.perf_counter() - t0)
        if len(self.times["halves"]) == self.samples:
            med = {n: sorted(t)[len(t) // 2] for n, t in self.times.items()}
            self.choice = _LAYOUTS[self.key] = min(med, key=med.get)
        return y
