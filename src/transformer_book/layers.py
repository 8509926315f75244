"""Norms, the position-wise feed-forward network, and the one Transformer ``Block``. See chapters 4-5."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiHeadAttention
from .cache import LayerCache

__all__ = ["LayerNorm", "RMSNorm", "FeedForward", "Block", "ACTIVATIONS"]


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias, over the last dimension of each token."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"LayerNorm expects last dimension {self.d_model}, got {tuple(x.shape)}")
        return F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: no centring, no bias (T5).

    The mean of squares is taken in float32 even under bf16 autocast, as T5 does.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"RMSNorm expects last dimension {self.d_model}, got {tuple(x.shape)}")
        ms = x.float().pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        x_normed = x * torch.rsqrt(ms + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x_normed = x_normed.to(self.weight.dtype)
        return self.weight * x_normed


ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact, with erf (BERT)
    "gelu_tanh": partial(F.gelu, approximate="tanh"),  # GPT-1, GPT-2, T5 v1.1
}


class FeedForward(nn.Module):
    """Position-wise FFN: down(act(up(x))), or down(act(gate(x)) * up(x)) when gated.

    Args:
        activation: "relu", "gelu" (exact), "gelu_tanh", or any of them prefixed with
            "gated-" (e.g. "gated-gelu_tanh", T5 v1.1's gated GELU).
        dropout: on the hidden activations (T5 puts it there; the residual dropout is the Block's).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.gated = activation.startswith("gated-")
        name = activation[len("gated-"):] if self.gated else activation
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{sorted(ACTIVATIONS)} or 'gated-' + one of them")
        self.activation, self.act = activation, ACTIVATIONS[name]
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if self.gated else None
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        if x.shape[-1] != self.up.in_features:
            raise ValueError(f"FeedForward expects last dimension {self.up.in_features}, "
                             f"got {tuple(x.shape)}")
        up = self.up(x)  # (B, T, d_ff)
        h = self.act(self.gate(x)) * up if self.gated else self.act(up)
        return self.down(self.dropout(h))  # (B, T, C)


class Block(nn.Module):
    """One Transformer layer: self-attention, optional cross-attention, feed-forward.

    Each sublayer is wrapped in a residual connection and a norm:
      post-norm (2017 Transformer, GPT-1, BERT):  x = norm(x + dropout(sublayer(x)))
      pre-norm  (GPT-2, T5):                      x = x + dropout(sublayer(norm(x)))

    Args:
        norm_first: pre-norm if True, post-norm if False.
        cross_attention: add the decoder's attention over an encoder's output ``memory``.
        causal: the self-attention may not look at later positions.
        norm: "layernorm" or "rmsnorm".
        bias: biases in the attention and FFN projections (T5: False).
        attn_scale: None (1/sqrt(d_head)) or a number (T5: 1.0).

    forward(x, mask=None, memory=None, memory_mask=None, cache=None, self_bias=None,
            cross_bias=None, return_weights=False):
        x (B, T, C); mask broadcastable to (B, H, T, T_k); memory (B, S, C);
        memory_mask broadcastable to (B, H, T, S); cache a LayerCache.
        Returns (B, T, C), plus a dict {"self": ..., "cross": ...} of attention weights
        (B, H, T, T_k) when return_weights is True.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, cross_attention: bool = False, causal: bool = False,
                 activation: str = "relu", norm: str = "layernorm", eps: float = 1e-5,
                 bias: bool = True, attn_scale: float | None = None, d_head: int | None = None,
                 attn_dropout: float | None = None, ffn_dropout: float = 0.0):
        super().__init__()
        if norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {norm!r}")
        self.norm_first, self.has_cross = norm_first, cross_attention
        attn_dropout = dropout if attn_dropout is None else attn_dropout

        def make_norm():
            return LayerNorm(d_model, eps) if norm == "layernorm" else RMSNorm(d_model, eps)

        def make_attn(is_causal):
            return MultiHeadAttention(d_model, n_heads, d_head=d_head, dropout=attn_dropout,
                                      bias=bias, scale=attn_scale, causal=is_causal)

        self.self_attn, self.norm_self = make_attn(causal), make_norm()
        if cross_attention:
            self.cross_attn, self.norm_cross = make_attn(False), make_norm()
        else:
            self.cross_attn = self.norm_cross = None
        self.ffn = FeedForward(d_model, d_ff, activation, ffn_dropout, bias)
        self.norm_ffn = make_norm()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None, memory=None, memory_mask=None, cache: LayerCache | None = None,
                self_bias=None, cross_bias=None, return_weights: bool = False):
        if memory is not None and not self.has_cross:
            raise ValueError("memory was given but this Block has no cross-attention "
                             "(build it with cross_attention=True)")
        if self.has_cross and memory is None:
            raise ValueError("this Block has cross-attention: pass the encoder output as memory")
        pre = self.norm_first  # pre-norm: x + dropout(f(norm(x))); post: norm(x + dropout(f(x)))
        weights = {}

        h = self.norm_self(x) if pre else x
        h, weights["self"] = self.self_attn(h, mask=mask, bias=self_bias,
                                            cache=cache.self_attn if cache else None,
                                            return_weights=return_weights)
        x = x + self.dropout(h) if pre else self.norm_self(x + self.dropout(h))

        if self.has_cross:
            h = self.norm_cross(x) if pre else x
            h, weights["cross"] = self.cross_attn(h, kv=memory, mask=memory_mask, bias=cross_bias,
                                                  cache=cache.cross_attn if cache else None,
                                                  return_weights=return_weights)
            x = x + self.dropout(h) if pre else self.norm_cross(x + self.dropout(h))

        if pre:
            x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        else:
            x = self.norm_ffn(x + self.dropout(self.ffn(x)))
        return (x, weights) if return_weights else x
