"""Grouped-query / multi-query attention and the online-softmax (tiled) attention, checked
against torch's own scaled_dot_product_attention and against MultiHeadAttention."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.attention import MultiHeadAttention
from transformer_book.cache import KVCache
from transformer_book.efficient_attention import (GroupedQueryAttention,
                                                  online_softmax_attention)


def _copy(gqa, mha):
    gqa.load_state_dict(mha.state_dict())
    return gqa


@pytest.mark.parametrize("causal", [False, True])
def test_as_many_kv_heads_as_query_heads_is_multi_head_attention(causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=causal).eval()
    gqa = _copy(GroupedQueryAttention(32, 4, 4, causal=causal), mha).eval()
    x, mem = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    torch.testing.assert_close(gqa(x, mask=mask)[0], mha(x, mask=mask)[0])
    if not causal:  # cross-attention too
        torch.testing.assert_close(gqa(x, mem)[0], mha(x, mem)[0])
    assert GroupedQueryAttention.from_multi_head(mha, 4).state_dict().keys() == \
        mha.state_dict().keys()
    torch.testing.assert_close(GroupedQueryAttention.from_multi_head(mha, 4)(x)[0], mha(x)[0])


@pytest.mark.parametrize("n_kv", [1, 2])
def test_grouped_heads_equal_torch_sdpa_with_enable_gqa(n_kv):
    torch.manual_seed(1)
    gqa = GroupedQueryAttention(32, 4, n_kv, causal=True).eval()
    x = torch.randn(2, 9, 32)
    q = gqa.q_proj(x).view(2, 9, 4, 8).transpose(1, 2)  # (B, H, T, D)
    k = gqa.k_proj(x).view(2, 9, n_kv, 8).transpose(1, 2)  # (B, G, T, D)
    v = gqa.v_proj(x).view(2, 9, n_kv, 8).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    ref = gqa.out_proj(ref.transpose(1, 2).reshape(2, 9, 32))
    torch.testing.assert_close(gqa(x)[0], ref, rtol=1e-5, atol=1e-6)
    # the key and value projections are n_heads / n_kv_heads times smaller
    assert gqa.k_proj.weight.shape == gqa.v_proj.weight.shape == (n_kv * 8, 32)


def test_the_cache_holds_the_kv_heads_only_and_decoding_matches():
    torch.manual_seed(2)
    gqa = GroupedQueryAttention(32, 4, 2, causal=True).eval()
    x = torch.randn(1, 6, 32)
    full = gqa(x)[0]
    cache = KVCache()
    steps = torch.cat([gqa(x[:, t:t + 1], cache=cache)[0] for t in range(6)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-6)
    assert cache.k.shape == (1, 2, 6, 8) and cache.v.shape == (1, 2, 6, 8)  # 2 heads, not 4


def test_from_multi_head_averages_each_groups_key_and_value_heads():
    torch.manual_seed(3)
    mha = MultiHeadAttention(32, 4)
    mqa = GroupedQueryAttention.from_multi_head(mha, 1)
    assert mqa.n_kv_heads == 1
    torch.testing.assert_close(mqa.k_proj.weight, mha.k_proj.weight.view(4, 8, 32).mean(0))
    torch.testing.assert_close(mqa.v_proj.bias, mha.v_proj.bias.view(4, 8).mean(0))
    torch.testing.assert_close(mqa.q_proj.weight, mha.q_proj.weight)
    with pytest.raises(TypeError):
        GroupedQueryAttention.from_multi_head(torch.nn.Linear(4, 4), 1)


@pytest.mark.parametrize("kwargs, error", [
    (dict(n_kv_heads=3), ValueError), (dict(n_kv_heads=0), TypeError),
    (dict(n_kv_heads=2.0), TypeError)])
def test_gqa_rejects_bad_head_counts(kwargs, error):
    with pytest.raises(error):
        GroupedQueryAttention(32, 4, **kwargs)


@pytest.mark.parametrize("T_q, T_k, block, causal", [
    (16, 16, 4, False), (16, 16, 5, True), (3, 17, 4, True), (1, 9, 64, False),
    (7, 7, 1, True)])
def test_online_softmax_attention_equals_torch_sdpa(T_q, T_k, block, causal):
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 3, T_q, 8), torch.randn(2, 3, T_k, 8), torch.randn(2, 3, T_k, 8)
    if causal:  # bottom-right aligned, as the package's causal masks
        mask = torch.ones(T_q, T_k, dtype=torch.bool).tril(T_k - T_q)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        ref = F.scaled_dot_product_attention(q, k, v)
    out = online_softmax_attention(q, k, v, block=block, causal=causal)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_online_softmax_attention_survives_large_scores():
    # scores of 1e4 overflow a plain exp; the running maximum keeps every exp <= 1
    q = torch.full((1, 1, 2, 4), 100.0)
    k = torch.full((1, 1, 6, 4), 100.0)
    v = torch.randn(1, 1, 6, 4)
    out = online_softmax_attention(q, k, v, block=2, scale=1.0)
    torch.testing.assert_close(out, v.mean(-2, keepdim=True).expand(1, 1, 2, 4))


def test_online_softmax_attention_rejects_bad_input():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(ValueError):
        online_softmax_attention(q, q, q, block=0)
    with pytest.raises(ValueError):
        online_softmax_attention(torch.randn(1, 1, 5, 8), q, q, causal=True)
