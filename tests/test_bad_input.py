"""The robustness table of issue 8: every public entry, fed bad input, raises a named error
(ValueError / TypeError / KeyError) whose message names what was expected and what came."""
import pytest
import torch

from transformer_book.models import build
from transformer_book.models.output import check_token_ids
from transformer_book.training import Trainer

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


# ------------------------------------------------------------------------- padding masks
@pytest.mark.parametrize("case, exc, words", [
    ("wrong_length", ValueError, ["(B, T) = (2, 5)", "(2, 4)"]),
    ("wrong_rank", ValueError, ["(B, 1, 1, T) = (2, 1, 1, 5)", "(2, 1, 5)"]),
    ("float_not_01", TypeError, ["bool or integer 0/1", "torch.float32"]),
    ("nan", TypeError, ["bool or integer 0/1"]),
    ("int_not_01", ValueError, ["only 0 and 1", "[0, 2]", "torch.int64"]),
    ("broadcast_not_bool", TypeError, ["must be bool", "torch.int64"]),
    ("not_a_tensor", TypeError, ["torch.Tensor", "list"]),
])
@pytest.mark.parametrize("name", ["gpt", "bert", "transformer-src", "t5-src"])
def test_bad_padding_masks(name, case, exc, words):
    make, _ = MODELS[name]
    model = make().eval()
    ids = ok_ids()
    mask = {"wrong_length": torch.ones(2, 4, dtype=torch.long),
            "wrong_rank": torch.ones(2, 1, 5, dtype=torch.bool),
            "float_not_01": torch.full((2, 5), 0.5),
            "nan": torch.full((2, 5), float("nan")),
            "int_not_01": torch.tensor([[1, 1, 2, 1, 0], [1, 1, 1, 1, 1]]),
            "broadcast_not_bool": torch.ones(2, 1, 1, 5, dtype=torch.long),
            "not_a_tensor": [[1] * 5] * 2}[case]
    with pytest.raises(exc) as info, torch.no_grad():
        if name.endswith("-src"):
            model(ids, ids[:, :2], src_mask=mask)
        else:
            model(ids, attention_mask=mask)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("name", ["gpt", "bert", "transformer-src", "t5-src", "rnn-classifier"])
def test_float_masks_are_refused_not_guessed(name):
    """An additive mask's 0 means "keep"; a 0/1 mask's 0 means "drop". An all-zero float mask
    (additive: nothing masked) used to be read as 0/1 and mask every token, silently. Every
    float mask is now a TypeError that says why, and the bool and integer forms still run."""
    make, _ = MODELS[name]
    model = make().eval()
    ids = ok_ids()

    def run(mask):
        with torch.no_grad():
            if name.endswith("-src"):
                return model(ids, ids[:, :2], src_mask=mask).logits
            return model(ids, attention_mask=mask).logits

    additive_nothing_masked = torch.zeros(2, 5)
    for mask in (additive_nothing_masked, torch.ones(2, 5), torch.ones(2, 5).half(),
                 torch.ones(2, 1, 1, 5)):
        with pytest.raises(TypeError) as info:
            run(mask)
        msg = str(info.value)
        for words in ("bool or integer 0/1", str(mask.dtype), "additive", "refused"):
            assert words in msg, (words, msg)
    full = run(None)
    for mask in (torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 5, dtype=torch.long),
                 torch.ones(2, 5, dtype=torch.int32), torch.ones(2, 1, 1, 5, dtype=torch.bool)):
        if name == "rnn-classifier" and mask.dim() == 4:
            continue
        torch.testing.assert_close(run(mask), full)


# ------------------------------------------------------------------------------- build
def test_build_unknown_preset_and_field():
    with pytest.raises(ValueError, match=r"unknown preset 'gpt5'; expected one of \[.*'gpt2'"):
        build("gpt5")
    with pytest.raises(ValueError, match=r"no config field\(s\) \['n_expert'\].*'n_layers'"):
        build("gpt2-tiny", n_expert=8)


# --------------------------------------------------------------------------- decoding
def _lm():
    torch.manual_seed(0)
    return build("gpt2-tiny", vocab_size=V, n_layers=1, max_len=16).eval()


