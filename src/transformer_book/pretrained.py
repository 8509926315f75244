"""Hugging Face checkpoints into the book's models: same weights, same outputs. See chapters 8-11.

``from_hf(model_or_dir)`` takes a ``transformers`` model instance, or a directory written by its
``save_pretrained`` (config.json + model.safetensors: read with json and safetensors only, no
pickle, no hub), and returns our equivalent model in eval mode. Supported:

    GPT2LMHeadModel, OpenAIGPTLMHeadModel        -> models.GPT
    BertModel / BertForMaskedLM                  -> models.Bert / models.BertForMaskedLM
    T5ForConditionalGeneration (original, v1.1)  -> models.T5

What the conversion has to know:
  - GPT-1 and GPT-2 store their projections as "Conv1D" weights of shape (in, out): we transpose,
    and split the fused (C, 3C) query/key/value projection into three (C, C) ones;
  - tied matrices (an output layer that is the embedding) may be stored twice, or not at all:
    we read them once and check that a second copy, when present, is the same matrix;
  - some checkpoints store buffers that are not weights (causal-mask tables, position ids):
    they are dropped;
  - anything else that does not fit raises a ValueError naming the first key concerned.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from .models.bert import Bert, BertConfig, BertForMaskedLM
from .models.gpt import GPT, GPTConfig
from .models.t5 import T5, T5Config

__all__ = ["from_hf", "SUPPORTED"]

# Hugging Face activation names -> ours (layers.ACTIVATIONS)
_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# buffers some checkpoints store that are not weights
_BUFFERS = re.compile(r"(\.attn\.(bias|masked_bias)|position_ids)$")


def _act(name: str) -> str:
    if name not in _ACT:
        raise ValueError(f"activation {name!r} is not supported; expected one of {sorted(_ACT)}")
    return _ACT[name]


def _require(cfg: dict, key: str, expected) -> None:
    if cfg.get(key, expected) != expected:
        raise ValueError(f"config {key}={cfg[key]!r} is not supported (expected {expected!r})")


class _Checkpoint:
    """The checkpoint's tensors, consumed key by key so that leftovers can be reported."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = {k: v for k, v in state.items() if not _BUFFERS.search(k)}

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"the checkpoint has no tensor {key!r}, which the model needs")
        return self.state.pop(key)

    def take_copy(self, key: str, of: torch.Tensor) -> None:
        """A tied duplicate: optional, but if stored it must equal ``of``."""
        t = self.state.pop(key, None)
        if t is not None and (t.shape != of.shape or not torch.equal(t, of)):
            raise ValueError(f"{key!r} should be tied to (equal to) another matrix but differs; "
                             "untied checkpoints of this architecture are not supported")

    def finish(self) -> None:
        if self.state:
            extra = sorted(self.state)
            raise ValueError(f"the checkpoint has a tensor our model has no place for: {extra[0]!r} "
                             f"({len(extra)} unused key(s) in all)")


def _linear(w: dict, ours: str, ck: _Checkpoint, theirs: str, bias: bool = True) -> None:
    w[f"{ours}.weight"] = ck.take(f"{theirs}.weight")
    if bias:
        w[f"{ours}.bias"] = ck.take(f"{theirs}.bias")


def _conv1d(w: dict, ours: str, ck: _Checkpoint, theirs: str) -> None:
    """GPT's Conv1D computes x @ W + b with W (in, out); nn.Linear holds W^T (out, in)."""
    w[f"{ours}.weight"] = ck.take(f"{theirs}.weight").t()
    w[f"{ours}.bias"] = ck.take(f"{theirs}.bias")


