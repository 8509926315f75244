"""T5: no biases, no 1/sqrt(d_head), a relative bias shared per stack, the tied head's rescale,
incremental decoding with the cache, errors."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from transformer_book.decoding import greedy
from transformer_book.layers import LayerNorm, RMSNorm
from transformer_book.models import T5, T5Config, build
from transformer_book.positional import RelativePositionBias

CFG = T5Config(vocab_size=40, d_model=32, n_heads=4, d_head=8, d_ff=64, n_layers=2,
               n_decoder_layers=3, dropout=0.0)


def batch(seed=0, B=2, S=9, T=6):
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randint(1, 40, (B, S), generator=g), torch.randint(1, 40, (B, T), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, -3:] = 0
    return src, tgt, mask


@pytest.mark.parametrize("v1_1", [False, True])
def test_architecture(v1_1):
    cfg = T5Config(**{**CFG.__dict__, "activation": "gated-gelu_tanh", "tie_embeddings": False}) \
        if v1_1 else CFG
    model = T5(cfg)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert not any(isinstance(m, LayerNorm) for m in model.modules())
    assert sum(isinstance(m, RMSNorm) for m in model.modules()) == 2 * 2 + 3 * 3 + 2
    biases = [m for m in model.modules() if isinstance(m, RelativePositionBias)]
    assert len(biases) == 2  # one per stack, shared by its layers
    assert model.encoder.rel_bias.bidirectional and not model.decoder.rel_bias.bidirectional
    assert all(b.norm_first and b.self_attn.scale == 1.0 for b in model.encoder.blocks)
    assert all(b.self_attn.causal and b.has_cross for b in model.decoder.blocks)
    assert (model.lm_head.weight is model.shared.weight) == (not v1_1)
    assert model.decoder.blocks[0].ffn.gated == v1_1


def test_tied_head_rescales_by_d_model_to_the_minus_half():
    torch.manual_seed(0)
    model = T5(CFG).eval()
    src, tgt, mask = batch()
    with torch.no_grad():
        memory = model.encode(src, mask)
        h, _ = model.decoder(model.shared(tgt), memory=memory,
                             memory_mask=mask.bool()[:, None, None, :])
        expected = F.linear(h * CFG.d_model ** -0.5, model.shared.weight)
        assert torch.allclose(model(src, tgt, src_mask=mask).logits, expected, atol=1e-5)


def test_encoder_padding_with_mask_changes_nothing_for_real_tokens():
    torch.manual_seed(0)
    model = T5(CFG).eval()
    src = torch.randint(1, 40, (1, 6))
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    with torch.no_grad():
        assert torch.allclose(model.encode(src), model.encode(padded, mask)[:, :6], atol=1e-5)
        tgt = torch.randint(1, 40, (1, 5))
        assert torch.allclose(model(src, tgt).logits, model(padded, tgt, src_mask=mask).logits, atol=1e-5)
        # T5 has a pad_id: without a mask it builds the same one (Hugging Face's T5 does not)
        assert torch.allclose(model(padded, tgt).logits, model(padded, tgt, src_mask=mask).logits)


def test_decoding_with_the_cache_equals_the_full_pass():
    torch.manual_seed(0)
    model = T5(CFG).eval()
    src, tgt, mask = batch()
    with torch.no_grad():
        memory = model.encode(src, mask)
        full = model.decode(tgt, memory, src_mask=mask).logits
        cache = model.make_cache()
        steps = [model.decode(tgt[:, :2], memory, src_mask=mask, cache=cache).logits]
        steps += [model.decode(tgt[:, t:t + 1], memory, src_mask=mask, cache=cache).logits
                  for t in range(2, 6)]
    assert cache.seq_len == 6
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    out = greedy(model, torch.zeros(2, 1, dtype=torch.long), 8, src=src,
                 src_mask=mask.bool()[:, None, None, :])
    out_nc = greedy(model, torch.zeros(2, 1, dtype=torch.long), 8, src=src,
                    src_mask=mask.bool()[:, None, None, :], use_cache=False)
    assert torch.equal(out, out_nc)


def test_shift_right_and_loss():
    model = T5(CFG)
    y = torch.tensor([[5, 6, 7, -100], [8, 9, -100, -100]])
    assert model.shift_right(y).tolist() == [[0, 5, 6, 7], [0, 8, 9, 0]]
    src, _, mask = batch()
    out = model(src, model.shift_right(y), src_mask=mask, targets=y, return_weights=True)
    ref = F.cross_entropy(out.logits.reshape(-1, 40), y.reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, ref)
    # tgt_in defaults to shift_right(targets); weights come with the loss, per layer
    torch.testing.assert_close(model(src, src_mask=mask, targets=y).loss, out.loss)
    assert [len(out.weights[k]) for k in ("encoder", "self", "cross")] == [2, 3, 3]
    assert out.weights["cross"][0].shape == (2, 4, 4, src.shape[1])


def test_bad_inputs_raise_clear_errors():
    model = T5(CFG)
    src, tgt, mask = batch()
    with pytest.raises(ValueError, match="src_mask"):
        model(src, tgt, src_mask=mask[:, :4])
    with pytest.raises(TypeError, match="src"):
        model.encode(src.float())
    with pytest.raises(ValueError, match="targets"):
        model(src, tgt, src_mask=mask, targets=tgt[:, :2])


def test_t5_tiny_fits_a_small_translation_table():
    """16 fixed source/target pairs (targets are a random function of the source): after 120
    steps the model has memorised them and greedy decoding (with the cache) reproduces them."""
    torch.manual_seed(0)
    model = build("t5-tiny", vocab_size=20, d_model=64, n_layers=2, d_ff=128)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    src, y = torch.randint(2, 20, (16, 6), generator=g), torch.randint(2, 20, (16, 5), generator=g)
    losses = []
    for _ in range(120):
        loss = model(src, model.shift_right(y), targets=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::20]
    model.eval()
    with torch.no_grad():
        out = greedy(model, torch.zeros(16, 1, dtype=torch.long), 5, src=src)[:, 1:]
    assert (out == y).all(dim=1).float().mean() >= 0.9


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [True, False])
def test_relative_bias_on_a_fully_masked_row_stays_finite_in_half_precision(dtype, fused):
    """finfo.min + a negative bias overflows to -inf in fp16 and a row of -inf gives NaN;
    the mask is applied with torch.where, never added."""
    from transformer_book.attention import scaled_dot_product_attention
    from transformer_book.masks import to_additive
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 4, generator=g).to(dtype) for _ in range(3))
    bias = torch.full((1, 2, 3, 3), -30.0, dtype=dtype)
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    mask[..., 1, :] = False  # query 1 may attend nowhere
    if dtype == torch.float16:  # the failure the where avoids
        assert torch.isinf(to_additive(mask, dtype) + bias).any()
    try:
        out = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, scale=1.0,
                                           fused=fused)
    except RuntimeError as e:  # a CPU build without this half-precision kernel
        pytest.skip(f"{dtype} attention not supported here: {e}")
    assert torch.isfinite(out).all()
    if not fused:  # the explicit path replaces the row's scores: uniform weights, mean of v
        torch.testing.assert_close(out[..., 1, :].float(), v.float().mean(-2), atol=2e-2, rtol=0)
    # (torch's fused kernel adds the fp16 minimum in fp32, which keeps the scores' spread:
    # finite, not uniform; the row is padding whose output nothing reads)
    # a whole model: a source that is all padding, in half precision
    model = T5(CFG).eval().to(dtype)
    src = torch.zeros(2, 5, dtype=torch.long)
    src[1, :3] = torch.tensor([4, 5, 6])
    with torch.no_grad():
        assert torch.isfinite(model(src, torch.zeros(2, 3, dtype=torch.long)).logits).all()


def test_decoder_depth_is_one_rule_for_the_model_and_the_checkpoint_loader():
    assert CFG.decoder_depth == 3 and T5Config(n_layers=4).decoder_depth == 4
    assert T5Config(n_layers=4, n_decoder_layers=0).decoder_depth == 0
    model = T5(CFG)
    assert len(model.decoder.blocks) == 3 and len(model.encoder.blocks) == 2
    assert len(model.make_cache()) == 3  # one cache entry per decoder block
