"""The decoding fast path (attention.decode_linear and the stacked q/k/v's transposed copy)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from transformer_book.attention import DECODE_ROWS, KVCache, MultiHeadAttention, decode_linear
from transformer_book.decoding import greedy
from transformer_book.models import build


def test_decode_linear_matches_linear_and_follows_weight_updates():
    torch.manual_seed(0)
    lin = nn.Linear(32, 96)
    for rows in (1, 2, 3, 4, DECODE_ROWS, DECODE_ROWS + 1):
        x = torch.randn(1, rows, 32)
        with torch.no_grad():
            torch.testing.assert_close(decode_linear(lin, x), lin(x), rtol=1e-6, atol=1e-6)
    x, row = torch.randn(1, 4, 32), torch.randn(1, 1, 32)
    with torch.no_grad():
        decode_linear(lin, x)
        assert "_decode_cache" in lin.__dict__  # the transposed copy was built and kept
        lin.weight.add_(1.0)  # an in-place update (as an optimizer step): the copy is rebuilt
        torch.testing.assert_close(decode_linear(lin, x), lin(x), rtol=1e-6, atol=1e-6)
        # one row: the two halves are views of the weight, so they follow it with no copy
        torch.testing.assert_close(decode_linear(lin, row), lin(row), rtol=1e-6, atol=1e-6)


def test_one_row_product_matches_linear_with_and_without_bias():
    torch.manual_seed(0)
    for lin in (nn.Linear(48, 96), nn.Linear(96, 48, bias=False), nn.Linear(32, 33)):
        x = torch.randn(1, 1, lin.in_features)
        with torch.no_grad():  # 33 outputs do not split in halves: the transposed copy
            torch.testing.assert_close(decode_linear(lin, x), lin(x), rtol=1e-5, atol=1e-6)
        halves = lin.out_features % 2 == 0
        assert ("_decode_cache" in lin.__dict__) != halves  # the halves need no copy


def test_decode_linear_leaves_training_and_narrowing_products_alone():
    torch.manual_seed(0)
    lin = nn.Linear(32, 96)
    x = torch.randn(1, 1, 32)
    y = decode_linear(lin, x)  # gradients wanted: the ordinary product, the same to the bit
    assert y.requires_grad and torch.equal(y, lin(x)) and "_decode_cache" not in lin.__dict__
    down = nn.Linear(96, 32)  # narrowing: read faster as it lies, so no copy
    with torch.no_grad():
        x96 = torch.randn(1, 4, 96)
        assert torch.equal(decode_linear(down, x96), down(x96))
    assert "_decode_cache" not in down.__dict__


def test_attention_decoding_step_matches_full_forward():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=True).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        full = mha(x)
        cache = KVCache()
        steps = [mha(x[:, :3], cache=cache)] + [mha(x[:, t:t + 1], cache=cache)
                                                for t in range(3, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_one_token_step_with_a_relative_bias_matches_full_forward():
    # the one-token step (MultiHeadAttention._one_token_step) with T5's additive bias
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=True, bias=False, scale=1.0).eval()
    x, bias = torch.randn(2, 6, 32), torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        full = mha(x, bias=bias)
        cache = KVCache()
        steps = [mha(x[:, :2], cache=cache, bias=bias[:, :, :2, :2])]
        steps += [mha(x[:, t:t + 1], cache=cache, bias=bias[:, :, t:t + 1, :t + 1])
                  for t in range(2, 6)]
        with pytest.raises(ValueError, match="cache.reset"):
            mha(x[:1, :1], cache=cache)  # a batch of 1 against a cache of 2
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_one_token_steps_with_padding_masks_match_full_forward():
    # self-attention with a padding mask over the keys, and cross-attention over a padded
    # memory: one-token steps (the short way) against one forward over the whole sequence
    torch.manual_seed(0)
    self_attn = MultiHeadAttention(32, 4, causal=True).eval()
    cross = MultiHeadAttention(32, 4).eval()
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 4, 32)
    keys = torch.tensor([[True, False, True, True, True], [True] * 5])[:, None, None]
    src = torch.tensor([[True, True, True, False], [True] * 4])[:, None, None]  # (B, 1, 1, S)
    with torch.no_grad():
        full_self, full_cross = self_attn(x, mask=keys), cross(x, kv=memory, mask=src)
        c_self, c_cross = KVCache(), KVCache()
        steps = [(self_attn(x[:, t:t + 1], mask=keys[..., :t + 1], cache=c_self),
                  cross(x[:, t:t + 1], kv=memory, mask=src, cache=c_cross)) for t in range(5)]
        with pytest.raises(ValueError, match="cache.reset"):
            cross(x[:, :1], kv=memory[:, :3], cache=c_cross)  # another source length
    torch.testing.assert_close(torch.cat([s for s, _ in steps], 1), full_self,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([c for _, c in steps], 1), full_cross,
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------- the fast path is for cached decoding steps only

def _reference_forward(model, *args):
    """The same forward with gradients enabled: every product is the plain ``nn.Linear``
    (decode_linear and the stacked q/k/v never run while gradients are wanted). T5's relative
    bias is frozen for it: a mask that needs gradients sends torch's fused attention to another
    kernel, which would differ for a reason that is not ours."""
    frozen = [p for n, p in model.named_parameters() if "rel_bias" in n]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with torch.enable_grad():
            out = model(*args)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    assert out.logits.requires_grad
    return out.logits.detach()


def _no_decode_copies(model) -> bool:
    return not any("_decode_cache" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt1-tiny", "bert-tiny-mlm"])
def test_eval_forward_of_a_small_batch_is_the_plain_linear_path(name):
    """A small evaluation forward (2 x 5 = 10 rows, under DECODE_ROWS) in no_grad: bitwise the
    forward with gradients enabled, and no transposed copy built (the bug: any forward of at
    most 16 rows took the decoding kernels and changed the last digits)."""
    torch.manual_seed(0)
    model = build(name, vocab_size=97).eval()
    idx = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    assert idx.numel() <= DECODE_ROWS
    with torch.no_grad():
        fast = model(idx).logits
    assert _no_decode_copies(model)
    assert torch.equal(fast, _reference_forward(model, idx))


@pytest.mark.parametrize("name", ["transformer-tiny", "t5-tiny", "t5-v1_1-tiny"])
def test_eval_forward_of_an_encoder_decoder_is_the_plain_linear_path(name):
    torch.manual_seed(0)
    model = build(name, vocab_size=97).eval()
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(3, 97, (2, 6), generator=g), torch.randint(3, 97, (2, 4), generator=g)
    with torch.no_grad():
        fast = model(src, tgt).logits
    assert _no_decode_copies(model)
    assert torch.equal(fast, _reference_forward(model, src, tgt))


def test_attention_eval_forward_equals_plain_products_bitwise():
    """MultiHeadAttention in eval: q, k, v, out are F.linear of each projection, to the bit."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=True).eval()
    x = torch.randn(1, 3, 32)  # 3 rows: the decoding kernels would have served it
    with torch.no_grad():
        got = mha(x)
        q, k, v = (mha._split(F.linear(x, p.weight, p.bias))
                   for p in (mha.q_proj, mha.k_proj, mha.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (1, H, 3, D)
        ref = F.linear(o.transpose(1, 2).reshape(1, 3, 32), mha.out_proj.weight,
                       mha.out_proj.bias)
    assert torch.equal(got, ref) and _no_decode_copies(mha)


@pytest.mark.parametrize("name", ["gpt2-tiny", "t5-tiny"])
def test_cached_generation_uses_the_fast_path_and_equals_recomputation(name):
    torch.manual_seed(0)
    model = build(name, vocab_size=97).eval()
    with torch.no_grad():  # wider weights: greedy choices that are not near-ties
        for p in model.parameters():
            p.mul_(10.0 if p.dim() > 1 else 1.0)
    g = torch.Generator().manual_seed(2)
    if name.startswith("gpt"):
        prompt, src = torch.randint(0, 97, (2, 3), generator=g), None
    else:
        prompt, src = torch.ones(2, 1, dtype=torch.long), torch.randint(3, 97, (2, 9), generator=g)
    cached = greedy(model, prompt, 20, src=src)
    assert not _no_decode_copies(model)  # the decoding steps did take the fast path
    recomputed = greedy(model, prompt, 20, src=src, use_cache=False)
    assert cached.shape == (2, prompt.shape[1] + 20) and torch.equal(cached, recomputed)
