"""BERT: padding, segments, the tied MLM head, the classification head, errors."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from transformer_book.layers import LayerNorm
from transformer_book.models import Bert, BertConfig, BertForClassification, BertForMaskedLM
from transformer_book.models.bert import mean_pool

CFG = BertConfig(vocab_size=50, max_len=32, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)


def test_architecture_is_post_norm_exact_gelu_eps_1e12():
    model = Bert(CFG)
    assert all(not b.norm_first for b in model.blocks)
    assert all(b.ffn.activation == "gelu" for b in model.blocks)
    norms = [m for m in model.modules() if isinstance(m, LayerNorm)]
    assert len(norms) == 1 + 2 * CFG.n_layers and all(n.eps == 1e-12 for n in norms)


def test_padding_with_a_mask_changes_nothing_for_real_tokens():
    torch.manual_seed(0)
    model = Bert(CFG).eval()
    ids = torch.randint(1, 50, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        alone = model(ids).hidden
        with_pad = model(padded, attention_mask=mask).hidden[:, :7]
        as_bool = model(padded, attention_mask=mask.bool()[:, None, None, :]).hidden[:, :7]
        unmasked = model(padded).hidden[:, :7]
    assert torch.equal(with_pad, as_bool)  # the (B, T) 0/1 and (B, 1, 1, T) bool forms agree
    assert torch.allclose(alone, with_pad, atol=1e-5)
    assert not torch.allclose(alone, unmasked, atol=1e-3)  # without the mask, pads leak in


def test_segments_change_the_output():
    torch.manual_seed(0)
    model = Bert(CFG).eval()
    ids = torch.randint(1, 50, (2, 6))
    types = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.no_grad():
        assert not torch.allclose(model(ids).hidden, model(ids, token_type_ids=types).hidden)


def test_mlm_head_is_tied_and_loss_ignores_unmasked_positions():
    torch.manual_seed(0)
    model = BertForMaskedLM(CFG).eval()
    assert model.decoder.weight is model.bert.tok_emb.weight
    assert model.bert.pooler is None
    ids = torch.randint(1, 50, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5] = ids[0, 2], ids[1, 5]
    out = model(ids, targets=labels)
    logits, loss = out.logits, out.loss
    assert logits.shape == (2, 8, 50)
    picked = torch.stack([logits[0, 2], logits[1, 5]])
    assert torch.allclose(loss, F.cross_entropy(picked, torch.stack([ids[0, 2], ids[1, 5]])))


def test_classification_head_and_pooler():
    torch.manual_seed(0)
    model = BertForClassification(dataclasses.replace(CFG, n_classes=3)).eval()
    ids = torch.randint(1, 50, (4, 6))
    out = model(ids, targets=torch.tensor([0, 1, 2, 0]))
    assert out.logits.shape == (4, 3) and out.loss.ndim == 0
    h = model.bert(ids).hidden
    assert torch.allclose(model.bert.pool(h), torch.tanh(model.bert.pooler(h[:, 0])))
    with pytest.raises(ValueError, match="pooler"):
        Bert(CFG, pooler=False).pool(h)


def test_mean_pool_ignores_padding():
    h = torch.arange(24.0).view(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = mean_pool(h, mask)
    assert torch.equal(pooled[0], h[0, :2].mean(0)) and torch.equal(pooled[1], h[1].mean(0))


def test_bad_inputs_raise_clear_errors():
    model = Bert(CFG)
    ids = torch.randint(1, 50, (2, 6))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 7, dtype=torch.long))  # wrong length
    with pytest.raises(TypeError, match="input_ids"):
        model(ids.float())
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 40, dtype=torch.long))


def test_bert_tiny_learns_to_fill_in_masked_tokens():
    """A deterministic pattern (each token is the previous plus one): after 200 steps the
    MLM head recovers masked tokens from their context far better than chance (1/40)."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=40, max_len=32, d_model=64, n_heads=4,
                                       n_layers=2, d_ff=128, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    MASK = 0

    def batch(g):
        start = torch.randint(1, 20, (32, 1), generator=g)
        ids = start + torch.arange(16)  # (32, 16), ids 1..35
        hide = torch.rand(ids.shape, generator=g) < 0.15
        return ids.masked_fill(hide, MASK), ids.masked_fill(~hide, -100)

    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        x, y = batch(g)
        loss = model(x, targets=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch(torch.Generator().manual_seed(99))
    with torch.no_grad():
        pred = model(x).logits.argmax(-1)
    acc = (pred[y != -100] == y[y != -100]).float().mean()
    assert acc > 0.5, acc
