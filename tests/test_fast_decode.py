"""fast_decode: the cached one-token step, installed for a generation and removed after it,
computes what the plain modules compute (same tokens, close logits)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from transformer_book import KVCache, fast_decode
from transformer_book.attention import MultiHeadAttention
from transformer_book.decoding import beam_search, greedy
from transformer_book.efficient_attention import swap_attention
from transformer_book.layers import FeedForward
from transformer_book.models import build


def _overridden(model) -> list:
    return [m for m in model.modules() if "forward" in m.__dict__]


def test_halves_product_matches_linear_with_and_without_bias():
    torch.manual_seed(0)
    for lin in (nn.Linear(48, 96), nn.Linear(96, 48, bias=False)):
        x = torch.randn(1, 1, lin.in_features)
        with torch.no_grad():
            got = fast_decode._halves(lin.weight, lin.bias)(x)
            torch.testing.assert_close(got, lin(x), rtol=1e-5, atol=1e-6)


def test_the_layout_is_chosen_by_timing_both_and_reported():
    torch.manual_seed(0)
    lin = nn.Linear(40, 42)  # a shape no other test uses
    product = fast_decode._product(lin.weight, lin.bias)
    x = torch.randn(1, 1, 40)
    with torch.no_grad():
        outs = [product(x) for _ in range(2 * fast_decode._Trial.samples + 3)]
    for y in outs:  # either layout, the same product
        torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-6)
    chosen = fast_decode.layouts()["(42 x 40) float32 bias, cpu, "
                                   f"{torch.get_num_threads()} threads"]
    assert chosen in ("linear", "halves")
    odd = fast_decode._product(nn.Linear(4, 3).weight, None)  # 3 rows do not halve
    assert odd(torch.ones(1, 1, 4)).shape == (1, 1, 3)


def _steps(mha, x, cache, **kw):
    """A prompt of 2 positions, then one position at a time."""
    bias = kw.pop("bias", None)
    outs = [mha(x[:, :2], cache=cache, bias=None if bias is None else bias[:, :, :2, :2],
                **kw)[0]]
    for t in range(2, x.shape[1]):
        b = None if bias is None else bias[:, :, t:t + 1, :t + 1]
        outs.append(mha(x[:, t:t + 1], cache=cache, bias=b, **kw)[0])
    return torch.cat(outs, 1)


@pytest.mark.parametrize("t5_like", [False, True])
def test_one_token_self_attention_step_matches_full_forward(t5_like):
    torch.manual_seed(0)
    mha = (MultiHeadAttention(32, 4, causal=True, bias=False, scale=1.0) if t5_like
           else MultiHeadAttention(32, 4, causal=True)).eval()
    x = torch.randn(1, 6, 32)
    bias = torch.randn(1, 4, 6, 6) if t5_like else None
    with torch.no_grad():
        full, _ = mha(x, bias=bias)
        with fast_decode.enabled(mha) as fast:
            got = _steps(mha, x, KVCache(), bias=bias)
            with pytest.raises(ValueError, match="cache.reset"):
                c = KVCache()
                mha(torch.randn(2, 1, 32), cache=c)
                mha(x[:, :1], cache=c)  # a batch of 1 against a cache of 2
    assert fast.steps == 4 + 1 and fast.modules == [mha]  # and the batch of 2's step
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)


def test_one_token_steps_with_padding_masks_match_full_forward():
    torch.manual_seed(0)
    self_attn, cross = MultiHeadAttention(32, 4, causal=True).eval(), MultiHeadAttention(32, 4)
    model = nn.ModuleList([self_attn, cross.eval()])
    x, memory = torch.randn(2, 5, 32), torch.randn(2, 4, 32)
    keys = torch.tensor([[True, False, True, True, True], [True] * 5])[:, None, None]
    src = torch.tensor([[True, True, True, False], [True] * 4])[:, None, None]  # (B, 1, 1, S)
    with torch.no_grad():
        full_self, full_cross = self_attn(x, mask=keys)[0], cross(x, kv=memory, mask=src)[0]
        c_self, c_cross = KVCache(), KVCache()
        with fast_decode.enabled(model) as fast:
            steps = [(self_attn(x[:, t:t + 1], mask=keys[..., :t + 1], cache=c_self)[0],
                      cross(x[:, t:t + 1], kv=memory, mask=src, cache=c_cross)[0])
                     for t in range(5)]
            with pytest.raises(ValueError, match="cache.reset"):
                cross(x[:, :1], kv=memory[:, :3], cache=c_cross)  # another source
    assert fast.steps == 5 + 4  # cross-attention's first step fills its cache the plain way
    torch.testing.assert_close(torch.cat([s for s, _ in steps], 1), full_self,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([c for _, c in steps], 1), full_cross,
                               rtol=1e-5, atol=1e-6)


def test_the_context_leaves_plain_modules_also_on_error():
    model = build("transformer-tiny", vocab_size=31).eval()
    with fast_decode.enabled(model) as fast:
        assert set(_overridden(model)) == set(fast.modules)
        kinds = {type(m) for m in fast.modules}
        assert kinds == {MultiHeadAttention, FeedForward}
    assert not _overridden(model)
    with pytest.raises(RuntimeError, match="boom"):
        with fast_decode.enabled(model):
            raise RuntimeError("boom")
    assert not _overridden(model)
    with pytest.raises(TypeError, match="nn.Module"):
        with fast_decode.enabled("model"):
            pass


def test_gradients_training_and_other_classes_take_the_plain_forward():
    torch.manual_seed(0)
    gpt = build("gpt2-tiny", vocab_size=31, n_layers=2).eval()
    idx = torch.randint(0, 31, (1, 4))
    cache = gpt.make_cache()
    with fast_decode.enabled(gpt) as fast:
        gpt(idx[:, :3], cache=cache)
        gpt(idx[:, 3:], cache=cache)  # gradients enabled: the plain step
    assert fast.steps == 0
    swap_attention(gpt, "local", 2)  # a subclass keeps its own forward
    with fast_decode.enabled(gpt) as fast:
        assert not any(type(m) is not FeedForward for m in fast.modules)


def test_eval_forward_outside_the_context_is_the_plain_path_bitwise():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, causal=True).eval()
    x = torch.randn(1, 3, 32)
    with torch.no_grad():
        got, _ = mha(x)
        q, k, v = (mha._split(F.linear(x, p.weight, p.bias))
                   for p in (mha.q_proj, mha.k_proj, mha.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (1, H, 3, D)
        ref = F.linear(o.transpose(1, 2).reshape(1, 3, 32), mha.out_proj.weight,
                       mha.out_proj.bias)
    assert torch.equal(got, ref)


def _cached_logits(model, prompt, src, n, fast):
    """Logits of n cached steps of greedy decoding, with or without the fast step."""
    with torch.no_grad():
        memory = model.encode(src) if src is not None else None
        cache, tokens, out = model.make_cache(), prompt, []
        ctx = fast_decode.enabled(model) if fast else torch.no_grad()
        with ctx:
            new = tokens
            for _ in range(n):
                res = (model(new, cache=cache) if src is None
                       else model.decode(new, memory, cache=cache))
                out.append(res.logits[:, -1])
                new = res.logits[:, -1:].argmax(-1)
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt1-tiny", "t5-tiny", "transformer-tiny"])
def test_cached_generation_uses_the_fast_step_and_equals_the_plain_one(name, monkeypatch):
    torch.manual_seed(0)
    model = build(name, vocab_size=97).eval()
    with torch.no_grad():  # wider weights: greedy choices that are not near-ties
        for p in model.parameters():
            p.mul_(10.0 if p.dim() > 1 else 1.0)
    g = torch.Generator().manual_seed(2)
    if name.startswith("gpt"):
        prompt, src = torch.randint(0, 97, (1, 3), generator=g), None
    else:
        prompt, src = torch.ones(1, 1, dtype=torch.long), torch.randint(3, 97, (1, 9), generator=g)
    reports, real = [], fast_decode.enabled

    def spy(model):
        ctx = real(model)
        reports.append(ctx)
        return ctx

    monkeypatch.setattr(fast_decode, "enabled", spy)
    cached = greedy(model, prompt, 20, src=src)
    assert len(reports) == 1 and not _overridden(model)  # opened once, closed after
    recomputed = greedy(model, prompt, 20, src=src, use_cache=False)
    assert len(reports) == 1  # recomputation runs the plain modules
    assert cached.shape == (1, prompt.shape[1] + 20) and torch.equal(cached, recomputed)
    beams = beam_search(model, prompt, 8, src=src)
    assert torch.equal(beams, beam_search(model, prompt, 8, src=src, use_cache=False))
    monkeypatch.undo()
    fast, plain = (_cached_logits(model, prompt, src, 12, f) for f in (True, False))
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    with torch.no_grad(), fast_decode.enabled(model) as report:
        greedy(model, prompt, 3, src=src)  # inside an open context: nested, still counted
    assert report.steps > 0
