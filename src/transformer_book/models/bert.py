"""BERT: a bidirectional encoder pre-trained by filling in masked tokens. See chapter 9.

Devlin et al. (2019). Post-norm blocks as in the 2017 Transformer; the input is the sum of
three embeddings (token, learned position, segment A/B) followed by a LayerNorm and dropout.
GELU is the exact (erf) form; every LayerNorm uses eps 1e-12.

Three models share the encoder ``Bert``; each forward returns a ``ModelOutput``:
  Bert                      ``.hidden`` (B, T, C) (no head, so no logits); ``pool`` gives the
                            [CLS] summary (B, C)
  BertForMaskedLM           ``.logits`` (B, T, V): dense, GELU, LayerNorm, tied decoder + bias
  BertForClassification     ``.logits`` (B, n_classes) from the pooled [CLS] vector
Padding: ``attention_mask`` (B, T), 1/True at real tokens (see ``masks.as_padding_mask``);
BERT has no pad id of its own, so without a mask every position is attended to.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..layers import ACTIVATIONS, Block, LayerNorm
from ..masks import as_padding_mask
from ..positional import LearnedPositionalEmbedding
from ..losses import cross_entropy
from .output import ModelOutput, check_token_ids
from .shared import run_blocks

__all__ = ["BertConfig", "Bert", "BertForMaskedLM", "BertForClassification", "BERT_PRESETS",
           "mean_pool"]


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    max_len: int = 512
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    n_segments: int = 2  # sentence A / sentence B
    n_classes: int = 2  # outputs of BertForClassification (unused by the other two)
    dropout: float = 0.1
    activation: str = "gelu"  # exact GELU
    eps: float = 1e-12


BERT_PRESETS = {
    "bert-base": BertConfig(),
    "bert-large": BertConfig(d_model=1024, n_heads=16, n_layers=24, d_ff=4096),
    # small presets a chapter trains on a CPU (vocab set by the chapter's tokenizer)
    "bert-tiny": BertConfig(vocab_size=256, max_len=128, d_model=128, n_heads=4, n_layers=4,
                            d_ff=512, dropout=0.0),
    "bert-small-gpu": BertConfig(vocab_size=256, max_len=256, d_model=384, n_heads=6,
                                 n_layers=6, d_ff=1536),
}


def _init_bert(module: nn.Module) -> None:
    """Normal(0, 0.02) for Linear and Embedding weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, LearnedPositionalEmbedding):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Bert(nn.Module):
    """The BERT encoder (and its [CLS] pooler).

    forward(input_ids, *, token_type_ids=None, attention_mask=None, return_weights=False):
        input_ids: (B, T) token ids; the rest is keyword-only (a mask can never be read as
        segment ids); token_type_ids: (B, T) segment ids (default all 0);
        attention_mask: (B, T) with 1/True at real tokens and 0/False at padding, or bool
        (B, 1, 1, T) (default None: every position is real, as in the reference implementation).
        Returns a ModelOutput whose ``hidden`` holds the last hidden states (B, T, C)
        (``logits`` is None: the encoder has no head) and, with return_weights,
        ``weights`` = {"self": [(B, H, T, T)] * n_layers, "cross": []}.
    pool(hidden) -> (B, C): tanh(dense(hidden[:, 0])), the [CLS] summary.
    See chapter 9.
    """

    def __init__(self, config: BertConfig, pooler: bool = True):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.seg_emb = nn.Embedding(c.n_segments, c.d_model)
        self.emb_norm = LayerNorm(c.d_model, c.eps)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, norm_first=False,
                  activation=c.activation, eps=c.eps)
            for _ in range(c.n_layers))
        self.pooler = nn.Linear(c.d_model, c.d_model) if pooler else None
        self.init_weights()

    def init_weights(self) -> None:
        """Normal(0, 0.02) for every Linear and Embedding weight, zero biases, unit LayerNorms
        (BERT's scheme; post-norm needs no depth-dependent scaling)."""
        _init_bert(self)

    def forward(self, input_ids: torch.Tensor, *, token_type_ids=None, attention_mask=None,
                return_weights: bool = False) -> ModelOutput:
        c = self.config
        input_ids = check_token_ids(input_ids, c.vocab_size, c.max_len, "input_ids")
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif getattr(token_type_ids, "shape", None) != input_ids.shape:
            raise ValueError(f"token_type_ids must have the shape of input_ids "
                             f"{tuple(input_ids.shape)}, got "
                             f"{tuple(getattr(token_type_ids, 'shape', ()))}")
        else:
            token_type_ids = check_token_ids(token_type_ids, c.n_segments, None, "token_type_ids")
        mask = as_padding_mask(attention_mask, B, T)  # (B, 1, 1, T)
        x = self.tok_emb(input_ids) + self.seg_emb(token_type_ids)  # (B, T, C)
        x = self.drop(self.emb_norm(self.pos_emb(x)))  # BERT's one extra LayerNorm: here
        x, weights = run_blocks(self.blocks, x, mask=mask, return_weights=return_weights)
        return ModelOutput(None, weights=weights, hidden=x)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.pooler is None:
            raise ValueError("this BERT was built without a pooler (pooler=False)")
        return torch.tanh(self.pooler(hidden[:, 0]))  # (B, C)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the hidden states (B, T, C) over real tokens -> (B, C): the sentence
    embedding of Sentence-BERT (Reimers and Gurevych 2019)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    B, T, _ = hidden.shape
    w = as_padding_mask(attention_mask, B, T)[:, 0, 0, :, None].to(hidden.dtype)  # (B, T, 1)
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)  # (B, C)