@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
@pytest.mark.parametrize("case, exc, words", [
    ("float", TypeError, ["torch.int64", "torch.float32"]),
    ("rank1", ValueError, ["(B, T)", "(3,)"]),
    ("empty_batch", ValueError, ["empty batch", "(0, 3)"]),
    ("no_token", ValueError, ["at least one token"]),
    ("id_out_of_range", ValueError, [f"= {V + 1}", f"vocab_size={V}"]),
    ("negative_steps", ValueError, ["max_new_tokens", "-1"]),
    ("too_long", ValueError, ["max_len=16"]),
    ("src_for_decoder_only", ValueError, ["src", "encode/decode"]),
])
def test_decoders_reject_bad_input(decoder, case, exc, words):
    from transformer_book import decoding
    model, prompt, n, kw = _lm(), ok_ids(2, 3), 4, {}
    if case == "float":
        prompt = prompt.float()
    elif case == "rank1":
        prompt = prompt[0, :3]
    elif case == "empty_batch":
        prompt = prompt[:0]
    elif case == "no_token":
        prompt = prompt[:, :0]
    elif case == "id_out_of_range":
        prompt[1, 0] = V + 1
    elif case == "negative_steps":
        n = -1
    elif case == "too_long":
        n = 20  # 3 + 20 > max_len: caught at the step that would exceed it
    elif case == "src_for_decoder_only":
        kw = {"src": ok_ids(2, 4)}
    with pytest.raises(exc) as info:
        getattr(decoding, decoder)(model, prompt, n, **kw)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_encoder_decoder_decoding_checks_its_source():
    from transformer_book.decoding import beam_search, greedy
    model = build("transformer-tiny", vocab_size=V, max_len=16).eval()
    bos = torch.ones(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="needs src"):
        greedy(model, bos, 3)
    with pytest.raises(ValueError, match=r"src must have shape \(B=2, S\).*\(3, 4\)"):
        beam_search(model, bos, 3, src=ok_ids(3, 4))
    bad = ok_ids(2, 4)
    bad[0, 1] = V
    with pytest.raises(ValueError, match=rf"src\[0, 1\] = {V}"):
        greedy(model, bos, 3, src=bad)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, bos, 3, beam_size=0, src=ok_ids(2, 4))


# ------------------------------------------------------------------------- tokenizers
def _tokenizers():
    from transformer_book.tokenizers import ByteBPETokenizer, CharTokenizer, WordPieceTokenizer
    return {
        "char": CharTokenizer.from_text("abc ", specials=["<pad>"]),
        "bpe": ByteBPETokenizer.train("the cat sat on the mat " * 20, 270),
        "wordpiece": WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat"]),
    }


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece"])
def test_tokenizers_reject_bad_input(kind):
    tok = _tokenizers()[kind]
    n = tok.vocab_size
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tok.encode(b"the cat")
    with pytest.raises(TypeError, match="text must be a str, got NoneType"):
        tok.encode(None)
    with pytest.raises(ValueError, match=rf"id {n} at position 1 .*vocab_size={n}"):
        tok.decode([0, n])
    with pytest.raises(ValueError, match=r"id -1 at position 0"):
        tok.decode(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"one sequence.*\(2, 2\)"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integers, got a torch.float32"):
        tok.decode(torch.zeros(3))
    with pytest.raises(TypeError, match="ints, got float 1.5 at position 1"):
        tok.decode([0, 1.5])
    assert isinstance(tok.decode(torch.tensor([0, 1])), str)  # the good path still works


def test_unknown_character_and_wordpiece_batch_errors():
    tok = _tokenizers()
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok["char"].encode("abz")
    with pytest.raises(ValueError, match="non-empty list"):
        tok["wordpiece"]([])
    with pytest.raises(ValueError, match=r"one entry per text \(2\), got 1"):
        tok["wordpiece"](["the", "cat"], pairs=["cat"])


# ----------------------------------------------------------------------------- Trainer
def test_trainer_rejects_bad_arguments_and_batches():
    from transformer_book.training import Trainer
    with pytest.raises(TypeError, match="nn.Module, got str"):
        Trainer("gpt2", device="cpu")
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -0.1"):
        Trainer(_lm(), lr=-0.1, device="cpu")
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\), got 1.5"):
        Trainer(_lm(), label_smoothing=1.5, device="cpu")
    with pytest.raises(TypeError, match="schedule must be None or a callable"):
        Trainer(_lm(), schedule=0.5, device="cpu")
    t = Trainer(_lm(), device="cpu", progress=False)
    with pytest.raises(ValueError, match="steps, max_seconds, or both"):
        t.fit(lambda s: None)
    with pytest.raises(ValueError, match="steps must be an int >= 0, got -3"):
        t.fit(lambda s: None, steps=-3)
    with pytest.raises(TypeError, match=r"\(inputs, targets\) or a dict .* got str"):
        t.fit(lambda s: "a batch", steps=1)
    with pytest.raises(ValueError, match=r"'targets' entry .* got keys \['input_ids'\]"):
        t.fit(lambda s: {"input_ids": ok_ids()}, steps=1)
    with pytest.raises(ValueError, match=rf"= {V} .*vocab_size={V}"):
        t.fit(lambda s: (torch.full((2, 5), V), ok_ids()), steps=1)
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 5\), got \(2, 4\)"):
        t.fit(lambda s: (ok_ids(), ok_ids()[:, :4]), steps=1)
    assert t.step == 0  # no bad batch took a step


