"""span_corruption_batch: the rows are span_corruption's outputs, padded as the models expect."""
import random

import pytest
import torch

from transformer_book.data.span_corruption import span_corruption, span_corruption_batch
from transformer_book.models import T5, T5Config

SENTINELS = list(range(100, 116))
BOS, EOS, PAD = 1, 2, 0


def test_rows_match_span_corruption_and_padding():
    seqs = [list(range(3, 3 + n)) for n in (5, 20, 11)]
    batch = span_corruption_batch(seqs, SENTINELS, bos_id=BOS, eos_id=EOS, pad_id=PAD,
                                  noise_density=0.3, rng=7)
    rng = random.Random(7)  # the same draws, row after row
    expected = [span_corruption(s, SENTINELS, 0.3, 3.0, rng) for s in seqs]
    assert batch["src"].shape == (3, max(len(i) for i, _ in expected))
    T = max(len(t) for _, t in expected) + 1
    assert batch["tgt_in"].shape == batch["targets"].shape == (3, T)
    for b, (i, t) in enumerate(expected):
        assert batch["src"][b, :len(i)].tolist() == i
        assert (batch["src"][b, len(i):] == PAD).all()
        assert batch["targets"][b, :len(t) + 1].tolist() == t + [EOS]
        assert (batch["targets"][b, len(t) + 1:] == -100).all()
        assert batch["tgt_in"][b, :len(t) + 1].tolist() == [BOS] + t
        assert (batch["tgt_in"][b, len(t) + 1:] == PAD).all()
        # the decoder input is the target shifted right by one
        assert batch["tgt_in"][b, 1:len(t) + 1].tolist() == t


def test_batch_trains_a_t5():
    seqs = [list(range(3, 3 + n)) for n in (8, 12)]
    batch = span_corruption_batch(seqs, SENTINELS, bos_id=BOS, eos_id=EOS, pad_id=PAD, rng=0)
    model = T5(T5Config(vocab_size=120, d_model=16, n_heads=2, d_head=8, d_ff=32, n_layers=1,
                        dropout=0.0, pad_id=PAD, decoder_start_id=BOS))
    out = model(**batch)
    assert out.logits.shape == (*batch["tgt_in"].shape, 120)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("seqs", [[], "abc", None])
def test_bad_input(seqs):
    with pytest.raises((ValueError, TypeError)):
        span_corruption_batch(seqs, SENTINELS, bos_id=BOS, eos_id=EOS, pad_id=PAD)
