"""Turning a model's next-token distribution into text: greedy, sampling, beam search.

See chapters 6 (translation) and 10 (GPT-2 generation).

Works on any model of the book that follows one of two protocols:
  decoder-only:     model(ids, cache=cache).logits -> (B, T, V)
  encoder-decoder:  model.source_mask(src, src_mask) -> bool (B, 1, 1, S) or None
                    model.encode(src, src_mask) -> memory (B, S, C)
                    model.decode(tgt, memory, src_mask=..., cache=cache).logits -> (B, T, V)
(a model returning a plain logits tensor works too). The source mask is built once, by the
model's own ``source_mask``, and handed to both encode and decode, so a padded source is
decoded exactly as ``forward`` reads it, with or without an explicit ``src_mask``.
A model that offers ``make_cache()`` is fed one new token per step and keeps its keys and
values in the cache; a model without it (or ``use_cache=False``) recomputes the whole prefix.
A model whose forward (or decode) takes ``last_only`` computes the logits of the last
position only: a step needs nothing else.

Prompts of different lengths go in one batch left-padded, with ``attention_mask`` (B, T0),
1/True at real tokens (decoder-only models that take ``position_ids``, such as GPT): each
row's real tokens get positions 0, 1, ... as if the row were alone, and padding is never
attended to. A prompt plus ``max_new_tokens`` longer than the model's ``config.max_len`` is
refused before decoding starts.

The cached steps of one generation run inside ``fast_decode.enabled(model)`` (a shorter
one-token step; the modules compute the same thing without it).
"""
from __future__ import annotations

import contextlib
import inspect

import torch

from . import fast_decode
from .cache import Cache
from .masks import as_padding_mask
from .models.output import check_token_ids

__all__ = ["greedy", "sample", "beam_search", "filter_logits"]


def _takes(fn, name: str) -> bool:
    """Whether the callable ``fn`` accepts a keyword argument ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _Stepper:
    """Feeds a growing prefix to a model, with or without a KV cache.

    ``next_logits(tokens)`` returns the logits (B, V) of the position after ``tokens`` (B, T).
    ``mask`` (B, T0) bool, True at real prompt tokens (left padding), grows by one real
    column per generated token.
    """

    def __init__(self, model, src=None, src_mask=None, use_cache=True, mask=None):
        self.model = model
        self.enc_dec = hasattr(model, "encode") and hasattr(model, "decode")
        if src is not None and not self.enc_dec:
            raise ValueError("src was given but the model has no encode/decode methods")
        if self.enc_dec and src is None:
            raise ValueError("an encoder-decoder model needs src (B, S)")
        if self.enc_dec and hasattr(model, "source_mask"):
            src_mask = model.source_mask(src, src_mask)  # (B, 1, 1, S): the one forward uses
        self.src_mask = src_mask
        self.memory = model.encode(src, src_mask) if self.enc_dec else None
        self.cache = model.make_cache() if use_cache and hasattr(model, "make_cache") else None
        self.fed = 0  # how many prefix tokens the cache already holds
        step = model.decode if self.enc_dec else model.forward
        self.last_only = _takes(step, "last_only")
        self.mask = mask

    def fast(self):
        """The context for this generation's steps: ``fast_decode.enabled`` when the model
        keeps a KV cache (the one-token step), nothing when it recomputes the prefix."""
        if isinstance(self.cache, Cache):
            return fast_decode.enabled(self.model)
        return contextlib.nullcontext()

    def _call(self, tokens, start: int):
        kw = {"cache": self.cache}
        if self.last_only:
            kw["last_only"] = True
        if self.enc_dec:
            out = self.model.decode(tokens, self.memory, src_mask=self.src_mask, **kw)
        else:
            if self.mask is not None:
                T_k = start + tokens.shape[1]
                kw["attention_mask"] = self.mask[:, :T_k]  # (B, T_k)
                positions = (self.mask[:, :T_k].long().cumsum(1) - 1).clamp(min=0)
                kw["position_ids"] = positions[:, start:]  # (B, T): real tokens from 0
            out = self.model(tokens, **kw)
        return getattr(out, "logits", out)  # a ModelOutput, or a plain logits tensor

    def next_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.mask is not None and self.mask.shape[1] < tokens.shape[1]:
            grow = tokens.shape[1] - self.mask.shape[1]  # generated tokens are real
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.mask), grow)], 1)
        if self.cache is None:
            return self._call(tokens, 0)[:, -1]  # (B, V)
        new = tokens[:, self.fed:]  # (B, T_new): the whole prompt first, then one token a step
        start, self.fed = self.fed, tokens.shape[1]
        return self._call(new, start)[:, -1]  # (B, V)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search); also the memory and its mask."""
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            if self.src_mask is not None:
                self.src_mask = self.src_mask.index_select(0, index)
        if isinstance(self.cache, Cache):  # its cross-attention follows the new memory
            self.cache.reorder(index, self.memory)
        elif self.cache is not None:
            self.cache.reorder(index)


