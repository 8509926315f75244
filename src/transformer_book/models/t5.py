"""T5: every task as text-to-text, on an encoder-decoder Transformer. See chapter 11.

Raffel et al. (2020). Differences from the 2017 Transformer, all visible below:
  - pre-norm with RMSNorm (a weight, no bias, no centring), plus a final RMSNorm per stack;
  - no biases in any projection;
  - no 1/sqrt(d_head) inside attention (the initialisation absorbs it);
  - no absolute positions: a learned relative position bias, computed once per stack by
    the first layer and added to the scores of every layer (bidirectional buckets in the
    encoder, causal buckets in the decoder, none in cross-attention);
  - one embedding shared by encoder, decoder and (original T5) the output layer, whose
    input is then rescaled by d_model**-0.5.
T5 v1.1 changes the FFN to gated GELU and unties the output layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..cache import Cache
from ..layers import Block, RMSNorm
from ..masks import as_padding_mask
from ..positional import RelativePositionBias
from ..losses import cross_entropy
from .output import ModelOutput, check_token_ids
from .shared import check_memory, run_blocks, source_mask

__all__ = ["T5Config", "T5", "T5_PRESETS"]


@dataclass(frozen=True)
class T5Config:
    """T5's sizes. There is no ``max_len``: positions enter only as relative-distance buckets
    (no table indexed by absolute position), so any length runs; distances beyond
    ``max_distance`` share the last bucket. Inputs are still checked (ids, shape, empty)."""

    vocab_size: int = 32128
    d_model: int = 512
    n_heads: int = 8
    d_head: int = 64  # not always d_model // n_heads in T5
    d_ff: int = 2048
    n_layers: int = 6  # encoder
    n_decoder_layers: int | None = None  # None: as many as the encoder (n_layers)
    num_buckets: int = 32
    max_distance: int = 128
    dropout: float = 0.1
    activation: str = "relu"  # T5 v1.1: "gated-gelu_tanh"
    tie_embeddings: bool = True  # T5 v1.1: False
    eps: float = 1e-6
    pad_id: int = 0
    decoder_start_id: int = 0  # T5 starts decoding from the pad token

    @property
    def decoder_depth(self) -> int:
        """The number of decoder blocks: ``n_decoder_layers``, or ``n_layers`` when None."""
        return self.n_layers if self.n_decoder_layers is None else self.n_decoder_layers


T5_PRESETS = {
    "t5-small": T5Config(),
    "t5-base": T5Config(d_model=768, n_heads=12, d_ff=3072, n_layers=12),
    # the two largest of the paper (its section 3.7): d_model 1024, 24 + 24 layers, d_head 128,
    # so the heads are wider than d_model / n_heads; "around 2.8 billion" and "about 11 billion"
    "t5-3b": T5Config(d_model=1024, n_heads=32, d_head=128, d_ff=16384, n_layers=24),
    "t5-11b": T5Config(d_model=1024, n_heads=128, d_head=128, d_ff=65536, n_layers=24),
    # T5 v1.1 (the released checkpoints' configs): gated GELU, untied head, other shapes
    "t5-v1_1-small": T5Config(d_model=512, n_heads=6, d_ff=1024, n_layers=8, dropout=0.0,
                              activation="gated-gelu_tanh", tie_embeddings=False),
    "t5-v1_1-base": T5Config(d_model=768, n_heads=12, d_ff=2048, n_layers=12, dropout=0.0,
                             activation="gated-gelu_tanh", tie_embeddings=False),
    # small presets a chapter trains on a CPU (vocab set by the chapter's tokenizer)
    "t5-tiny": T5Config(vocab_size=256, d_model=128, n_heads=4, d_head=32, d_ff=512,
                        n_layers=3, dropout=0.0),
    "t5-v1_1-tiny": T5Config(vocab_size=256, d_model=128, n_heads=4, d_head=32, d_ff=384,
                             n_layers=3, dropout=0.0, activation="gated-gelu_tanh",
                             tie_embeddings=False),
}


class T5Stack(nn.Module):
    """The encoder (bidirectional) or the decoder (causal, with cross-attention) of T5."""

    def __init__(self, c: T5Config, decoder: bool):
        super().__init__()
        n = c.decoder_depth if decoder else c.n_layers
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, norm_first=True,
                  cross_attention=decoder, causal=decoder, activation=c.activation,
                  norm="rmsnorm", eps=c.eps, bias=False, attn_scale=1.0, d_head=c.d_head,
                  ffn_dropout=c.dropout)
            for _ in range(n))
        self.rel_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance,
                                             bidirectional=not decoder)
        self.final_norm = RMSNorm(c.d_model, c.eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, mask=None, memory=None, memory_mask=None, cache: Cache | None = None,
                return_weights: bool = False):
        """x (B, T, C) -> (x (B, T, C), weights: None, or {"self": [...], "cross": [...]}
        with return_weights)."""
        B, T, C = x.shape
        offset = cache.seq_len if cache is not None else 0
        bias = self.rel_bias(T, offset + T)  # (1, H, T, T_k): one bias for every layer
        x, weights = run_blocks(self.blocks, self.drop(x), mask=mask, memory=memory,
                                memory_mask=memory_mask, cache=cache, self_bias=bias,
                                return_weights=return_weights)
        return self.drop(self.final_norm(x)), weights  # (B, T, C)


class T5(nn.Module):
    """T5 encoder-decoder.

    forward(src, tgt_in=None, *, src_mask=None, targets=None, return_weights=False):
        src (B, S) source ids; tgt_in (B, T) decoder inputs (default: ``shift_right(targets)``);
        src_mask: the source's padding mask, (B, S) bool or 0/1 or bool (B, 1, 1, S), 1/True
        at real tokens (default: built from ``src != pad_id``, see ``source_mask``);
        targets (B, T), -100 = no loss.
        Returns a ModelOutput: logits (B, T, V), loss (with targets), and with return_weights
        {"encoder": [(B, H, S, S)], "self": [(B, H, T, T)], "cross": [(B, H, T, S)]} per layer.
    The encoder-decoder protocol of ``decoding`` (as ``Transformer``):
    source_mask(src, src_mask=None) -> bool (B, 1, 1, S)
    encode(src, src_mask=None, *, return_weights=False) -> memory (B, S, C)
    decode(tgt, memory, *, src_mask=None, cache=None, last_only=False) -> ModelOutput
    make_cache() -> a Cache for incremental decoding (self- and cross-attention).
    See chapter 11.
    """

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = c = config
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = T5Stack(c, decoder=False)
        self.decoder = T5Stack(c, decoder=True)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.shared.weight  # one matrix, counted once
        self.init_weights()

    def init_weights(self) -> None:
        """Mesh TensorFlow's scheme, which replaces the missing 1/sqrt(d_head) of attention:
        embedding (and untied head) N(0, 1); queries N(0, (d_model * d_head)^-1/2); keys and
        values N(0, d_model^-1/2); attention output N(0, (H * d_head)^-1/2); FFN input layers
        N(0, d_model^-1/2), output layer N(0, d_ff^-1/2); relative biases N(0, d_model^-1/2);
        RMSNorm weights 1."""
        c = self.config
        nn.init.normal_(self.shared.weight, std=1.0)
        if not c.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=1.0)
        for stack in (self.encoder, self.decoder):
            nn.init.normal_(stack.rel_bias.embedding.weight, std=c.d_model ** -0.5)
            for block in stack.blocks:
                for attn in filter(None, (block.self_attn, block.cross_attn)):
                    nn.init.normal_(attn.q_proj.weight, std=(c.d_model * c.d_head) ** -0.5)
                    nn.init.normal_(attn.k_proj.weight, std=c.d_model ** -0.5)
                    nn.init.normal_(attn.v_proj.weight, std=c.d_model ** -0.5)
                    nn.init.normal_(attn.out_proj.weight, std=(c.n_heads * c.d_head) ** -0.5)
                for lin in filter(None, (block.ffn.gate, block.ffn.up)):
                    nn.init.normal_(lin.weight, std=c.d_model ** -0.5)
                nn.init.normal_(block.ffn.down.weight, std=c.d_ff ** -0.5)
        for m in self.modules():
            if isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    def make_cache(self) -> Cache:
        return Cache(self.config.decoder_depth, cross=True)

    def _check_ids(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        # no max_len: T5's positions are relative buckets, not a table indexed by position,
        # so any length runs (distances beyond max_distance share the last bucket)
        return check_token_ids(ids, self.config.vocab_size, None, name)

    def source_mask(self, src: torch.Tensor, src_mask=None) -> torch.Tensor:
        """The source mask that forward, encode and decoding all use: ``src_mask`` in any
        accepted form as bool (B, 1, 1, S), or when None, True at ``src != pad_id``."""
        return source_mask(src, src_mask, self.config.pad_id)

    def encode(self, src: torch.Tensor, src_mask=None, *, return_weights: bool = False):
        """Source ids (B, S) -> memory (B, S, C); with ``return_weights`` (memory, the encoder's
        self-attention weights [(B, H, S, S)] * n_layers)."""
        src = self._check_ids("src", src)
        x, weights = self.encoder(self.shared(src), mask=self.source_mask(src, src_mask),
                                  return_weights=return_weights)  # (B, S, C)
        return (x, weights["self"]) if return_weights else x

    def decode(self, tgt, memory, *, src_mask=None, cache: Cache | None = None,
               last_only: bool = False, return_weights: bool = False) -> ModelOutput:
        """Decoder inputs (B, T) attending to ``memory`` (B, S, C) -> ModelOutput, logits
        (B, T, V), or (B, 1, V) with ``last_only``. Pass ``source_mask(src)`` as ``src_mask``
        when the source is padded."""
        tgt = self._check_ids("tgt", tgt)
        B = tgt.shape[0]
        check_memory(memory, B, self.config.d_model)
        src_mask = as_padding_mask(src_mask, B, memory.shape[1], "src_mask")  # (B, 1, 1, S)
        h, weights = self.decoder(self.shared(tgt), memory=memory, memory_mask=src_mask,
                                  cache=cache, return_weights=return_weights)
        hidden = h
        if last_only:
            h = h[:, -1:]  # generation reads the last position only
        if self.config.tie_embeddings:
            h = h * self.config.d_model ** -0.5  # keeps the tied logits at a sane scale
        return ModelOutput(self.lm_head(h), weights=weights, hidden=hidden)  # (B, T, V)

    def shift_right(self, targets: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for teacher forcing: decoder_start_id, then targets[:, :-1]
        (positions holding -100 become pad_id)."""
        start = torch.full_like(targets[:, :1], self.config.decoder_start_id)
        shifted = torch.cat([start, targets[:, :-1]], dim=1)  # (B, T)
        return shifted.masked_fill(shifted == -100, self.config.pad_id)

    def forward(self, src, tgt_in=None, *, src_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        check_token_ids(src, None, None, "src")  # a tensor (B, S); encode checks its ids
        if targets is not None:  # checked before shift_right reads it
            check_token_ids(targets, None, None, "targets")
        if tgt_in is None:
            if targets is None:
                raise ValueError("T5 needs tgt_in (B, T) or targets (B, T) to shift right")
            tgt_in = self.shift_right(targets)
        check_token_ids(tgt_in, None, None, "tgt_in")  # its ids: decode checks them
        if targets is not None and targets.shape != tgt_in.shape:
            raise ValueError(f"targets must have the shape of tgt_in "
                             f"{tuple(tgt_in.shape)}, got {tuple(targets.shape)}")
        src_mask = self.source_mask(src, src_mask)  # (B, 1, 1, S)
        memory = self.encode(src, src_mask, return_weights=return_weights)  # (B, S, C)
        memory, enc_weights = memory if return_weights else (memory, None)
        out = self.decode(tgt_in, memory, src_mask=src_mask, return_weights=return_weights)
        if targets is not None:
            out.loss = cross_entropy(out.logits, targets)
        if return_weights:
            out.weights = {"encoder": enc_weights, **out.weights}
        return out
