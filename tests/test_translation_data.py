"""The generated English -> Korean task: morphology, alignments, splits, batching."""
import unicodedata

import pytest
import torch

from transformer_book.data.translation import (ANIMALS, THINGS, VERBS, Vocab, batch_stream,
                                               conjugate, encode_batch, english_verb, generate,
                                               make_splits, particle)


@pytest.mark.parametrize("noun, role, expected", [
    ("고양이", "subject", "고양이가"), ("학생", "subject", "학생이"),
    ("사과", "object", "사과를"), ("책", "object", "책을"),
    ("개", "topic", "개는"), ("선생님", "topic", "선생님은"),
    ("사과", "and", "사과와"), ("빵", "and", "빵과"),
    ("펜", "instrument", "펜으로"), ("포크", "instrument", "포크로"),
    ("연필", "instrument", "연필로"),  # a final ㄹ takes 로, not 으로
])
def test_particles_follow_the_final_consonant(noun, role, expected):
    assert particle(noun, role) == expected


@pytest.mark.parametrize("verb, form, expected", [
    ("보다", "present", "본다"), ("먹다", "present", "먹는다"), ("만들다", "present", "만든다"),
    ("보다", "past", "봤다"), ("먹다", "past", "먹었다"), ("찾다", "past", "찾았다"),
    ("마시다", "past", "마셨다"), ("쓰다", "past", "썼다"), ("바쁘다", "past", "바빴다"),
    ("좋아하다", "past", "좋아했다"), ("보내다", "past", "보냈다"), ("사다", "past", "샀다"),
    ("만들다", "past", "만들었다"), ("배우다", "past", "배웠다"),
    ("보다", "rel_present", "보는"), ("만들다", "rel_present", "만드는"),
    ("보다", "rel_past", "본"), ("먹다", "rel_past", "먹은"), ("만들다", "rel_past", "만든"),
    ("크다", "adjective", "큰"), ("작다", "adjective", "작은"), ("길다", "adjective", "긴"),
    ("보다", "and_present", "보고"), ("보다", "and_past", "봤고"), ("보다", "neg", "보지"),
    ("않다", "present", "않는다"), ("않다", "past", "않았다"), ("않다", "rel_past", "않은"),
])
def test_korean_conjugation(verb, form, expected):
    assert conjugate(verb, form) == expected


def test_english_verbs():
    assert english_verb("see", "saw", "3sg") == "sees"
    assert english_verb("catch", "caught", "3sg") == "catches"
    assert english_verb("carry", None, "3sg") == "carries"
    assert english_verb("like", None, "past") == "liked"
    assert english_verb("see", "saw", "past") == "saw"


def test_generation_is_seeded_and_alignments_point_at_translated_words():
    a, b = generate(300, seed=5), generate(300, seed=5)
    assert [x.src for x in a] == [x.src for x in b] and [x.tgt for x in a] == [x.tgt for x in b]
    assert [x.src for x in a] != [x.src for x in generate(300, seed=6)]
    nouns = dict(ANIMALS)
    for pool in THINGS.values():
        nouns.update(pool)
    for ex in a:
        assert len(ex.align) == len(ex.tgt)
        assert ex.src[-1] == "." and ex.tgt[-1] == "." and ex.align[-1] == len(ex.src) - 1
        for word, i in zip(ex.tgt, ex.align):
            assert 0 <= i < len(ex.src)
            if ex.src[i] in nouns:  # noun + particle starts with the noun's Korean
                assert word.startswith(nouns[ex.src[i]]), (word, ex.src[i])
        # Korean is verb-final: the word before the full stop translates a verb (or 'not')
        last = ex.src[ex.align[-2]]
        verbs = {english_verb(v[0], v[1], f) for v in VERBS for f in ("base", "past", "3sg")}
        assert last in verbs or last == "not", ex


def test_links_start_with_the_alignment_and_add_function_words():
    for ex in generate(300, seed=7):
        assert [l[0] for l in ex.links] == ex.align
        for word, links in zip(ex.tgt, ex.links):
            assert len(set(links)) == len(links) and all(0 <= i < len(ex.src) for i in links)
            if word.startswith("않"):  # 않았다 / 않는다 translate 'did not' / 'does not'
                assert {ex.src[i] for i in links} >= {"not"} and ex.src[links[1]] in ("did", "does")
            if word.endswith("으로") or word.endswith("로"):
                assert "with" in [ex.src[i] for i in links]


def test_relative_clauses_move_before_their_noun():
    # 'the dog that the cat saw' -> '고양이가 본 개': the relative verb comes right before the
    # noun (or before the noun's adjective), and it translates a word after 'that'
    checked = 0
    for ex in generate(400, seed=1):
        for t, word in enumerate(ex.src):
            if word != "that":
                continue
            j = ex.align.index(t - 1)  # the Korean head noun
            before = j - 1 if ex.align[j - 1] != t - 2 else j - 2  # skip an adjective
            assert ex.align[before] > t, (ex.src, ex.tgt)
            last_jamo = unicodedata.normalize("NFD", ex.tgt[before])[-1]
            assert last_jamo == "\u11ab", ex.tgt[before]  # a relative form ends in ㄴ (본, 먹는)
            checked += 1
    assert checked > 50


def test_splits_are_disjoint_and_long_is_longer_than_train():
    s = make_splits(800, 100, 100, 50, max_train_len=18, seed=3)
    assert {k: len(v) for k, v in s.items()} == {"train": 800, "val": 100, "test": 100, "long": 50}
    keys = {k: {tuple(x.src) for x in v} for k, v in s.items()}
    assert all(len(keys[k]) == len(s[k]) for k in s)  # no duplicates inside a split
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not keys[a] & keys[b], (a, b)
    assert max(len(x) for x in s["train"]) <= 18 < min(len(x) for x in s["long"])
    again = make_splits(800, 100, 100, 50, max_train_len=18, seed=3)
    assert [x.src for x in again["test"]] == [x.src for x in s["test"]]


def test_vocab_and_batches():
    exs = generate(50, seed=2)
    vocab = Vocab(exs)
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.encode(["zebra"]) == [vocab.unk]
    src, tgt_in, tgt_out = encode_batch(exs[:4], vocab)
    assert src.shape == (4, max(len(x.src) for x in exs[:4]))
    assert tgt_in.shape == tgt_out.shape == (4, max(len(x.tgt) for x in exs[:4]) + 1)
    for b, ex in enumerate(exs[:4]):
        n = len(ex.tgt)
        assert tgt_in[b, 0] == vocab.bos and tgt_out[b, n] == vocab.eos
        assert torch.equal(tgt_in[b, 1:n + 1], tgt_out[b, :n])  # shifted by one
        assert (tgt_out[b, n + 1:] == -100).all() and (src[b, len(ex.src):] == vocab.pad).all()
        assert vocab.decode(src[b]) == ex.src and vocab.decode(tgt_out[b, :n + 1]) == ex.tgt


def test_batch_stream_covers_every_example_once_per_epoch():
    exs = generate(100, seed=4)
    vocab = Vocab(exs)
    get_batch = batch_stream(exs, vocab, batch_size=16, seed=0)
    seen = []
    for step in range(7):  # ceil(100 / 16) batches make one epoch
        batch = get_batch(step)
        assert sorted(batch) == ["src", "targets", "tgt_in"]  # named as forward names them
        src = batch["src"]
        seen += [tuple(vocab.decode(r)) for r in src]
    assert sorted(seen) == sorted(tuple(x.src) for x in exs)
    assert torch.equal(get_batch(3)["src"], batch_stream(exs, vocab, 16, seed=0)(3)["src"])
