"""Sparse and linearised attention against references we did not write: torch's
scaled_dot_product_attention with the pattern as a boolean mask (built here by loops), and the
linear attention formula computed one (query, key) pair at a time."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.efficient_attention import (EfficientSelfAttention, linear_attention,
                                                  local_attention, local_mask,
                                                  strided_attention, strided_mask,
                                                  swap_attention)
from transformer_book.models import build


def loop_mask(T, rule):
    """Bool (T, T) mask from a rule(i, j), written with plain loops."""
    return torch.tensor([[bool(rule(i, j)) for j in range(T)] for i in range(T)])


def local_rule(w, causal):
    return (lambda i, j: 0 <= i - j < w) if causal else (lambda i, j: abs(i - j) < w)


def strided_rule(s, causal):
    def rule(i, j):
        if causal and j > i:
            return False
        return abs(i - j) < s or (i - j) % s == 0
    return rule


def qkv(B=2, H=3, T=11, D=8, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64, requires_grad=grad)
            for _ in range(3)]


@pytest.mark.parametrize("T", [1, 5, 11, 16])
@pytest.mark.parametrize("w", [1, 3, 4])
@pytest.mark.parametrize("causal", [True, False])
def test_local_equals_torch_sdpa_with_the_mask(T, w, causal):
    q, k, v = qkv(T=T)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=loop_mask(T, local_rule(w, causal)))
    torch.testing.assert_close(local_attention(q, k, v, w, causal=causal), ref)
    assert torch.equal(local_mask(T, window=w, causal=causal), loop_mask(T, local_rule(w, causal)))


@pytest.mark.parametrize("T", [1, 6, 13, 16])
@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("causal", [True, False])
def test_strided_equals_torch_sdpa_with_the_mask(T, s, causal):
    q, k, v = qkv(T=T, seed=1)
    m = loop_mask(T, strided_rule(s, causal))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    torch.testing.assert_close(strided_attention(q, k, v, s, causal=causal), ref)
    assert torch.equal(strided_mask(T, stride=s, causal=causal), m)


def test_strided_pattern_reaches_far_keys_local_does_not():
    m = loop_mask(16, strided_rule(4, True))
    assert m[15, 3] and not m[15, 4] and m[15, 12] and not local_mask(16, window=4)[15, 3]


@pytest.mark.parametrize("causal", [True, False])
def test_window_covering_the_sequence_is_full_attention(causal):
    q, k, v = qkv(T=9)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(local_attention(q, k, v, 9, causal=causal), full)
    torch.testing.assert_close(local_attention(q, k, v, 20, causal=causal), full)
    # stride >= T: the strided pattern is the local one, hence full attention too
    torch.testing.assert_close(strided_attention(q, k, v, 9, causal=causal), full)


def naive_linear(q, k, v, causal, eps=1e-6):
    """Katharopoulos et al.'s equation, one (i, j) pair at a time."""
    phi = lambda x: torch.where(x > 0, x + 1, torch.exp(x))  # elu(x) + 1
    B, H, T, D = q.shape
    out = torch.zeros(B, H, T, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                num, den = 0, 0
                for j in range(k.shape[2]):
                    if causal and j > i:
                        continue
                    a = (phi(q[b, h, i]) * phi(k[b, h, j])).sum()
                    num = num + a * v[b, h, j]
                    den = den + a
                out[b, h, i] = num / (den + eps)
    return out


@pytest.mark.parametrize("T,chunk", [(1, 4), (7, 3), (8, 4), (10, 64)])
@pytest.mark.parametrize("causal", [True, False])
def test_linear_equals_the_naive_formula(T, chunk, causal):
    q, k, v = qkv(B=1, H=2, T=T, D=4)
    ref = naive_linear(q, k, v, causal)
    torch.testing.assert_close(linear_attention(q, k, v, causal=causal, chunk=chunk), ref)
    out, w = linear_attention(q, k, v, causal=causal, return_weights=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, T, dtype=w.dtype), atol=1e-5,
                               rtol=0)
    if causal:
        assert (w.triu(1) == 0).all()


def test_linear_with_a_padding_mask_equals_dropping_the_keys():
    q, k, v = qkv(B=1, H=1, T=6, D=4)
    keep = torch.tensor([True, True, False, True, False, True])
    out = linear_attention(q, k, v, causal=False, mask=keep[None, None, None, :])
    ref = naive_linear(q, k[:, :, keep], v[:, :, keep], causal=False)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("fn,arg", [(local_attention, 3), (strided_attention, 3),
                                    (linear_attention, None)])
def test_gradients_flow_and_match_the_explicit_form(fn, arg):
    args = () if arg is None else (arg,)
    q, k, v = qkv(T=10, grad=True)
    fn(q, k, v, *args).pow(2).sum().backward()
    fast = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    out, _ = fn(q, k, v, *args, return_weights=True)  # the explicit (masked) form
    out.pow(2).sum().backward()
    for g, t in zip(fast, (q, k, v)):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        torch.testing.assert_close(g, t.grad)


