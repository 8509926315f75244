"""Trainer, schedules, label smoothing, checkpoints, and the decoders."""
import math

import pytest
import torch
import torch.nn.functional as F

from transformer_book.decoding import beam_search, filter_logits, greedy, sample
from transformer_book.models import build
from transformer_book.training import (Trainer, label_smoothed_cross_entropy, load_checkpoint,
                                       noam_schedule, save_checkpoint, warmup_cosine)

V = 20


def tiny_lm(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return build("gpt2-tiny", vocab_size=V, d_model=32, n_heads=2, n_layers=2, d_ff=64,
                 max_len=32, dropout=dropout)


def lm_batches(seed=0, B=8, T=12):
    """get_batch(step): a deterministic function of the step, so runs can be resumed."""
    def get_batch(step):
        g = torch.Generator().manual_seed(seed * 100003 + step)
        x = torch.randint(0, V, (B, T + 1), generator=g)
        return x[:, :-1], x[:, 1:]
    return get_batch


def test_label_smoothing_equals_torch():
    torch.manual_seed(0)
    logits, t = torch.randn(6, 7, V), torch.randint(0, V, (6, 7))
    t[0, :3] = -100
    for eps in (0.0, 0.1, 0.3):
        ours = label_smoothed_cross_entropy(logits, t, eps)
        ref = F.cross_entropy(logits.reshape(-1, V), t.reshape(-1), ignore_index=-100,
                              label_smoothing=eps)
        assert torch.allclose(ours, ref, atol=1e-6)


def test_schedules():
    noam = noam_schedule(512, warmup_steps=4000)
    peak = 512 ** -0.5 * 4000 ** -0.5
    assert math.isclose(noam(4000), peak, rel_tol=1e-12)
    assert noam(1) < noam(2) < noam(3999) < noam(4000) > noam(4001)
    assert math.isclose(noam(16000), peak / 2, rel_tol=1e-12)  # 1/sqrt(step) decay
    # min_ratio 0.25 is no warmup value (k / 10), so each check pins one branch
    cos = warmup_cosine(10, 110, min_ratio=0.25)
    assert [cos(k) for k in (1, 2, 10)] == [0.1, 0.2, 1.0]
    assert math.isclose(cos(60), 0.25 + 0.75 * 0.5) and cos(11) < 1.0
    assert cos(110) == 0.25 and cos(500) == 0.25
    for bad in (noam, cos):
        with pytest.raises(ValueError, match="from 1"):
            bad(0)


@pytest.mark.parametrize("kind", ["noam", "cosine"])
def test_schedule_convention_through_the_trainer(kind):
    """The first optimizer step runs at schedule(1) (no repeated first rate) and the rate
    peaks exactly at optimizer step warmup_steps."""
    W, N = 4, 10
    schedule = noam_schedule(64, W) if kind == "noam" else warmup_cosine(W, N, min_ratio=0.1)
    base = 1.0 if kind == "noam" else 0.01
    trainer = Trainer(tiny_lm(), lr=base, device="cpu", progress=False, schedule=schedule)
    trainer.fit(lm_batches(), steps=N)
    lrs = [lr for _, lr in trainer.history["lr"]]
    assert [s for s, _ in trainer.history["lr"]] == list(range(1, N + 1))
    assert lrs == [base * schedule(k) for k in range(1, N + 1)]
    assert max(range(N), key=lrs.__getitem__) == W - 1  # the peak: optimizer step W
    assert all(a < b for a, b in zip(lrs[:W], lrs[1:W]))  # strictly rising, no repeat
    assert all(a > b for a, b in zip(lrs[W - 1:], lrs[W:]))  # then strictly falling


def test_trainer_overfits_a_tiny_batch():
    model = tiny_lm()
    x = torch.randint(0, V, (4, 13), generator=torch.Generator().manual_seed(0))
    trainer = Trainer(model, lr=1e-2, device="cpu", progress=False)
    hist = trainer.fit(lambda step: (x[:, :-1], x[:, 1:]), steps=150)
    first, last = hist["train_loss"][0][1], hist["train_loss"][-1][1]
    assert first > 2.5 and last < 0.05, (first, last)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model = tiny_lm(seed=1)
    trainer = Trainer(model, lr=1e-3, device="cpu", progress=False)
    trainer.fit(lm_batches(), steps=3)
    path = tmp_path / "ck.safetensors"
    trainer.save(path)
    other = tiny_lm(seed=2)
    meta = load_checkpoint(path, other)
    assert meta["step"] == 3
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    assert other.lm_head.weight is other.tok_emb.weight  # still tied after loading


def test_checkpoint_is_safetensors_and_loading_never_unpickles(tmp_path, monkeypatch):
    import json
    import pickle

    trainer = Trainer(tiny_lm(seed=1), lr=1e-3, device="cpu", progress=False)
    trainer.fit(lm_batches(), steps=2)
    path = tmp_path / "ck.safetensors"
    trainer.save(path)
    raw = path.read_bytes()
    # safetensors: 8-byte little-endian header length, a JSON header, then raw tensor bytes
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert json.loads(header["__metadata__"]["book"])["step"] == 2
    entry = header["model.tok_emb.weight"]
    assert entry["dtype"] == "F32" and entry["shape"] == [V, 32]
    assert "model.lm_head.weight" not in header  # the tied copy is stored once
    assert len(raw) == 8 + n + max(e["data_offsets"][1] for k, e in header.items()
                                   if k != "__metadata__")
    assert not raw.startswith(b"\x80") and b"torch._utils" not in raw  # no pickle stream

    def no_pickle(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    other = Trainer(tiny_lm(seed=2), lr=1e-3, device="cpu", progress=False)
    other.load(path)
    assert other.step == 2
    for (k, a), (_, b) in zip(trainer.model.state_dict().items(),
                              other.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_mismatch_is_named(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, tiny_lm())
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(path, build("gpt2-tiny", vocab_size=V + 1, d_model=32, n_heads=2,
                                    n_layers=2, d_ff=64, max_len=32))
    with pytest.raises(ValueError, match="blocks.2"):
        load_checkpoint(path, build("gpt2-tiny", vocab_size=V, d_model=32, n_heads=2,
                                    n_layers=3, d_ff=64, max_len=32))


def test_resume_equals_uninterrupted_run(tmp_path):
    """Dropout on, a schedule, clipping, and batches drawn from Python's and NumPy's global
    generators: 6 steps, save, 6 more == 12 steps straight."""
    import random

    import numpy as np

    def make():
        return Trainer(tiny_lm(seed=3, dropout=0.2), lr=1e-3, device="cpu", progress=False,
                       schedule=warmup_cosine(4, 12), grad_clip=0.5)

    def get_batch(step):  # uses the global Python and NumPy generators
        x = torch.tensor(np.random.randint(0, V, (8, 13)))
        x[:, random.randrange(13)] = 0
        return x[:, :-1], x[:, 1:]

    def seed(s):
        torch.manual_seed(s), random.seed(s), np.random.seed(s)

    seed(10)
    straight = make()
    straight.fit(get_batch, steps=12)

    seed(10)
    first = make()
    first.fit(get_batch, steps=6)
    first.save(tmp_path / "half.safetensors")
    seed(999)  # different RNG states: the checkpoint must restore all three
    resumed = make()
    resumed.load(tmp_path / "half.safetensors")
    assert resumed.seconds == first.seconds > 0  # the elapsed time carries on
    resumed.fit(get_batch, steps=6)

    assert resumed.step == 12
    assert [v for _, v in resumed.history["train_loss"]] == [v for _, v in straight.history["train_loss"]]
    for (n, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), n


def test_trainer_uses_the_models_own_loss_and_accepts_dict_batches():
    """Tuple and dict batches give the same steps; the loss is the model's own (targets=),
    and with label smoothing the Trainer's smoothed loss of the logits instead."""
    x = torch.randint(0, V, (4, 13), generator=torch.Generator().manual_seed(0))
    calls = []

    class Spy(torch.nn.Module):  # records what the Trainer passes
        def __init__(self):
            super().__init__()
            self.lm = tiny_lm()

        def forward(self, input_ids, *, targets=None):
            calls.append(targets is not None)
            out = self.lm(input_ids, targets=targets)
            if targets is not None:
                out.loss = out.loss * 0 + 123.0  # a loss only the model knows
            return out

    t = Trainer(Spy(), lr=1e-3, device="cpu", progress=False)
    assert t.compute_loss((x[:, :-1], x[:, 1:])).item() == 123.0 and calls == [True]
    assert t.compute_loss({"input_ids": x[:, :-1], "targets": x[:, 1:]}).item() == 123.0
    t.label_smoothing = 0.1  # the model's loss is unsmoothed: the Trainer computes its own
    smoothed = t.compute_loss((x[:, :-1], x[:, 1:]))
    assert calls[-1] is False and 0 < smoothed.item() < 10

    a, b = Trainer(tiny_lm(), lr=1e-2, device="cpu", progress=False), \
        Trainer(tiny_lm(), lr=1e-2, device="cpu", progress=False)
    ha = a.fit(lambda step: (x[:, :-1], x[:, 1:]), steps=3)
    hb = b.fit(lambda step: {"input_ids": x[:, :-1], "targets": x[:, 1:]}, steps=3)
    assert ha["train_loss"] == hb["train_loss"]
    with pytest.raises(ValueError, match="targets"):
        b.fit(lambda step: {"input_ids": x[:, :-1]}, steps=1)


def test_eval_hook_and_time_budget():
    calls = []
    trainer = Trainer(tiny_lm(), device="cpu", progress=False, eval_every=2,
                      eval_fn=lambda m: calls.append(m.training) or {"val": 1.0})
    trainer.fit(lm_batches(), steps=5)
    assert calls == [False, False, False]  # steps 2, 4 and the end, in eval mode
    assert [s for s, _ in trainer.history["val"]] == [2, 4, 5]
    t2 = Trainer(tiny_lm(), device="cpu", progress=False)
    t2.fit(lm_batches(), max_seconds=0.0)
    assert t2.step == 0


def test_evaluate_restores_training_mode_when_eval_fn_raises():
    def broken(model):
        raise RuntimeError("eval failed")

    trainer = Trainer(tiny_lm(), device="cpu", progress=False, eval_fn=broken)
    trainer.model.train()
    with pytest.raises(RuntimeError, match="eval failed"):
        trainer.evaluate()
    assert trainer.model.training


def test_mixed_precision_choice(monkeypatch):
    from transformer_book import training
    from transformer_book.device import autocast_dtype
    assert autocast_dtype("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a T4
    assert autocast_dtype("cuda") == torch.float16
    assert Trainer(tiny_lm(), device="cpu", progress=False).scaler is None
    # with fp16 chosen the Trainer scales the loss; in fp32 the power-of-two scale and its
    # unscaling are exact, so the run must equal the unscaled one step for step
    x = torch.randint(0, V, (4, 13), generator=torch.Generator().manual_seed(0))
    plain = Trainer(tiny_lm(), lr=1e-2, device="cpu", progress=False, grad_clip=0.5)
    monkeypatch.setattr(training, "autocast_dtype", lambda device: torch.float16)
    scaled = Trainer(tiny_lm(), lr=1e-2, device="cpu", progress=False, grad_clip=0.5)
    assert scaled.scaler is not None and scaled.scaler.get_scale() > 1
    for t in (plain, scaled):
        t.fit(lambda step: (x[:, :-1], x[:, 1:]), steps=3)
    assert plain.history["train_loss"] == scaled.history["train_loss"]


# ----------------------------------------------------------------------------- decoding

def test_greedy_with_cache_equals_without_and_argmax():
    model = tiny_lm(seed=4).eval()
    prompt = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(1))
    a = greedy(model, prompt, 10)
    b = greedy(model, prompt, 10, use_cache=False)
    assert a.shape == (3, 14) and torch.equal(a, b)
    # by hand: argmax of the full recomputation at every step
    seq = prompt
    for _ in range(10):
        seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(a, seq)


def test_sampling_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    p = torch.softmax(logits, -1)[0]  # 0.64, 0.24, 0.09, ...
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8)[0])
    assert kept.tolist() == [True, True, False, False, False] and p[:2].sum() >= 0.8
    assert (~torch.isinf(filter_logits(logits, top_p=0.5)[0])).sum() == 1  # top token survives
    model = tiny_lm(seed=5).eval()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    s1 = sample(model, prompt, 8, temperature=0.8, top_k=5, generator=g1)
    s2 = sample(model, prompt, 8, temperature=0.8, top_k=5, generator=g2, use_cache=False)
    assert torch.equal(s1, s2)
    low = sample(model, prompt, 8, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(low, greedy(model, prompt, 8))
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompt, 2, temperature=0.0)


def test_beam_search_scores_at_least_greedy_and_is_exhaustive_on_a_tiny_case():
    model = tiny_lm(seed=6).eval()
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(2))

    def logprob(seq):
        logp = torch.log_softmax(model(seq[None, :-1]).logits, -1)[0]
        return sum(logp[t - 1, seq[t]].item() for t in range(3, len(seq)))

    # beam 1 is greedy
    assert torch.equal(beam_search(model, prompt, 5, beam_size=1, length_penalty=0.0),
                       greedy(model, prompt, 5))
    # a beam as wide as the vocabulary finds the exact best 2-token continuation
    best = beam_search(model, prompt, 2, beam_size=V, length_penalty=0.0)
    for b in range(2):
        scores = {}
        for i in range(V):
            for j in range(V):
                seq = torch.cat([prompt[b], torch.tensor([i, j])])
                scores[(i, j)] = logprob(seq)
        top = max(scores, key=scores.get)
        assert tuple(best[b, 3:].tolist()) == top
    wide = beam_search(model, prompt, 6, beam_size=4, length_penalty=0.0)
    narrow = greedy(model, prompt, 6)
    for b in range(2):
        assert logprob(wide[b]) >= logprob(narrow[b]) - 1e-6