def _prompt_mask(model, prompt: torch.Tensor, attention_mask) -> torch.Tensor | None:
    """The prompt's mask as (B, T0) bool, checked to be left padding (every row's real tokens
    at its end, at least one), for a decoder-only model that takes position ids."""
    if attention_mask is None:
        return None
    if hasattr(model, "encode") and hasattr(model, "decode"):
        raise ValueError("attention_mask is for decoder-only prompts; an encoder-decoder "
                         "reads its source's padding from src_mask")
    if not _takes(model.forward, "position_ids"):
        raise ValueError(f"{type(model).__name__} takes no position_ids, so it cannot read a "
                         "left-padded prompt as if each row were alone")
    B, T = prompt.shape
    keep = as_padding_mask(attention_mask, B, T)[:, 0, 0]  # (B, T)
    n_real = keep.long().sum(1)  # (B,)
    left_padded = keep == (torch.arange(T, device=keep.device) >= T - n_real[:, None])
    if not bool((left_padded.all(1) & (n_real > 0)).all()):
        raise ValueError("attention_mask must left-pad the prompts: in every row, padding "
                         "(0/False) first, then at least one real token (1/True) up to the end")
    return keep


def _check_room(model, prompt: torch.Tensor, max_new_tokens: int) -> None:
    """Refuse a generation that would run past the model's ``config.max_len`` positions."""
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    if max_len is not None and prompt.shape[1] + max_new_tokens > max_len:
        raise ValueError(f"a prompt of {prompt.shape[1]} tokens plus max_new_tokens="
                         f"{max_new_tokens} needs {prompt.shape[1] + max_new_tokens} "
                         f"positions, more than the model's max_len={max_len}: shorten the "
                         "prompt or ask for fewer tokens")


def _check_prompt(prompt: torch.Tensor, max_new_tokens=0, src=None) -> None:
    # dtype, shape and emptiness here; the model checks the ids' range and max_len
    check_token_ids(prompt, None, name="prompt")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if src is not None and (not isinstance(src, torch.Tensor) or src.dim() != 2
                            or src.shape[0] != prompt.shape[0]):
        got = tuple(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
        raise ValueError(f"src must have shape (B={prompt.shape[0]}, S), one source per "
                         f"prompt row, got {got}")


def _generate(model, prompt, max_new_tokens, pick, eos_id, src, src_mask, use_cache,
              attention_mask):
    _check_prompt(prompt, max_new_tokens, src)
    _check_room(model, prompt, max_new_tokens)
    mask = _prompt_mask(model, prompt, attention_mask)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            stepper = _Stepper(model, src, src_mask, use_cache, mask)  # encodes the source
        with torch.no_grad(), stepper.fast():
            tokens = prompt
            done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
            for _ in range(max_new_tokens):
                nxt = pick(stepper.next_logits(tokens).float())  # (B,)
                if eos_id is not None:  # finished rows keep emitting EOS
                    nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                    done |= nxt == eos_id
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (B, T + 1)
                if eos_id is not None and bool(done.all()):
                    break
    finally:
        model.train(was_training)
    return tokens


def greedy(model, prompt, max_new_tokens: int, eos_id=None, src=None, src_mask=None,
           use_cache: bool = True, attention_mask=None) -> torch.Tensor:
    """Always take the most likely next token.

    Args:
        prompt: (B, T) token ids (for an encoder-decoder: the BOS column).
        src, src_mask: the source (B, S) and, for encoder-decoders, its padding mask (B, S) or
            (B, 1, 1, S); None builds it from the model's pad id, exactly as forward does.
        attention_mask: (B, T) 1/True at real prompt tokens, for prompts of different
            lengths left-padded into one batch (decoder-only models).
    Returns:
        (B, T + n) token ids, n <= max_new_tokens (stops early once every row emitted eos_id).
    """
    return _generate(model, prompt, max_new_tokens, lambda logits: logits.argmax(-1),
                     eos_id, src, src_mask, use_cache, attention_mask)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None):
    """Set to -inf every logit outside the top-k, and outside the smallest set whose
    probability reaches top_p (nucleus). logits: (B, V)."""
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(-1) - probs  # probability mass strictly above each token
        drop_sorted = before >= top_p  # the top token always survives
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(model, prompt, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
           eos_id=None, src=None, src_mask=None, generator: torch.Generator | None = None,
           use_cache: bool = True, attention_mask=None) -> torch.Tensor:
    """Draw each next token from softmax(logits / temperature), optionally top-k / top-p filtered.

    Arguments as :func:`greedy`. Returns (B, T + n) token ids.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy for the limit 0), got {temperature}")

    def pick(logits):
        probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _generate(model, prompt, max_new_tokens, pick, eos_id, src, src_mask, use_cache,
                     attention_mask)


def _length_penalty(n, alpha: float):
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha for n generated tokens (alpha = 0: no penalty)."""
    return ((5.0 + n) / 6.0) ** alpha


