"""The 2017 encoder-decoder Transformer (Vaswani et al.). See chapter 6.

Post-norm blocks from ``layers.Block``, sinusoidal positions, token embeddings multiplied by
sqrt(d_model), dropout on the embedding sums and after every sublayer, and one embedding matrix
shared by the encoder input, the decoder input and the output projection (the paper's
"shared source-target vocabulary"). No final LayerNorm: in a post-norm stack every block
already ends with one.

The encoder-decoder protocol used by ``decoding.greedy`` / ``decoding.beam_search`` (shared
with ``T5`` and ``RNNSeq2Seq``):
    source_mask(src, src_mask=None) -> bool (B, 1, 1, S) or None: the mask forward uses
    encode(src, src_mask=None, *, return_weights=False) -> memory (B, S, C)
    decode(tgt, memory, *, src_mask=None, cache=None, last_only=False) -> ModelOutput
    make_cache() -> Cache(n_layers, cross=True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..cache import Cache
from ..layers import Block, LayerNorm
from ..masks import as_padding_mask
from ..positional import SinusoidalPositionalEncoding
from ..losses import cross_entropy
from .output import ModelOutput, check_token_ids
from .shared import check_memory, run_blocks, source_mask

__all__ = ["TransformerConfig", "Transformer", "TRANSFORMER_PRESETS"]


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 37000  # shared source/target vocabulary (the paper's EN-DE BPE)
    max_len: int = 512  # length of the sinusoidal table (a buffer, not parameters)
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 6  # in the encoder, and again in the decoder
    d_ff: int = 2048
    dropout: float = 0.1  # P_drop: embeddings + positions, and every sublayer's output
    attn_dropout: float = 0.0  # the paper names no dropout on the attention weights
    pad_id: int | None = 0  # padding id: source masks are derived from it when not given
    eps: float = 1e-5


TRANSFORMER_PRESETS = {
    # Table 3 of the paper: base (65M) and big (213M) with a 37,000-token vocabulary
    "transformer-base": TransformerConfig(),
    "transformer-big": TransformerConfig(d_model=1024, n_heads=16, d_ff=4096, dropout=0.3),
    # CPU presets for chapter 6's generated translation task (vocab set by its tokenizer)
    "transformer-tiny": TransformerConfig(vocab_size=1000, max_len=128, d_model=64, n_heads=4,
                                          n_layers=2, d_ff=256, dropout=0.1),
    "transformer-small": TransformerConfig(vocab_size=1000, max_len=128, d_model=128, n_heads=4,
                                           n_layers=2, d_ff=512, dropout=0.1),
    "transformer-medium": TransformerConfig(vocab_size=1000, max_len=128, d_model=256, n_heads=8,
                                            n_layers=3, d_ff=1024, dropout=0.1),
}


class Transformer(nn.Module):
    """Encoder-decoder Transformer for sequence-to-sequence tasks such as translation.

    forward(src, tgt_in, *, src_mask=None, tgt_mask=None, targets=None, return_weights=False):
        src: (B, S) source ids; tgt_in: (B, T) decoder inputs (BOS + target without its last
        token); everything after them is keyword-only;
        src_mask: the source's padding mask, (B, S) bool or 0/1 or bool (B, 1, 1, S), True at
        real tokens (default: built from ``src != pad_id``; see ``source_mask``);
        tgt_mask: the target's padding mask in the same forms (default None: every target
        position is real), combined with the causal mask the decoder always applies;
        targets: (B, T), -100 = no loss.
        Returns a ModelOutput: logits (B, T, V), loss (with targets), and with return_weights
        {"encoder": [(B, H, S, S)], "self": [(B, H, T, T)], "cross": [(B, H, T, S)]} per layer.
    See chapter 6.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = SinusoidalPositionalEncoding(c.d_model, c.max_len)
        self.drop = nn.Dropout(c.dropout)

        def block(decoder: bool) -> Block:
            return Block(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, norm_first=False,
                         cross_attention=decoder, causal=decoder, activation="relu", eps=c.eps,
                         attn_dropout=c.attn_dropout)

        self.encoder = nn.ModuleList(block(False) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(block(True) for _ in range(c.n_layers))
        self.out_proj = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.out_proj.weight = self.embed.weight  # tied: one matrix, counted once
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform for every Linear with zero biases; embeddings Normal(0, d_model^-1/2).

        The paper does not state its initialisation; this is the common choice for it. The
        embedding std d_model^-1/2 makes ``embed(x) * sqrt(d_model)`` have unit scale, the same
        scale as the sinusoidal positions, and keeps the tied output logits small at the start.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not self.out_proj:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.embed.weight, mean=0.0, std=self.config.d_model ** -0.5)

    def _embed(self, ids: torch.Tensor, offset: int = 0, name: str = "src") -> torch.Tensor:
        ids = check_token_ids(ids, self.config.vocab_size, self.config.max_len, name, offset)
        x = self.embed(ids) * math.sqrt(self.config.d_model)  # (B, T, C)
        return self.drop(self.pos(x, offset=offset))

    def source_mask(self, src: torch.Tensor, src_mask=None) -> torch.Tensor | None:
        """The source mask that forward, encode and decoding all use: ``src_mask`` in any
        accepted form as bool (B, 1, 1, S), or when None, True at ``src != pad_id``
        (None when the config has no pad_id)."""
        return source_mask(src, src_mask, self.config.pad_id)

    def make_cache(self) -> Cache:
        return Cache(self.config.n_layers, cross=True)

    def encode(self, src: torch.Tensor, src_mask=None, *, return_weights: bool = False):
        """Source ids (B, S) -> memory (B, S, C); with ``return_weights`` (memory, the encoder's
        self-attention weights [(B, H, S, S)] * n_layers)."""
        x = self._embed(src)  # (B, S, C); checks the ids first
        x, weights = run_blocks(self.encoder, x, mask=self.source_mask(src, src_mask),
                                return_weights=return_weights)
        return (x, weights["self"]) if return_weights else x

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, *, src_mask=None,
               tgt_mask=None, cache: Cache | None = None, last_only: bool = False,
               return_weights: bool = False) -> ModelOutput:
        """Decoder inputs (B, T) attending to ``memory`` (B, S, C) -> ModelOutput, logits
        (B, T, V), or (B, 1, V) for the last position only with ``last_only`` (generation).

        With a ``cache`` (from ``make_cache``), ``tgt`` holds only the new positions: the keys
        and values of earlier positions, and the projected memory, come from the cache.
        ``tgt_mask``: the target's padding mask, in the forms ``src_mask`` takes, over every
        position the decoder sees (cached + new); the causal mask is always applied too.
        With ``return_weights`` the output's weights are {"self": [(B, H, T, T_k)] * n_layers,
        "cross": [(B, H, T, S)] * n_layers}.
        ``src_mask`` has no default here (the memory carries no token ids): pass
        ``source_mask(src)`` whenever the source is padded, or padding will be attended to
        (``decoding`` does this for you).
        """
        offset = cache.seq_len if cache is not None else 0
        x = self._embed(tgt, offset=offset, name="tgt")  # (B, T, C); checks the ids
        B, T = tgt.shape
        check_memory(memory, B, self.config.d_model)
        S = memory.shape[1]
        src_mask = as_padding_mask(src_mask, B, S, "src_mask")  # (B, 1, 1, S)
        tgt_mask = as_padding_mask(tgt_mask, B, offset + T, "tgt_mask")  # (B, 1, 1, T_k)
        x, weights = run_blocks(self.decoder, x, mask=tgt_mask, memory=memory,
                                memory_mask=src_mask, cache=cache,
                                return_weights=return_weights)
        logits = self.out_proj(x[:, -1:] if last_only else x)  # (B, T, V) or (B, 1, V)
        return ModelOutput(logits, weights=weights, hidden=x)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, *, src_mask=None,
                tgt_mask=None, targets: torch.Tensor | None = None,
                return_weights: bool = False) -> ModelOutput:
        memory = self.encode(src, src_mask, return_weights=return_weights)  # checks src
        memory, enc_weights = memory if return_weights else (memory, None)  # (B, S, C)
        src_mask = self.source_mask(src, src_mask)  # (B, 1, 1, S), as encode built it
        out = self.decode(tgt_in, memory, src_mask=src_mask, tgt_mask=tgt_mask,
                          return_weights=return_weights)
        if targets is not None:
            out.loss = cross_entropy(out.logits, targets)
        if return_weights:
            out.weights = {"encoder": enc_weights, **out.weights}
        return out