def test_decoders_stop_at_eos_and_check_prompt():
    model = tiny_lm(seed=7).eval()
    prompt = torch.zeros(1, 2, dtype=torch.long)
    first = greedy(model, prompt, 1)[0, -1].item()  # make the first greedy token the EOS
    out = greedy(model, prompt, 10, eos_id=first)
    assert out.shape == (1, 3)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        greedy(model, torch.zeros(3, dtype=torch.long), 2)


def test_gpt_contract_loss_with_weights_and_padding_mask():
    """Asking for the weights never drops the loss; a (B, T) mask hides left padding."""
    model = tiny_lm(seed=8).eval()
    x = torch.randint(1, V, (2, 7), generator=torch.Generator().manual_seed(3))
    y = x.roll(-1, 1)
    y[:, -1] = -100
    out = model(x, targets=y, return_weights=True)
    torch.testing.assert_close(out.loss, model(x, targets=y).loss)
    assert out.weights["cross"] == [] and len(out.weights["self"]) == 2
    assert out.weights["self"][0].shape == (2, 2, 7, 7)
    keep = y != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], y[keep]))
    # left-pad row 0 by 3 with junk; the mask makes its last logits equal the unpadded run
    # (positions are absolute in GPT, so compare against the same shifted positions)
    junk = torch.cat([torch.full((2, 3), 5), x], dim=1)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[:, :3] = 0
    masked = model(junk, attention_mask=mask).logits
    assert not torch.allclose(masked, model(junk).logits, atol=1e-4)
    for form in (mask.bool(), mask.bool()[:, None, None, :]):
        torch.testing.assert_close(model(junk, attention_mask=form).logits, masked)


