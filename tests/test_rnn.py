"""The recurrent baselines: shapes, padding, gradients, the encoder-decoder protocol, a copy task."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.data.synthetic import recall_batch
from transformer_book.models import build
from transformer_book.models.rnn import (RNNClassifier, RNNSeq2Seq, RNNSeq2SeqConfig,
                                         step_gradient_norms)
from transformer_book.utils import count_params

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
