"""The robustness table of issue 8: every public entry, fed bad input, raises a named error
(ValueError / TypeError / KeyError) whose message names what was expected and what came."""
import pytest
import torch

from transformer_book.models import build
from transformer_book.models.output import check_token_ids

V = 20

# name -> (model factory, forward taking ids (B, T) for every id input of the model)
MODELS = {
    "gpt": (lambda: build("gpt2-tiny", vocab_size=V, n_layers=1, max_len=16),
            lambda m, ids: m(ids)),
    "bert": (lambda: build("bert-tiny", vocab_size=V, n_layers=1, max_len=16),
             lambda m, ids: m(ids)),
    "bert-mlm": (lambda: build("bert-tiny-mlm", vocab_size=V, n_layers=1, max_len=16),
                 lambda m, ids: m(ids)),
    "bert-classifier": (lambda: build("bert-tiny-classifier", vocab_size=V, n_layers=1,
                                      max_len=16),
                        lambda m, ids: m(ids)),
    "t5-src": (lambda: build("t5-tiny", vocab_size=V, n_layers=1),
               lambda m, ids: m(ids, torch.zeros(max(len(ids), 1), 2, dtype=torch.long))),
    "t5-tgt": (lambda: build("t5-tiny", vocab_size=V, n_layers=1),
               lambda m, ids: m(torch.ones(max(len(ids), 1), 3, dtype=torch.long), ids)),
    "transformer-src": (lambda: build("transformer-tiny", vocab_size=V, max_len=16),
                        lambda m, ids: m(ids, torch.ones(max(len(ids), 1), 2, dtype=torch.long))),
    "transformer-tgt": (lambda: build("transformer-tiny", vocab_size=V, max_len=16),
                        lambda m, ids: m(torch.ones(max(len(ids), 1), 3, dtype=torch.long), ids)),
    "rnn-seq2seq-src": (lambda: build("rnn-seq2seq-tiny", src_vocab_size=V, tgt_vocab_size=V),
                        lambda m, ids: m(ids, torch.ones(max(len(ids), 1), 2, dtype=torch.long))),
    "rnn-classifier": (lambda: build("rnn-classifier", vocab_size=V, n_classes=3),
                       lambda m, ids: m(ids)),
}
HAS_MAX_LEN = {"gpt", "bert", "bert-mlm", "bert-classifier", "transformer-src", "transformer-tgt"}


def ok_ids(B=2, T=5):
    return torch.randint(1, V, (B, T), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(MODELS))
def test_good_ids_run_in_both_int_dtypes(name):
    make, fwd = MODELS[name]
    model = make().eval()
    with torch.no_grad():
        a, b = fwd(model, ok_ids()), fwd(model, ok_ids().int())
    torch.testing.assert_close(a.logits, b.logits)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("case", ["id_too_big", "id_negative", "float", "rank1", "rank3",
                                  "empty_batch", "empty_length", "too_long", "not_a_tensor"])
def test_bad_token_ids(name, case):
    make, fwd = MODELS[name]
    model = make().eval()
    ids = ok_ids()
    exc, words = ValueError, []
    if case == "id_too_big":
        ids[1, 3] = V + 7
        words = [f"[1, 3] = {V + 7}", f"vocab_size={V}"]
    elif case == "id_negative":
        ids[0, 2] = -1
        words = ["[0, 2] = -1", f"vocab_size={V}"]
    elif case == "float":
        ids, exc, words = ids.float(), TypeError, ["torch.int64", "torch.float32"]
    elif case == "rank1":
        ids, words = ids[0], ["(B, T)", "(5,)"]
    elif case == "rank3":
        ids, words = ids[None], ["(B, T)", "(1, 2, 5)"]
    elif case == "empty_batch":
        ids, words = ids[:0], ["empty batch", "(0, 5)"]
    elif case == "empty_length":
        ids, words = ids[:, :0], ["empty batch", "(2, 0)"]
    elif case == "too_long":
        if name not in HAS_MAX_LEN:
            pytest.skip("no maximum length (relative positions or a recurrence)")
        ids, words = torch.ones(1, 17, dtype=torch.long), ["length 17", "max_len=16"]
    elif case == "not_a_tensor":
        ids, exc, words = ids.tolist(), TypeError, ["torch.Tensor", "list"]
    with pytest.raises(exc) as info, torch.no_grad():
        fwd(model, ids)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_check_token_ids_reports_the_first_bad_position_and_respects_the_cache_offset():
    ids = torch.tensor([[1, 2, 3], [4, 99, 100]])
    with pytest.raises(ValueError, match=r"idx\[1, 1\] = 99 .*vocab_size=50"):
        check_token_ids(ids, 50)
    check_token_ids(ids, 101, max_len=5, offset=2)
    with pytest.raises(ValueError, match="after 3 cached positions"):
        check_token_ids(ids, 101, max_len=5, offset=3)


def test_targets_out_of_range_name_the_value():
    model = build("gpt2-tiny", vocab_size=V, n_layers=1).eval()
    y = ok_ids()
    y[0, 0] = -100  # ignored: fine
    model(ok_ids(), targets=y)
    y[1, 4] = V
    with pytest.raises(ValueError, match=rf"holds {V} .*\[0, {V}\) or be -100"):
        model(ok_ids(), targets=y)
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 5\)"):
        model(ok_ids(), targets=y[:, :3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bad_ids_raise_value_error_on_cuda_too():
    model = build("gpt2-tiny", vocab_size=V, n_layers=1).cuda()
    ids = ok_ids().cuda()
    ids[1, 2] = V
    with pytest.raises(ValueError, match=rf"\[1, 2\] = {V}"):
        model(ids)
    torch.cuda.synchronize()  # no device-side assert is pending
    model(ok_ids().cuda())