def _pad_to(tokens: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """Right-pad the last dimension of ``tokens`` (..., T) to ``width`` with ``pad``."""
    extra = width - tokens.shape[-1]
    return torch.cat([tokens, tokens.new_full((*tokens.shape[:-1], extra), pad)], dim=-1)


def _keep_best(scores, tokens, lengths, k: int):
    """The ``k`` best of a pool of hypotheses per row.

    scores (B, N), tokens (B, N, L), lengths (B, N) -> the same with N = k, best first.
    """
    scores, idx = scores.topk(k, dim=1)  # (B, k)
    tokens = tokens.gather(1, idx[:, :, None].expand(-1, -1, tokens.shape[-1]))  # (B, k, L)
    return scores, tokens, lengths.gather(1, idx)


def beam_search(model, prompt, max_new_tokens: int, beam_size: int = 4, length_penalty: float = 0.6,
                eos_id=None, src=None, src_mask=None, use_cache: bool = True,
                attention_mask=None) -> torch.Tensor:
    """Keep the ``beam_size`` most probable prefixes; return the best hypothesis per row.

    A hypothesis is ranked by its log-probability divided by GNMT's length penalty
    lp(n) = ((5 + n) / 6) ** length_penalty, n counting the generated tokens (EOS included);
    length_penalty = 0 ranks by log-probability alone, > 0 favours longer outputs. A row stops
    once its best finished hypothesis beats anything its live beams could still reach.

    Args:
        prompt: (B, T0) token ids (for an encoder-decoder: the BOS column).
        src, src_mask: the source (B, S) and its padding mask, as for :func:`greedy`.
        attention_mask: left-padded prompts' mask (B, T0), as for :func:`greedy`.
    Returns:
        (B, T0 + n) token ids, n <= max_new_tokens; a row shorter than the longest is padded
        with eos_id (0 without one).
    """
    _check_prompt(prompt, max_new_tokens, src)
    _check_room(model, prompt, max_new_tokens)
    mask = _prompt_mask(model, prompt, attention_mask)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B, T0 = prompt.shape
    K, dev = beam_size, prompt.device
    L = T0 + max_new_tokens  # the longest hypothesis
    pad = eos_id if eos_id is not None else 0
    NEG = float("-inf")

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # every row of the batch becomes K rows, one per beam: (B*K, ...)
            rows = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
            if src is not None and hasattr(model, "source_mask"):
                src_mask = model.source_mask(src, src_mask)  # (B, 1, 1, S), as forward builds it
            if src is not None:
                src = src.index_select(0, rows)  # (B*K, S)
                src_mask = src_mask.index_select(0, rows) if src_mask is not None else None
            mask = mask.index_select(0, rows) if mask is not None else None  # (B*K, T)
            stepper = _Stepper(model, src, src_mask, use_cache, mask)  # encodes the source
        with torch.no_grad(), stepper.fast():
            tokens = prompt.index_select(0, rows)  # (B*K, T)
            live = torch.full((B, K), NEG, device=dev)  # summed log-probabilities
            live[:, 0] = 0.0  # the K beams start identical: keep one, or all K would tie
            # finished hypotheses, the K best per row, scored after the length penalty
            fin_score = torch.full((B, K), NEG, device=dev)
            fin_tokens = torch.full((B, K, L), pad, dtype=torch.long, device=dev)
            fin_len = torch.full((B, K), T0, dtype=torch.long, device=dev)
            base = (torch.arange(B, device=dev) * K)[:, None]  # (B, 1): first beam of each row

            for step in range(1, max_new_tokens + 1):
                logp = torch.log_softmax(stepper.next_logits(tokens).float(), dim=-1)  # (B*K, V)
                V = logp.shape[-1]
                cand = (live[:, :, None] + logp.view(B, K, V)).view(B, K * V)  # (B, K*V)
                # 2K candidates: at most K of them end in EOS (one token per beam), so at
                # least K can go on
                top, idx = cand.topk(min(2 * K, K * V), dim=1)  # (B, 2K)
                beam, tok = idx // V, idx % V  # (B, 2K)
                ends = (tok == eos_id) if eos_id is not None else torch.zeros_like(tok, dtype=torch.bool)
                ends &= top > NEG
                goes_on = ~ends
                # an EOS candidate counts if it ranks above the K-th continuing one
                ahead = goes_on.long().cumsum(1) - goes_on.long()  # (B, 2K) continuing before it
                ends &= ahead < K

                # finished: prefix + EOS, scored with the length penalty, merged into the pool
                prev = tokens.view(B, K, -1).gather(
                    1, beam[:, :, None].expand(-1, -1, tokens.shape[1]))  # (B, 2K, T)
                done_seq = _pad_to(torch.cat([prev, tok[:, :, None]], dim=2), L, pad)  # (B, 2K, L)
                done_score = (top / _length_penalty(step, length_penalty)).masked_fill(~ends, NEG)
                fin_score, fin_tokens, fin_len = _keep_best(
                    torch.cat([fin_score, done_score], 1), torch.cat([fin_tokens, done_seq], 1),
                    torch.cat([fin_len, torch.full_like(tok, tokens.shape[1] + 1)], 1), K)

                # live: the K best continuing candidates, in score order (stable sort on `ends`)
                pick = torch.sort(ends.to(torch.uint8), dim=1, stable=True).indices[:, :K]  # (B, K)
                live = top.gather(1, pick).masked_fill(ends.gather(1, pick), NEG)  # (B, K)
                index = (base + beam.gather(1, pick)).view(-1)  # (B*K,) rows to continue
                stepper.reorder(index)
                tokens = torch.cat([tokens.index_select(0, index),
                                    tok.gather(1, pick).view(-1, 1)], dim=1)  # (B*K, T + 1)

                # a live beam's score only falls; divided by lp(n) for some n still to come,
                # the best it can reach is at n = step or n = max_new_tokens (lp is monotone)
                reach = torch.maximum(live / _length_penalty(step, length_penalty),
                                      live / _length_penalty(max_new_tokens, length_penalty))
                if bool((fin_score[:, 0] >= reach.max(dim=1).values).all()):  # one host sync
                    break

            # the answer: the best of the finished and the live hypotheses of each row
            n_live = tokens.shape[1]
            live_norm = live / _length_penalty(n_live - T0, length_penalty)
            scores, seqs, lengths = _keep_best(
                torch.cat([fin_score, live_norm], 1),
                torch.cat([fin_tokens, _pad_to(tokens.view(B, K, -1), L, pad)], 1),
                torch.cat([fin_len, torch.full_like(fin_len, n_live)], 1), 1)
    finally:
        model.train(was_training)
    return seqs[:, 0, :int(lengths.max())]  # (B, T0 + n)
