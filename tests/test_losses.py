"""losses.py: the models' cross-entropy and the Transformer's label-smoothed one."""
import pytest
import torch
import torch.nn.functional as F

from transformer_book.losses import IGNORE_INDEX, cross_entropy, label_smoothed_cross_entropy

V = 11


def smoothed_by_hand(logits, targets, eps):
    """(1 - eps) * NLL + eps * (cross-entropy with the uniform distribution), the formula the
    package used before it called F.cross_entropy(label_smoothing=eps)."""
    logp = F.log_softmax(logits.reshape(-1, V).double(), dim=-1)  # (N, V)
    t = targets.reshape(-1)
    keep = t != IGNORE_INDEX
    logp, t = logp[keep], t[keep]
    nll = -logp.gather(1, t[:, None])[:, 0]  # (N,)
    uniform = -logp.mean(dim=-1)  # (N,)
    return ((1 - eps) * nll + eps * uniform).mean()


def test_label_smoothing_spreads_eps_over_all_classes_true_one_included():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, V, generator=g) * 3
    targets = torch.randint(0, V, (4, 9), generator=g)
    targets[1, :4] = IGNORE_INDEX
    for eps in (0.0, 0.1, 0.25, 1.0):
        ours = label_smoothed_cross_entropy(logits, targets, eps)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours.double(), smoothed_by_hand(logits, targets, eps),
                                   rtol=1e-6, atol=1e-6)
    assert torch.equal(label_smoothed_cross_entropy(logits, targets, 0.0),
                       cross_entropy(logits, targets))


def test_label_smoothing_computes_in_float32_under_bf16_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, V, generator=g).bfloat16()
    targets = torch.randint(0, V, (3, 5), generator=g)
    loss = label_smoothed_cross_entropy(logits, targets, 0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), smoothed_by_hand(logits.float(), targets, 0.1),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [V, 37, -1, -99])
def test_label_smoothing_names_a_target_out_of_range(bad):
    logits, targets = torch.randn(2, 6, V), torch.zeros(2, 6, dtype=torch.long)
    targets[1, 2] = bad
    with pytest.raises(ValueError, match=rf"holds {bad} at flat position 8.*\[0, {V}\)"):
        label_smoothed_cross_entropy(logits, targets, 0.1)
    with pytest.raises(ValueError, match=rf"holds {bad}"):
        cross_entropy(logits, targets)


def test_label_smoothing_other_bad_input():
    logits = torch.randn(2, 6, V)
    with pytest.raises(ValueError, match=r"shape \(2, 6\).*got \(2, 5\)"):
        label_smoothed_cross_entropy(logits, torch.zeros(2, 5, dtype=torch.long), 0.1)
    with pytest.raises(TypeError, match="integer class ids"):
        label_smoothed_cross_entropy(logits, torch.zeros(2, 6), 0.1)
    with pytest.raises(ValueError, match=r"smoothing must be a number in \[0, 1\], got 1.5"):
        label_smoothed_cross_entropy(logits, torch.zeros(2, 6, dtype=torch.long), 1.5)
    # another ignore index is skipped, and only it
    t = torch.full((2, 6), 7)
    t[0, 0] = -1
    loss = label_smoothed_cross_entropy(logits, t, 0.1, ignore_index=-1)
    keep = t.reshape(-1) != -1
    ref = F.cross_entropy(logits.reshape(-1, V)[keep], t.reshape(-1)[keep], label_smoothing=0.1)
    torch.testing.assert_close(loss, ref)


def test_all_ignored_gives_zero_with_the_graph():
    logits = torch.randn(2, 3, V, requires_grad=True)
    targets = torch.full((2, 3), IGNORE_INDEX)
    for loss in (label_smoothed_cross_entropy(logits, targets, 0.1),
                 cross_entropy(logits, targets.int())):
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert logits.grad is not None and not logits.grad.any()
