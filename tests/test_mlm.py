"""BERT's 80/10/10 masking (transformer_book.data.mlm.mask_tokens)."""
import pytest
import torch

from transformer_book.data.mlm import mask_tokens

V, MASK, CLS, SEP, PAD = 50, 3, 1, 2, 0
SPECIALS = (PAD, CLS, SEP)


def batch(B=400, T=128, seed=0):
    """[CLS] ordinary ids [SEP] then padding of random length; and the padding mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    real = torch.arange(T)[None] < lengths[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[~real] = PAD
    return ids, real


def test_rates_hold_over_a_large_batch():
    ids, real = batch()
    inputs, labels = mask_tokens(ids, MASK, V, SPECIALS, attention_mask=real,
                                 generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    ordinary = real & (ids != CLS) & (ids != SEP)
    n = ordinary.sum().item()
    k = chosen.sum().item()
    assert n > 30000
    assert abs(k / n - 0.15) < 0.01  # binomial sd ~ 0.002
    masked = (inputs[chosen] == MASK).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.02
    # a random replacement draws the original id 1 time in 46: "kept" is 10% plus a bit
    assert abs(kept - (0.1 + 0.1 / (V - 4))) < 0.02
    assert abs(1 - masked - kept - 0.1 * (1 - 1 / (V - 4))) < 0.02


def test_specials_and_padding_are_never_masked_and_labels_are_minus_100_elsewhere():
    ids, real = batch(B=200)
    inputs, labels = mask_tokens(ids, MASK, V, SPECIALS, rate=0.9, attention_mask=real,
                                 generator=torch.Generator().manual_seed(2))
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    assert torch.equal(inputs[special], ids[special])
    assert (labels[special] == -100).all()
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])  # the original id is the target
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changed
    # random replacements are ordinary tokens, never a special one nor [MASK] smuggled in
    changed = chosen & (inputs != ids) & (inputs != MASK)
    assert changed.any()
    assert not torch.isin(inputs[changed], torch.tensor(SPECIALS + (MASK,))).any()


def test_padding_excluded_by_attention_mask_even_if_not_listed_special():
    ids, real = batch(B=50)
    _, labels = mask_tokens(ids, MASK, V, (CLS, SEP), rate=1.0, attention_mask=real)
    assert (labels[~real] == -100).all()
    assert (labels[real & (ids != CLS) & (ids != SEP)] != -100).all()


def test_deterministic_with_a_generator_and_zero_rate_masks_nothing():
    ids, _ = batch(B=8)
    a = mask_tokens(ids, MASK, V, SPECIALS, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, MASK, V, SPECIALS, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    inputs, labels = mask_tokens(ids, MASK, V, SPECIALS, rate=0.0)
    assert torch.equal(inputs, ids) and (labels == -100).all()


@pytest.mark.parametrize("kwargs, error", [
    (dict(input_ids=[[1, 2]]), TypeError),
    (dict(input_ids=torch.ones(4, dtype=torch.long)), ValueError),
    (dict(input_ids=torch.ones(2, 4)), TypeError),
    (dict(input_ids=torch.full((2, 4), V)), ValueError),
    (dict(mask_id=V), ValueError),
    (dict(mask_id=1.0), TypeError),
    (dict(rate=1.5), ValueError),
    (dict(rate="0.15"), TypeError),
    (dict(mask_frac=0.8, random_frac=0.3), ValueError),
    (dict(special_ids=[V + 1]), ValueError),
    (dict(special_ids=5), TypeError),
    (dict(attention_mask=torch.ones(3, 4)), ValueError),
])
def test_bad_input_raises(kwargs, error):
    args = dict(input_ids=torch.full((2, 4), 7), mask_id=MASK, vocab_size=V,
                special_ids=SPECIALS)
    args.update(kwargs)
    with pytest.raises(error):
        mask_tokens(**args)
