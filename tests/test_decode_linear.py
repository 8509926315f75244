"""The decoding fast path (attention.decode_linear and the stacked q/k/v's transposed copy)."""
import torch
import torch.nn as nn

from transformer_book.attention import DECODE_ROWS, KVCache, MultiHeadAttention, decode_linear


def test_decode_linear_matches_linear_and_follows_weight_updates():
    torch.manual_seed(0)
    lin = nn.Linear(32, 96)
    for rows in (1, 2, 3, 4, DECODE_ROWS, DECODE_ROWS + 1):
        x = torch.randn(1, rows, 32)
        with torch.no_grad():
            torch.testing.assert_close(decode_linear(lin, x), lin(x), rtol=1e-6, atol=1e-6)
    x = torch.randn(1, 1, 32)
    with torch.no_grad():
        decode_linear(lin, x)
        assert "_decode_cache" in lin.__dict__  # the transposed copy was built and kept
        lin.weight.add_(1.0)  # an in-place update (as an optimizer step): the copy is rebuilt
        torch.testing.assert_close(decode_linear(lin, x), lin(x), rtol=1e-6, atol=1e-6)


def test_decode_linear_leaves_training_and_narrowing_products_alone():
    torch.manual_seed(0)
    lin = nn.Linear(32, 96)
    x = torch.randn(1, 1, 32)
    y = decode_linear(lin, x)  # gradients wanted: the ordinary product, the same to the bit
    assert y.requires_grad and torch.equal(y, lin(x)) and "_decode_cache" not in lin.__dict__
    down = nn.Linear(96, 32)  # narrowing: read faster as it lies, so no copy
    with torch.no_grad():
        x96 = torch.randn(1, 1, 96)
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