def test_bad_input():
    q, k, v = qkv(T=5)
    with pytest.raises(ValueError, match="window"):
        local_attention(q, k, v, 0)
    with pytest.raises(TypeError, match="window"):
        local_attention(q, k, v, 2.5)
    with pytest.raises(ValueError, match="stride"):
        strided_attention(q, k, v, -1)
    with pytest.raises(ValueError, match="last dimension"):
        linear_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="B, H, T, D"):
        local_attention(q[0], k[0], v[0], 2)
    with pytest.raises(TypeError, match="bool"):
        local_attention(q, k, v, 2, mask=torch.ones(5, 5))
    with pytest.raises(ValueError, match="broadcast"):
        strided_attention(q, k, v, 2, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="kind"):
        EfficientSelfAttention(16, 2, "sparse", 4)
    with pytest.raises(ValueError, match="needs a window"):
        EfficientSelfAttention(16, 2, "local")
    with pytest.raises(ValueError, match="no window"):
        EfficientSelfAttention(16, 2, "linear", 4)
    with pytest.raises(TypeError, match="Module"):
        swap_attention("gpt", "local", 4)
    with pytest.raises(ValueError, match="self_attn"):
        swap_attention(torch.nn.Linear(2, 2), "linear")
    m = EfficientSelfAttention(16, 2, "local", 4)
    with pytest.raises(ValueError, match="d_model=16"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="self-attention only"):
        m(torch.randn(2, 5, 16), kv=torch.randn(2, 5, 16))


def tiny_gpt():
    torch.manual_seed(0)
    return build("gpt2-tiny", vocab_size=20, max_len=32, n_layers=2).eval()


@pytest.mark.parametrize("kind,window", [("local", 4), ("strided", 3), ("linear", None)])
def test_swapped_gpt_keeps_weights_and_the_contract(kind, window):
    gpt = tiny_gpt()
    before = {n: p.clone() for n, p in gpt.state_dict().items()}
    swap_attention(gpt, kind, window)
    assert all(isinstance(b.self_attn, EfficientSelfAttention) for b in gpt.blocks)
    after = gpt.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    idx = torch.randint(0, 20, (2, 17))
    out = gpt(idx, targets=idx, return_weights=True)
    assert out.logits.shape == (2, 17, 20) and torch.isfinite(out.loss)
    w = out.weights["self"][0]
    assert w.shape == (2, 4, 17, 17) and (w.triu(1) == 0).all()  # causal
    # the fast path (no weights) gives the same logits as the explicit one
    torch.testing.assert_close(gpt(idx).logits, out.logits, atol=1e-5, rtol=1e-4)
    # causality: changing a later token leaves earlier logits unchanged
    idx2 = idx.clone()
    idx2[:, 10] = (idx2[:, 10] + 1) % 20
    torch.testing.assert_close(gpt(idx2).logits[:, :10], out.logits[:, :10])
    # a KV cache gives the same logits as one full forward
    cache = gpt.make_cache()
    steps = [gpt(idx[:, :9], cache=cache).logits]
    steps += [gpt(idx[:, t:t + 1], cache=cache).logits for t in range(9, 17)]
    torch.testing.assert_close(torch.cat(steps, 1), out.logits, atol=1e-5, rtol=1e-4)
    # padding: a right-padded row's real positions equal the unpadded run
    am = torch.ones(2, 17, dtype=torch.bool)
    am[1, 12:] = False
    padded = gpt(idx, attention_mask=am).logits
    torch.testing.assert_close(padded[1, :12], gpt(idx[1:, :12]).logits[0], atol=1e-5,
                               rtol=1e-4)


def test_local_window_wider_than_context_is_the_original_gpt():
    gpt = tiny_gpt()
    idx = torch.randint(0, 20, (2, 17))
    ref = gpt(idx).logits
    torch.testing.assert_close(swap_attention(gpt, "local", 32)(idx).logits, ref,
                               atol=1e-5, rtol=1e-4)


def test_swapped_model_trains():
    gpt = swap_attention(tiny_gpt().train(), "strided", 4)
    opt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
    idx = torch.arange(16).repeat(4, 1) % 20
    first = None
    for _ in range(30):
        loss = gpt(idx, targets=idx.roll(-1, 1)).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_swap_attention_refuses_t5():
    # the bug: T5 was swapped, and its forward then failed on the relative bias
    t5 = build("t5-tiny", vocab_size=20)
    with pytest.raises(ValueError, match="relative position bias"):
        swap_attention(t5, "local", 4)
    assert type(t5.encoder.blocks[0].self_attn) is not EfficientSelfAttention


def test_efficient_and_plain_attention_share_one_cache_batch_check():
    # one check, KVCache.check_batch, for both modules: the same message from either
    from transformer_book import KVCache, MultiHeadAttention
    torch.manual_seed(0)
    messages = []
    for m in (MultiHeadAttention(16, 2, causal=True), EfficientSelfAttention(16, 2, "local", 4,
                                                                            causal=True)):
        cache = KVCache()
        m(torch.randn(2, 3, 16), cache=cache)
        with pytest.raises(ValueError) as info:
            m(torch.randn(1, 1, 16), cache=cache)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "cache.reset()" in messages[0]