# ---------------------------------------------------------------------------------- GPT-1/2
def _gpt(cfg: dict, ck: _Checkpoint, gpt2: bool):
    if not cfg.get("tie_word_embeddings", True):
        raise ValueError("tie_word_embeddings=False is not supported: our GPT ties its output layer")
    if gpt2:
        _require(cfg, "scale_attn_weights", True)
        _require(cfg, "scale_attn_by_inverse_layer_idx", False)
    d_ff = cfg.get("n_inner") or 4 * cfg["n_embd"]
    if gpt2:
        act = _act(cfg["activation_function"])
    else:  # OpenAIGPT's own table: its "gelu" is the tanh approximation, as in GPT-1's code
        act = {"gelu": "gelu_tanh", "relu": "relu"}.get(cfg.get("afn", "gelu"))
        if act is None:
            raise ValueError(f"afn {cfg['afn']!r} is not supported; expected 'gelu' or 'relu'")
    config = GPTConfig(vocab_size=cfg["vocab_size"], max_len=cfg["n_positions"], d_model=cfg["n_embd"],
                       n_heads=cfg["n_head"], n_layers=cfg["n_layer"], d_ff=d_ff,
                       dropout=cfg.get("resid_pdrop", 0.1), norm_first=gpt2, final_norm=gpt2,
                       scale_residual_init=gpt2, activation=act,
                       eps=cfg.get("layer_norm_epsilon", 1e-5))
    tok, pos = ("wte", "wpe") if gpt2 else ("tokens_embed", "positions_embed")
    w = {"tok_emb.weight": ck.take(f"transformer.{tok}.weight"),
         "pos_emb.weight": ck.take(f"transformer.{pos}.weight")}
    for i in range(config.n_layers):
        p, o = f"transformer.h.{i}", f"blocks.{i}"
        qkv_w = ck.take(f"{p}.attn.c_attn.weight").t()  # (3C, C)
        qkv_b = ck.take(f"{p}.attn.c_attn.bias")  # (3C,)
        for name, wt, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w.chunk(3), qkv_b.chunk(3)):
            w[f"{o}.self_attn.{name}.weight"], w[f"{o}.self_attn.{name}.bias"] = wt, b
        _conv1d(w, f"{o}.self_attn.out_proj", ck, f"{p}.attn.c_proj")
        _conv1d(w, f"{o}.ffn.up", ck, f"{p}.mlp.c_fc")
        _conv1d(w, f"{o}.ffn.down", ck, f"{p}.mlp.c_proj")
        _linear(w, f"{o}.norm_self", ck, f"{p}.ln_1")  # GPT-2: before attention; GPT-1: after
        _linear(w, f"{o}.norm_ffn", ck, f"{p}.ln_2")
    if gpt2:
        _linear(w, "final_norm", ck, "transformer.ln_f")
    ck.take_copy("lm_head.weight", w["tok_emb.weight"])
    return GPT(config), w


