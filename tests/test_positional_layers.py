"""Positional encodings, norms, the feed-forward network and the Block."""
import math

import pytest
import torch

import transformer_book as tb
from transformer_book.masks import to_torch_mha
from transformer_book.positional import relative_position_bucket


def test_sinusoid_values_by_formula():
    pe = tb.sinusoidal_encoding(50, 16)
    pos, i = 7, 3  # dimension 2i = 6 and 2i+1 = 7
    angle = pos / 10000 ** (2 * i / 16)
    assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), rel_tol=1e-6)
    assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), rel_tol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 17])
def test_sinusoid_shift_is_a_fixed_linear_map(k):
    """PE(pos + k) = PE(pos) @ M_k for one matrix M_k, whatever pos is."""
    pe = tb.sinusoidal_encoding(200, 32, dtype=torch.float64)
    X, Y = pe[:100], pe[k:100 + k]
    M = torch.linalg.lstsq(X, Y, driver="gelsd").solution  # fitted on positions 0..99 (SVD-based)
    assert torch.allclose(pe[120:150] @ M, pe[120 + k:150 + k], atol=1e-6)  # holds elsewhere too
    # and it is the block-diagonal rotation the formula predicts
    inv_freq = 10000 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    R = torch.zeros(32, 32, dtype=torch.float64)
    for j, w in enumerate(inv_freq):
        c, s = math.cos(k * w), math.sin(k * w)
        R[2 * j:2 * j + 2, 2 * j:2 * j + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # row [sin, cos] -> shifted
    assert torch.allclose(pe[:150] @ R, pe[k:150 + k], atol=1e-9)


def test_positional_modules_check_length():
    for mod in (tb.SinusoidalPositionalEncoding(8, max_len=10), tb.LearnedPositionalEmbedding(10, 8)):
        assert mod(torch.zeros(2, 10, 8)).shape == (2, 10, 8)
        with pytest.raises(ValueError, match="longer than max_len=10"):
            mod(torch.zeros(2, 11, 8))
        with pytest.raises(ValueError, match="d_model=8"):
            mod(torch.zeros(2, 5, 6))


def test_t5_buckets_by_hand():
    """Hand-computed with 32 buckets, max distance 128.

    Bidirectional: 16 buckets per direction, exact for |d| < 8, then
    8 + floor(log(|d| / 8) / log(16) * 8), capped at 15; keys after the query add 16.
    Causal: 32 buckets for d <= 0, exact for |d| < 16, then 16 + floor(log(|d|/16)/log(8)*16).
    """
    d = torch.tensor([0, -1, 1, -7, 7, -8, 8, -20, 20, -127, 127, -500, 500])
    bi = relative_position_bucket(d, bidirectional=True).tolist()
    # written out by hand from the formula above: 20 -> 8 + floor(log(2.5)/log(16)*8) = 10
    assert bi == [0, 1, 17, 7, 23, 8, 24, 10, 26, 15, 31, 15, 31]
    assert bi[-2:] == [15, 31]  # far away: the last bucket of each half
    causal = relative_position_bucket(d, bidirectional=False).tolist()
    assert causal[2] == causal[4] == causal[6] == 0  # the future collapses into bucket 0
    assert causal[1] == 1 and causal[3] == 7 and causal[5] == 8
    assert causal[7] == 16 + int(math.log(20 / 16) / math.log(8) * 16) == 17
    assert causal[11] == 31


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_equal_the_reference_implementation(bidirectional):
    transformers = pytest.importorskip("transformers")
    ref = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    d = torch.arange(-300, 301)  # key - query, as both implementations define it
    for buckets, dist in ((32, 128), (16, 40)):
        ours = relative_position_bucket(d, bidirectional, buckets, dist)
        assert torch.equal(ours, ref(d, bidirectional, buckets, dist)), (buckets, dist)


def test_relative_bias_shape_and_alignment():
    rb = tb.RelativePositionBias(n_heads=3, bidirectional=False)
    full = rb(6, 6)
    assert full.shape == (1, 3, 6, 6)
    assert torch.equal(rb(2, 6), full[:, :, 4:])  # queries are the last positions (KV cache)


def test_layernorm_and_rmsnorm():
    x = torch.randn(4, 7, 32) * 3 + 5
    y = tb.LayerNorm(32)(x)
    assert torch.allclose(y.mean(-1), torch.zeros(4, 7), atol=1e-5)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(4, 7), atol=1e-3)
    ref = torch.nn.LayerNorm(32)
    assert torch.allclose(y, ref(x), atol=1e-5)
    r = tb.RMSNorm(32)(x)
    assert torch.allclose(r.pow(2).mean(-1), torch.ones(4, 7), atol=1e-3)
    assert torch.allclose(r, torch.nn.functional.rms_norm(x, (32,), eps=1e-6), atol=1e-5)