def _with_loss(enc: ModelOutput, logits: torch.Tensor, targets) -> ModelOutput:
    """A head's output: its logits, the loss against ``targets`` (None without), and the
    encoder's weights and hidden states."""
    loss = None if targets is None else cross_entropy(logits, targets)
    return ModelOutput(logits, loss, enc.weights, hidden=enc.hidden)


class BertForMaskedLM(nn.Module):
    """BERT with its masked-language-model head; the decoder shares the token embedding.

    forward(input_ids, *, token_type_ids=None, attention_mask=None, targets=None,
            return_weights=False):
        targets: (B, T) original ids at masked positions and -100 elsewhere.
        Returns a ModelOutput: logits (B, T, V), loss (with targets), weights (as ``Bert``).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.bert = Bert(c, pooler=False)
        self.transform = nn.Linear(c.d_model, c.d_model)
        self.act = ACTIVATIONS[c.activation]
        self.norm = LayerNorm(c.d_model, c.eps)
        self.decoder = nn.Linear(c.d_model, c.vocab_size)
        self.decoder.weight = self.bert.tok_emb.weight  # tied, counted once; the bias is its own
        self.init_weights()

    def init_weights(self) -> None:
        """BERT's scheme (see ``Bert.init_weights``) for the encoder and the head."""
        _init_bert(self)

    def forward(self, input_ids, *, token_type_ids=None, attention_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        enc = self.bert(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                        return_weights=return_weights)
        logits = self.decoder(self.norm(self.act(self.transform(enc.hidden))))  # (B, T, V)
        return _with_loss(enc, logits, targets)


class BertForClassification(nn.Module):
    """BERT, the pooled [CLS] vector, dropout and a linear layer to ``config.n_classes`` logits.

    forward(input_ids, *, token_type_ids=None, attention_mask=None, targets=None,
            return_weights=False):
        targets: (B,) class ids (-100 = ignore).
        Returns a ModelOutput: logits (B, n_classes), loss (with targets), weights (as ``Bert``).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config, pooler=True)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, config.n_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """BERT's scheme (see ``Bert.init_weights``) for the encoder and the head."""
        _init_bert(self)

    def forward(self, input_ids, *, token_type_ids=None, attention_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        enc = self.bert(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                        return_weights=return_weights)
        logits = self.classifier(self.drop(self.bert.pool(enc.hidden)))  # (B, n_classes)
        return _with_loss(enc, logits, targets)
