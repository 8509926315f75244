"""The generated tasks of chapters 3-5 (transformer_book.data.synthetic)."""
import math

import pytest
import torch

from transformer_book.data.synthetic import (progression_batch, reverse_batch, two_relation_batch,
                                             xor_batch)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reverse_batch_distinct_and_reversed():
    x, y = reverse_batch(50, 8, 16, generator=gen())
    assert x.shape == y.shape == (50, 8)
    assert torch.equal(y, x.flip(1))
    assert all(len(set(row.tolist())) == 8 for row in x)
    assert int(x.min()) >= 0 and int(x.max()) < 16
    with pytest.raises(ValueError, match="length"):
        reverse_batch(2, 17, 16)


def test_reverse_batch_is_reproducible():
    assert torch.equal(reverse_batch(4, 6, 10, generator=gen(3))[0],
                       reverse_batch(4, 6, 10, generator=gen(3))[0])


def test_xor_batch_labels():
    x, y = xor_batch(200, 5, generator=gen())
    assert x.shape == (200, 5, 2) and y.shape == (200, 5)
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(y, (x[..., 0] * x[..., 1] < 0).long())
    assert 0.4 < y.float().mean() < 0.6


def test_progression_batch_is_an_arithmetic_progression():
    seq = progression_batch(100, 7, vocab_size=16, max_step=4, generator=gen())
    diff = (seq[:, 1:] - seq[:, :-1]) % 16
    assert torch.all(diff == diff[:, :1])  # one step per row
    assert set(diff[:, 0].tolist()) <= {1, 2, 3, 4}
    with pytest.raises(ValueError):
        progression_batch(1, 5, vocab_size=4, max_step=4)


def test_progression_entropy_floor_matches_the_docstring():
    # the only uncertainty is the step s: log(max_step) nats spread over length-1 predictions
    seq = progression_batch(20000, 6, vocab_size=16, max_step=4, generator=gen())
    step = (seq[:, 1] - seq[:, 0]) % 16
    p = torch.bincount(step, minlength=5)[1:].float() / len(step)
    entropy = float(-(p * p.log()).sum())
    assert abs(entropy / 5 - math.log(4) / 5) < 0.01


def test_two_relation_batch_targets():
    x, y = two_relation_batch(10, 6, 12, generator=gen())
    assert y.shape == (10, 6, 2)
    assert torch.all(y[:, 0, 0] == -100)
    assert torch.equal(y[:, 1:, 0], x[:, :-1])
    assert torch.equal(y[:, :, 1], x.flip(1))