@pytest.mark.parametrize("act, ref", [
    ("relu", torch.relu),
    ("gelu", lambda h: torch.nn.functional.gelu(h)),
    ("gelu_tanh", lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))),
])
def test_feedforward_activations(act, ref):
    ffn = tb.FeedForward(8, 16, act)
    x = torch.randn(2, 3, 8)
    assert torch.allclose(ffn(x), ffn.down(ref(ffn.up(x))), atol=1e-6)
    gated = tb.FeedForward(8, 16, "gated-" + act)
    assert torch.allclose(gated(x), gated.down(ref(gated.gate(x)) * gated.up(x)), atol=1e-6)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="swish"):
        tb.FeedForward(8, 16, "swish")


def _copy_block_to_torch(block, layer, cross):
    pairs = [(block.self_attn, layer.self_attn)] + ([(block.cross_attn, layer.multihead_attn)] if cross else [])
    with torch.no_grad():
        for ours, ref in pairs:
            ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
            ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            ref.out_proj.weight.copy_(ours.out_proj.weight)
            ref.out_proj.bias.copy_(ours.out_proj.bias)
        layer.linear1.weight.copy_(block.ffn.up.weight)
        layer.linear1.bias.copy_(block.ffn.up.bias)
        layer.linear2.weight.copy_(block.ffn.down.weight)
        layer.linear2.bias.copy_(block.ffn.down.bias)
        norms = [block.norm_self] + ([block.norm_cross] if cross else []) + [block.norm_ffn]
        ref_norms = [getattr(layer, f"norm{i}") for i in range(1, len(norms) + 1)]
        for ours, ref in zip(norms, ref_norms):
            ref.weight.copy_(ours.weight)
            ref.bias.copy_(ours.bias)


@pytest.mark.parametrize("norm_first", [False, True])
def test_block_equals_torch_layers(norm_first):
    torch.manual_seed(0)
    C, H, F = 16, 4, 32
    x, mem = torch.randn(2, 6, C), torch.randn(2, 9, C)
    enc = tb.Block(C, H, F, dropout=0.0, norm_first=norm_first).eval()
    ref_enc = torch.nn.TransformerEncoderLayer(C, H, F, dropout=0.0, batch_first=True,
                                               norm_first=norm_first).eval()
    _copy_block_to_torch(enc, ref_enc, cross=False)
    pad = tb.padding_mask(torch.tensor([6, 4]), max_len=6)
    assert torch.allclose(enc(x, mask=pad), ref_enc(x, src_key_padding_mask=to_torch_mha(pad[:, 0, 0])),
                          atol=1e-5)

    dec = tb.Block(C, H, F, dropout=0.0, norm_first=norm_first, causal=True, cross_attention=True).eval()
    ref_dec = torch.nn.TransformerDecoderLayer(C, H, F, dropout=0.0, batch_first=True,
                                               norm_first=norm_first).eval()
    _copy_block_to_torch(dec, ref_dec, cross=True)
    causal = to_torch_mha(tb.causal_mask(6)[0, 0])
    assert torch.allclose(dec(x, memory=mem), ref_dec(x, mem, tgt_mask=causal), atol=1e-5)


def test_block_memory_errors():
    with pytest.raises(ValueError, match="no cross-attention"):
        tb.Block(8, 2, 16)(torch.randn(1, 3, 8), memory=torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="memory"):
        tb.Block(8, 2, 16, cross_attention=True)(torch.randn(1, 3, 8))
