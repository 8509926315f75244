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

__all__ = ["random_segmentation", "span_corruption"]


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
