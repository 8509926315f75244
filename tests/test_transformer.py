"""The 2017 encoder-decoder Transformer: shapes, masks, parameter counts, incremental decoding."""
import pytest
import torch

from transformer_book.models import build
from transformer_book.models.transformer import Transformer, TransformerConfig
from transformer_book.models import count_params

PAD = 0


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, max_len=32, d_model=32, n_heads=4, n_layers=2, d_ff=64,
               dropout=0.0)
    cfg.update(overrides)
    return Transformer(TransformerConfig(**cfg)).eval()


def ids(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 50, (B, T), generator=g)


def test_output_shapes_and_memory():
    model = tiny()
    src, tgt = ids(3, 7), ids(3, 5, seed=1)
    assert model(src, tgt).logits.shape == (3, 5, 50)
    memory = model.encode(src)
    assert memory.shape == (3, 7, 32)
    out = model.decode(tgt, memory, return_weights=True)
    logits, w = out.logits, out.weights
    assert logits.shape == (3, 5, 50)
    assert len(w["cross"]) == 2 and w["cross"][0].shape == (3, 4, 5, 7)
    assert w["self"][1].shape == (3, 4, 5, 5)
    torch.testing.assert_close(w["cross"][0].sum(-1), torch.ones(3, 4, 5))


@pytest.mark.parametrize("name, expected", [("transformer-base", 63_082_496),
                                            ("transformer-big", 214_245_376)])
def test_paper_parameter_counts(name, expected):
    model = build(name, vocab_size=37000, device="meta")
    assert count_params(model) == expected
    # the output projection is the embedding matrix, not a copy
    assert model.out_proj.weight is model.embed.weight


def test_decoder_is_causal():
    model = tiny()
    src, tgt = ids(2, 6), ids(2, 8, seed=1)
    base = model(src, tgt).logits
    changed = tgt.clone()
    changed[:, 5:] = ids(2, 3, seed=2)
    out = model(src, changed).logits
    torch.testing.assert_close(out[:, :5], base[:, :5])
    assert not torch.allclose(out[:, 5:], base[:, 5:])


def test_source_padding_changes_nothing():
    model = tiny()
    src, tgt = ids(2, 6), ids(2, 5, seed=1)
    ref = model(src, tgt).logits
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    torch.testing.assert_close(model(padded, tgt).logits, ref, atol=1e-5, rtol=1e-5)
    # an explicit mask, in each accepted form, gives the same as the one derived from pad_id
    for mask in (padded.ne(PAD)[:, None, None, :], padded.ne(PAD), padded.ne(PAD).long()):
        torch.testing.assert_close(model(padded, tgt, src_mask=mask).logits, ref,
                                   atol=1e-5, rtol=1e-5)
    # without any mask the padding leaks into the result (so the test above can fail)
    leaky = tiny(pad_id=None)
    assert not torch.allclose(leaky(padded, tgt).logits, leaky(src, tgt).logits, atol=1e-4)


def test_target_padding_changes_nothing_at_real_positions():
    model = tiny()
    src, tgt = ids(2, 6), ids(2, 5, seed=1)
    ref = model(src, tgt).logits
    padded = torch.cat([tgt, torch.full((2, 3), PAD)], dim=1)
    torch.testing.assert_close(model(src, padded).logits[:, :5], ref, atol=1e-5, rtol=1e-5)


def test_mixed_lengths_in_one_batch_equal_single_runs():
    model = tiny()
    a, b = ids(1, 4), ids(1, 7, seed=3)
    ta, tb = ids(1, 3, seed=4), ids(1, 6, seed=5)
    src = torch.full((2, 7), PAD)
    src[0, :4], src[1] = a[0], b[0]
    tgt = torch.full((2, 6), PAD)
    tgt[0, :3], tgt[1] = ta[0], tb[0]
    out = model(src, tgt).logits
    torch.testing.assert_close(out[0, :3], model(a, ta).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], model(b, tb).logits[0], atol=1e-5, rtol=1e-5)


def test_incremental_decoding_equals_full_recomputation():
    model = tiny()
    src = torch.cat([ids(2, 5), torch.full((2, 2), PAD)], dim=1)
    src[1, 5:] = ids(1, 2, seed=9)[0]
    src_mask = model.source_mask(src)
    tgt = ids(2, 6, seed=1)
    memory = model.encode(src, src_mask)
    full = model.decode(tgt, memory, src_mask=src_mask).logits
    cache = model.make_cache()
    steps = [model.decode(tgt[:, t:t + 1], memory, src_mask=src_mask, cache=cache).logits
             for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.seq_len == 6


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    src, tgt = ids(2, 6), ids(2, 5, seed=1)
    torch.testing.assert_close(model(src, tgt).logits, model(src, tgt).logits)
    model.train()
    assert not torch.allclose(model(src, tgt).logits, model(src, tgt).logits)


def test_embeddings_are_scaled_and_positions_added():
    """What the first encoder block receives: embedding * sqrt(d_model) + PE (read with a
    hook on the public forward, not by calling a private helper)."""
    from transformer_book.positional import sinusoidal_encoding
    model = tiny()
    src = ids(1, 4)
    seen = []
    hook = model.encoder[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    model.encode(src)
    hook.remove()
    expected = model.embed.weight[src] * 32 ** 0.5 + sinusoidal_encoding(4, 32)
    torch.testing.assert_close(seen[0], expected)


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    with pytest.raises(TypeError, match="src must hold integer token ids"):
        model(torch.randn(2, 5), ids(2, 3))
    with pytest.raises(ValueError, match="max_len"):
        model(ids(1, 40), ids(1, 3))
    with pytest.raises(ValueError, match="memory"):
        model.decode(ids(2, 3), torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="unknown preset"):
        build("transformer-huge")


def test_contract_loss_and_weights_together():
    """targets= gives the loss (-100 ignored) and asking for weights does not drop it."""
    model = tiny()
    src = torch.cat([ids(2, 5), torch.full((2, 2), PAD)], dim=1)
    tgt = ids(2, 4, seed=1)
    y = ids(2, 4, seed=2)
    y[0, 2:] = -100
    out = model(src, tgt, targets=y, return_weights=True)
    keep = y != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], y[keep])
    torch.testing.assert_close(out.loss, expected)
    assert set(out.weights) == {"encoder", "self", "cross"}
    assert [len(v) for v in out.weights.values()] == [2, 2, 2]
    assert out.weights["encoder"][0].shape == (2, 4, 7, 7)
    assert out.weights["cross"][1].shape == (2, 4, 4, 7)
    assert float(out.weights["cross"][0][..., 5:].detach().abs().max()) == 0.0  # pads unread
    assert model(src, tgt).loss is None and model(src, tgt).weights is None
