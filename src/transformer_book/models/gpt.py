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

from ..cache import Cache
from ..layers import Block, LayerNorm
from ..masks import as_padding_mask
from ..positional import LearnedPositionalEmbedding
from ..losses import cross_entropy
from .output import ModelOutput, check_token_ids
from .shared import last_real_index, run_blocks

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
    # Megatron-LM's largest GPT-2 (Shoeybi et al. 2019, Table 1: 8.3B parameters): GPT-2's
    # architecture and vocabulary at width 3072, 32 heads, 72 layers
    "megatron-8.3b": GPTConfig(d_model=3072, n_heads=32, n_layers=72, d_ff=4 * 3072),
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

    forward(input_ids, *, attention_mask=None, position_ids=None, targets=None, cache=None,
            last_only=False, return_weights=False):
        input_ids: (B, T) token ids; everything after it is keyword-only;
        attention_mask: (B, T_k) bool or 0/1 (1 = real token), or bool (B, 1, 1, T_k), where
        T_k = cached positions + T; default None: every position is real (GPT has no pad id);
        position_ids: (B, T) the position of each token (default: offset, offset + 1, ...);
        a left-padded prompt passes its real tokens' positions counted from 0;
        targets: (B, T) with -100 where no loss is wanted;
        cache: a Cache from ``make_cache()`` for incremental decoding;
        last_only: logits for the last position only, (B, 1, V) (generation).
        Returns a ModelOutput: logits (B, T, V), loss (with targets), weights
        {"self": [(B, H, T, T_k)] * n_layers, "cross": []} (with return_weights), hidden.
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

    def forward(self, input_ids: torch.Tensor, *, attention_mask=None, position_ids=None,
                targets: torch.Tensor | None = None, cache: Cache | None = None,
                last_only: bool = False, return_weights: bool = False) -> ModelOutput:
        offset = cache.seq_len if cache is not None else 0
        c = self.config
        input_ids = check_token_ids(input_ids, c.vocab_size, c.max_len, "input_ids", offset)
        B, T = input_ids.shape
        if last_only and targets is not None:
            raise ValueError("last_only=True computes no loss: the targets need every "
                             "position's logits")
        mask = as_padding_mask(attention_mask, B, offset + T)  # (B, 1, 1, T_k)
        x = self.pos_emb(self.tok_emb(input_ids), offset=offset,
                         positions=position_ids)  # (B, T, C)
        x = self.drop(x)
        x, weights = run_blocks(self.blocks, x, mask=mask, cache=cache,
                                return_weights=return_weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        # generation reads only the next token's scores: skip the other T - 1 rows
        logits = self.lm_head(x[:, -1:] if last_only else x)  # (B, T, V) or (B, 1, V)
        loss = None if targets is None else cross_entropy(logits, targets)
        return ModelOutput(logits, loss, weights, hidden=x)


# ----------------------------------------------------------------------------- GPT-1 fine-tuning

@dataclass(frozen=True)
class GPT1ClassifierConfig:
    """A GPT (``gpt``) with GPT-1's classification head: ``n_classes`` scores read from the
    final state of the last real token, and ``lm_weight`` times the LM loss added (0: off)."""
    gpt: GPTConfig = GPT_PRESETS["gpt1-tiny"]
    n_classes: int = 2
    lm_weight: float = 0.5
    dropout: float = 0.1


def gpt1_classification_input(token_lists, start_id: int, extract_id: int, pad_id: int = 0):
    """GPT-1's input transformation for classification: ``<start> tokens <extract>``.

    Args:
        token_lists: a list of B lists of token ids (lengths may differ).
        start_id, extract_id: the two special tokens' ids; pad_id fills the right end.
    Returns:
        ids (B, T) long, with T = 2 + the longest list, and attention_mask (B, T) bool
        (True = real token; padding only on the right, after the extract token).
    """
    if not isinstance(token_lists, (list, tuple)) or not all(
            isinstance(t, (list, tuple)) for t in token_lists) or not token_lists:
        raise TypeError(f"token_lists must be a non-empty list of lists of ids, got "
                        f"{type(token_lists).__name__}")
    rows = [[start_id, *map(int, t), extract_id] for t in token_lists]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = True
    return ids, mask


GPT1_TASKS = ("classification", "entailment", "similarity", "multiple choice")


def gpt1_task_sequences(task: str, parts, start_id: int, delim_id: int,
                        extract_id: int) -> list[list[int]]:
    """GPT-1's input transformations (Radford et al. 2018, section 3.3 and figure 1): the token
    sequences that one example of ``task`` becomes, each read by the same network.

    - "classification": ``parts = (text,)`` -> ``[<start> text <extract>]``;
    - "entailment": ``(premise, hypothesis)`` -> ``[<start> premise <delim> hypothesis
      <extract>]``;
    - "similarity": ``(a, b)`` -> both orders, ``[<start> a <delim> b <extract>, <start> b
      <delim> a <extract>]`` (the paper adds their two final states before the linear layer);
    - "multiple choice": ``(context, answer_1, ..., answer_K)`` -> one sequence per answer,
      ``<start> context <delim> answer_k <extract>`` (each scored by the linear layer, then a
      softmax over the K scores).

    Args:
        task: one of :data:`GPT1_TASKS`.
        parts: a tuple of lists of token ids, as above.
        start_id, delim_id, extract_id: the special tokens' ids.
    Returns:
        a list of lists of ids (pad them with :func:`gpt1_classification_input`'s rule, or
        pass each through ``gpt1_classification_input`` without its own start and extract).
    """
    if task not in GPT1_TASKS:
        raise ValueError(f"task must be one of {GPT1_TASKS}, got {task!r}")
    if not isinstance(parts, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) for p in parts):
        raise TypeError("parts must be a tuple of lists of token ids, got "
                        f"{type(parts).__name__}")
    need = {"classification": "1 part (the text)", "entailment": "2 parts (premise, "
            "hypothesis)", "similarity": "2 parts (the two texts)"}.get(
        task, "3 or more parts (a context and at least two answers)")
    if len(parts) != int(need[0]) if task != "multiple choice" else len(parts) < 3:
        raise ValueError(f"{task} takes {need}, got {len(parts)}")
    parts = [[int(i) for i in p] for p in parts]

    def seq(*pieces):
        out = [start_id, *pieces[0]]
        for p in pieces[1:]:
            out += [delim_id, *p]
        return out + [extract_id]

    if task == "classification":
        return [seq(parts[0])]
    if task == "entailment":
        return [seq(parts[0], parts[1])]
    if task == "similarity":
        return [seq(parts[0], parts[1]), seq(parts[1], parts[0])]
    return [seq(parts[0], answer) for answer in parts[1:]]


