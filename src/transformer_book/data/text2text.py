"""Generated text-to-text tasks for T5: every task is a prefix, an input and an output text.

Three small tasks join the English -> Korean translation of chapter 6:
  - "number to words: 4 5 2 1" -> "four thousand five hundred twenty one";
  - "number to korean: 4 5 2 1" -> "사 천 오 백 이 십 일" (Sino-Korean numerals, one syllable a
    token; shown joined: 사천오백이십일);
  - "normalize date: March 3 , 2 0 1 9" (five written forms) -> "2 0 1 9 - 0 3 - 0 3".
Tokens are words, except that numbers are split into digits (one token a digit): a model then
learns to copy and reorder ten digit tokens instead of thousands of number words, and a number
never seen whole in training is no unknown token. See chapter 11.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Pair", "tokenize", "number_to_words", "number_to_korean", "date_forms",
           "number_pairs", "date_pairs", "translation_pairs", "PREFIXES"]

PREFIXES = {"translate": ["translate", "English", "to", "Korean", ":"],
            "words": ["number", "to", "words", ":"],
            "korean": ["number", "to", "korean", ":"],
            "date": ["normalize", "date", ":"]}


@dataclass
class Pair:
    """One text-to-text example: input tokens (prefix included) and output tokens."""

    src: list[str]
    tgt: list[str]
    task: str

    def __len__(self) -> int:
        return len(self.src)


def tokenize(text: str) -> list[str]:
    """Split on spaces; a word holding a digit becomes one token per character
    ('3/14/2019' -> 3 / 1 4 / 2 0 1 9, 'March 3,' -> March 3 ,)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    out = []
    for word in text.split():
        if any(ch.isdigit() for ch in word):
            out += list(word)
        elif len(word) > 1 and word[-1] in ",.:":
            out += [word[:-1], word[-1]]
        else:
            out.append(word)
    return out


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _check_number(n, high: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 0 <= n < high:
        raise ValueError(f"n must lie in 0 .. {high - 1}, got {n}")


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> list[str]:
    """0 .. 999,999 in English words, without 'and' or hyphens:
    4521 -> ['four', 'thousand', 'five', 'hundred', 'twenty', 'one']."""
    _check_number(n, 1_000_000)
    if n < 1000:
        return _below_thousand(n)
    high, low = divmod(n, 1000)
    return _below_thousand(high) + ["thousand"] + (_below_thousand(low) if low else [])


_KO_DIGITS = ["", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]


def number_to_korean(n: int) -> list[str]:
    """0 .. 99,999 in Sino-Korean numerals, one syllable a token. A 1 before 십, 백, 천, 만 is
    not said: 1111 -> 천백십일, 10000 -> 만, 45021 -> 사만오천이십일."""
    _check_number(n, 100_000)
    if n == 0:
        return ["영"]
    out = []
    for unit, name in ((10000, "만"), (1000, "천"), (100, "백"), (10, "십"), (1, "")):
        digit = n // unit % 10
        if digit:
            if digit > 1 or not name:
                out.append(_KO_DIGITS[digit])
            if name:
                out.append(name)
    return out


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS_IN = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def date_forms(year: int, month: int, day: int) -> dict[str, str]:
    """Five ways to write one date, and the ISO form every one normalises to."""
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= _DAYS_IN[month - 1]):
        raise ValueError(f"expected a date in 1900-2099, got {year}-{month}-{day}")
    name = _MONTHS[month - 1]
    return {"us": f"{name} {day}, {year}", "uk": f"{day} {name} {year}",
            "short": f"{day} {name[:3]} {year}", "slash": f"{month}/{day}/{year}",
            "korean": f"{year}년 {month}월 {day}일",
            "iso": f"{year:04d}-{month:02d}-{day:02d}"}


def _pairs(task: str, items, make):
    return [Pair(PREFIXES[task] + src, tgt, task) for src, tgt in (make(x) for x in items)]


def number_pairs(numbers, task: str = "words") -> list[Pair]:
    """'number to words: 4 5 2 1' -> English words (task "words"), or with task "korean" the
    Korean numerals."""
    if task not in ("words", "korean"):
        raise ValueError(f"task must be 'words' or 'korean', got {task!r}")
    convert = number_to_words if task == "words" else number_to_korean
    return _pairs(task, numbers, lambda n: (tokenize(str(n)), convert(n)))


def date_pairs(n: int, seed: int = 0, forms=("us", "uk", "short", "slash", "korean"))\
        -> list[Pair]:
    """``n`` random dates (1900-2099), each in one of ``forms`` chosen at random."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    allowed = ("us", "uk", "short", "slash", "korean")
    if not forms or any(f not in allowed for f in forms):
        raise ValueError(f"forms must be a non-empty subset of {allowed}, got {forms!r}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        month = rng.randint(1, 12)
        written = date_forms(rng.randint(1900, 2099), month, rng.randint(1, _DAYS_IN[month - 1]))
        out.append(Pair(PREFIXES["date"] + tokenize(written[rng.choice(forms)]),
                        tokenize(written["iso"]), "date"))
    return out


def translation_pairs(examples) -> list[Pair]:
    """Chapter 6's sentence pairs (``translation.Example``) behind the translation prefix."""
    return [Pair(PREFIXES["translate"] + list(e.src), list(e.tgt), "translate")
            for e in examples]
