"""Baselines that a neural model has to beat. See chapter 8.

  char_ngram_cross_entropy   unigram / bigram character models with add-alpha smoothing
  TfidfLogisticRegression    tf-idf of words, then multinomial logistic regression (L2)

Both are written here in a few lines of NumPy and torch, so that the book needs no
scikit-learn.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["char_ngram_cross_entropy", "TfidfLogisticRegression", "words"]


def char_ngram_cross_entropy(train: str, test: str, order: int, alpha: float = 1.0) -> float:
    """Cross-entropy (nats per character) on ``test`` of a character n-gram model of ``train``.

    order 1: p(c) = (n(c) + alpha) / (N + alpha V); order 2: p(c | b) = (n(b c) + alpha) /
    (n(b) + alpha V), where V counts the characters of both texts (so no test character has
    probability 0). The first test character is scored with the unigram model.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
    if not isinstance(train, str) or not isinstance(test, str) or not train or not test:
        raise TypeError("train and test must be non-empty strings")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    chars = sorted(set(train) | set(test))
    V = len(chars)
    lut = np.zeros(max(map(ord, chars)) + 1, dtype=np.int64)
    lut[[ord(c) for c in chars]] = np.arange(V)
    a = lut[np.frombuffer(train.encode("utf-32-le"), dtype=np.uint32)]  # (N,)
    b = lut[np.frombuffer(test.encode("utf-32-le"), dtype=np.uint32)]  # (M,)
    uni = (np.bincount(a, minlength=V) + alpha) / (len(a) + alpha * V)  # (V,)
    if order == 1:
        return float(-np.log(uni[b]).mean())
    pairs = np.bincount(a[:-1] * V + a[1:], minlength=V * V).reshape(V, V)  # (V, V)
    cond = (pairs + alpha) / (pairs.sum(1, keepdims=True) + alpha * V)  # rows: previous char
    nll = -np.log(uni[b[0]]) - np.log(cond[b[:-1], b[1:]]).sum()
    return float(nll / len(b))


_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lower-cased words (letters and apostrophes)."""
    return _WORD.findall(text.lower())


class TfidfLogisticRegression:
    """Bag of words weighted by tf-idf, unit-length rows, and a linear softmax classifier.

    ``analyzer`` turns a text into terms (default: :func:`words`; ``list`` gives characters).
    ``fit(texts, labels)`` learns the vocabulary and idf from ``texts`` only, then minimises
    cross-entropy + ``l2`` * ||W||^2 with L-BFGS. ``predict(texts)`` returns class ids.
    idf(w) = log((1 + n) / (1 + df(w))) + 1, the smoothed form.
    """

    def __init__(self, l2: float = 1e-3, max_iter: int = 200, analyzer=None):
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2, self.max_iter = l2, max_iter
        self.analyzer = analyzer if analyzer is not None else words  # text -> list of terms
        self.vocab: dict[str, int] = {}

    def features(self, texts: list[str]) -> torch.Tensor:
        """Sparse (n, |vocab|) tf-idf matrix; words outside the vocabulary are dropped."""
        if not self.vocab:
            raise ValueError("call fit() before features()")
        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            counts = Counter(w for w in self.analyzer(text) if w in self.vocab)
            if not counts:
                continue
            ids = [self.vocab[w] for w in counts]
            v = np.array(list(counts.values()), dtype=np.float64) * self.idf[ids]
            v /= np.linalg.norm(v)
            rows += [r] * len(ids)
            cols += ids
            vals += v.tolist()
        index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        return torch.sparse_coo_tensor(index, torch.tensor(vals, dtype=torch.float32),
                                       (len(texts), len(self.vocab)),
                                       check_invariants=True).coalesce()

    def fit(self, texts: list[str], labels) -> "TfidfLogisticRegression":
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(texts) != len(labels) or len(texts) == 0:
            raise ValueError(f"need as many labels as texts (> 0), got {len(texts)} texts "
                             f"and {len(labels)} labels")
        df = Counter(w for t in texts for w in set(self.analyzer(t)))
        self.vocab = {w: i for i, w in enumerate(sorted(df))}
        n = len(texts)
        self.idf = np.log((1 + n) / (1 + np.array([df[w] for w in self.vocab]))) + 1
        X = self.features(texts)
        self.n_classes = int(labels.max()) + 1
        self.W = torch.zeros(len(self.vocab), self.n_classes, requires_grad=True)
        self.b = torch.zeros(self.n_classes, requires_grad=True)
        opt = torch.optim.LBFGS([self.W, self.b], max_iter=self.max_iter,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(torch.sparse.mm(X, self.W) + self.b, labels)
            loss = loss + self.l2 * (self.W ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        return self

    @torch.no_grad()
    def predict(self, texts: list[str]) -> torch.Tensor:
        """Class ids (n,)."""
        return (torch.sparse.mm(self.features(texts), self.W) + self.b).argmax(1)
