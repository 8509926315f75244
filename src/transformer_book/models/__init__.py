"""The models of the book and ``build(name, **overrides)`` for their named presets.

Every model's forward returns a ``ModelOutput`` (logits, loss, weights); see ``output.py``.

``build("gpt2", device="meta")`` constructs the model without allocating memory, which is
enough to count its parameters (``count_params``).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..attention import MultiHeadAttention
from ..layers import FeedForward, LayerNorm, RMSNorm
from ..positional import LearnedPositionalEmbedding, RelativePositionBias
from .bert import BERT_PRESETS, Bert, BertConfig, BertForClassification, BertForMaskedLM
from .gpt import (GPT, GPT1_CLASSIFIER_PRESETS, GPT_PRESETS, GPT1Classifier,
                  GPT1ClassifierConfig, GPTConfig, gpt1_classification_input,
                  GPT1_TASKS, gpt1_task_sequences)
from .t5 import T5, T5_PRESETS, T5Config
from .transformer import TRANSFORMER_PRESETS, Transformer, TransformerConfig
from .output import ModelOutput
from .rnn import (ATTENTION_RNN_PRESETS, RNN_CLASSIFIER_PRESETS, RNN_PRESETS,
                  AttentionRNNConfig, AttentionRNNSeq2Seq, RNNClassifier, RNNClassifierConfig,
                  RNNSeq2Seq, RNNSeq2SeqConfig)

__all__ = ["build", "register", "PRESETS", "count_params", "count_params_by_part",
           "PARTS", "ModelOutput", "GPT", "GPTConfig",
           "GPT1Classifier", "GPT1ClassifierConfig", "gpt1_classification_input", "GPT1_TASKS",
           "gpt1_task_sequences", "Transformer",
           "TransformerConfig", "Bert", "BertConfig", "BertForMaskedLM", "BertForClassification",
           "T5", "T5Config", "RNNClassifier", "RNNClassifierConfig", "RNNSeq2Seq",
           "RNNSeq2SeqConfig", "AttentionRNNSeq2Seq", "AttentionRNNConfig"]

# name -> (model class, config)
PRESETS: dict[str, tuple[type, object]] = {}


def register(presets: dict, cls: type) -> None:
    """Make every ``name: config`` of ``presets`` buildable as ``cls(config)``."""
    for name, cfg in presets.items():
        if name in PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        PRESETS[name] = (cls, cfg)


register(GPT_PRESETS, GPT)
register(GPT1_CLASSIFIER_PRESETS, GPT1Classifier)
register(BERT_PRESETS, Bert)
# every BERT preset also comes with each head: "bert-tiny-mlm", "bert-base-classifier", ...
register({f"{k}-mlm": c for k, c in BERT_PRESETS.items()}, BertForMaskedLM)
register({f"{k}-classifier": c for k, c in BERT_PRESETS.items()}, BertForClassification)
register(T5_PRESETS, T5)
register(TRANSFORMER_PRESETS, Transformer)
register(RNN_PRESETS, RNNSeq2Seq)
register(RNN_CLASSIFIER_PRESETS, RNNClassifier)
register(ATTENTION_RNN_PRESETS, AttentionRNNSeq2Seq)


def build(name: str, device=None, **overrides):
    """Build the preset ``name`` with config fields replaced by ``overrides``.

    Args:
        device: where to allocate ("meta" allocates nothing); default the CPU.
    Raises:
        ValueError for an unknown preset or an override that is not a config field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    cls, cfg = PRESETS[name]
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"preset {name!r} has no config field(s) {unknown}; "
                         f"expected some of {sorted(fields)}")
    cfg = dataclasses.replace(cfg, **overrides)
    with torch.device(device if device is not None else "cpu"):
        model = cls(cfg)
    return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters; a tensor shared by several modules (tied embeddings) counts once.

    Works on models built on the "meta" device, which hold no memory.
    """
    seen, total = set(), 0
    for p in model.parameters():  # parameters() already yields a shared Parameter once
        if trainable_only and not p.requires_grad:
            continue
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


# the parts of count_params_by_part, each claimed by these module types (first match wins)
PARTS = {
    "embeddings": (nn.Embedding, LearnedPositionalEmbedding, RelativePositionBias),
    "attention": (MultiHeadAttention,),
    "FFN": (FeedForward,),
    "norms": (LayerNorm, RMSNorm),
}


def count_params_by_part(model: nn.Module) -> dict[str, int]:
    """Parameters split into the parts of a Transformer, found by module type.

    Returns ``{"embeddings", "attention", "FFN", "norms", "other": count}``: the tables
    indexed by token, segment or position (T5's relative-bias table included); every
    attention module's projections (self and cross); the FFNs; the LayerNorms and RMSNorms;
    and whatever no such module holds ("other": an untied output layer, BERT's pooler and
    masked-LM transform, a classifier). A tensor is counted once, in the first part that
    holds it (a tied output layer is in "embeddings"), so the parts sum to ``count_params``.
    Works on the "meta" device. See chapter 13.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    part_of: dict[int, str] = {}
    for part, types in PARTS.items():  # in PARTS' order, so embeddings claim a tied head
        for module in model.modules():
            if isinstance(module, types):
                for p in module.parameters():
                    part_of.setdefault(id(p), part)
    counts = dict.fromkeys([*PARTS, "other"], 0)
    seen = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            counts[part_of.get(id(p), "other")] += p.numel()
    return counts
