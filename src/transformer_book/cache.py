"""The KV cache: keys and values that attention has already computed. See chapters 10 and 12.

Shape legend: see ``attention.py``.
"""
from __future__ import annotations

import weakref

import torch

__all__ = ["KVCache", "LayerCache", "Cache"]


class KVCache:
    """Keys and values that one attention module has already computed.

    Self-attention appends the new tokens' keys and values at every decoding step
    (``append``); cross-attention stores the keys and values of the encoder's memory once
    (``store_source``) and reuses them (``source``), for that memory only.
    ``k`` and ``v`` are (B, H, T, D) views of buffers that grow by doubling and are written in
    place, so that a step copies only its own keys and values, not the whole history
    (appends that need gradients concatenate instead, as autograd cannot see through the
    in-place writes).
    """

    def __init__(self):
        self._k: torch.Tensor | None = None  # (B, H, capacity, D)
        self._v: torch.Tensor | None = None
        self._n = 0  # positions held
        self._memory = None  # cross-attention: which memory the keys and values came from

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, :self._n]  # (B, H, T, D)

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, :self._n]  # (B, H, T, D)

    def __len__(self) -> int:
        return self._n

    def reset(self) -> None:
        """Forget everything (start a new sequence, or a new source for cross-attention)."""
        self._k = self._v = None
        self._n = 0
        self._memory = None

    def check_batch(self, B: int) -> None:
        """Raise ValueError unless the cache is empty or holds a batch of ``B`` rows."""
        if self._n and B != self._k.shape[0]:
            raise ValueError(f"this cache holds a batch of {self._k.shape[0]}, the new keys "
                             f"have {B}: call cache.reset() before a new batch")

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Add the keys and values (B, H, T_new, D) of new positions; return all of them."""
        self.check_batch(k.shape[0])
        n, T = self._n, k.shape[2]
        if self._k is None or k.requires_grad or v.requires_grad or self._k.requires_grad:
            if self._k is None:
                self._k, self._v = k, v
            else:
                self._k = torch.cat([self.k, k], dim=2)  # (B, H, T_old + T_new, D)
                self._v = torch.cat([self.v, v], dim=2)
            self._n = n + T
            return self.k, self.v
        if n + T > self._k.shape[2]:  # grow: double the capacity (amortised O(1) per token)
            cap = max(2 * self._k.shape[2], n + T, 16)
            for name in ("_k", "_v"):
                old = getattr(self, name)
                buf = old.new_empty(*old.shape[:2], cap, old.shape[3])  # (B, H, cap, D)
                buf[:, :, :n] = old[:, :, :n]
                setattr(self, name, buf)
        self._k[:, :, n:n + T] = k
        self._v[:, :, n:n + T] = v
        self._n = n + T
        return self.k, self.v

    def store_source(self, memory: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Cross-attention: keep the keys and values (B, H, S, D) projected from ``memory``
        (B, S, C), and remember that memory, so that ``source`` serves it and no other."""
        if self._n:
            raise ValueError("this cross-attention cache already holds a source: call "
                             "cache.reset() before a new one")
        self.append(k, v)
        self._memory = _Identity(memory)

    def source(self, memory: torch.Tensor):
        """The keys and values (B, H, S, D) stored for cross-attention over ``memory``
        (B, S, C). Raises ValueError for any other memory (another tensor, or the same one
        changed in place), even one of the same batch and length."""
        if self._memory is None:
            raise ValueError("this cache holds no cross-attention source")
        if not self._memory.matches(memory):
            raise ValueError(f"this cross-attention cache was filled from another memory "
                             f"(batch {self._k.shape[0]}, length {self._n}) than the one given "
                             f"{tuple(memory.shape)}: call cache.reset() before a new source")
        return self.k, self.v

    def reorder(self, index: torch.Tensor, memory: torch.Tensor | None = None) -> None:
        """Keep batch rows ``index`` (beam search picks which hypotheses survive). A
        cross-attention cache also needs ``memory``: the memory reordered the same way,
        which it serves from now on."""
        if self._memory is not None:
            if memory is None or memory.shape[0] != index.shape[0]:
                raise ValueError("this cross-attention cache holds a source: pass the memory "
                                 f"reordered by the same index ({index.shape[0]} rows)")
            self._memory = _Identity(memory)
        if self._k is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)


class _Identity:
    """Which tensor a cross-attention cache was filled from: the tensor itself (a weak
    reference, so the cache keeps nothing alive), its address, shape, strides and version
    counter (which in-place writes increase)."""

    def __init__(self, t: torch.Tensor):
        self.ref = weakref.ref(t)
        self.key = _key(t)

    def matches(self, t: torch.Tensor) -> bool:
        # the first tensor still alive: another at its address with its shape is a view of it
        return self.ref() is not None and _key(t) == self.key


def _key(t: torch.Tensor):
    return t.data_ptr(), t.shape, t.stride(), t._version, t.device


class LayerCache:
    """The caches of one block: its self-attention and, in a decoder, its cross-attention."""

    def __init__(self, cross: bool = False):
        self.self_attn = KVCache()
        self.cross_attn = KVCache() if cross else None

    def reorder(self, index: torch.Tensor, memory: torch.Tensor | None = None) -> None:
        self.self_attn.reorder(index)
        if self.cross_attn is not None:
            self.cross_attn.reorder(index, memory)


class Cache(list):
    """A model's cache: one entry per layer, each a ``LayerCache``.

    ``seq_len`` is the number of positions already processed, which is where new positions
    start.
    """

    def __init__(self, n_layers: int, cross: bool = False):
        super().__init__(LayerCache(cross) for _ in range(n_layers))

    @property
    def seq_len(self) -> int:
        return len(self[0].self_attn) if len(self) else 0

    def reorder(self, index: torch.Tensor, memory: torch.Tensor | None = None) -> None:
        """Keep batch rows ``index``; ``memory``: the encoder's memory reordered the same
        way (needed once the cross-attention caches hold a source)."""
        for layer in self:
            layer.reorder(index, memory)

    def reset(self) -> None:
        """Empty every layer's caches, so that the cache can serve a new batch or source."""
        for layer in self:
            layer.self_attn.reset()
            if layer.cross_attn is not None:
                layer.cross_attn.reset()
