"""Attention against PyTorch's own implementations; masks; causality; errors."""
import pytest
import torch

import transformer_book as tb
from transformer_book.masks import causal_mask, combine_masks, padding_mask, to_torch_mha

B, T, S, C, H = 2, 5, 7, 16, 4


def copy_into_torch(mha: tb.MultiHeadAttention) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(C, H, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref


def masks_for(T_q, T_k):
    """The four cases of the issue: none, padding, causal, padding & causal. Row 1 is padded."""
    pad = padding_mask(torch.tensor([T_k, T_k - 2]), max_len=T_k)  # (B, 1, 1, T_k)
    causal = causal_mask(T_q, T_k)  # (1, 1, T_q, T_k)
    return {"none": None, "padding": pad, "causal": causal, "both": combine_masks(pad, causal)}


@pytest.mark.parametrize("kind", ["none", "padding", "causal", "both"])
@pytest.mark.parametrize("cross", [False, True])
def test_explicit_equals_fused_equals_torch(kind, cross):
    torch.manual_seed(0)
    mha = tb.MultiHeadAttention(C, H).eval()
    ref = copy_into_torch(mha)
    x = torch.randn(B, T, C)
    mem = torch.randn(B, S if cross else T, C) if cross else x
    T_k = mem.shape[1]
    mask = masks_for(T, T_k)[kind]
    explicit, w = mha(x, kv=mem if cross else None, mask=mask, return_weights=True)
    fused, none = mha(x, kv=mem if cross else None, mask=mask)
    assert none is None  # the weights only on request
    # torch wants (B*H, T_q, T_k) or (T_q, T_k) with True = NOT allowed
    attn_mask = None
    if mask is not None:
        full = mask.expand(B, H, T, T_k).reshape(B * H, T, T_k)
        attn_mask = to_torch_mha(full)
    expected, ref_w = ref(x, mem, mem, attn_mask=attn_mask, average_attn_weights=False)
    assert torch.allclose(explicit, expected, atol=1e-6)
    assert torch.allclose(fused, expected, atol=1e-6)
    assert torch.allclose(w, ref_w, atol=1e-6)


def test_functional_paths_match_torch_sdpa():
    torch.manual_seed(1)
    q, k, v = torch.randn(B, H, T, 8), torch.randn(B, H, S, 8), torch.randn(B, H, S, 8)
    mask = masks_for(T, S)["padding"]
    ours, _ = tb.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(tb.scaled_dot_product_attention(q, k, v, mask=mask), ref, atol=1e-6)


def test_is_causal_flag_equals_the_causal_mask():
    torch.manual_seed(7)
    q, k, v = torch.randn(B, H, T, 8), torch.randn(B, H, T, 8), torch.randn(B, H, T, 8)
    by_mask = tb.scaled_dot_product_attention(q, k, v, mask=causal_mask(T), fused=False)
    for fused in (True, False):
        out = tb.scaled_dot_product_attention(q, k, v, is_causal=True, fused=fused)
        assert torch.allclose(out, by_mask, atol=1e-6)
    # with a cache (T_q < T_k) the flag stays bottom-right aligned
    k2, v2 = torch.randn(B, H, T + 3, 8), torch.randn(B, H, T + 3, 8)
    assert torch.allclose(tb.scaled_dot_product_attention(q, k2, v2, is_causal=True),
                          tb.scaled_dot_product_attention(q, k2, v2, mask=causal_mask(T, T + 3)),
                          atol=1e-6)


def test_fully_masked_row_gives_no_nan():
    torch.manual_seed(2)
    mha = tb.MultiHeadAttention(C, H)
    x = torch.randn(B, T, C)
    nothing = torch.zeros(B, 1, 1, T, dtype=torch.bool)
    for fused in (True, False):
        q = k = v = torch.randn(B, H, T, 4)
        out = tb.scaled_dot_product_attention(q, k, v, mask=nothing, fused=fused)
        assert not out.isnan().any()
        # uniform weights: every query gets the mean of the values
        assert torch.allclose(out, v.mean(dim=2, keepdim=True).expand_as(out), atol=1e-6)
    out, _ = mha(x, mask=nothing)
    out.sum().backward()
    assert not out.isnan().any() and not mha.q_proj.weight.grad.isnan().any()


def test_causality_is_exact():
    """Changing tokens after position t leaves outputs at positions <= t bit-identical."""
    torch.manual_seed(3)
    block = tb.Block(C, H, 32, dropout=0.0, causal=True).eval()
    x = torch.randn(1, 10, C)
    base = block(x)
    for t in range(9):
        y = x.clone()
        y[:, t + 1:] = torch.randn(1, 9 - t, C)
        out = block(y)
        assert torch.equal(out[:, :t + 1], base[:, :t + 1]), t
        assert not torch.equal(out[:, t + 1:], base[:, t + 1:])


def test_causal_mask_bottom_right_alignment():
    m = causal_mask(2, 5)[0, 0]
    assert m.tolist() == [[True, True, True, True, False], [True] * 5]
    assert torch.equal(causal_mask(4)[0, 0], torch.ones(4, 4).tril().bool())


def test_mask_polarity_trap_is_real():
    """Passing our mask to torch.nn.MultiheadAttention unconverted attends where it must not."""
    torch.manual_seed(4)
    mha = tb.MultiHeadAttention(C, H).eval()
    ref = copy_into_torch(mha)
    x = torch.randn(1, T, C)
    mask = causal_mask(T)[0, 0]
    ours, _ = mha(x, mask=mask)
    right, _ = ref(x, x, x, attn_mask=to_torch_mha(mask))
    wrong, _ = ref(x, x, x, attn_mask=mask)
    assert torch.allclose(ours, right, atol=1e-6)
    assert not torch.allclose(ours[:, 1:], wrong[:, 1:], atol=1e-3)


def test_kv_cache_matches_full_recomputation():
    torch.manual_seed(5)
    from transformer_book.models import build
    model = build("gpt2-tiny", vocab_size=50, n_layers=2).eval()
    idx = torch.randint(0, 50, (2, 12))
    full = model(idx).logits
    cache = model.make_cache()
    steps = [model(idx[:, :4], cache=cache).logits]  # a prompt, then one token at a time
    for t in range(4, 12):
        steps.append(model(idx[:, t:t + 1], cache=cache).logits)
    assert cache.seq_len == 12
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_cross_attention_cache_is_reused():
    torch.manual_seed(6)
    block = tb.Block(C, H, 32, dropout=0.0, causal=True, cross_attention=True).eval()
    x, mem = torch.randn(B, 6, C), torch.randn(B, S, C)
    full = block(x, memory=mem)
    cache = tb.LayerCache(cross=True)
    outs = [block(x[:, t:t + 1], memory=mem, cache=cache) for t in range(6)]
    assert len(cache.cross_attn) == S and len(cache.self_attn) == 6
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


@pytest.mark.parametrize("case, exc, words", [
    ("last_dim", ValueError, ["d_model=16", "(2, 5, 8)"]),
    ("mask_shape", ValueError, ["(2, 4, 5, 5)", "(3, 1, 1, 5)"]),
    ("mask_dtype", TypeError, ["bool", "torch.float32"]),
    ("heads", ValueError, ["n_heads=3", "d_model=16"]),
    ("too_long", ValueError, ["max_len=128", "200"]),
    ("qk_dims", ValueError, ["(1, 2, 3, 4)", "(1, 2, 3, 5)"]),
])
def test_bad_input_raises_clear_errors(case, exc, words):
    mha = tb.MultiHeadAttention(C, H)
    with pytest.raises(exc) as info:
        if case == "last_dim":
            mha(torch.randn(B, T, 8))
        elif case == "mask_shape":
            mha(torch.randn(B, T, C), mask=torch.ones(3, 1, 1, T, dtype=torch.bool))
        elif case == "mask_dtype":
            mha(torch.randn(B, T, C), mask=torch.ones(B, 1, 1, T))
        elif case == "heads":
            tb.MultiHeadAttention(C, 3)
        elif case == "too_long":
            from transformer_book.models import build
            build("gpt2-tiny")(torch.zeros(1, 200, dtype=torch.long))
        elif case == "qk_dims":
            tb.scaled_dot_product_attention(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 5),
                                            torch.randn(1, 2, 3, 5))
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_cross_attention_cache_refuses_another_memory_of_the_same_shape():
    # the bug: the cache compared shapes only, so a second source of the same batch and
    # length was silently answered with the first source's keys and values
    torch.manual_seed(7)
    block = tb.Block(C, H, 32, dropout=0.0, causal=True, cross_attention=True).eval()
    x, mem, other = torch.randn(B, 3, C), torch.randn(B, S, C), torch.randn(B, S, C)
    cache = tb.LayerCache(cross=True)
    block(x[:, :1], memory=mem, cache=cache)
    block(x[:, 1:2], memory=mem, cache=cache)  # the same memory: served from the cache
    with pytest.raises(ValueError, match="another memory.*cache.reset"):
        block(x[:, 2:3], memory=other, cache=cache)
    with torch.no_grad():
        mem.mul_(2.0)  # the same tensor changed in place is another memory too
    with pytest.raises(ValueError, match="another memory"):
        block(x[:, 2:3], memory=mem, cache=cache)
    cache = tb.LayerCache(cross=True)  # a fresh cache takes the new memory
    block(x[:, :1], memory=other, cache=cache)
    with pytest.raises(ValueError, match="memory reordered"):
        cache.reorder(torch.tensor([1, 0]))  # a cross cache must be told its new memory
    cache.reorder(torch.tensor([1, 0]), other[[1, 0]])


def test_mask_is_checked_once_per_attention(monkeypatch):
    calls = []
    real = tb.attention.check_mask
    monkeypatch.setattr(tb.attention, "check_mask",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    mha = tb.MultiHeadAttention(C, H).eval()
    mha(torch.randn(B, 5, C), mask=torch.ones(B, 1, 1, 5, dtype=torch.bool))
    assert len(calls) == 1


def test_multi_head_attention_always_returns_out_and_weights():
    mha = tb.MultiHeadAttention(C, H).eval()
    x = torch.randn(B, 5, C)
    out, w = mha(x)
    assert out.shape == (B, 5, C) and w is None
    out2, w = mha(x, return_weights=True)
    assert w.shape == (B, H, 5, 5) and torch.allclose(out, out2, atol=1e-6)