def test_trainer_stops_on_a_nan_loss():
    from transformer_book.training import Trainer

    class Reg(torch.nn.Module):  # a model fed NaN features
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x)

    t = Trainer(Reg(), device="cpu", progress=False)
    x = torch.full((4, 3), float("nan"))
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        t.fit(lambda s: (x, torch.zeros(4, dtype=torch.long)), steps=2)


# --------------------------------------------------------------------- load_checkpoint
@pytest.mark.parametrize("case, exc, words", [
    ("shape", ValueError, ["tok_emb.weight", f"({V + 1}, 128)", f"({V}, 128)"]),
    ("missing", ValueError, ["has no tensor for 'blocks.1"]),
    ("extra", ValueError, ["'blocks.1", "that the model does not have"]),
    ("optimizer", ValueError, ["optimizer groups", "the optimizer has"]),
    ("not_safetensors", ValueError, ["is not a safetensors checkpoint"]),
    ("foreign_safetensors", ValueError, ["not a checkpoint written by save_checkpoint"]),
    ("no_file", FileNotFoundError, ["no checkpoint file"]),
])
def test_failed_load_checkpoint_leaves_everything_unchanged(tmp_path, case, exc, words):
    from safetensors.torch import save_file

    from transformer_book.training import load_checkpoint, save_checkpoint
    path = tmp_path / "ck.safetensors"
    donor_cfg, target_cfg = {
        "shape": ({"vocab_size": V + 1}, {}),
        "missing": ({"n_layers": 1}, {"n_layers": 2}),
        "extra": ({"n_layers": 2}, {"n_layers": 1}),
    }.get(case, ({}, {}))

    def make(seed, cfg):
        torch.manual_seed(seed)
        return build("gpt2-tiny", **{"vocab_size": V, "n_layers": 1, "max_len": 16, **cfg})

    donor = make(1, donor_cfg)
    opt = torch.optim.AdamW(donor.parameters())
    donor(ok_ids(), targets=ok_ids()).loss.backward()
    opt.step()
    save_checkpoint(path, donor, opt)
    if case == "not_safetensors":
        path.write_bytes(b"\x80\x04 this is not a safetensors file")
    elif case == "foreign_safetensors":
        save_file({"w": torch.zeros(2)}, str(path))
    elif case == "no_file":
        path = tmp_path / "missing.safetensors"

    model = make(2, target_cfg)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params[:1] if case == "optimizer" else params)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(exc) as info:
        load_checkpoint(path, model, optimizer)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not optimizer.state  # the optimizer was not half-loaded either
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_mask_passed_where_segment_ids_went_now_raises():
    """The misreading: BERT(ids, mask) used to read the 0/1 mask as segment ids."""
    torch.manual_seed(0)
    bert = build("bert-tiny-classifier", vocab_size=30, n_classes=2)
    ids = torch.randint(3, 30, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with pytest.raises(TypeError, match="positional argument"):
        bert(ids, mask)
    # the Trainer's tuple form is (inputs, targets) only; a longer tuple is refused
    t = Trainer(bert, device="cpu", progress=False)
    with pytest.raises(TypeError, match=r"got a tuple of 3: .* use a dict"):
        t.fit(lambda step: (ids, mask, torch.tensor([0, 1])), steps=1)
    # and the dict form names each input: the same step as calling the model by name
    batch = {"input_ids": ids, "attention_mask": mask, "targets": torch.tensor([0, 1])}
    want = bert(ids, attention_mask=mask, targets=batch["targets"]).loss
    assert torch.equal(t.compute_loss(batch), want)
