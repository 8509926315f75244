"""The device and run-mode helpers (device.py, runmode.py: device choice, the size switch,
seeding, smoke mode), parameter counting, plotting helpers."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from transformer_book import plotting
from transformer_book.models import build
from transformer_book.device import get_device
from transformer_book.models import count_params
from transformer_book.runmode import scale, seed_everything


def test_count_params_counts_tied_weights_once():
    model = build("gpt2-tiny", vocab_size=100, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=8)
    assert model.lm_head.weight is model.tok_emb.weight
    naive = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert count_params(model) == naive - 100 * 16
    # by hand: embeddings, one block (4 projections, FFN, 2 norms), final norm
    block = 4 * (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16) + 2 * 2 * 16
    assert count_params(model) == 100 * 16 + 8 * 16 + block + 2 * 16
    assert count_params(build("gpt2", device="meta")) == 124_439_808  # published GPT-2 small


def test_device_and_scale_switch(monkeypatch):
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    monkeypatch.delenv("BOOK_SCALE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert get_device().type == "cuda"
    assert scale("cpu") == "small" and scale("cuda") == "large"
    monkeypatch.setenv("BOOK_SCALE", "large")
    assert scale("cpu") == "large"
    monkeypatch.setenv("BOOK_SCALE", "huge")
    with pytest.raises(ValueError, match="BOOK_SCALE"):
        scale("cpu")
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_seeding_repeats():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_heatmap_labels_and_errors():
    w = torch.softmax(torch.randn(3, 4), -1)
    ax = plotting.attention_heatmap(w, ["어제", "카페", "갔었어"], ["a", "b", "c", "d"], title="t")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["어제", "카페", "갔었어"]
    with pytest.raises(ValueError, match="key_labels has 2 entries for 4"):
        plotting.attention_heatmap(w, key_labels=["a", "b"])
    with pytest.raises(ValueError, match="2-D"):
        plotting.attention_heatmap(torch.rand(2, 3, 4))
    fig = plotting.attention_grid(torch.rand(3, 2, 2))
    assert len([a for a in fig.axes if a.get_title().startswith("head")]) == 3
    ax = plotting.plot_history({"train_loss": [(1, 2.0), (2, 1.0)]})
    assert ax.get_xlabel() == "step"
    matplotlib.pyplot.close("all")


def test_korean_font_is_registered():
    from matplotlib import font_manager
    names = {f.name for f in font_manager.fontManager.ttflist}
    assert "NanumGothic" in names
    assert "NanumGothic" in matplotlib.rcParams["font.family"]
    # Hangul and a log axis (its tick labels typeset a minus sign) render without missing glyphs
    import warnings

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.semilogy([1, 2, 3], [1e-5, 1e-3, 1.0])
    ax.set_title("어제 카페 갔었어")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()
    plt.close(fig)


def test_smoke_mode_and_budget(monkeypatch):
    from transformer_book.runmode import budget, smoke
    monkeypatch.delenv("BOOK_SMOKE", raising=False)
    assert smoke() is False and budget(500) == 500
    monkeypatch.setenv("BOOK_SMOKE", "1")
    assert smoke() is True and budget(500) == 2 and budget(500, smoke_n=7) == 7 and budget(1) == 1
    monkeypatch.setenv("BOOK_SMOKE", "yes")
    with pytest.raises(ValueError, match="BOOK_SMOKE"):
        smoke()
    monkeypatch.setenv("BOOK_SMOKE", "0")
    with pytest.raises(ValueError, match="positive int"):
        budget(0)


def test_smoke_mode_autocasts_the_cpu_to_bf16_and_only_then(monkeypatch):
    """CI's smoke mode runs the autocast path a GPU reader gets (bf16) on the CPU; a normal CPU
    run keeps fp32, and its training is bitwise the same as with no autocast at all."""
    from transformer_book import device as dev
    from transformer_book.models import build
    from transformer_book.training import Trainer
    monkeypatch.delenv("BOOK_SMOKE", raising=False)
    assert dev.autocast_dtype("cpu") is None
    with dev.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")

    def losses():
        torch.manual_seed(0)
        model = build("gpt2-tiny", n_layers=1)
        batch = {"input_ids": torch.randint(0, 256, (2, 8)), "targets": torch.randint(0, 256, (2, 8))}
        tr = Trainer(model, device="cpu", progress=False)
        tr.fit(lambda step: batch, steps=3)
        return [v for _, v in tr.history["train_loss"]], tr
    normal, tr = losses()
    assert tr.amp_dtype is None and tr.scaler is None
    monkeypatch.setenv("BOOK_SMOKE", "1")
    assert dev.autocast_dtype("cpu") == torch.bfloat16
    with dev.autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    smoked, tr = losses()
    assert tr.amp_dtype == torch.bfloat16 and tr.scaler is None  # bf16 needs no scaler
    assert all(math.isfinite(v) for v in smoked) and smoked != normal  # bf16 did run
    monkeypatch.delenv("BOOK_SMOKE")
    assert losses()[0] == normal  # and nothing leaks into the next normal run


def test_book_seed_shifts_by_the_environment(monkeypatch):
    from transformer_book.runmode import book_seed, seed_offset, setup
    monkeypatch.delenv("BOOK_SEED", raising=False)
    assert seed_offset() == 0 and book_seed(7) == 7
    monkeypatch.setenv("BOOK_SEED", "2")
    assert seed_offset() == 2 and book_seed(0) == 2 and book_seed(123) == 125
    setup(seed=1, verbose=False)  # seeds with book_seed(1) = 3
    a = torch.randn(3)
    seed_everything(3)
    assert torch.equal(a, torch.randn(3))
    for bad in ("-1", "one", "1.5"):
        monkeypatch.setenv("BOOK_SEED", bad)
        with pytest.raises(ValueError, match="BOOK_SEED"):
            seed_offset()
    monkeypatch.setenv("BOOK_SEED", "0")
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            book_seed(bad)