ENC_DEC = {
    "transformer": lambda: build("transformer-tiny", vocab_size=V, max_len=32, dropout=0.0),
    "t5": lambda: build("t5-tiny", vocab_size=V, d_model=32, n_heads=2, d_head=16, d_ff=64,
                        n_layers=2),
    "rnn": lambda: build("rnn-seq2seq-tiny", src_vocab_size=V, tgt_vocab_size=V),
}


@pytest.mark.parametrize("name", list(ENC_DEC))
def test_padded_source_decoded_without_a_mask_equals_each_sentence_alone(name):
    """The bug of issue 8: with src_mask=None, decode used to read the padding that encode
    had masked. Now the decoders build the same mask as forward from the model's pad id."""
    torch.manual_seed(0)
    model = ENC_DEC[name]().eval()
    g = torch.Generator().manual_seed(1)
    lengths = [3, 7, 5]
    rows = [torch.randint(3, V, (n,), generator=g) for n in lengths]
    src = torch.zeros(3, 7, dtype=torch.long)  # pad id 0 on the right
    for i, r in enumerate(rows):
        src[i, :len(r)] = r
    bos = torch.ones(3, 1, dtype=torch.long)
    for decode in (lambda src: greedy(model, bos[:len(src)], 6, src=src),
                   lambda src: greedy(model, bos[:len(src)], 6, src=src, use_cache=False),
                   lambda src: beam_search(model, bos[:len(src)], 6, beam_size=3, src=src)):
        batch = decode(src)
        alone = [decode(r[None]) for r in rows]
        for i in range(3):
            a = alone[i][0]
            torch.testing.assert_close(batch[i, :len(a)], a)
    if name != "rnn":  # the test can fail: decoding while attending to the padding differs
        memory = model.encode(src)
        leaky = model.decode(bos, memory, src_mask=None).logits
        right = model.decode(bos, memory, src_mask=model.source_mask(src)).logits
        assert not torch.allclose(leaky[0], right[0], atol=1e-4)


