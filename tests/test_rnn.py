"""The recurrent baselines: shapes, padding, gradients, the encoder-decoder protocol, a copy task."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.data.synthetic import recall_batch
from transformer_book.models import build
from transformer_book.models.rnn import (RNNClassifier, RNNSeq2Seq, RNNSeq2SeqConfig,
                                         step_gradient_norms)
from transformer_book.models import count_params

PAD, BOS, EOS = 0, 1, 2


def test_recall_batch_layout():
    g = torch.Generator().manual_seed(0)
    x, y = recall_batch(64, k=5, n_symbols=4, n_distractors=3, generator=g)
    assert x.shape == (64, 7) and y.shape == (64,)
    assert torch.equal(x[:, 0], y) and bool((y < 4).all())
    assert bool(((x[:, 1:-1] >= 4) & (x[:, 1:-1] < 7)).all())  # distractors never look like symbols
    assert bool((x[:, -1] == 7).all())  # the query token


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_classifier_shapes_and_split(cell):
    torch.manual_seed(0)
    model = build("rnn-classifier", vocab_size=12, n_classes=5, d_model=8, d_hidden=16, cell=cell)
    assert isinstance(model, RNNClassifier) and model.config.cell == cell
    x = torch.randint(0, 12, (3, 9))
    logits = model(x).logits
    assert logits.shape == (3, 5)
    assert torch.equal(logits, model.classify(model.embed(x)))
    norms = step_gradient_norms(model, x, torch.tensor([0, 1, 2]))
    assert norms.shape == (9,) and bool((norms > 0).all())


def test_classifier_contract_loss_and_right_padding():
    torch.manual_seed(0)
    model = build("rnn-classifier", vocab_size=12, n_classes=5, d_model=8, d_hidden=16, cell="lstm")
    x = torch.randint(1, 12, (2, 6))
    y = torch.tensor([3, 1])
    out = model(x, targets=y)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))
    # a right-padded row with its mask is classified as the row alone
    padded = torch.cat([x[:1, :4], torch.zeros(1, 2, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    torch.testing.assert_close(model(padded, attention_mask=mask).logits, model(x[:1, :4]).logits)
    assert not torch.allclose(model(padded).logits, model(x[:1, :4]).logits)


def test_vanilla_rnn_gradient_vanishes_with_distance():
    torch.manual_seed(0)
    model = build("rnn-classifier", vocab_size=17, n_classes=8, d_model=16, d_hidden=32, cell="rnn")
    x, y = recall_batch(128, k=60, generator=torch.Generator().manual_seed(1))
    norms = step_gradient_norms(model, x, y)
    # the last input gets its gradient in one step, the first through 61 tanh steps
    assert norms[0] < 1e-3 * norms[-1]


def test_classifier_rejects_bad_input():
    model = build("rnn-classifier", vocab_size=5, n_classes=2, cell="rnn")
    with pytest.raises(ValueError, match="ids must lie in"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="shape"):
        model(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="cell must be one of"):
        build("rnn-classifier", vocab_size=5, n_classes=2, cell="transformer")


def small_model(cell="gru", **kw):
    torch.manual_seed(0)
    cfg = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=13, d_model=8, d_hidden=16,
                           n_layers=2, cell=cell, pad_id=PAD, **kw)
    return RNNSeq2Seq(cfg).eval()


@pytest.mark.parametrize("cell,states", [("gru", 2), ("lstm", 4), ("rnn", 2)])
def test_seq2seq_shapes(cell, states):
    model = small_model(cell)
    src = torch.randint(3, 11, (4, 7))
    tgt = torch.randint(3, 13, (4, 5))
    memory = model.encode(src)
    assert memory.shape == (4, states, 16)
    assert model.decode(tgt, memory).logits.shape == (4, 5, 13)
    assert torch.equal(model(src, tgt).logits, model.decode(tgt, memory).logits)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_does_not_change_the_encoding(cell):
    model = small_model(cell)
    g = torch.Generator().manual_seed(0)
    short = torch.randint(3, 11, (1, 4), generator=g)
    alone = model.encode(short)
    padded = torch.cat([short, torch.full((1, 5), PAD)], dim=1)  # (1, 9)
    other = torch.randint(3, 11, (1, 9), generator=g)  # a longer neighbour in the batch
    batch = torch.cat([padded, other])
    torch.testing.assert_close(model.encode(batch)[:1], alone)
    torch.testing.assert_close(model.encode(batch)[1:], model.encode(other))
    # with an explicit mask, even non-pad junk after the end is ignored
    junk = torch.cat([short, torch.randint(3, 11, (1, 5), generator=g)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 5])[:, None, None, :]  # (1, 1, 1, 9)
    torch.testing.assert_close(model.encode(junk, mask), alone)
    # and the junk does matter when no mask says it is padding
    assert not torch.allclose(model.encode(junk), alone)


def test_seq2seq_rejects_bad_input():
    model = small_model()
    src = torch.randint(3, 11, (2, 5))
    memory = model.encode(src)
    with pytest.raises(ValueError, match="memory must have shape"):
        model.decode(torch.ones(2, 3, dtype=torch.long), memory[:, :1])
    with pytest.raises(ValueError, match="src_mask must have shape"):
        model.encode(src, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real"):
        model.encode(torch.tensor([[PAD, PAD], [3, 4]]))
    with pytest.raises(ValueError, match="no cache"):
        model.decode(torch.ones(2, 3, dtype=torch.long), memory, cache=[])
    with pytest.raises(ValueError, match="ids must lie in"):
        model.encode(torch.full((1, 3), 11))


def test_presets_build_and_sutskever_size():
    tiny = build("rnn-seq2seq-tiny", src_vocab_size=20, tgt_vocab_size=30)
    assert isinstance(tiny, RNNSeq2Seq) and tiny.lm_head.out_features == 30
    big = build("rnn-seq2seq-sutskever2014", device="meta")
    E = H = 1000
    lstm_layer = 4 * H * (E + H) + 2 * 4 * H  # input and recurrent weights, two bias vectors
    expected = 160_000 * E + 80_000 * E + 2 * 4 * lstm_layer + 80_000 * H + 80_000
    assert count_params(big) == expected
    assert round(count_params(big) / 1e6) == 384  # "384M parameters" (Sutskever et al., 2014)


def copy_data(n, generator):
    """Sources of 3-6 tokens (ids 3..10), right-padded; targets are the same tokens + EOS."""
    lengths = torch.randint(3, 7, (n,), generator=generator)
    src = torch.full((n, 6), PAD)
    tgt = torch.full((n, 8), PAD)
    for i, L in enumerate(lengths.tolist()):
        toks = torch.randint(3, 11, (L,), generator=generator)
        src[i, :L] = toks
        tgt[i, 0] = BOS
        tgt[i, 1:L + 1] = toks
        tgt[i, L + 1] = EOS
    return src, tgt


def test_tiny_copy_task_overfits_and_greedy_decodes_it():
    from transformer_book.decoding import greedy

    torch.manual_seed(0)
    cfg = RNNSeq2SeqConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=32, d_hidden=64,
                           cell="gru", pad_id=PAD)
    model = RNNSeq2Seq(cfg)
    src, tgt = copy_data(32, torch.Generator().manual_seed(0))
    labels = tgt[:, 1:].masked_fill(tgt[:, 1:] == PAD, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        loss = model(src, tgt[:, :-1], targets=labels).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < first
    out = greedy(model, torch.full((32, 1), BOS), max_new_tokens=7, eos_id=EOS, src=src)
    for i in range(32):
        L = int((src[i] != PAD).sum())
        assert out[i, 1:L + 2].tolist() == tgt[i, 1:L + 2].tolist()


# ----------------------------------------------------------------------------- with attention

def attention_model(**kw):
    from transformer_book.models.rnn import AttentionRNNConfig, AttentionRNNSeq2Seq
    torch.manual_seed(0)
    cfg = AttentionRNNConfig(src_vocab_size=11, tgt_vocab_size=13, d_model=8, d_hidden=16,
                             d_attn=12, pad_id=PAD, **kw)
    return AttentionRNNSeq2Seq(cfg).eval()


def test_attention_rnn_shapes_and_weights():
    model = attention_model()
    src = torch.randint(3, 11, (3, 7))
    src[0, 4:] = PAD  # a shorter first row
    tgt = torch.randint(3, 13, (3, 5))
    mask = (src != PAD)[:, None, None, :]  # (B, 1, 1, S)
    memory = model.encode(src, mask)
    assert memory.shape == (3, 7, 32)  # both directions
    assert memory[0, 4:].abs().max() == 0  # nothing at padding
    out = model.decode(tgt, memory, src_mask=mask, return_weights=True)
    logits, (w,) = out.logits, out.weights["cross"]
    assert out.weights["self"] == [] and w.shape == (3, 1, 5, 7)  # one layer, one head
    w = w[:, 0]
    assert logits.shape == (3, 5, 13)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5))
    assert w[0, :, 4:].abs().max() == 0  # padding gets no weight
    torch.testing.assert_close(model(src, tgt).logits, logits)
    # the contract: targets give the loss, and asking for the weights keeps it
    y = torch.randint(3, 13, (3, 5))
    y[0, -1] = -100
    both = model(src, tgt, targets=y, return_weights=True)
    torch.testing.assert_close(both.loss, model(src, tgt, targets=y).loss)
    keep = y != -100
    torch.testing.assert_close(both.loss, F.cross_entropy(logits[keep], y[keep]))
    # a (B, T) 0/1 mask reads the same as the broadcast bool form
    torch.testing.assert_close(model(src, tgt, src_mask=mask[:, 0, 0].long()).logits, logits)


def test_attention_rnn_padding_does_not_change_the_translation():
    model = attention_model()
    g = torch.Generator().manual_seed(0)
    short = torch.randint(3, 11, (1, 4), generator=g)
    other = torch.randint(3, 11, (1, 9), generator=g)
    batch = torch.cat([torch.cat([short, torch.full((1, 5), PAD)], dim=1), other])  # (2, 9)
    tgt = torch.randint(3, 13, (2, 6), generator=g)
    both = model(batch, tgt).logits
    torch.testing.assert_close(both[:1], model(short, tgt[:1]).logits)
    torch.testing.assert_close(both[1:], model(other, tgt[1:]).logits)


def test_attention_rnn_cache_gives_the_same_logits_one_token_at_a_time():
    model = attention_model()
    src = torch.randint(3, 11, (2, 6))
    tgt = torch.randint(3, 13, (2, 5))
    memory = model.encode(src)
    full = model.decode(tgt, memory).logits
    cache = model.make_cache()
    steps = [model.decode(tgt[:, t:t + 1], memory, cache=cache).logits for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    assert cache.seq_len == 5
    # the state follows the rows that beam search keeps
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.state[0], cache.state[1])


def test_attention_rnn_rejects_bad_input():
    model = attention_model()
    src = torch.randint(3, 11, (2, 5))
    memory = model.encode(src)
    tgt = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="memory must have shape"):
        model.decode(tgt, memory[..., :16])
    with pytest.raises(ValueError, match="src_mask must have shape"):
        model.decode(tgt, memory, src_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="src_mask of shape"):
        model.encode(src, torch.ones(2, 1, 1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one real"):
        model.encode(torch.tensor([[PAD, PAD], [3, 4]]))
    with pytest.raises(ValueError, match="ids must lie in"):
        model.decode(torch.full((2, 1), 13), memory)


def test_attention_rnn_presets_build():
    from transformer_book.models.rnn import AttentionRNNSeq2Seq

    model = build("rnn-attention-tiny", src_vocab_size=20, tgt_vocab_size=30)
    assert isinstance(model, AttentionRNNSeq2Seq) and model.lm_head.out_features == 30
    c = model.config
    E, H, A, V = c.d_model, c.d_hidden, c.d_attn, 30
    gru = lambda d_in: 3 * H * (d_in + H) + 2 * 3 * H  # noqa: E731  (GRU: three gates)
    expected = (20 * E + V * E + 2 * gru(E) + (H * H + H) + H * A + (2 * H * A + A) + A
                + gru(E + 2 * H) + ((3 * H + E) * H + H) + (H * V + V))
    assert count_params(model) == expected


def test_attention_rnn_learns_to_reverse_and_decodes_with_and_without_cache():
    from transformer_book.decoding import beam_search, greedy
    from transformer_book.models.rnn import AttentionRNNConfig, AttentionRNNSeq2Seq

    torch.manual_seed(0)
    model = AttentionRNNSeq2Seq(AttentionRNNConfig(src_vocab_size=11, tgt_vocab_size=11,
                                                   d_model=32, d_hidden=48, d_attn=32))
    g = torch.Generator().manual_seed(0)
    src, tgt = copy_data(64, g)
    for i in range(64):  # reverse the source: the first output word is the last input word
        L = int((src[i] != PAD).sum())
        tgt[i, 1:L + 1] = src[i, :L].flip(0)
    labels = tgt[:, 1:].masked_fill(tgt[:, 1:] == PAD, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(src, tgt[:, :-1], targets=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    bos = torch.full((64, 1), BOS)
    mask = (src != PAD)[:, None, None, :]
    out = greedy(model, bos, max_new_tokens=7, eos_id=EOS, src=src, src_mask=mask)
    slow = greedy(model, bos, max_new_tokens=7, eos_id=EOS, src=src, src_mask=mask,
                  use_cache=False)
    assert torch.equal(out, slow)
    beam = beam_search(model, bos, max_new_tokens=7, beam_size=3, eos_id=EOS, src=src,
                       src_mask=mask)
    for hyps in (out, beam):
        right = sum(hyps[i, 1:int((src[i] != PAD).sum()) + 2].tolist()
                    == tgt[i, 1:int((src[i] != PAD).sum()) + 2].tolist() for i in range(64))
        assert right >= 60
