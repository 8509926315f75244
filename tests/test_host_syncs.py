"""A training step reads the device once: the loss and every input check in one transfer.

On a GPU each read of a tensor's value (``.item()``, ``bool(t)``, ``.tolist()``) makes Python
wait for the queued work. The package's input checks need such reads; inside
``checks.deferred`` (what the Trainer opens on an accelerator) they are recorded and read
with the loss. Here the CPU stands in for the GPU (``include_cpu=True``), and every read of
a tensor's value is counted.
"""
import contextlib

import pytest
import torch

from transformer_book.checks import deferred
from transformer_book.models import build
from transformer_book.training import Trainer

READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


@contextlib.contextmanager
def counting_reads():
    """Count every read of a tensor's value while the block runs."""
    count = {"reads": 0}
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(original):
        def read(self, *args, **kwargs):
            count["reads"] += 1
            return original(self, *args, **kwargs)
        return read

    try:
        for name, original in saved.items():
            setattr(torch.Tensor, name, wrap(original))
        yield count
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def _cases():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (2, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])  # integer 0/1: its values are checked
    torch.manual_seed(0)
    return {
        "gpt2": (build("gpt2-tiny", vocab_size=30, n_layers=1),
                 {"input_ids": ids, "attention_mask": mask, "targets": ids}),
        "bert": (build("bert-tiny-mlm", vocab_size=30, n_layers=1),
                 {"input_ids": ids, "attention_mask": mask, "targets": ids}),
        "gpt1-classifier": (build("gpt1-tiny-classifier"),
                            {"input_ids": ids, "attention_mask": mask,
                             "targets": torch.tensor([0, 1])}),
        "t5": (build("t5-tiny", vocab_size=30, n_layers=1),
               {"src": ids, "tgt_in": ids[:, :4], "targets": ids[:, 1:5]}),
        "transformer": (build("transformer-tiny", vocab_size=30, n_layers=1),
                        {"src": ids, "tgt_in": ids[:, :4], "targets": ids[:, 1:5]}),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_a_deferred_step_reads_the_device_once(name):
    model, batch = _cases()[name]
    trainer = Trainer(model, device="cpu", progress=False)
    model.eval()  # no dropout: the losses below must agree
    with counting_reads() as at_once:  # the CPU's way: every check read where it is made
        trainer.compute_loss(batch).item()
    with deferred(include_cpu=True) as pending, counting_reads() as once:
        value = pending.read(trainer.compute_loss(batch))
    assert once["reads"] == 1, (name, once["reads"])
    assert at_once["reads"] > 1  # ids, targets, the mask's values, ... and the loss
    torch.testing.assert_close(value, trainer.compute_loss(batch).item())


def test_deferred_checks_raise_the_same_errors_before_the_step_changes_anything():
    model, batch = _cases()["gpt2"]
    trainer = Trainer(model, device="cpu", progress=False)
    trainer.defer_checks = True
    before = [p.detach().clone() for p in model.parameters()]
    bad = {"input_ids": batch["input_ids"].clone(), "targets": batch["targets"]}
    bad["input_ids"][1, 2] = 30
    with pytest.raises(ValueError, match=r"input_ids\[1, 2\] = 30 is not a token id"):
        trainer.fit(lambda step: bad, steps=1)
    bad = {**batch, "targets": batch["targets"].clone()}
    bad["targets"][0, 3] = 31
    with pytest.raises(ValueError, match="targets holds 31 at flat position 3"):
        trainer.fit(lambda step: bad, steps=1)
    bad = {**batch, "attention_mask": batch["attention_mask"] * 2}
    with pytest.raises(ValueError, match="attention_mask must hold only 0 and 1"):
        trainer.fit(lambda step: bad, steps=1)
    assert trainer.step == 0
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    clf, cbatch = _cases()["gpt1-classifier"]
    t = Trainer(clf, device="cpu", progress=False)
    t.defer_checks = True
    empty = {**cbatch, "attention_mask": torch.tensor([[1] * 6, [0] * 6])}
    with pytest.raises(ValueError, match="row 1 has no real token"):
        t.fit(lambda step: empty, steps=1)
    # and a good batch trains as it does without deferring
    history = trainer.fit(lambda step: batch, steps=2)
    assert trainer.step == 2 and len(history["train_loss"]) == 2


def test_deferred_training_equals_training_that_reads_each_check_at_once():
    runs = []
    for defer in (False, True):
        model, batch = _cases()["bert"]
        torch.manual_seed(1)
        trainer = Trainer(model, device="cpu", progress=False)
        trainer.defer_checks = defer
        runs.append([loss for _, loss in trainer.fit(lambda step: batch, steps=3)["train_loss"]])
    assert runs[0] == runs[1]
