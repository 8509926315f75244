"""Recurrent baselines: what the Transformer replaced. See chapters 1 and 6.

``RNNClassifier`` reads a sequence step by step and classifies it from its last hidden state
(chapter 1 uses it on the long-range recall task, with a vanilla tanh RNN and an LSTM).
``step_gradient_norms`` measures how much gradient reaches each input position.

``RNNSeq2Seq`` is the encoder-decoder of Sutskever et al. (2014) *without attention*: the
encoder's final state is the only thing the decoder learns about the source (chapter 6 trains
it on the same translation task as the Transformer). It follows the book's encoder-decoder
protocol, so ``transformer_book.decoding.greedy`` and ``beam_search`` work on it:

    source_mask(src, src_mask=None)                   -> bool (B, 1, 1, S), True at real tokens
    encode(src, src_mask=None)                        -> memory (B, L, H): the final state
    decode(tgt, memory, *, src_mask=None, cache=None) -> ModelOutput, logits (B, T, V)
    forward(src, tgt_in, *, src_mask=None, targets=None) -> ModelOutput, logits (B, T, V)

Both models return a ``ModelOutput`` like every model of the book; they have no attention, so
``return_weights=True`` gives {"encoder": [], "self": [], "cross": []}.

It has no ``make_cache``: each decoding step reruns the decoder over the whole prefix.

``AttentionRNNSeq2Seq`` adds Bahdanau et al.'s (2015) additive attention: the historical step
between the two (chapter 6 trains all three on the same task).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..masks import as_padding_mask
from ..losses import cross_entropy
from .output import ModelOutput, check_token_ids
from .shared import check_memory, last_real_index, source_mask

__all__ = ["RNNClassifierConfig", "RNNClassifier", "step_gradient_norms", "RNNSeq2SeqConfig",
           "RNNSeq2Seq", "RNN_PRESETS", "RNN_CLASSIFIER_PRESETS", "AttentionRNNConfig",
           "AttentionRNNSeq2Seq", "ATTENTION_RNN_PRESETS", "DecoderState"]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _make_rnn(cell: str, d_in: int, d_hidden: int, n_layers: int, dropout: float = 0.0):
    if cell not in _CELLS:
        raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
    kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return _CELLS[cell](d_in, d_hidden, num_layers=n_layers, batch_first=True,
                        dropout=dropout if n_layers > 1 else 0.0, **kwargs)


def _check_tokens(name: str, ids, vocab_size: int) -> torch.Tensor:
    return check_token_ids(ids, vocab_size, None, name)  # recurrent: no maximum length


@dataclass(frozen=True)
class RNNClassifierConfig:
    vocab_size: int = 16  # set by the chapter's task
    n_classes: int = 4
    d_model: int = 32  # embedding width
    d_hidden: int = 64  # state width H
    cell: str = "rnn"  # "rnn" (Elman, tanh), "lstm" or "gru"
    n_layers: int = 1


class RNNClassifier(nn.Module):
    """Embed, run a recurrent network, classify from the hidden state after the last token.

    Built from an ``RNNClassifierConfig`` (or ``build("rnn-classifier", cell="lstm", ...)``).

    forward(input_ids, *, attention_mask=None, targets=None, return_weights=False):
        input_ids (B, T); attention_mask (B, T) bool or 0/1 (or bool (B, 1, 1, T)) for a
        right-padded batch: each row is classified from the state after its last real token
        (a row with no real token is a ValueError); targets (B,) class ids (-100 = ignore).
        Returns a ModelOutput with logits (B, n_classes) and hidden, the states (B, T, H).
    ``embed`` and ``classify`` split forward in two so that gradients with respect to each
    input position can be measured. See chapter 1.
    """

    def __init__(self, config: RNNClassifierConfig):
        super().__init__()
        self.config = c = config
        self.vocab_size, self.cell = c.vocab_size, c.cell
        self.emb = nn.Embedding(c.vocab_size, c.d_model)
        self.rnn = _make_rnn(c.cell, c.d_model, c.d_hidden, c.n_layers)
        self.head = nn.Linear(c.d_hidden, c.n_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """PyTorch's defaults, stated: embeddings N(0, 1); every recurrent and output weight and
        bias U(-1/sqrt(H), 1/sqrt(H)) (so the LSTM's forget-gate bias starts near 0, not 1)."""
        nn.init.normal_(self.emb.weight)
        self.rnn.reset_parameters()
        self.head.reset_parameters()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        input_ids = _check_tokens("input_ids", input_ids, self.vocab_size)
        return self.emb(input_ids)  # (B, T, C)

    def classify(self, x: torch.Tensor, last=None) -> torch.Tensor:
        """x (B, T, C) -> logits (B, n_classes), read at position ``last`` (B,) (default T-1)."""
        return self._read(self.rnn(x)[0], last)

    def _read(self, states: torch.Tensor, last=None) -> torch.Tensor:
        if last is None:
            return self.head(states[:, -1])  # (B, n_classes)
        return self.head(states[torch.arange(states.shape[0], device=states.device), last])

    def forward(self, input_ids: torch.Tensor, *, attention_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        x = self.embed(input_ids)  # (B, T, C)
        last = None
        if attention_mask is not None:
            B, T = input_ids.shape
            keep = as_padding_mask(attention_mask, B, T)[:, 0, 0, :]  # (B, T)
            last = last_real_index(keep)  # (B,): right padding
        states, _ = self.rnn(x)  # (B, T, H)
        logits = self._read(states, last)  # (B, n_classes)
        loss = None if targets is None else cross_entropy(logits, targets)
        weights = {"self": [], "cross": []} if return_weights else None  # no attention
        return ModelOutput(logits, loss, weights, hidden=states)


def step_gradient_norms(model: nn.Module, input_ids: torch.Tensor,
                        targets: torch.Tensor) -> torch.Tensor:
    """How much of the loss's gradient reaches each input position.

    ``model`` offers ``embed(input_ids) -> (B, T, C)`` and ``classify(x) -> (B, n_classes)`` (the
    RNNClassifier does; chapter 1 gives its attention model the same two methods).

    Returns:
        (T,) the norm of d loss / d x_t, averaged over the batch; entry 0 is "step 0".
    """
    x = model.embed(input_ids).detach().requires_grad_(True)  # (B, T, C)
    loss = F.cross_entropy(model.classify(x), targets)
    (grad,) = torch.autograd.grad(loss, x)  # (B, T, C)
    return grad.norm(dim=-1).mean(0)  # (T,)


@dataclass(frozen=True)
class RNNSeq2SeqConfig:
    src_vocab_size: int = 64
    tgt_vocab_size: int = 64
    d_model: int = 64  # embedding width
    d_hidden: int = 128  # state width H, the same in encoder and decoder
    n_layers: int = 1
    cell: str = "gru"  # "gru", "lstm" or "rnn"
    dropout: float = 0.0
    pad_id: int = 0  # the id that right-pads src (and the tgt embedding's padding row)


RNN_PRESETS = {
    # Sutskever et al. (2014): 4-layer LSTMs of 1000 cells, 1000-d embeddings, 160k/80k words;
    # "384M parameters" in the paper, which build(..., device="meta") reproduces.
    "rnn-seq2seq-sutskever2014": RNNSeq2SeqConfig(src_vocab_size=160_000, tgt_vocab_size=80_000,
                                                  d_model=1000, d_hidden=1000, n_layers=4,
                                                  cell="lstm"),
    # small presets; the vocabulary sizes are set by the chapter's task
    "rnn-seq2seq-tiny": RNNSeq2SeqConfig(),
    "rnn-seq2seq-small-gpu": RNNSeq2SeqConfig(d_model=256, d_hidden=512, n_layers=2, dropout=0.1),
}
# chapter 1's sequence classifiers (cell="rnn", "lstm" or "gru" as an override)
RNN_CLASSIFIER_PRESETS = {"rnn-classifier": RNNClassifierConfig()}


class RNNSeq2Seq(nn.Module):
    """Recurrent encoder-decoder without attention: the source's final state starts the decoder.

    The memory handed from encoder to decoder is that final state, batch first so that beam
    search can reorder it like any other memory: (B, n_layers, H) for a GRU or RNN, and
    (B, 2 * n_layers, H) for an LSTM (hidden states, then cell states). See chapter 6.
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.encoder = _make_rnn(c.cell, c.d_model, c.d_hidden, c.n_layers, c.dropout)
        self.decoder = _make_rnn(c.cell, c.d_model, c.d_hidden, c.n_layers, c.dropout)
        self.drop = nn.Dropout(c.dropout)
        self.lm_head = nn.Linear(c.d_hidden, c.tgt_vocab_size)
        self.init_weights()

    def init_weights(self) -> None:
        """Every parameter U(-0.08, 0.08), as in Sutskever et al. (2014); padding rows zero."""
        for p in self.parameters():
            nn.init.uniform_(p, -0.08, 0.08)
        with torch.no_grad():
            self.src_emb.weight[self.config.pad_id].zero_()
            self.tgt_emb.weight[self.config.pad_id].zero_()

    def source_mask(self, src: torch.Tensor, src_mask=None) -> torch.Tensor:
        """``src_mask`` in any accepted form as bool (B, 1, 1, S), or when None, True at
        ``src != pad_id`` (the protocol every encoder-decoder of the book shares)."""
        return source_mask(src, src_mask, self.config.pad_id)

    def _keep(self, src: torch.Tensor, src_mask) -> torch.Tensor:
        """(B, S) bool, True at real source tokens; a row with none is a ValueError."""
        B, S = src.shape
        keep = self.source_mask(src, src_mask).reshape(B, S)  # (B, S)
        last_real_index(keep, "src")  # raises for a row with no real token
        return keep

    def encode(self, src: torch.Tensor, src_mask=None, *, return_weights: bool = False):
        """src (B, S) right-padded -> memory (B, L, H), the state after each row's last real token
        (with ``return_weights``: (memory, []), the encoder has no attention).

        Packing the padded batch makes the recurrence stop at each row's own length, so the
        padding never touches the state."""
        src = _check_tokens("src", src, self.config.src_vocab_size)
        lengths = self._keep(src, src_mask).sum(1)  # (B,)
        x = self.drop(self.src_emb(src))  # (B, S, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.encoder(packed)  # (L, B, H), or a pair of them for an LSTM
        if isinstance(state, tuple):
            state = torch.cat(state, dim=0)  # (2L, B, H)
        memory = state.transpose(0, 1)  # (B, L, H)
        return (memory, []) if return_weights else memory

    def _state(self, memory: torch.Tensor):
        c = self.config
        n = 2 * c.n_layers if c.cell == "lstm" else c.n_layers
        if memory.dim() != 3 or memory.shape[1:] != (n, c.d_hidden):
            raise ValueError(f"memory must have shape (B, {n}, {c.d_hidden}) (the output of "
                             f"encode), got {tuple(memory.shape)}")
        state = memory.transpose(0, 1).contiguous()  # (L, B, H)
        return tuple(state.chunk(2, dim=0)) if c.cell == "lstm" else state

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, *, src_mask=None, cache=None,
               last_only: bool = False, return_weights: bool = False) -> ModelOutput:
        """tgt (B, T) decoder inputs (BOS first) -> ModelOutput, logits (B, T, V) ((B, 1, V)
        with ``last_only``).

        ``src_mask`` is accepted for the protocol and unused: the memory is already a summary."""
        if cache is not None:
            raise ValueError("RNNSeq2Seq keeps no cache; decoding reruns the prefix (cache=None)")
        tgt = _check_tokens("tgt", tgt, self.config.tgt_vocab_size)
        c = self.config
        check_memory(memory, tgt.shape[0], c.d_hidden, "the output of encode")
        y = self.drop(self.tgt_emb(tgt))  # (B, T, E)
        out, _ = self.decoder(y, self._state(memory))  # (B, T, H)
        out = self.drop(out)
        logits = self.lm_head(out[:, -1:] if last_only else out)  # (B, T, V) or (B, 1, V)
        weights = {"self": [], "cross": []} if return_weights else None
        return ModelOutput(logits, weights=weights, hidden=out)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, *, src_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        """Teacher forcing: logits (B, T, V) for the next token after each of tgt_in (B, T)."""
        out = self.decode(tgt_in, self.encode(src, src_mask), return_weights=return_weights)
        if targets is not None:
            out.loss = cross_entropy(out.logits, targets)
        if return_weights:
            out.weights = {"encoder": [], **out.weights}  # no attention in the encoder
        return out


# ----------------------------------------------------------------------------- with attention

@dataclass(frozen=True)
class AttentionRNNConfig:
    src_vocab_size: int = 64
    tgt_vocab_size: int = 64
    d_model: int = 64  # embedding width
    d_hidden: int = 128  # H: each encoder direction and the decoder state
    d_attn: int = 128  # width of the additive attention's hidden layer
    dropout: float = 0.0
    pad_id: int = 0


ATTENTION_RNN_PRESETS = {
    # small presets; the vocabulary sizes are set by the chapter's task
    "rnn-attention-tiny": AttentionRNNConfig(),
    "rnn-attention-small-gpu": AttentionRNNConfig(d_model=256, d_hidden=512, d_attn=512,
                                                  dropout=0.1),
}


class DecoderState:
    """The decoder's recurrent state, kept between decoding steps (the RNN's "cache").

    ``decoding.greedy`` / ``beam_search`` feed one new token per step and call ``reorder``
    when beam search picks which hypotheses survive.
    """

    def __init__(self):
        self.state: torch.Tensor | None = None  # (B, H)
        self.seq_len = 0  # positions already processed

    def reorder(self, index: torch.Tensor) -> None:
        if self.state is not None:
            self.state = self.state.index_select(0, index)


class AttentionRNNSeq2Seq(nn.Module):
    """RNN encoder-decoder with additive attention (Bahdanau et al., 2015; "RNNsearch").

    The encoder is a bidirectional GRU; its outputs h_j = [forward_j; backward_j] (B, S, 2H)
    are the memory. At every target step i the decoder scores each source position with a
    one-hidden-layer network of its previous state s_{i-1} and h_j,
        e_ij = v . tanh(W s_{i-1} + U h_j),   alpha_i = softmax_j(e_ij)  (padding masked),
    reads the context c_i = sum_j alpha_ij h_j, and updates s_i = GRU([E y_{i-1}; c_i], s_{i-1}).
    The output is lm_head(tanh(W_o [s_i; c_i; E y_{i-1}])): one tanh layer where the paper has
    a maxout layer. s_0 = tanh(W_s backward_1), as in the paper. See chapter 6.

    Protocol (as RNNSeq2Seq, plus a state cache so decoding costs one step per token):
        source_mask(src, src_mask=None) -> bool (B, 1, 1, S), True at real tokens
        encode(src, src_mask=None)  -> memory (B, S, 2H)
        decode(tgt, memory, *, src_mask=None, cache=None, return_weights=False) -> ModelOutput
        make_cache() -> DecoderState
        forward(src, tgt_in, *, src_mask=None, targets=None, return_weights=False) -> ModelOutput
    With ``return_weights`` the additive attention comes back as the one "cross" layer,
    (B, 1, T, S) (one head), like every model of the book.
    """

    def __init__(self, config: AttentionRNNConfig):
        super().__init__()
        self.config = c = config
        H = c.d_hidden
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.encoder = nn.GRU(c.d_model, H, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(H, H)  # W_s
        self.attn_query = nn.Linear(H, c.d_attn, bias=False)  # W
        self.attn_key = nn.Linear(2 * H, c.d_attn)  # U (its bias is the layer's bias)
        self.attn_score = nn.Linear(c.d_attn, 1, bias=False)  # v
        self.cell = nn.GRUCell(c.d_model + 2 * H, H)
        self.out = nn.Linear(H + 2 * H + c.d_model, H)  # W_o
        self.lm_head = nn.Linear(H, c.tgt_vocab_size)
        self.drop = nn.Dropout(c.dropout)
        self.init_weights()

    init_weights = RNNSeq2Seq.init_weights  # U(-0.08, 0.08), padding rows of both embeddings zero

    def make_cache(self) -> DecoderState:
        return DecoderState()

    # the same source-mask protocol as RNNSeq2Seq (both configs carry pad_id)
    source_mask = RNNSeq2Seq.source_mask

    _keep = RNNSeq2Seq._keep

    def encode(self, src: torch.Tensor, src_mask=None, *, return_weights: bool = False):
        """src (B, S) right-padded -> annotations (B, S, 2H); zero at padding (with
        ``return_weights``: (annotations, []), the encoder has no attention).

        Packing makes each direction start and stop at the row's own length, so position 0's
        backward half is the backward GRU's summary of the whole sentence."""
        src = _check_tokens("src", src, self.config.src_vocab_size)
        keep = self._keep(src, src_mask)
        x = self.drop(self.src_emb(src))  # (B, S, E)
        packed = pack_padded_sequence(x, keep.sum(1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return (out, []) if return_weights else out  # (B, S, 2H)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, *, src_mask=None,
               cache: DecoderState | None = None, last_only: bool = False,
               return_weights: bool = False):
        """tgt (B, T) decoder inputs (BOS first) -> logits (B, T, V).

        ``src_mask`` (B, 1, 1, S), True at real tokens: pass the one ``encode`` used whenever
        the source is padded (None attends to every position). With a ``cache``, ``tgt`` holds
        only the new positions and the state carries on from the previous call.
        Returns a ModelOutput: logits (B, T, V); with ``return_weights`` the attention
        weights as {"self": [], "cross": [(B, 1, T, S)]}."""
        c = self.config
        H = c.d_hidden
        tgt = _check_tokens("tgt", tgt, c.tgt_vocab_size)
        B, T = tgt.shape
        check_memory(memory, B, 2 * H)
        S = memory.shape[1]
        if src_mask is None:
            keep = torch.ones(B, S, dtype=torch.bool, device=memory.device)
        else:
            keep = as_padding_mask(src_mask, B, S, "src_mask").reshape(B, S)
        if cache is not None and cache.state is not None:
            s = cache.state  # (B, H)
        else:
            s = torch.tanh(self.init_state(memory[:, 0, H:]))  # (B, H): backward_1
        keys = self.attn_key(memory)  # (B, S, A), computed once per call
        y = self.drop(self.tgt_emb(tgt))  # (B, T, E)
        fill = torch.finfo(keys.dtype).min
        states, contexts, weights = [], [], []
        for t in range(T):  # the recurrence: one target position after another
            e = self.attn_score(torch.tanh(self.attn_query(s)[:, None] + keys))[..., 0]  # (B, S)
            alpha = e.masked_fill(~keep, fill).softmax(-1)  # (B, S)
            ctx = torch.bmm(alpha[:, None], memory)[:, 0]  # (B, 2H)
            s = self.cell(torch.cat([y[:, t], ctx], dim=-1), s)  # (B, H)
            states.append(s)
            contexts.append(ctx)
            weights.append(alpha)
        if cache is not None:
            cache.state, cache.seq_len = s, cache.seq_len + T
        h = torch.cat([torch.stack(states, 1), torch.stack(contexts, 1), y], dim=-1)  # (B, T, 3H+E)
        out = self.drop(torch.tanh(self.out(h)))  # (B, T, H)
        w = {"self": [], "cross": [torch.stack(weights, 1)[:, None]]} if return_weights else None
        logits = self.lm_head(out[:, -1:] if last_only else out)  # (B, T, V) or (B, 1, V)
        return ModelOutput(logits, weights=w, hidden=out)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, *, src_mask=None, targets=None,
                return_weights: bool = False) -> ModelOutput:
        """Teacher forcing: logits (B, T, V) for the next token after each of tgt_in (B, T);
        the loss when ``targets`` (B, T) is given (-100 ignored)."""
        src_mask = self.source_mask(src, src_mask)  # (B, 1, 1, S)
        out = self.decode(tgt_in, self.encode(src, src_mask), src_mask=src_mask,
                          return_weights=return_weights)
        if targets is not None:
            out.loss = cross_entropy(out.logits, targets)
        if return_weights:
            out.weights = {"encoder": [], **out.weights}  # no attention in the encoder
        return out
