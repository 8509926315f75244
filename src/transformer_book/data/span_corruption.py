"""T5's pretraining objective: span corruption (Raffel et al. 2020, section 3.1.4). See chapter 11.

Drop about ``noise_density`` of the tokens, in spans of ``mean_span_length`` tokens on average;
the input keeps the rest with one sentinel in place of each dropped span, and the target lists
the sentinels, each followed by the span it stands for, and one last sentinel:

    tokens:  the cat sat on the mat and slept
    input:   the cat <X> the mat and <Y>
    target:  <X> sat on <Y> slept <Z>

With T5's numbers (15% noise, spans of 3 on average) the target is short, so pretraining is
cheaper per example than predicting the whole text.
"""
from __future__ import annotations

import random

import torch

__all__ = ["random_segmentation", "span_corruption", "span_corruption_batch"]


def random_segmentation(n_items: int, n_segments: int, rng: random.Random) -> list[int]:
    """Split ``n_items`` into ``n_segments`` positive lengths, uniformly at random."""
    if not 1 <= n_segments <= n_items:
        raise ValueError(f"need 1 <= n_segments <= n_items, got n_segments={n_segments}, "
                         f"n_items={n_items}")
    cuts = sorted(rng.sample(range(1, n_items), n_segments - 1))
    edges = [0] + cuts + [n_items]
    return [b - a for a, b in zip(edges, edges[1:])]


def span_corruption(tokens, sentinels, noise_density: float = 0.15,
                    mean_span_length: float = 3.0, rng: random.Random | int | None = None):
    """Corrupt one sequence of token ids (a list or a 1-D tensor) the T5 way.

    Args:
        tokens: the ids, at least 2 of them.
        sentinels: distinct ids not in ``tokens`` (T5's <extra_id_0>, <extra_id_1>, ...), at
            least as many as the number of spans plus one.
        noise_density: fraction of tokens dropped (rounded, at least 1, at most len - 1).
        mean_span_length: average span length; the number of spans is
            round(noise tokens / mean_span_length), at least 1.
        rng: a ``random.Random``, a seed, or None (a fresh unseeded generator).
    Returns:
        (inputs, targets): two lists of ids, as in the module docstring.
    """
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        tokens = tokens.tolist()
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"tokens must be a list or a 1-D tensor, got {type(tokens).__name__}")
    if len(tokens) < 2:
        raise ValueError(f"need at least 2 tokens to corrupt, got {len(tokens)}")
    if not 0 < noise_density < 1:
        raise ValueError(f"noise_density must lie in (0, 1), got {noise_density!r}")
    if not mean_span_length >= 1:
        raise ValueError(f"mean_span_length must be >= 1, got {mean_span_length!r}")
    sentinels = list(sentinels)
    if len(set(sentinels)) != len(sentinels) or set(sentinels) & set(tokens):
        raise ValueError("sentinels must be distinct ids that do not occur in tokens")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)

    n = len(tokens)
    n_noise = min(max(round(n * noise_density), 1), n - 1)
    n_spans = min(max(round(n_noise / mean_span_length), 1), n - n_noise)
    if len(sentinels) < n_spans + 1:
        raise ValueError(f"need {n_spans + 1} sentinels for {n_spans} spans, "
                         f"got {len(sentinels)}")
    noise = random_segmentation(n_noise, n_spans, rng)
    keep = random_segmentation(n - n_noise, n_spans, rng)
    inputs, targets, i = [], [], 0
    for k, (kept, dropped) in enumerate(zip(keep, noise)):  # kept text first, then a span
        inputs += tokens[i:i + kept] + [sentinels[k]]
        i += kept
        targets += [sentinels[k]] + tokens[i:i + dropped]
        i += dropped
    return inputs, targets + [sentinels[n_spans]]


def span_corruption_batch(sequences, sentinels, *, bos_id: int, eos_id: int, pad_id: int,
                          noise_density: float = 0.15, mean_span_length: float = 3.0,
                          rng: random.Random | int | None = None) -> dict:
    """Corrupt each sequence with ``span_corruption`` and pad the results into one batch.

    Args:
        sequences: a list of token-id lists (one text each, at least 2 ids).
        sentinels, noise_density, mean_span_length: as for ``span_corruption``.
        bos_id, eos_id, pad_id: the decoder's start token, the end token the target closes
            with, and the padding id of the inputs.
        rng: a ``random.Random`` (drawn from in order, row after row), a seed, or None.
    Returns:
        {"src": (B, S), "tgt_in": (B, T), "targets": (B, T)}, named as the encoder-decoders'
        forward names them: src the corrupted inputs padded with ``pad_id``; targets the
        sentinels and spans, then ``eos_id``, padded with -100 (no loss); tgt_in the same
        shifted right behind ``bos_id``, padded with ``pad_id``.
    """
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise ValueError("sequences must be a non-empty list of token-id lists")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    rows = [span_corruption(seq, sentinels, noise_density, mean_span_length, rng)
            for seq in sequences]
    B = len(rows)
    S = max(len(i) for i, _ in rows)
    T = max(len(t) for _, t in rows) + 1  # + eos (targets) or + bos (decoder inputs)
    src = torch.full((B, S), pad_id)
    tgt_in = torch.full((B, T), pad_id)
    targets = torch.full((B, T), -100)
    for b, (i, t) in enumerate(rows):
        src[b, :len(i)] = torch.tensor(i)
        tgt_in[b, :len(t) + 1] = torch.tensor([bos_id] + t)
        targets[b, :len(t) + 1] = torch.tensor(t + [eos_id])
    return {"src": src, "tgt_in": tgt_in, "targets": targets}
