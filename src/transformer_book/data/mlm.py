"""BERT's masked-language-model corruption: the 80/10/10 rule. See chapter 9.

Devlin et al. (2019) choose 15% of the positions of each sequence as prediction targets. Of
those, 80% are replaced by [MASK], 10% by a random token and 10% are left as they were, so that
the model cannot learn that only [MASK] positions matter, and must keep a useful representation
of every token. Special tokens ([CLS], [SEP], padding) are never chosen. T5's corruption of
whole spans, its twin, is ``span_corruption.py`` beside this file (chapter 11).

Example::

    inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=100, special_ids=[0, 1, 2])
    loss = model(inputs, targets=labels).loss   # labels are -100 where nothing was chosen
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["mask_tokens"]


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def mask_tokens(input_ids: torch.Tensor, mask_id: int, vocab_size: int,
                special_ids: Iterable[int] = (), rate: float = 0.15,
                mask_frac: float = 0.8, random_frac: float = 0.1,
                attention_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for masked-language-model training.

    Each position that is neither a special token nor padding is chosen independently with
    probability ``rate``. A chosen position becomes ``mask_id`` with probability
    ``mask_frac``, a uniformly random non-special token with probability ``random_frac``,
    and is kept otherwise (1 - 0.8 - 0.1 = 10% by default).

    Args:
        input_ids: (B, T) integer token ids in [0, vocab_size).
        mask_id: the id of [MASK].
        vocab_size: the number of token ids.
        special_ids: ids that are never chosen and never drawn as random replacements
            ([CLS], [SEP], [PAD], ...; ``mask_id`` is added to them).
        rate, mask_frac, random_frac: the probabilities above (BERT: 0.15, 0.8, 0.1).
        attention_mask: optional (B, T), 1/True at real tokens; padding is never chosen.
        generator: optional torch.Generator for reproducible masks.
    Returns:
        (inputs, labels), both (B, T) long: the corrupted ids, and the original ids at chosen
        positions with -100 everywhere else (the loss's ignore index).
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool \
            or input_ids.is_complex():
        raise TypeError(f"input_ids must hold integer ids, got dtype {input_ids.dtype}")
    for name, v in (("mask_id", mask_id), ("vocab_size", vocab_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must lie in [0, {vocab_size}), got {mask_id}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(f"input_ids must lie in [0, {vocab_size}), got values in "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")
    rate = _check_rate("rate", rate)
    mask_frac = _check_rate("mask_frac", mask_frac)
    random_frac = _check_rate("random_frac", random_frac)
    if mask_frac + random_frac > 1.0 + 1e-9:
        raise ValueError(f"mask_frac + random_frac must be <= 1, got "
                         f"{mask_frac} + {random_frac}")
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Iterable):
        raise TypeError(f"special_ids must be an iterable of ints, got "
                        f"{type(special_ids).__name__}")
    specials = sorted({int(s) for s in special_ids} | {mask_id})
    if any(not 0 <= s < vocab_size for s in specials):
        raise ValueError(f"special_ids must lie in [0, {vocab_size}), got {specials}")
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[specials] = False
    candidates = torch.arange(vocab_size)[ordinary]  # ids a random replacement may take
    if random_frac > 0 and len(candidates) == 0:
        raise ValueError("every id is special: there is no token to draw as a random replacement")

    device = input_ids.device
    choosable = ordinary.to(device)[input_ids]  # (B, T) not a special token
    if attention_mask is not None:
        if getattr(attention_mask, "shape", None) != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids "
                             f"{tuple(input_ids.shape)}, got "
                             f"{tuple(getattr(attention_mask, 'shape', ()))}")
        choosable &= attention_mask.to(device).bool()

    def uniform():
        return torch.rand(input_ids.shape, generator=generator, device=device)

    chosen = choosable & (uniform() < rate)  # (B, T)
    action = uniform()  # one draw decides [MASK] / random / keep
    to_mask = chosen & (action < mask_frac)
    to_random = chosen & (action >= mask_frac) & (action < mask_frac + random_frac)

    inputs = input_ids.clone().long()
    inputs[to_mask] = mask_id
    if to_random.any():
        pick = torch.randint(len(candidates), (int(to_random.sum()),), generator=generator,
                             device=device)
        inputs[to_random] = candidates.to(device)[pick]
    labels = torch.where(chosen, input_ids.long(), torch.full_like(inputs, -100))
    return inputs, labels