def test_cross_attention_cache_cannot_serve_another_source():
    model = ENC_DEC["transformer"]().eval()
    src_a, src_b = torch.randint(3, V, (2, 5)), torch.randint(3, V, (3, 6))
    bos = torch.ones(3, 1, dtype=torch.long)
    cache = model.make_cache()
    model.decode(bos[:2], model.encode(src_a), cache=cache)
    with pytest.raises(ValueError, match="reset"):
        model.decode(bos, model.encode(src_b), cache=cache)
    cache.reset()
    assert cache.seq_len == 0
    mem_b = model.encode(src_b)
    got = model.decode(bos, mem_b, cache=cache).logits
    torch.testing.assert_close(got, model.decode(bos, mem_b).logits)


def test_adamw_param_groups_one_rule_for_the_trainer_and_the_command_line():
    from transformer_book.training import adamw_param_groups
    model = tiny_lm()
    frozen = model.pos_emb.table if hasattr(model.pos_emb, "table") else next(
        model.pos_emb.parameters())
    frozen.requires_grad_(False)  # in no group
    groups = adamw_param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in groups[0]["params"])
    assert all(p.dim() < 2 for p in groups[1]["params"]) and groups[1]["params"]
    ids = {id(p) for g in groups for p in g["params"]}
    assert ids == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(frozen) not in ids
    opt = Trainer(model, weight_decay=0.1, device="cpu", progress=False).optimizer
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == \
        [[id(p) for p in g["params"]] for g in groups]
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0, got -1"):
        adamw_param_groups(model, -1)
