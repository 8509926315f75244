"""Chapter 11's generated text-to-text tasks and T5's span corruption."""
import random

import pytest
import torch

from transformer_book.data.span_corruption import random_segmentation, span_corruption
from transformer_book.data.text2text import (PREFIXES, date_forms, date_pairs, number_pairs,
                                             number_to_korean, number_to_words, tokenize,
                                             translation_pairs)
from transformer_book.data.translation import generate


def test_tokenize_splits_numbers_into_digits():
    assert tokenize("March 3, 2019") == ["March", "3", ",", "2", "0", "1", "9"]
    assert tokenize("3/14/2019") == list("3/14/2019")
    assert tokenize("2019년 3월") == ["2", "0", "1", "9", "년", "3", "월"]
    assert tokenize("normalize date:") == ["normalize", "date", ":"]


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty two"),
    (100, "one hundred"), (305, "three hundred five"), (1000, "one thousand"),
    (4521, "four thousand five hundred twenty one"), (10_010, "ten thousand ten"),
    (999_999, "nine hundred ninety nine thousand nine hundred ninety nine")])
def test_number_to_words(n, words):
    assert " ".join(number_to_words(n)) == words


@pytest.mark.parametrize("n, korean", [
    (0, "영"), (1, "일"), (10, "십"), (11, "십일"), (20, "이십"), (100, "백"), (111, "백십일"),
    (1000, "천"), (4521, "사천오백이십일"), (10_000, "만"), (45_021, "사만오천이십일"),
    (99_999, "구만구천구백구십구")])
def test_number_to_korean(n, korean):
    assert "".join(number_to_korean(n)) == korean
    assert all(len(t) == 1 for t in number_to_korean(n))  # one syllable a token


def test_dates():
    forms = date_forms(2019, 3, 4)
    assert forms == {"us": "March 4, 2019", "uk": "4 March 2019", "short": "4 Mar 2019",
                     "slash": "3/4/2019", "korean": "2019년 3월 4일", "iso": "2019-03-04"}
    pairs = date_pairs(300, seed=1)
    assert pairs == date_pairs(300, seed=1) and pairs != date_pairs(300, seed=2)
    for p in pairs:
        assert p.src[:3] == PREFIXES["date"] and p.task == "date"
        iso = "".join(p.tgt)
        y, m, d = map(int, iso.split("-"))
        assert len(iso) == 10 and 1900 <= y <= 2099
        assert str(y) in "".join(p.src)  # the year is copied from the input
    only_korean = date_pairs(20, seed=0, forms=("korean",))
    assert all("년" in p.src for p in only_korean)


def test_pairs_carry_their_prefix():
    words = number_pairs([4521], "words")[0]
    assert words.src == PREFIXES["words"] + ["4", "5", "2", "1"]
    assert words.tgt == number_to_words(4521) and len(words) == 8
    korean = number_pairs([12], "korean")[0]
    assert korean.src[:4] == PREFIXES["korean"] and korean.tgt == ["십", "이"]
    ex = generate(3, seed=0)
    pairs = translation_pairs(ex)
    assert [p.src[5:] for p in pairs] == [e.src for e in ex]
    assert [p.tgt for p in pairs] == [e.tgt for e in ex]


@pytest.mark.parametrize("call", [
    lambda: number_to_words(-1), lambda: number_to_words(1_000_000),
    lambda: number_to_korean(100_000), lambda: number_to_words(3.0),
    lambda: number_to_words(True), lambda: date_forms(2019, 2, 30),
    lambda: date_forms(1800, 1, 1), lambda: date_pairs(-1), lambda: date_pairs(3, forms=()),
    lambda: date_pairs(3, forms=("iso",)), lambda: number_pairs([1], "french"),
    lambda: tokenize(3)])
def test_bad_input(call):
    with pytest.raises((ValueError, TypeError)):
        call()


# ---- span corruption ----------------------------------------------------------------------
SENTINELS = list(range(1000, 1100))


def reconstruct(inputs, targets):
    """Put the spans of the target back in place of the sentinels of the input."""
    spans, current = {}, None
    for t in targets:
        if t in SENTINELS:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs:
        out += spans[t] if t in SENTINELS else [t]
    return out


@pytest.mark.parametrize("n", [2, 3, 10, 37, 200])
def test_span_corruption_round_trip(n):
    tokens = list(range(n))
    for seed in range(20):
        inputs, targets = span_corruption(tokens, SENTINELS, rng=seed)
        assert reconstruct(inputs, targets) == tokens
        used = [t for t in inputs if t in SENTINELS]
        assert used == SENTINELS[:len(used)]  # sentinels in order, one per span
        assert targets[-1] == SENTINELS[len(used)]  # and one final sentinel
        assert not any(a in SENTINELS and b in SENTINELS for a, b in zip(inputs, inputs[1:]))


def test_span_corruption_statistics():
    tokens = list(range(500))
    rng = random.Random(0)
    noise, spans = 0, 0
    for _ in range(50):
        inputs, targets = span_corruption(tokens, SENTINELS, 0.15, 3.0, rng)
        n_spans = sum(t in SENTINELS for t in inputs)
        noise += len(targets) - n_spans - 1
        spans += n_spans
    assert noise == 50 * 75  # round(500 * 0.15) tokens dropped every time
    assert spans == 50 * 25  # in round(75 / 3) spans
    long_spans = span_corruption(tokens, SENTINELS, 0.5, 10.0, rng=1)
    assert sum(t in SENTINELS for t in long_spans[0]) == 25


def test_span_corruption_tensor_and_determinism():
    tokens = torch.arange(40)
    assert span_corruption(tokens, SENTINELS, rng=3) == span_corruption(list(range(40)),
                                                                          SENTINELS, rng=3)
    assert span_corruption(tokens, SENTINELS, rng=3) != span_corruption(tokens, SENTINELS,
                                                                         rng=4)


def test_random_segmentation():
    rng = random.Random(0)
    for n, k in [(1, 1), (10, 1), (10, 10), (75, 25)]:
        seg = random_segmentation(n, k, rng)
        assert len(seg) == k and sum(seg) == n and min(seg) >= 1
    with pytest.raises(ValueError):
        random_segmentation(3, 4, rng)
    with pytest.raises(ValueError):
        random_segmentation(3, 0, rng)


@pytest.mark.parametrize("args, kwargs", [
    (([1], SENTINELS), {}),                            # too short
    (("abc", SENTINELS), {}),                          # not a list of ids
    ((torch.zeros(2, 3, dtype=torch.long), SENTINELS), {}),
    ((list(range(10)), SENTINELS), {"noise_density": 0.0}),
    ((list(range(10)), SENTINELS), {"noise_density": 1.0}),
    ((list(range(10)), SENTINELS), {"mean_span_length": 0.5}),
    ((list(range(10)), [3, 1000]), {}),                # a sentinel occurs in the text
    ((list(range(10)), [1000, 1000]), {}),             # sentinels not distinct
    ((list(range(100)), [1000]), {}),                  # too few sentinels
])
def test_span_corruption_bad_input(args, kwargs):
    with pytest.raises((ValueError, TypeError)):
        span_corruption(*args, **kwargs)
