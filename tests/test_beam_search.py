"""Beam search: EOS, the length penalty, early stopping, the cache, batches, and two exact
references (greedy for beam 1, exhaustive enumeration for a beam that holds every prefix)."""
import itertools

import pytest
import torch

from transformer_book.decoding import beam_search, greedy
from transformer_book.models import build


class TableLM(torch.nn.Module):
    """A language model whose next-token logits are a fixed table of the last token.

    No cache: the decoders recompute the whole prefix, which is exact for this model.
    """

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(logits, requires_grad=False)  # (V, V)
        self.calls = 0

    def forward(self, idx, cache=None):
        self.calls += 1
        return self.table[idx]  # (B, T, V)


def random_table(V, seed):
    g = torch.Generator().manual_seed(seed)
    return TableLM(2.0 * torch.randn(V, V, generator=g))


def exhaustive_best(model, prompt_row, n_max, eos, alpha):
    """The best continuation by enumeration: every sequence of n <= n_max new tokens that
    either ends at its first EOS or has n_max tokens, scored log p / ((5 + n) / 6) ** alpha."""
    V = model.table.shape[0]
    logp = torch.log_softmax(model.table.double(), dim=-1)  # (V, V)
    best, best_seq = -float("inf"), None
    for n in range(1, n_max + 1):
        for cont in itertools.product(range(V), repeat=n):
            if eos in cont[:-1] or (n < n_max and cont[-1] != eos):
                continue
            prev, total = prompt_row[-1], 0.0
            for t in cont:
                total += logp[prev, t].item()
                prev = t
            score = total / ((5 + n) / 6) ** alpha
            if score > best:
                best, best_seq = score, list(cont)
    return best_seq


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0, -0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_that_holds_every_prefix_equals_exhaustive_search(alpha, seed):
    V, N, eos = 4, 3, 3
    model = random_table(V, seed)
    prompt = torch.tensor([[0], [1], [2]])
    out = beam_search(model, prompt, N, beam_size=V ** N, length_penalty=alpha, eos_id=eos)
    for b in range(3):
        want = exhaustive_best(model, prompt[b].tolist(), N, eos, alpha)
        got = out[b, 1:].tolist()
        if eos in want:  # padded with EOS after the end
            got = got[:want.index(eos) + 1]
        assert got == want, (b, got, want)


def test_the_length_penalty_decides_between_a_short_and_a_long_hypothesis():
    # from token 0: EOS (2) or token 1, each p = 0.5; after 1: EOS with p = 0.9
    p = torch.full((3, 3), 1e-6)
    p[0, 2], p[0, 1] = 0.5, 0.5 - 2e-6
    p[1, 2], p[1, 0] = 0.9, 0.1 - 2e-6
    p[2, 2] = 1.0
    model = TableLM(p.log())
    prompt = torch.tensor([[0]])
    # log .5 = -0.69 beats log .5 + log .9 = -0.80 without a penalty ...
    short = beam_search(model, prompt, 4, beam_size=2, length_penalty=0.0, eos_id=2)
    assert short[0].tolist() == [0, 2]
    # ... and loses to it once lp(2) / lp(1) = (7/6)^2 divides the longer one's score
    long = beam_search(model, prompt, 4, beam_size=2, length_penalty=2.0, eos_id=2)
    assert long[0].tolist() == [0, 1, 2]


def test_search_stops_once_no_live_beam_can_beat_a_finished_one():
    p = torch.full((3, 3), 1e-4)
    p[:, 2] = 1.0  # EOS is almost certain everywhere
    model = TableLM(p.log())
    out = beam_search(model, torch.tensor([[0], [1]]), 10, beam_size=2, length_penalty=0.0,
                      eos_id=2)
    assert out.tolist() == [[0, 2], [1, 2]]
    assert model.calls == 1  # one step, not ten
    model.calls = 0
    beam_search(model, torch.tensor([[0]]), 10, beam_size=2, length_penalty=0.0)
    assert model.calls == 10  # without an EOS id nothing finishes early


def test_rows_that_end_early_are_padded_with_eos_and_batches_equal_rows_alone():
    model = random_table(6, seed=4)
    prompt = torch.tensor([[0], [1], [2], [3]])
    batch = beam_search(model, prompt, 7, beam_size=3, eos_id=5)
    for b in range(4):
        alone = beam_search(model, prompt[b:b + 1], 7, beam_size=3, eos_id=5)[0]
        assert batch[b, :len(alone)].tolist() == alone.tolist()
        assert (batch[b, len(alone):] == 5).all()


@pytest.mark.parametrize("eos", [None, 5])
def test_beam_one_is_greedy(eos):
    model = random_table(6, seed=5)
    prompt = torch.tensor([[0], [4]])
    assert torch.equal(beam_search(model, prompt, 6, beam_size=1, length_penalty=0.0, eos_id=eos),
                       greedy(model, prompt, 6, eos_id=eos))
    lm = build("gpt2-tiny", vocab_size=20, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32,
               dropout=0.0).eval()
    prompt = torch.randint(0, 20, (3, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(beam_search(lm, prompt, 6, beam_size=1, length_penalty=0.0),
                       greedy(lm, prompt, 6))


@pytest.mark.parametrize("name", ["gpt2-tiny", "transformer-tiny", "t5-tiny"])
def test_the_kv_cache_changes_nothing(name):
    torch.manual_seed(0)
    V = 20
    if name == "gpt2-tiny":
        model = build(name, vocab_size=V, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32,
                      dropout=0.0).eval()
        kw = {}
        prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(1))
    else:
        extra = {"max_len": 32, "dropout": 0.0} if name == "transformer-tiny" else {}
        model = build(name, vocab_size=V, **extra).eval()
        src = torch.randint(3, V, (2, 6), generator=torch.Generator().manual_seed(2))
        src[1, 4:] = 0  # padding
        kw = {"src": src}
        prompt = torch.ones(2, 1, dtype=torch.long)
    a = beam_search(model, prompt, 8, beam_size=3, eos_id=2, **kw)
    b = beam_search(model, prompt, 8, beam_size=3, eos_id=2, use_cache=False, **kw)
    assert torch.equal(a, b)


def test_bad_arguments_are_named():
    model = random_table(4, seed=0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, torch.tensor([[0]]), 3, beam_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(model, torch.tensor([[0]]), -1)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        beam_search(model, torch.tensor([0]), 3)
