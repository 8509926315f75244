"""Turning a model's next-token distribution into text: greedy, sampling, beam search.

See chapters 6 (translation) and 10 (GPT-2 generation).

Works on any model of the book that follows one of two protocols:
  decoder-only:     model(idx, cache=cache).logits -> (B, T, V)
  encoder-decoder:  model.source_mask(src, src_mask) -> bool (B, 1, 1, S) or None
                    model.encode(src, src_mask) -> memory (B, S, C)
                    model.decode(tgt, memory, src_mask, cache=cache).logits -> (B, T, V)
(a model returning a plain logits tensor works too). The source mask is built once, by the
model's own ``source_mask``, and handed to both encode and decode, so a padded source is
decoded exactly as ``forward`` reads it, with or without an explicit ``src_mask``.
A model that offers ``make_cache()`` is fed one new token per step and keeps its keys and
values in the cache; a model without it (or ``use_cache=False``) recomputes the whole prefix.
"""
from __future__ import annotations

import torch

__all__ = ["greedy", "sample", "beam_search", "filter_logits"]


class _Stepper:
    """Feeds a growing prefix to a model, with or without a KV cache.

    ``next_logits(tokens)`` returns the logits (B, V) of the position after ``tokens`` (B, T).
    """

    def __init__(self, model, src=None, src_mask=None, use_cache=True):
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

    def _call(self, tokens):
        if self.enc_dec:
            out = self.model.decode(tokens, self.memory, self.src_mask, cache=self.cache)
        else:
            out = self.model(tokens, cache=self.cache)
        return getattr(out, "logits", out)  # a ModelOutput, or a plain logits tensor

    def next_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            return self._call(tokens)[:, -1]  # (B, V)
        new = tokens[:, self.fed:]  # (B, T_new): the whole prompt first, then one token a step
        self.fed = tokens.shape[1]
        return self._call(new)[:, -1]  # (B, V)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search); also the memory and its mask."""
        if self.cache is not None:
            self.cache.reorder(index)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            if self.src_mask is not None:
                self.src_mask = self.src_mask.index_select(0, index)


