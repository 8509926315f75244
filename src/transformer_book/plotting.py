"""Figures used across the book: attention heatmaps, positional encodings, training curves.

Importing this module registers a bundled Korean font (NanumGothic, from koreanize-matplotlib)
so that Korean tokens render in labels, with no network.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import font_manager


def korean_font_path() -> Path | None:
    """NanumGothic.ttf as shipped by the koreanize-matplotlib package, found without importing
    it (its import needs distutils, which Python 3.12 no longer has)."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "fonts" / "NanumGothic.ttf"
    return path if path.exists() else None


def use_korean_font() -> bool:
    """Register NanumGothic with matplotlib and make it the default family. Returns success."""
    path = korean_font_path()
    if path is None:  # plots still work; Korean glyphs would show as boxes
        return False
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    # DejaVu Sans first (it has the minus sign that log-axis tick labels typeset, which
    # NanumGothic lacks), Hangul falls back to NanumGothic glyph by glyph
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", name]
    return True


use_korean_font()

__all__ = ["use_korean_font", "korean_font_path", "attention_heatmap", "attention_grid", "plot_positional_encoding", "plot_history"]


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def attention_heatmap(weights, query_labels=None, key_labels=None, ax=None, title=None,
                      annotate: bool = False, cmap: str = "viridis"):
    """Draw one (T_q, T_k) attention matrix; rows are queries, columns are keys."""
    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap expects a 2-D (T_q, T_k) matrix, got shape {w.shape}")
    for name, labels, n in (("query_labels", query_labels, w.shape[0]),
                            ("key_labels", key_labels, w.shape[1])):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries for {n} rows/columns")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * w.shape[1] + 2, 0.5 * w.shape[0] + 1.5))
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(w.max())), aspect="auto")
    ax.set_xticks(range(w.shape[1]))
    ax.set_yticks(range(w.shape[0]))
    if key_labels is not None:
        ax.set_xticklabels(key_labels, rotation=60, ha="right")
    if query_labels is not None:
        ax.set_yticklabels(query_labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center",
                        color="white" if w[i, j] < 0.6 * w.max() else "black", fontsize=8)
    if title:
        ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def attention_grid(weights, query_labels=None, key_labels=None, titles=None, ncols: int = 4,
                   suptitle=None):
    """One heatmap per head: ``weights`` is (H, T_q, T_k)."""
    w = _to_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"attention_grid expects (H, T_q, T_k), got shape {w.shape}")
    H = w.shape[0]
    ncols = min(ncols, H)
    nrows = (H + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False)
    for h in range(nrows * ncols):
        ax = axes[h // ncols][h % ncols]
        if h >= H:
            ax.axis("off")
            continue
        attention_heatmap(w[h], query_labels, key_labels, ax=ax,
                          title=titles[h] if titles else f"head {h}")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_positional_encoding(pe, ax=None, title="sinusoidal positional encoding"):
    """Heatmap of a (T, C) positional table: position down, dimension across."""
    p = _to_numpy(pe)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    im = ax.imshow(p, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set_xlabel("dimension i")
    ax.set_ylabel("position pos")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax)
    return ax


def plot_history(history, keys=("train_loss", "val_loss"), ax=None, title="training curve",
                 logy: bool = False):
    """Plot a Trainer's history (a dict of lists, each entry a (step, value) pair)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        if key in history and history[key]:
            steps, values = zip(*history[key])
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    return ax
