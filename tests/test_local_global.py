"""Local attention plus global first tokens (Longformer / BigBird), checked against torch's
scaled_dot_product_attention with the equivalent boolean mask, and the mask against a
pattern written out one pair at a time."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.efficient_attention import (EfficientSelfAttention, local_global_mask,
                                                  local_global_attention, local_mask,
                                                  swap_attention)
from transformer_book.models import build


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,w,g", [(10, 3, 1), (13, 4, 2), (5, 8, 1), (9, 2, 9)])
def test_mask_is_window_or_global(causal, T, w, g):
    m = local_global_mask(T, window=w, n_global=g, causal=causal)
    for i in range(T):
        for j in range(T):
            near = (0 <= i - j < w) if causal else abs(i - j) < w
            glob = j < g and (j <= i or not causal)
            assert m[i, j].item() == (near or glob), (i, j)
    assert m.sum() <= (T * (2 * w + g))  # O(T (w + g)) pairs


def test_mask_bottom_right_aligned_for_a_cache():
    full = local_global_mask(12, window=3, n_global=2)
    assert torch.equal(local_global_mask(4, 12, window=3, n_global=2), full[-4:])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T,w,g", [(37, 5, 1), (40, 8, 3), (7, 16, 1), (33, 4, 33)])
def test_fast_path_equals_torch_sdpa_with_the_mask(causal, T, w, g):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, T, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v,
                                         attn_mask=local_global_mask(T, None, w, g, causal))
    torch.testing.assert_close(local_global_attention(q, k, v, w, g, causal=causal), ref)
    out, wts = local_global_attention(q, k, v, w, g, causal=causal, return_weights=True)
    torch.testing.assert_close(out, ref)
    assert (wts[..., ~local_global_mask(T, None, w, g, causal)] == 0).all()


def test_one_global_token_reaches_what_the_window_cannot():
    # with the first key global, the last query's weight on key 0 is not zero; local alone: 0
    T, w = 30, 4
    q, k, v = (torch.randn(1, 1, T, 8) for _ in range(3))
    _, wg = local_global_attention(q, k, v, w, return_weights=True)
    assert wg[0, 0, -1, 0] > 0 and not local_mask(T, window=w)[-1, 0]


def test_bad_arguments():
    q = torch.randn(1, 1, 6, 4)
    with pytest.raises(ValueError, match="n_global"):
        local_global_attention(q, q, q, 2, n_global=0)
    with pytest.raises(TypeError, match="n_global"):
        local_global_mask(6, window=2, n_global=1.5)
    with pytest.raises(ValueError, match="window"):
        EfficientSelfAttention(16, 2, "local_global")


def test_swapped_gpt_matches_its_explicit_form_and_cache():
    torch.manual_seed(0)
    gpt = build("gpt2-tiny", vocab_size=20, max_len=32, n_layers=2).eval()
    swap_attention(gpt, "local_global", 3, n_global=2)
    assert all(b.self_attn.kind == "local_global" and b.self_attn.n_global == 2
               for b in gpt.blocks)
    idx = torch.randint(0, 20, (2, 17))
    out = gpt(idx, return_weights=True)
    torch.testing.assert_close(gpt(idx).logits, out.logits, atol=1e-5, rtol=1e-4)
    cache = gpt.make_cache()
    steps = [gpt(idx[:, :9], cache=cache).logits]
    steps += [gpt(idx[:, t:t + 1], cache=cache).logits for t in range(9, 17)]
    torch.testing.assert_close(torch.cat(steps, 1), out.logits, atol=1e-5, rtol=1e-4)
