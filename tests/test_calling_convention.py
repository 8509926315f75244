"""One calling convention for every model: token inputs positional, everything else by name.

Also the protocol details that every encoder-decoder shares (encode's weights, "encoder"
weights, hidden states) and generation's left-padded batches, last-position logits and
max_len refusal.
"""
import inspect

import pytest
import torch

from transformer_book.decoding import beam_search, greedy
from transformer_book.models import PRESETS, build
from transformer_book.training import Trainer

ENC_DEC = {"transformer-tiny": {"vocab_size": 30}, "t5-tiny": {"vocab_size": 30},
           "rnn-seq2seq-tiny": {"src_vocab_size": 30, "tgt_vocab_size": 30},
           "rnn-attention-tiny": {"src_vocab_size": 30, "tgt_vocab_size": 30}}


def _ids(B=2, T=5, V=30, seed=0):
    return torch.randint(3, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_forward_takes_its_token_inputs_positionally_and_the_rest_by_name(name):
    cls = PRESETS[name][0]
    params = list(inspect.signature(cls.forward).parameters.values())[1:]  # after self
    positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional in (["input_ids"], ["src", "tgt_in"]), (name, positional)
    assert all(p.kind == p.KEYWORD_ONLY for p in params[len(positional):]), name


def test_encoder_decoder_batches_are_dicts_named_as_forward_names_them():
    torch.manual_seed(0)
    model = build("transformer-tiny", vocab_size=30)
    src, tgt_in, y = _ids(), _ids(T=4, seed=1), _ids(T=4, seed=2)
    t = Trainer(model, device="cpu", progress=False)
    model.eval()  # no dropout: the two calls must agree
    got = t.compute_loss({"src": src, "tgt_in": tgt_in, "targets": y})
    torch.testing.assert_close(got, model(src, tgt_in, targets=y).loss)


@pytest.mark.parametrize("name", sorted(ENC_DEC))
def test_every_encoder_decoder_returns_encoder_weights_and_hidden_states(name):
    torch.manual_seed(0)
    model = build(name, **ENC_DEC[name]).eval()
    src, tgt = _ids(), _ids(T=4, seed=1)
    memory, enc_weights = model.encode(src, return_weights=True)
    torch.testing.assert_close(memory, model.encode(src), atol=1e-5, rtol=1e-4)
    assert isinstance(enc_weights, list)
    out = model(src, tgt, return_weights=True)
    assert set(out.weights) == {"encoder", "self", "cross"}
    assert out.weights["encoder"] == [] or out.weights["encoder"][0].shape[-2:] == (5, 5)
    assert out.hidden is not None and out.hidden.shape[:2] == (2, 4)
    last = model.decode(tgt, memory, src_mask=model.source_mask(src), last_only=True).logits
    torch.testing.assert_close(last[:, 0], out.logits[:, -1], atol=1e-5, rtol=1e-4)


def test_rnn_classifier_refuses_a_row_with_no_real_token_and_returns_its_states():
    torch.manual_seed(0)
    model = build("rnn-classifier", vocab_size=30)
    ids = _ids()
    with pytest.raises(ValueError, match="row 1 has no real token"):
        model(ids, attention_mask=torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    out = model(ids)
    assert out.hidden.shape == (2, 5, model.config.d_hidden)


def test_inputs_are_checked_before_they_are_used():
    torch.manual_seed(0)
    clf = build("gpt1-tiny-classifier", gpt=build("gpt1-tiny", vocab_size=30).config)
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        clf([[1, 2, 3]], targets=torch.tensor([0]))
    t5 = build("t5-tiny", vocab_size=30)
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        t5(_ids(), targets=[[1, 2]])
    with pytest.raises(TypeError, match="tgt_in must be a torch.Tensor"):
        t5(_ids(), [[1, 2]])


def test_transformer_target_padding_mask_goes_through_the_mask_helper():
    torch.manual_seed(0)
    model = build("transformer-tiny", vocab_size=30).eval()
    src, tgt = _ids(), _ids(T=4, seed=1)
    keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        a = model(src, tgt, tgt_mask=keep).logits
        b = model(src, tgt, tgt_mask=keep.bool()[:, None, None, :]).logits
        c = model(src, tgt).logits
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[:, :2], c[:, :2])  # real tokens never see later padding
    with pytest.raises(ValueError, match="tgt_mask must have shape"):
        model(src, tgt, tgt_mask=keep[:, :3])
    with pytest.raises(TypeError, match="tgt_mask"):
        model(src, tgt, tgt_mask=keep.float() * 0.5)


def _gpt():
    torch.manual_seed(0)
    return build("gpt2-tiny", vocab_size=30, max_len=24, n_layers=2).eval()


def test_gpt_last_only_logits_equal_the_last_row_and_refuse_targets():
    gpt, ids = _gpt(), _ids(T=7)
    with torch.no_grad():
        full, last = gpt(ids).logits, gpt(ids, last_only=True).logits
    assert last.shape == (2, 1, 30)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="last_only=True computes no loss"):
        gpt(ids, targets=ids, last_only=True)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("how", ["greedy", "beam"])
def test_left_padded_prompts_decode_as_each_prompt_alone(how, use_cache):
    gpt = _gpt()
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])  # left padding
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])

    def run(prompt, attention_mask=None):
        kw = dict(use_cache=use_cache, attention_mask=attention_mask)
        if how == "greedy":
            return greedy(gpt, prompt, 6, **kw)
        return beam_search(gpt, prompt, 6, beam_size=3, **kw)

    batched = run(ids, mask)
    for i, p in enumerate(prompts):
        alone = run(torch.tensor([p]))
        assert torch.equal(batched[i, T - len(p):], alone[0]), (i, batched[i], alone[0])


def test_generation_refuses_bad_prompt_masks_and_running_past_max_len():
    gpt, ids = _gpt(), _ids(T=4)
    with pytest.raises(ValueError, match="must left-pad the prompts"):
        greedy(gpt, ids, 3, attention_mask=torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="must left-pad the prompts"):
        greedy(gpt, ids, 3, attention_mask=torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"needs 25 positions, more than the model's max_len=24"):
        greedy(gpt, ids, 21)
    with pytest.raises(ValueError, match="max_len=24"):
        beam_search(gpt, ids, 21)
    assert greedy(gpt, ids, 20).shape == (2, 24)  # exactly max_len is fine
    t = build("transformer-tiny", vocab_size=30)
    with pytest.raises(ValueError, match="attention_mask is for decoder-only prompts"):
        greedy(t, ids[:, :1], 2, src=ids, attention_mask=torch.ones(2, 1))
