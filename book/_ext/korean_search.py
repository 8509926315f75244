"""A search language for the Korean edition: Hangul words indexed without their particles.

Sphinx has no Korean search language; a Korean build falls back to the English one, which
splits at non-word characters, so a noun is indexed with the particle written onto it
(어텐션은, 어텐션을, 어텐션의) and never as the noun itself: a search for 어텐션 then finds those
pages only through the search page's lower-ranked substring match, and one for a noun of one or
two syllables finds nothing (substring matches need three letters): in a Korean build without
this splitter, a search for 과제 (task) missed the introduction, which writes 과제로 and 과제를.

This splitter keeps each word as written and adds the word with its trailing particles removed,
one at a time (벡터들의 -> 벡터들, 벡터), so that both the noun and the word as written are
terms of the index. Latin words are stemmed as by the English search language, since the Korean
text keeps English terms, code identifiers and names. The search page needs no change: a query
term that is a bare noun, or a word as written, is found exactly.
"""
from __future__ import annotations

import re

from sphinx.search.en import SearchEnglish

# Particles (조사), the plural suffix 들 and the copula's common forms, as they end a noun in
# technical prose. Longest first, so that 에서는 goes as one before 는 alone would be tried.
PARTICLES = sorted({
    "은", "는", "이", "가", "을", "를", "의", "에", "에서", "에게", "께", "로", "으로", "와", "과",
    "도", "만", "까지", "부터", "보다", "처럼", "만큼", "마다", "뿐", "나", "이나", "랑", "이랑",
    "하고", "로서", "으로서", "로써", "으로써", "에는", "에도", "에서는", "에서도", "으로는",
    "로는", "와의", "과의", "에서의", "로의", "으로의", "들", "이다", "입니다", "이며", "이고",
    "이라", "이라는", "라는", "이란", "란", "인", "이면", "이면서", "에서부터", "까지의", "부터의",
}, key=len, reverse=True)
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def strip_particles(word: str) -> list[str]:
    """The forms of ``word`` with its trailing particles removed one at a time, shortest last
    (the word itself not included); at least one character is always left."""
    if not isinstance(word, str):
        raise TypeError(f"word must be a str, got {type(word).__name__}")
    forms = []
    while True:
        for particle in PARTICLES:
            if word.endswith(particle) and len(word) > len(particle) and HANGUL.search(
                    word[-len(particle):]):
                word = word[:-len(particle)]
                forms.append(word)
                break
        else:
            return forms


class SearchKorean(SearchEnglish):
    lang = "ko"
    language_name = "Korean"

    def split(self, input: str) -> list[str]:
        words = []
        for word in self._word_re.findall(input):
            words.append(word)
            if HANGUL.search(word):
                words.extend(strip_particles(word))
        return words


def setup(app):
    app.add_search_language(SearchKorean)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