# ---------------------------------------------------------------------------------- BERT
def _bert(cfg: dict, ck: _Checkpoint, mlm: bool):
    _require(cfg, "position_embedding_type", "absolute")
    _require(cfg, "is_decoder", False)
    config = BertConfig(vocab_size=cfg["vocab_size"], max_len=cfg["max_position_embeddings"],
                        d_model=cfg["hidden_size"], n_heads=cfg["num_attention_heads"],
                        n_layers=cfg["num_hidden_layers"], d_ff=cfg["intermediate_size"],
                        n_segments=cfg["type_vocab_size"], dropout=cfg["hidden_dropout_prob"],
                        activation=_act(cfg["hidden_act"]), eps=cfg["layer_norm_eps"])
    if not mlm and not any(k.startswith("embeddings.") for k in ck.state):
        ck.state = {k.removeprefix("bert."): v for k, v in ck.state.items()}
    src, dst = ("bert.", "bert.") if mlm else ("", "")
    w = {f"{dst}tok_emb.weight": ck.take(f"{src}embeddings.word_embeddings.weight"),
         f"{dst}pos_emb.weight": ck.take(f"{src}embeddings.position_embeddings.weight"),
         f"{dst}seg_emb.weight": ck.take(f"{src}embeddings.token_type_embeddings.weight")}
    _linear(w, f"{dst}emb_norm", ck, f"{src}embeddings.LayerNorm")
    for i in range(config.n_layers):
        p, o = f"{src}encoder.layer.{i}", f"{dst}blocks.{i}"
        for ours, theirs in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
            _linear(w, f"{o}.self_attn.{ours}", ck, f"{p}.attention.self.{theirs}")
        _linear(w, f"{o}.self_attn.out_proj", ck, f"{p}.attention.output.dense")
        _linear(w, f"{o}.norm_self", ck, f"{p}.attention.output.LayerNorm")
        _linear(w, f"{o}.ffn.up", ck, f"{p}.intermediate.dense")
        _linear(w, f"{o}.ffn.down", ck, f"{p}.output.dense")
        _linear(w, f"{o}.norm_ffn", ck, f"{p}.output.LayerNorm")
    if not mlm:
        has_pooler = "pooler.dense.weight" in ck.state
        if has_pooler:
            _linear(w, "pooler", ck, "pooler.dense")
        return Bert(config, pooler=has_pooler), w
    _linear(w, "transform", ck, "cls.predictions.transform.dense")
    _linear(w, "norm", ck, "cls.predictions.transform.LayerNorm")
    w["decoder.bias"] = ck.take("cls.predictions.bias")
    ck.take_copy("cls.predictions.decoder.weight", w["bert.tok_emb.weight"])
    ck.take_copy("cls.predictions.decoder.bias", w["decoder.bias"])
    return BertForMaskedLM(config), w


