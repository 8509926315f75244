"""GPT-1's fine-tuning head and the chapter-8 baselines."""
import math

import pytest
import torch

from transformer_book.baselines import TfidfLogisticRegression, char_ngram_cross_entropy
from transformer_book.models import (GPT1_TASKS, GPT1Classifier, ModelOutput, build,
                                     gpt1_classification_input, gpt1_task_sequences)


def test_classification_input_wraps_and_pads_right():
    ids, mask = gpt1_classification_input([[5, 6, 7], [8]], start_id=1, extract_id=2, pad_id=0)
    assert ids.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]
    assert mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    with pytest.raises(TypeError):
        gpt1_classification_input("abc", 1, 2)


def _classifier(lm_weight=0.5, seed=0):
    torch.manual_seed(seed)
    gpt = build("gpt1-tiny", vocab_size=20, max_len=16, n_layers=2)
    return GPT1Classifier.from_pretrained(gpt, 3, lm_weight=lm_weight, dropout=0.0).eval()


def test_classifier_reads_the_last_real_token():
    clf = _classifier()
    ids, mask = gpt1_classification_input([[5, 6, 7], [8]], 1, 2)
    out = clf(ids, attention_mask=mask)
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 3) and out.loss is None
    # each row alone, without padding, gives the same scores
    for i, row in enumerate(([5, 6, 7], [8])):
        alone = clf(torch.tensor([[1, *row, 2]])).logits
        assert torch.allclose(alone[0], out.logits[i], atol=1e-5)
    # the score depends on the extract position's state: the head applied to it
    assert torch.allclose(clf.head(out.hidden[1, 2]), out.logits[1], atol=1e-6)


def test_loss_is_class_loss_plus_weighted_lm_loss():
    ids, mask = gpt1_classification_input([[5, 6, 7], [8]], 1, 2)
    y = torch.tensor([0, 2])
    with_lm = _classifier(0.5)
    out = with_lm(ids, targets=y, attention_mask=mask)
    cls = torch.nn.functional.cross_entropy(out.logits, y)
    # LM loss over real next tokens only: padding is never a target
    lm_t = torch.tensor([[5, 6, 7, 2, -100], [8, 2, -100, -100, -100]])
    lm = with_lm.gpt(ids, targets=lm_t, attention_mask=mask).loss
    assert torch.allclose(out.loss, cls + 0.5 * lm, atol=1e-5)
    assert torch.allclose(out.lm_loss, lm, atol=1e-6)  # reported on its own
    without = _classifier(0.0)
    assert torch.allclose(without(ids, targets=y, attention_mask=mask).loss, cls, atol=1e-5)


def test_classifier_is_a_registered_preset_and_checks_input():
    clf = build("gpt1-tiny-classifier", n_classes=4)
    assert isinstance(clf, GPT1Classifier) and clf.head.out_features == 4
    with pytest.raises(ValueError):
        build("gpt1-tiny-classifier", n_classes=1)
    with pytest.raises(TypeError):
        GPT1Classifier.from_pretrained(torch.nn.Linear(2, 2), 3)
    with pytest.raises(ValueError):
        clf(torch.tensor([[1, 2, 3]]), attention_mask=torch.zeros(1, 3, dtype=torch.bool))


def test_fine_tuning_learns_a_separable_task():
    torch.manual_seed(0)
    clf = _classifier(0.5)
    clf.train()
    X = torch.randint(3, 20, (32, 6))
    y = (X[:, 1] > 11).long()  # the class is in the second token
    ids, mask = gpt1_classification_input(X.tolist(), 1, 2)
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-3)
    for _ in range(60):
        loss = clf(ids, targets=y, attention_mask=mask).loss
        opt.zero_grad(); loss.backward(); opt.step()
    clf.eval()
    acc = (clf(ids, attention_mask=mask).logits.argmax(-1) == y).float().mean().item()
    assert acc > 0.9


def test_char_ngram_cross_entropy():
    text = "ab" * 500
    # unigram: two equally frequent characters = ln 2 nats (add-one smoothing keeps it exact)
    assert math.isclose(char_ngram_cross_entropy(text, "abab", 1), math.log(2))
    # bigram: a strict alternation is almost certain after the first character
    assert char_ngram_cross_entropy(text, "abab", 2) < 0.2
    # unseen test characters get a non-zero probability
    assert math.isfinite(char_ngram_cross_entropy(text, "abc", 2))
    with pytest.raises(ValueError):
        char_ngram_cross_entropy(text, "ab", 3)
    with pytest.raises(TypeError):
        char_ngram_cross_entropy(text, "", 1)


def test_tfidf_logistic_regression():
    texts = ["the king and his crown", "a crown for the king", "sweet love my love",
             "love is sweet", "the crown of england", "my sweet love"]
    y = [0, 0, 1, 1, 0, 1]
    m = TfidfLogisticRegression().fit(texts, y)
    assert m.predict(["a king", "sweet"]).tolist() == [0, 1]
    X = m.features(texts).to_dense()
    assert torch.allclose(X.norm(dim=1), torch.ones(len(texts)))
    chars = TfidfLogisticRegression(analyzer=list).fit(texts, y)
    assert all(len(w) == 1 for w in chars.vocab)
    with pytest.raises(ValueError):
        TfidfLogisticRegression().fit(texts, y[:2])
    with pytest.raises(ValueError):
        TfidfLogisticRegression().features(texts)


def test_gpt1_task_sequences_follow_the_papers_figure():
    S, D, E = 100, 101, 102
    assert GPT1_TASKS == ("classification", "entailment", "similarity", "multiple choice")
    assert gpt1_task_sequences("classification", ([1, 2],), S, D, E) == [[S, 1, 2, E]]
    assert gpt1_task_sequences("entailment", ([1], [2, 3]), S, D, E) == [[S, 1, D, 2, 3, E]]
    # similarity: both orders, since a pair has none
    assert gpt1_task_sequences("similarity", ([1], [2]), S, D, E) == [
        [S, 1, D, 2, E], [S, 2, D, 1, E]]
    # multiple choice: the context with each answer
    assert gpt1_task_sequences("multiple choice", ([7, 8], [1], [2], [3]), S, D, E) == [
        [S, 7, 8, D, 1, E], [S, 7, 8, D, 2, E], [S, 7, 8, D, 3, E]]
    # the sequences go through the same padding as classification (start/extract added there)
    ids, mask = gpt1_classification_input(
        [s[1:-1] for s in gpt1_task_sequences("similarity", ([1], [2, 3]), S, D, E)], S, E)
    assert ids.tolist() == [[S, 1, D, 2, 3, E], [S, 2, 3, D, 1, E]] and mask.all()


@pytest.mark.parametrize("task, parts, error", [
    ("translation", ([1],), ValueError), ("classification", ([1], [2]), ValueError),
    ("entailment", ([1],), ValueError), ("similarity", ([1], [2], [3]), ValueError),
    ("multiple choice", ([1], [2]), ValueError), ("classification", [1, 2], TypeError),
    ("classification", "text", TypeError)])
def test_gpt1_task_sequences_rejects_bad_input(task, parts, error):
    with pytest.raises(error):
        gpt1_task_sequences(task, parts, 100, 101, 102)