class GPT1Classifier(nn.Module):
    """GPT-1 fine-tuned for classification (Radford et al. 2018, section 3.2).

    The input is ``<start> text <extract>`` (see ``gpt1_classification_input``); a linear
    layer reads the transformer's final state at the extract token (the last real token), and
    the loss is cross-entropy on the class plus ``lm_weight`` times the language-modelling loss
    on the same input (the paper's auxiliary objective, lambda = 0.5).

    forward(input_ids, *, attention_mask=None, targets=None, return_weights=False):
        input_ids: (B, T) token ids; attention_mask: (B, T) bool or 0/1, real tokens first
        (right padding); targets: (B,) class ids (-100 ignored).
        Returns a ModelOutput: logits (B, n_classes), loss (with targets: the class loss plus
        lm_weight times the LM loss), lm_loss (the auxiliary LM loss alone, with targets and
        lm_weight > 0), weights, and hidden (B, T, C), the GPT's final states.
    See chapter 8.
    """

    def __init__(self, config: GPT1ClassifierConfig | None = None, gpt: GPT | None = None):
        super().__init__()
        config = config or GPT1ClassifierConfig()
        if gpt is not None:
            if not isinstance(gpt, GPT):
                raise TypeError(f"gpt must be a GPT, got {type(gpt).__name__}")
            config = GPT1ClassifierConfig(gpt.config, config.n_classes, config.lm_weight,
                                          config.dropout)
        if config.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {config.n_classes}")
        self.config = config
        self.gpt = gpt if gpt is not None else GPT(config.gpt)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.gpt.d_model, config.n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_pretrained(cls, gpt: GPT, n_classes: int, lm_weight: float = 0.5,
                        dropout: float = 0.1) -> "GPT1Classifier":
        """Wrap a (pretrained) GPT; only the head is new. The GPT is used, not copied."""
        return cls(GPT1ClassifierConfig(n_classes=n_classes, lm_weight=lm_weight,
                                        dropout=dropout), gpt=gpt)

    def forward(self, input_ids: torch.Tensor, *, attention_mask=None,
                targets: torch.Tensor | None = None,
                return_weights: bool = False) -> ModelOutput:
        c = self.config.gpt
        # a tensor (B, T) before any use; the GPT below checks the ids' range (once)
        check_token_ids(input_ids, None, c.max_len, "input_ids")
        B, T = input_ids.shape
        keep = as_padding_mask(attention_mask, B, T)  # (B, 1, 1, T) or None
        keep = (torch.ones(B, T, dtype=torch.bool, device=input_ids.device) if keep is None
                else keep[:, 0, 0])  # (B, T)
        last = last_real_index(keep)  # (B,): the extract token
        lm_targets = None
        want_lm = targets is not None and self.config.lm_weight > 0
        if want_lm:
            # position t predicts input_ids[t + 1]; no target at or after padding
            lm_targets = torch.full_like(input_ids, -100)  # (B, T)
            lm_targets[:, :-1] = input_ids[:, 1:].masked_fill(~keep[:, 1:], -100)
        out = self.gpt(input_ids, targets=lm_targets, attention_mask=attention_mask,
                       return_weights=return_weights)
        h = out.hidden[torch.arange(B, device=input_ids.device), last]  # (B, C)
        logits = self.head(self.drop(h))  # (B, n_classes)
        loss = lm_loss = None
        if targets is not None:
            loss = cross_entropy(logits, targets)
            if want_lm:
                lm_loss = out.loss
                loss = loss + self.config.lm_weight * lm_loss
        return ModelOutput(logits, loss, out.weights, hidden=out.hidden, lm_loss=lm_loss)


GPT1_CLASSIFIER_PRESETS = {
    "gpt1-tiny-classifier": GPT1ClassifierConfig(),
}
__all__ += ["GPT1ClassifierConfig", "GPT1Classifier", "gpt1_classification_input",
            "GPT1_CLASSIFIER_PRESETS"]