# ---------------------------------------------------------------------------------- T5
def _t5(cfg: dict, ck: _Checkpoint, _=None):
    gated = cfg.get("is_gated_act", cfg.get("feed_forward_proj", "relu").startswith("gated-"))
    act_name = cfg.get("dense_act_fn")
    if act_name is None:  # older configs: parse feed_forward_proj as transformers does
        act_name = cfg.get("feed_forward_proj", "relu").split("-")[-1]
        if gated and act_name == "gelu":
            act_name = "gelu_new"  # T5 v1.1's "gated-gelu" is the tanh approximation
    config = T5Config(vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], n_heads=cfg["num_heads"],
                      d_head=cfg["d_kv"], d_ff=cfg["d_ff"], n_layers=cfg["num_layers"],
                      n_decoder_layers=cfg.get("num_decoder_layers"),
                      num_buckets=cfg.get("relative_attention_num_buckets", 32),
                      max_distance=cfg.get("relative_attention_max_distance", 128),
                      dropout=cfg.get("dropout_rate", 0.1),
                      activation=("gated-" if gated else "") + _act(act_name),
                      tie_embeddings=cfg.get("tie_word_embeddings", True),
                      eps=cfg.get("layer_norm_epsilon", 1e-6), pad_id=cfg.get("pad_token_id", 0),
                      decoder_start_id=cfg.get("decoder_start_token_id", 0))
    w = {"shared.weight": ck.take("shared.weight")}
    for stack, n in (("encoder", config.n_layers), ("decoder", config.decoder_depth)):
        ck.take_copy(f"{stack}.embed_tokens.weight", w["shared.weight"])
        w[f"{stack}.rel_bias.embedding.weight"] = ck.take(
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        sublayers = [("self_attn", "norm_self", "SelfAttention")]
        if stack == "decoder":
            sublayers.append(("cross_attn", "norm_cross", "EncDecAttention"))
        for i in range(n):
            p, o = f"{stack}.block.{i}.layer", f"{stack}.blocks.{i}"
            for j, (attn, norm, theirs) in enumerate(sublayers):
                for ours, t in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")):
                    _linear(w, f"{o}.{attn}.{ours}", ck, f"{p}.{j}.{theirs}.{t}", bias=False)
                w[f"{o}.{norm}.weight"] = ck.take(f"{p}.{j}.layer_norm.weight")
            f = f"{p}.{len(sublayers)}"
            ffn = (("gate", "wi_0"), ("up", "wi_1"), ("down", "wo")) if gated else \
                (("up", "wi"), ("down", "wo"))
            for ours, theirs in ffn:
                _linear(w, f"{o}.ffn.{ours}", ck, f"{f}.DenseReluDense.{theirs}", bias=False)
            w[f"{o}.norm_ffn.weight"] = ck.take(f"{f}.layer_norm.weight")
        w[f"{stack}.final_norm.weight"] = ck.take(f"{stack}.final_layer_norm.weight")
    if config.tie_embeddings:
        ck.take_copy("lm_head.weight", w["shared.weight"])
    else:
        w["lm_head.weight"] = ck.take("lm_head.weight")
    return T5(config), w


SUPPORTED = {
    "GPT2LMHeadModel": (_gpt, True),
    "OpenAIGPTLMHeadModel": (_gpt, False),
    "BertModel": (_bert, False),
    "BertForMaskedLM": (_bert, True),
    "T5ForConditionalGeneration": (_t5, None),
}


def _read(model_or_dir) -> tuple[str, dict, dict]:
    """-> (architecture name, config dict, state dict) from an instance or a directory."""
    if isinstance(model_or_dir, (str, os.PathLike)):
        path = Path(model_or_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json "
                                    "(expected a save_pretrained directory)")
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        archs = cfg.get("architectures") or [None]
        from safetensors.torch import load_file
        if (path / "model.safetensors").is_file():
            state = load_file(path / "model.safetensors")
        elif (path / "model.safetensors.index.json").is_file():  # a sharded checkpoint
            index = json.loads((path / "model.safetensors.index.json").read_text(encoding="utf-8"))
            state = {}
            for shard in sorted(set(index["weight_map"].values())):
                state.update(load_file(path / shard))
        else:
            raise FileNotFoundError(f"{path} has no model.safetensors; pickled checkpoints are not "
                                    "read (save with safe_serialization=True)")
        return archs[0], cfg, state
    if isinstance(model_or_dir, nn.Module) and hasattr(model_or_dir, "config"):
        state = {k: v.detach() for k, v in model_or_dir.state_dict().items()}
        return type(model_or_dir).__name__, model_or_dir.config.to_dict(), state
    raise TypeError("from_hf expects a transformers model or a save_pretrained directory, "
                    f"got {type(model_or_dir).__name__}")


def from_hf(model_or_dir) -> nn.Module:
    """Our model holding the weights of a Hugging Face model, in eval mode.

    Args:
        model_or_dir: a ``transformers`` model instance, or the path of a directory written by
            its ``save_pretrained`` (safetensors).
    Returns:
        GPT, Bert, BertForMaskedLM or T5 (see the module docstring), on the CPU, in float32.
    Raises:
        ValueError naming the first key (or config field) that does not fit.
    """
    arch, cfg, state = _read(model_or_dir)
    if arch not in SUPPORTED:
        raise ValueError(f"architecture {arch!r} is not supported; "
                         f"expected one of {sorted(SUPPORTED)}")
    convert, flag = SUPPORTED[arch]
    ck = _Checkpoint(state)
    model, weights = convert(cfg, ck, flag)
    ck.finish()
    params = model.state_dict(keep_vars=True)
    for key, tensor in weights.items():
        if key not in params:  # a bug in the mapping above, not in the checkpoint
            raise RuntimeError(f"conversion produced {key!r}, which our model does not have")
        if params[key].shape != tensor.shape:
            raise ValueError(f"{key!r}: our model expects shape {tuple(params[key].shape)}, "
                             f"the checkpoint gives {tuple(tensor.shape)}")
    filled = {id(params[k]) for k in weights}
    for key, p in params.items():
        if id(p) not in filled:
            raise RuntimeError(f"our parameter {key!r} received no weight from the checkpoint")
    with torch.no_grad():
        for key, tensor in weights.items():
            params[key].copy_(tensor)
    return model.eval()
