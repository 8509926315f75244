"""The pieces of the Korean edition that run inside the book build (book/_ext/): the language
switch's relative links, and the Korean search splitter. The built pages themselves are checked
by tests/test_browser.py."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import editions  # noqa: E402
import korean_search  # noqa: E402


def test_both_editions_are_built_by_the_book():
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    for extension in ("editions", "korean_search"):
        assert re.search(rf"^\s+{extension}: book/_ext$", config, re.M), extension
    assert re.search(r"^\s+execute_notebooks: cache$", config, re.M)
    assert re.search(r"^\s+locale_dirs: \[locales/\]$", config, re.M)
    assert re.search(r"^\s+gettext_compact: false$", config, re.M)


@pytest.mark.parametrize("this, other, page, want", [
    ("_build/html", "_build/ko/html", "book/02_self_attention",
     "../../ko/html/book/02_self_attention.html"),
    ("_build/ko/html", "_build/html", "book/02_self_attention",
     "../../../html/book/02_self_attention.html"),
    ("_build/html", "_build/ko/html", "genindex", "../ko/html/genindex.html"),
    ("_build/ko/html", "_build/html", "search", "../../html/search.html"),
])
def test_the_switch_links_to_the_same_page_of_the_other_edition(this, other, page, want):
    href = editions.switch_href(page, ROOT / this, ROOT / other)
    assert href == want
    # followed from the page's folder, the link lands on the other edition's page
    landed = (ROOT / this / Path(page).parent / href).resolve()
    assert landed == (ROOT / other / f"{page}.html").resolve()


@pytest.mark.parametrize("bad", ["", "/book/intro", None])
def test_the_switch_refuses_what_is_not_a_page_name(bad):
    with pytest.raises(ValueError, match="pagename"):
        editions.switch_href(bad, ROOT / "_build/html", ROOT / "_build/ko/html")


def test_the_other_edition():
    assert editions.other_edition("en") == "ko"
    assert editions.other_edition("ko") == "en"


@pytest.mark.parametrize("word, forms", [
    ("어텐션은", ["어텐션"]),
    ("어텐션의", ["어텐션"]),
    ("어텐션에서는", ["어텐션"]),
    ("벡터들의", ["벡터들", "벡터"]),
    ("모델을", ["모델"]),
    ("GPT는", ["GPT"]),
    ("어텐션", []),        # no particle: nothing to strip
    ("은", []),            # a particle alone stays
    ("attention", []),     # Latin words are left to the English stemmer
])
def test_particles_are_stripped_one_at_a_time(word, forms):
    assert korean_search.strip_particles(word) == forms


def test_strip_particles_refuses_what_is_not_a_word():
    with pytest.raises(TypeError, match="str"):
        korean_search.strip_particles(b"\xec\x96\xb4")


def test_the_korean_splitter_indexes_the_noun_and_the_word_as_written():
    lang = korean_search.SearchKorean({})
    words = lang.split("셀프 어텐션은 쿼리와 키의 내적으로 모델(model)을 만든다.")
    for term in ("어텐션", "어텐션은", "쿼리", "쿼리와", "키", "내적", "모델", "model"):
        assert term in words, (term, words)
    # Sphinx's own (English) splitter, which a Korean build would otherwise use, keeps the
    # particles attached: the bare nouns are not terms at all
    from sphinx.search.en import SearchEnglish

    plain = SearchEnglish({}).split("셀프 어텐션은 모델을 만든다.")
    assert "어텐션" not in plain and "모델" not in plain and "어텐션은" in plain


def test_latin_words_are_stemmed_as_in_english_and_hangul_is_left_alone():
    lang = korean_search.SearchKorean({})
    from sphinx.search.en import SearchEnglish

    english = SearchEnglish({})
    for word in ("attention", "queries", "running"):
        assert lang.stem(word) == english.stem(word)
    for word in ("어텐션", "모델"):
        assert lang.stem(word) == word and lang.word_filter(word)


class _App:
    """What editions._builder_inited reads of a Sphinx application."""

    def __init__(self, root: Path, language: str, mode: str, cache_path: str = ""):
        from types import SimpleNamespace

        self.srcdir, self.outdir = str(root), str(root / "_build" / "html")
        self.config = SimpleNamespace(language=language, nb_execution_mode=mode,
                                      nb_execution_cache_path=cache_path)


def _cache(root: Path) -> Path:
    cache = root / "_build" / ".jupyter_cache"
    cache.mkdir(parents=True)
    (cache / "global.db").write_bytes(b"")
    return cache


def test_the_english_build_starts_from_an_empty_cache_and_the_korean_one_keeps_it(tmp_path):
    cache = _cache(tmp_path)
    editions._builder_inited(_App(tmp_path, "ko", "cache"))
    assert cache.exists(), "the Korean build must read the English build's cache, not clear it"
    editions._builder_inited(_App(tmp_path, "en", "off"))
    assert cache.exists(), "nothing is executed (the catalogs' extraction): nothing to clear"
    editions._builder_inited(_App(tmp_path, "en", "cache"))
    assert not cache.exists(), "a stale cache entry must never stand in for a run"
    editions._builder_inited(_App(tmp_path, "en", "cache"))  # no cache: nothing to do


def test_a_folder_that_is_not_a_cache_is_never_cleared(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="not a jupyter-cache folder"):
        editions._builder_inited(_App(tmp_path, "en", "cache", cache_path="mine"))
    assert (folder / "notes.txt").exists()
