"""Tokenizers: characters, words, byte-level BPE trained from scratch, and BERT's WordPiece.
See chapter 7.

  CharTokenizer       one id per character seen in a training text (small vocabularies, toy tasks)
  WordTokenizer       one id per word of a training text; any other word becomes <unk>
  ByteBPETokenizer    byte-level byte-pair encoding (Sennrich et al. 2016, on bytes as in GPT-2):
                      starts from the 256 byte values, so any string, Korean included, encodes
                      without unknown tokens, and decode(encode(s)) == s
  WordPieceTokenizer  encodes with an existing BERT vocabulary (vocab.txt), greedy longest match
"""
from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch

__all__ = ["CharTokenizer", "WordTokenizer", "ByteBPETokenizer", "WordPieceTokenizer",
           "pre_tokenize"]


def _check_text(text, name: str = "text") -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")


def _check_ids(ids, vocab_size: int) -> list[int]:
    """One sequence of ids (a list of ints or a 1-D integer tensor) -> list of ints in
    [0, vocab_size); anything else raises a TypeError / ValueError that says what came."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"decode takes one sequence of ids, shape (T,), got "
                             f"{tuple(ids.shape)} (decode each row of a batch)")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"ids must be integers, got a {ids.dtype} tensor")
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, bool) or not isinstance(i, int):
            if hasattr(i, "__index__") and not isinstance(i, bool):
                i = i.__index__()  # numpy integers
            else:
                raise TypeError(f"ids must be ints, got {type(i).__name__} {i!r} at "
                                f"position {pos}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"id {i} at position {pos} is outside the vocabulary "
                             f"[0, vocab_size={vocab_size})")
        out.append(i)
    return out


class CharTokenizer:
    """One id per character; ``specials`` (e.g. "<pad>", "<bos>") take the first ids."""

    def __init__(self, chars: Iterable[str], specials: Iterable[str] = ()):
        self.specials = list(specials)
        self.itos = self.specials + sorted(set(chars) - set(self.specials))
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str, specials: Iterable[str] = ()) -> "CharTokenizer":
        return cls(set(text), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        _check_text(text)
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int], skip_specials: bool = False) -> str:
        n = len(self.specials) if skip_specials else 0
        return "".join(self.itos[i] for i in _check_ids(ids, self.vocab_size) if i >= n)


# A word: letters with inner apostrophes ("o'er", "consider'd"), a number, or one other symbol.
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+|[^\w\s]|_")


class WordTokenizer:
    """One id per word of the training text, most frequent first; id 0 is ``unk``.

    Whitespace is not a token and an unknown word becomes ``unk``, so ``decode`` (words joined by
    spaces) only approximates the text: the price of a word vocabulary, unlike byte-level BPE.
    """

    def __init__(self, words: Iterable[str], unk: str = "<unk>"):
        self.unk = unk
        self.itos = [unk] + [w for w in dict.fromkeys(words) if w != unk]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id = 0

    @staticmethod
    def split(text: str) -> list[str]:
        """The words of ``text`` (case kept)."""
        if not isinstance(text, str):
            raise TypeError(f"expected text (str), got {type(text).__name__}")
        return _WORD.findall(text)

    @classmethod
    def from_text(cls, text: str, max_size: int | None = None, min_count: int = 1,
                  unk: str = "<unk>") -> "WordTokenizer":
        """Keep the words seen at least ``min_count`` times, at most ``max_size`` ids in all
        (``unk`` included); ties in frequency are broken alphabetically."""
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be None or >= 1 (unk included), got {max_size}")
        counts = Counter(cls.split(text))
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                        key=lambda w: (-counts[w], w))
        return cls(ranked if max_size is None else ranked[:max_size - 1], unk)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        try:
            return " ".join(self.itos[i] for i in map(int, ids))
        except IndexError:
            raise ValueError(f"an id is outside the vocabulary (size {self.vocab_size})") from None


# Pre-tokenization: a run of letters, of digits, of other symbols (each may keep one leading
# space), or of whitespace. Merges never cross these chunks, so a token never spans "word." or
# " the" + "cat". Every character belongs to one alternative: the chunks always rebuild the text.
_CHUNK = re.compile(r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def pre_tokenize(text: str) -> list[str]:
    """The chunks BPE works within (merges never cross them); ``"".join`` gives ``text`` back."""
    if not isinstance(text, str):
        raise TypeError(f"expected text (str), got {type(text).__name__}")
    return _CHUNK.findall(text)


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")  # lone surrogates survive the round trip


def _from_bytes(data: bytes) -> str:
    try:
        return data.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:  # a sampled sequence may cut a character in half
        return data.decode("utf-8", errors="replace")


def _merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class ByteBPETokenizer:
    """Byte-level BPE. Ids 0-255 are the bytes; each merge adds one id; special tokens come last.

    ``ByteBPETokenizer.train(text, vocab_size)`` learns ``vocab_size - 256 - len(specials)``
    merges, always the most frequent adjacent pair (ties: the smaller pair of ids).
    """

    def __init__(self, merges: list[tuple[int, int]], special_tokens: Iterable[str] = ()):
        self.merges = [tuple(m) for m in merges]
        self.vocab = {i: bytes([i]) for i in range(256)}  # id -> bytes
        self.ranks = {}  # pair -> the id it merges into (lower id = learned earlier)
        for new, (a, b) in enumerate(self.merges, start=256):
            self.vocab[new] = self.vocab[a] + self.vocab[b]
            self.ranks[(a, b)] = new
        self.special_tokens = {s: len(self.vocab) + k for k, s in enumerate(special_tokens)}
        self.id_to_special = {i: s for s, i in self.special_tokens.items()}
        specials = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = (re.compile("(" + "|".join(map(re.escape, specials)) + ")")
                            if specials else None)
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    @classmethod
    def train(cls, text: str, vocab_size: int,
              special_tokens: Iterable[str] = ()) -> "ByteBPETokenizer":
        special_tokens = list(special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size must be at least 256 + {len(special_tokens)} specials, "
                             f"got {vocab_size}")
        counts = Counter(_CHUNK.findall(text))
        words = [list(_to_bytes(w)) for w in counts]
        freqs = list(counts.values())
        pair_counts: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}  # pair -> words that contain it
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for p in zip(ids, ids[1:]):
                pair_counts[p] += f
                where.setdefault(p, set()).add(w)
        heap = [(-c, p) for p, c in pair_counts.items()]
        heapq.heapify(heap)
        merges = []
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            if -neg != pair_counts.get(pair, 0) or -neg <= 0:
                continue  # stale entry: the count changed since it was pushed
            new = 256 + len(merges)
            merges.append(pair)
            changed = set()
            for w in where.pop(pair, ()):
                ids, f = words[w], freqs[w]
                merged = _merge(ids, pair, new)
                if len(merged) == len(ids):
                    continue
                for p in zip(ids, ids[1:]):  # remove the word's old pairs, add its new ones
                    pair_counts[p] -= f
                    changed.add(p)
                for p in zip(merged, merged[1:]):
                    pair_counts[p] += f
                    where.setdefault(p, set()).add(w)
                    changed.add(p)
                words[w] = merged
            pair_counts.pop(pair, None)
            for p in changed - {pair}:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
        return cls(merges, special_tokens)

    def with_vocab_size(self, vocab_size: int) -> "ByteBPETokenizer":
        """The tokenizer that training with the smaller ``vocab_size`` would have produced.

        Training is greedy, so the first k merges of a long run are exactly the merges of a run
        stopped after k: BPE vocabularies of one text are nested, and a sweep over vocabulary
        sizes needs one training run. Special tokens keep their order (their ids move down).
        """
        n_merges = vocab_size - 256 - len(self.special_tokens)
        if not 0 <= n_merges <= len(self.merges):
            raise ValueError(f"vocab_size must be between {256 + len(self.special_tokens)} and "
                             f"{self.vocab_size}, got {vocab_size}")
        return ByteBPETokenizer(self.merges[:n_merges], list(self.special_tokens))

    def _encode_chunk(self, chunk: str) -> list[int]:
        if chunk in self._cache:
            return self._cache[chunk]
        ids = list(_to_bytes(chunk))
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = _merge(ids, pair, self.ranks[pair])  # the earliest learned merge first
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Special tokens written in ``text`` become their single id."""
        _check_text(text)
        parts = self._special_re.split(text) if self._special_re else [text]
        out = []
        for part in parts:
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
            else:
                for chunk in _CHUNK.findall(part):
                    out.extend(self._encode_chunk(chunk))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        text, buf = [], b""
        for i in _check_ids(ids, self.vocab_size):
            if i in self.id_to_special:
                text.append(_from_bytes(buf) + self.id_to_special[i])
                buf = b""
            elif i in self.vocab:
                buf += self.vocab[i]
            else:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
        return "".join(text) + _from_bytes(buf)

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each id as readable text (a token that cuts a character in half shows as U+FFFD)."""
        return [self.id_to_special.get(i) or self.vocab[i].decode("utf-8", errors="replace")
                for i in map(int, ids)]

    def save(self, path) -> None:
        data = {"kind": "byte-bpe", "merges": self.merges, "special_tokens": list(self.special_tokens)}
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "ByteBPETokenizer":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("kind") != "byte-bpe":
            raise ValueError(f"{path} is not a saved ByteBPETokenizer")
        return cls([tuple(m) for m in data["merges"]], data["special_tokens"])


def _is_punctuation(ch: str) -> bool:
    """BERT treats every non-alphanumeric ASCII symbol as punctuation, plus Unicode's P* classes."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class WordPieceTokenizer:
    """BERT's tokenizer for an existing vocabulary (one token per line of vocab.txt).

    Text is cleaned, lower-cased with accents stripped (uncased models), split at whitespace
    and around every punctuation mark and CJK character; each word is then cut greedily into
    the longest pieces found in the vocabulary, continuation pieces carrying a "##" prefix.
    A word that cannot be cut this way becomes [UNK].
    """

    def __init__(self, vocab: list[str], lowercase: bool = True, max_chars_per_word: int = 100):
        self.itos = list(vocab)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.lowercase, self.max_chars_per_word = lowercase, max_chars_per_word
        for tok in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
            if tok not in self.stoi:
                raise ValueError(f"the vocabulary has no {tok} token")
        self.unk_id, self.cls_id = self.stoi["[UNK]"], self.stoi["[CLS]"]
        self.sep_id, self.pad_id = self.stoi["[SEP]"], self.stoi["[PAD]"]
        self.mask_id = self.stoi.get("[MASK]")

    @classmethod
    def from_file(cls, path, lowercase: bool = True) -> "WordPieceTokenizer":
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        return cls([t.rstrip("\r") for t in lines if t.rstrip("\r")], lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def words(self, text: str) -> list[str]:
        """Cleaning, lower-casing and splitting: the words before WordPiece cuts them."""
        chars = []
        for ch in unicodedata.normalize("NFC", text):
            cat = unicodedata.category(ch)
            if ch in "\t\n\r" or cat == "Zs":
                chars.append(" ")
            elif ch == "\x00" or ch == "\ufffd" or cat.startswith("C"):
                continue
            elif _is_cjk(ord(ch)):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        out = []
        for word in "".join(chars).split():
            if self.lowercase:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                               if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    out.extend([current, ch] if current else [ch])
                    current = ""
                else:
                    current += ch
            if current:
                out.append(current)
        return out

    def _pieces(self, word: str) -> list[str]:
        if len(word) > self.max_chars_per_word:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):  # the longest piece in the vocabulary
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.stoi:
                    break
            else:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        return [p for w in self.words(text) for p in self._pieces(w)]

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True,
               max_len: int | None = None):
        """-> (ids, token_type_ids): [CLS] text [SEP] (pair [SEP]), segment 0 then 1.

        With ``max_len``, pieces are dropped from the end of the longer segment (the pair on a
        tie) until everything fits, so each [SEP] stays, closing its own segment."""
        _check_text(text)
        if pair is not None:
            _check_text(pair, "pair")
        a = [self.stoi[p] for p in self.tokenize(text)]
        b = [self.stoi[p] for p in self.tokenize(pair)] if pair is not None else None
        if max_len is not None:
            n_special = (3 if b is not None else 2) if add_special_tokens else 0
            if max_len < n_special + 1:
                raise ValueError(f"max_len must leave room for the special tokens and one "
                                 f"piece: at least {n_special + 1}, got {max_len}")
            while len(a) + len(b or []) + n_special > max_len:
                if b and len(b) >= len(a):
                    b.pop()
                else:
                    a.pop()
        if not add_special_tokens:
            ids = a + (b or [])
            return ids, [0] * len(a) + [1] * len(b or [])
        ids = [self.cls_id] + a + [self.sep_id]
        types = [0] * len(ids)
        if b is not None:
            ids += b + [self.sep_id]
            types += [1] * (len(b) + 1)
        return ids, types

    def __call__(self, texts: list[str], pairs: list[str] | None = None, max_len: int = 512):
        """A padded batch: dict of (B, T) tensors input_ids, token_type_ids, attention_mask.
        Sequences longer than ``max_len`` are cut as ``encode`` does: each [SEP] kept in
        its own segment."""
        if isinstance(texts, str) or not len(texts):
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r:.60}")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"pairs must have one entry per text ({len(texts)}), "
                             f"got {len(pairs)}")
        rows = [self.encode(t, pairs[i] if pairs else None, max_len=max_len)
                for i, t in enumerate(texts)]
        T = max(len(ids) for ids, _ in rows)
        batch = {k: torch.zeros(len(rows), T, dtype=torch.long)
                 for k in ("input_ids", "token_type_ids", "attention_mask")}
        batch["input_ids"].fill_(self.pad_id)
        for r, (ids, types) in enumerate(rows):
            batch["input_ids"][r, :len(ids)] = torch.tensor(ids)
            batch["token_type_ids"][r, :len(ids)] = torch.tensor(types)
            batch["attention_mask"][r, :len(ids)] = 1
        return batch

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        specials = {self.cls_id, self.sep_id, self.pad_id}
        text = ""
        for i in _check_ids(ids, self.vocab_size):
            if skip_special and i in specials:
                continue
            tok = self.itos[i]
            text += tok[2:] if tok.startswith("##") else (" " + tok if text else tok)
        return text