def _check_prompt(prompt: torch.Tensor, max_new_tokens=0, src=None) -> None:
    if not isinstance(prompt, torch.Tensor):
        raise TypeError(f"prompt must be a torch.Tensor of token ids, shape (B, T), "
                        f"got {type(prompt).__name__}")
    if prompt.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"prompt must hold integer token ids (torch.int64 or torch.int32), "
                        f"got {prompt.dtype}")
    if prompt.dim() != 2:
        raise ValueError(f"prompt must have shape (B, T), got {tuple(prompt.shape)}")
    if prompt.shape[0] == 0:
        raise ValueError(f"prompt is an empty batch: shape {tuple(prompt.shape)}")
    if prompt.shape[1] == 0:
        raise ValueError("prompt must hold at least one token (a BOS token for a decoder)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if src is not None and (not isinstance(src, torch.Tensor) or src.dim() != 2
                            or src.shape[0] != prompt.shape[0]):
        got = tuple(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
        raise ValueError(f"src must have shape (B={prompt.shape[0]}, S), one source per "
                         f"prompt row, got {got}")


def _generate(model, prompt, max_new_tokens, pick, eos_id, src, src_mask, use_cache):
    _check_prompt(prompt, max_new_tokens, src)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            stepper = _Stepper(model, src, src_mask, use_cache)
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
           use_cache: bool = True) -> torch.Tensor:
    """Always take the most likely next token.

    Args:
        prompt: (B, T) token ids (for an encoder-decoder: the BOS column).
        src, src_mask: the source (B, S) and, for encoder-decoders, its padding mask (B, S) or
            (B, 1, 1, S); None builds it from the model's pad id, exactly as forward does.
    Returns:
        (B, T + n) token ids, n <= max_new_tokens (stops early once every row emitted eos_id).
    """
    return _generate(model, prompt, max_new_tokens, lambda logits: logits.argmax(-1),
                     eos_id, src, src_mask, use_cache)


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
           use_cache: bool = True) -> torch.Tensor:
    """Draw each next token from softmax(logits / temperature), optionally top-k / top-p filtered.

    Returns (B, T + n) token ids.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy for the limit 0), got {temperature}")

    def pick(logits):
        probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _generate(model, prompt, max_new_tokens, pick, eos_id, src, src_mask, use_cache)


def beam_search(model, prompt, max_new_tokens: int, beam_size: int = 4, length_penalty: float = 0.6,
                eos_id=None, src=None, src_mask=None, use_cache: bool = True) -> torch.Tensor:
    """Keep the ``beam_size`` most probable prefixes; return the best finished one per row.

    Hypotheses are ranked by log p / lp(len) with GNMT's length penalty
    lp = ((5 + len) / 6) ** length_penalty (0 disables it), len counting generated tokens.

    Returns:
        (B, T + n) token ids; rows that finished early are padded with eos_id.
    """
    _check_prompt(prompt, max_new_tokens, src)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B, T0 = prompt.shape
    K, dev = beam_size, prompt.device

    def lp(n):
        return ((5.0 + n) / 6.0) ** length_penalty

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            rows = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
            if src is not None and hasattr(model, "source_mask"):
                src_mask = model.source_mask(src, src_mask)  # (B, 1, 1, S)
            if src is not None:
                src = src.index_select(0, rows)
                src_mask = src_mask.index_select(0, rows) if src_mask is not None else None
            stepper = _Stepper(model, src, src_mask, use_cache)
            tokens = prompt.index_select(0, rows)  # (B*K, T0)
            scores = torch.full((B, K), float("-inf"), device=dev)
            scores[:, 0] = 0.0  # identical beams at the start: keep one alive
            alive = torch.ones(B, K, dtype=torch.bool, device=dev)
            finished = [[] for _ in range(B)]  # (normalised score, tokens) per row

            for step in range(1, max_new_tokens + 1):
                logp = torch.log_softmax(stepper.next_logits(tokens).float(), dim=-1)  # (B*K, V)
                V = logp.shape[-1]
                cand = (scores[:, :, None] + logp.view(B, K, V)).masked_fill(
                    ~alive[:, :, None], float("-inf")).view(B, K * V)  # (B, K*V)
                top, idx = cand.topk(2 * K, dim=-1)  # room for K that do not end now
                beam, tok = idx // V, idx % V  # (B, 2K)
                new_scores = torch.full((B, K), float("-inf"), device=dev)
                new_beam = torch.zeros(B, K, dtype=torch.long, device=dev)
                new_tok = torch.zeros(B, K, dtype=torch.long, device=dev)
                for b in range(B):
                    j = 0
                    for s, bm, t in zip(top[b].tolist(), beam[b].tolist(), tok[b].tolist()):
                        if s == float("-inf") or j == K:
                            break
                        if eos_id is not None and t == eos_id:
                            seq = torch.cat([tokens[b * K + bm], tokens.new_tensor([t])])
                            finished[b].append((s / lp(step), seq))
                            continue
                        new_scores[b, j], new_beam[b, j], new_tok[b, j] = s, bm, t
                        j += 1
                index = (torch.arange(B, device=dev)[:, None] * K + new_beam).view(-1)  # (B*K,)
                stepper.reorder(index)
                tokens = torch.cat([tokens.index_select(0, index), new_tok.view(-1, 1)], dim=1)
                scores = new_scores
                alive = scores > float("-inf")
                # stop a row once its best finished hypothesis beats every live one can reach
                best_fin = torch.tensor([max((f[0] for f in fin), default=float("-inf"))
                                         for fin in finished], device=dev)
                live_best = scores.max(dim=1).values / lp(max_new_tokens if length_penalty > 0 else step)
                if bool((best_fin >= live_best).all()) or not bool(alive.any()):
                    break

            out = []
            for b in range(B):
                cands = list(finished[b])
                for k in range(K):
                    if alive[b, k]:
                        cands.append((scores[b, k].item() / lp(tokens.shape[1] - T0),
                                      tokens[b * K + k]))
                out.append(max(cands, key=lambda c: c[0])[1])
    finally:
        model.train(was_training)
    pad = eos_id if eos_id is not None else 0
    width = max(len(t) for t in out)
    return torch.stack([torch.cat([t, t.new_full((width - len(t),), pad)]) for t in out])
