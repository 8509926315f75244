"""GPT-1 and GPT-2: one decoder-only model, two configs. See chapters 8 and 10.

GPT-1 (2018): post-norm blocks (like the 2017 Transformer), no final norm.
GPT-2 (2019): pre-norm blocks plus a final LayerNorm, residual projections scaled at init.
Both: learned positions, GELU (tanh form), output projection tied to the token embedding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..attention import Cache
from ..layers import Block, LayerNorm
from ..masks import as_padding_mask
from ..positional import LearnedPositionalEmbedding
from .output import ModelOutput, check_token_ids, cross_entropy

__all__ = ["GPTConfig", "GPT", "GPT_PRESETS"]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    max_len: int = 1024
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    norm_first: bool = True  # GPT-2: pre-norm; GPT-1: post-norm
    final_norm: bool = True  # GPT-2 adds a LayerNorm after the last block
    scale_residual_init: bool = True  # GPT-2's 1/sqrt(2 * n_layers) on residual projections
    activation: str = "gelu_tanh"
    eps: float = 1e-5


GPT_PRESETS = {
    "gpt1": GPTConfig(vocab_size=40478, max_len=512, norm_first=False, final_norm=False,
                      scale_residual_init=False),
    "gpt2": GPTConfig(),
    "gpt2-medium": GPTConfig(d_model=1024, n_heads=16, n_layers=24, d_ff=4096),
    "gpt2-large": GPTConfig(d_model=1280, n_heads=20, n_layers=36, d_ff=5120),
    "gpt2-xl": GPTConfig(d_model=1600, n_heads=25, n_layers=48, d_ff=6400),
    # small presets that train in minutes on a laptop CPU (vocab set by the chapter's tokenizer)
    "gpt2-tiny": GPTConfig(vocab_size=256, max_len=128, d_model=128, n_heads=4, n_layers=4,
                           d_ff=512, dropout=0.0),
    "gpt2-small-gpu": GPTConfig(vocab_size=256, max_len=256, d_model=384, n_heads=6, n_layers=6,
                                d_ff=1536, dropout=0.1),
    "gpt1-tiny": GPTConfig(vocab_size=256, max_len=128, d_model=128, n_heads=4, n_layers=4,
                           d_ff=512, dropout=0.0, norm_first=False, final_norm=False,
                           scale_residual_init=False),
}


class GPT(nn.Module):
    """Decoder-only Transformer language model.

    forward(idx, targets=None, attention_mask=None, cache=None, return_weights=False):
        idx: (B, T) token ids; targets: (B, T) with -100 where no loss is wanted;
        attention_mask: (B, T_k) bool or 0/1 (1 = real token), or bool (B, 1, 1, T_k), where
        T_k = cached positions + T; default None: every position is real (GPT has no pad id);
        cache: a Cache from ``make_cache()`` for incremental decoding.
        Returns a ModelOutput: logits (B, T, V), loss (with targets), weights
        {"self": [(B, H, T, T_k)] * n_layers, "cross": []} (with return_weights).
    See chapters 8 and 10.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, norm_first=c.norm_first,
                  causal=True, activation=c.activation, eps=c.eps)
            for _ in range(c.n_layers))
        self.final_norm = LayerNorm(c.d_model, c.eps) if c.final_norm else None
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one matrix, counted once
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(0, 0.02) for every Linear and Embedding, zero biases, unit norms.

        With ``scale_residual_init`` (GPT-2), the two projections that write into the
        residual stream in each block (attention's out_proj, the FFN's down) get
        std 0.02 / sqrt(2 * n_layers), so the stream's variance does not grow with depth.
        """
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        if self.config.scale_residual_init:
            std = 0.02 / math.sqrt(2 * self.config.n_layers)
            for block in self.blocks:
                nn.init.normal_(block.self_attn.out_proj.weight, std=std)
                nn.init.normal_(block.ffn.down.weight, std=std)

    def make_cache(self) -> Cache:
        return Cache(self.config.n_layers)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask=None, cache: Cache | None = None,
                return_weights: bool = False) -> ModelOutput:
        offset = cache.seq_len if cache is not None else 0
        check_token_ids(idx, self.config.vocab_size, self.config.max_len, "idx", offset)
        B, T = idx.shape
        mask = as_padding_mask(attention_mask, B, offset + T)  # (B, 1, 1, T_k)
        x = self.drop(self.pos_emb(self.tok_emb(idx), offset=offset))  # (B, T, C)
        weights = {"self": [], "cross": []}
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, cache=cache[i] if cache is not None else None,
                      return_weights=return_weights)
            if return_weights:
                x, w = x
                weights["self"].append(w["self"])  # (B, H, T, T_k)
        if self.final_norm is not None:
            x = self.final_norm(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None if targets is None else cross_entropy(logits, targets)
        return ModelOutput(logits, loss, weights if return_weights else None, hidden=x)
