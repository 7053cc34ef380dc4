"""`KVCache`: the keys and values a causal attention module has already computed.

A causal model generates text one token at a time: each new token attends to
every token before it. Without a cache, each step feeds the whole sequence
through the model again and recomputes the keys and values of every earlier
token, although causality guarantees they cannot have changed. A cache keeps
them, so each step projects only the new token and attends over the stored keys.

Variants that can use one declare ``supports_kv_cache = True`` and accept
``forward(x, cache=...)``; ``x`` then holds only the tokens that are new since
the last call. Use one cache per attention module (per layer in a model), and a
new cache, or `KVCache.reset`, per sequence.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of the tokens seen so far, for one attention module.

    The cache starts empty and fills as the module appends to it. In inference
    (gradients off) it writes into buffers allocated once at the module's
    ``context_length``, so a step costs no copying of the past; with gradients on
    it concatenates instead, so that autograd never sees an in-place write (even
    when the key and value projections are frozen and only the queries need
    gradients).

    A cache belongs to the first module that uses it, until `reset`: handing it
    to another module raises, since its keys and values mean nothing there.

    Attributes:
        keys: ``(batch, heads, length, d_k)`` or ``None`` while empty.
        values: ``(batch, heads, length, d_v)`` or ``None`` while empty.

    Examples:
        >>> import attnkit, torch
        >>> attention = attnkit.create("causal", d_in=3, d_out=2, context_length=8).eval()
        >>> x = torch.rand(1, 5, 3)
        >>> cache = attnkit.KVCache()
        >>> with torch.no_grad():
        ...     steps = [attention(x[:, t : t + 1], cache=cache) for t in range(5)]
        ...     full = attention(x)
        >>> cache.length
        5
        >>> torch.allclose(torch.cat(steps, dim=1), full, atol=1e-6)
        True
    """

    def __init__(self) -> None:
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self._length = 0
        self._held = 0
        self._children: dict[int, KVCache] = {}
        self._owner: weakref.ReferenceType[Any] | None = None
        self._owner_name = ""

    @property
    def length(self) -> int:
        """How many tokens the cache has seen (for a composite module, its first part's count).

        For a sliding-window cache this keeps counting past the window, so positions
        continue; `held` says how many tokens are stored.
        """
        if self._keys is None and self._children:
            return self._children[min(self._children)].length
        return self._length

    @property
    def held(self) -> int:
        """How many tokens' keys and values are stored: `length`, or at most the window."""
        if self._keys is None and self._children:
            return self._children[min(self._children)].held
        return self._held

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._keys is None else self._keys[:, :, : self._held]

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._values is None else self._values[:, :, : self._held]

    def nbytes(self) -> int:
        """Bytes of the keys and values stored now, all parts included."""
        own = sum(t.numel() * t.element_size() for t in (self.keys, self.values) if t is not None)
        return own + sum(child.nbytes() for child in self._children.values())

    def append(
        self,
        keys: torch.Tensor,
        values: torch.Tensor | None = None,
        capacity: int | None = None,
        *,
        window: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Store the keys and values of new tokens; return those of every token held.

        Args:
            keys: ``(batch, heads, new_tokens, d_k)``.
            values: ``(batch, heads, new_tokens, d_v)``, or ``None`` for a module
                that caches one tensor per token (a latent, say) as ``keys``.
            capacity: The most tokens this cache will see (the module's
                ``context_length``); buffers of that size are allocated once.
            window: Keep only the last ``window`` tokens (a ring buffer for
                sliding-window attention): memory stops growing at the window.

        Returns:
            ``(keys, values)`` of shapes ``(batch, heads, held, d_k)`` and
            ``(batch, heads, held, d_v)``: the tokens held before this call (at
            most ``window``) followed by the new ones, in order.

        Raises:
            ValueError: The new keys do not match the stored ones in batch size,
                heads, width, dtype or device, or they would exceed ``capacity``.
        """
        new = keys.shape[2]
        if self._keys is not None:
            self._check_compatible(keys, values)
        if capacity is not None and self._length + new > capacity:
            raise ValueError(
                f"KVCache: holds {self._length} tokens and {new} more would exceed the "
                f"capacity of {capacity}; start a new cache or call reset()"
            )
        self._length += new
        if window is None and not torch.is_grad_enabled():
            self._write_in_place(keys, values, capacity)
            return self.keys, self.values
        # With gradients on, concatenate: autograd must never see an in-place write.
        all_keys = keys if self._keys is None else torch.cat((self.keys, keys), dim=2)
        all_values = values
        if values is not None and self._values is not None:
            all_values = torch.cat((self.values, values), dim=2)
        self._keys, self._values = all_keys, all_values
        if window is not None and all_keys.shape[2] > window:
            # Copies, not views: a view would keep a long prompt's keys alive.
            self._keys = all_keys[:, :, -window:].clone()
            self._values = None if all_values is None else all_values[:, :, -window:].clone()
        self._held = self._keys.shape[2]
        return all_keys, all_values

    def _write_in_place(
        self, keys: torch.Tensor, values: torch.Tensor | None, capacity: int | None
    ) -> None:
        start, end = self._held, self._held + keys.shape[2]
        # Buffers made under torch.inference_mode() cannot be written outside it, and a
        # buffer from the concatenating path may be part of an autograd graph: copy both.
        stale = self._keys is not None and (
            self._keys.requires_grad
            or (self._keys.is_inference() and not torch.is_inference_mode_enabled())
        )
        if self._keys is None or self._keys.shape[2] < end or stale:
            size = max(end, capacity or end)
            old_keys, old_values = self.keys, self.values
            self._keys = keys.new_empty((*keys.shape[:2], size, keys.shape[3]))
            if old_keys is not None:
                self._keys[:, :, :start] = old_keys.detach()
            if values is not None:
                self._values = values.new_empty((*values.shape[:2], size, values.shape[3]))
                if old_values is not None:
                    self._values[:, :, :start] = old_values.detach()
        self._keys[:, :, start:end] = keys
        if values is not None:
            self._values[:, :, start:end] = values
        self._held = end

    def _check_compatible(self, keys: torch.Tensor, values: torch.Tensor | None) -> None:
        stored_k, stored_v = self._keys, self._values
        assert stored_k is not None
        if (values is None) != (stored_v is None):
            raise ValueError(
                "KVCache: this cache holds keys "
                f"{'and values' if stored_v is not None else 'only'}, but "
                f"{'keys only' if values is None else 'keys and values'} were given; use one "
                f"cache per module"
            )
        pairs = [("keys", keys, stored_k)]
        if values is not None:
            pairs.append(("values", values, stored_v))
        for label, new, stored in pairs:
            if new.dim() != 4 or (*new.shape[:2], new.shape[3]) != (
                *stored.shape[:2],
                stored.shape[3],
            ):
                expected = (*stored.shape[:2], "new_tokens", stored.shape[3])
                raise ValueError(
                    f"KVCache: new {label} of shape {tuple(new.shape)} do not match the cached "
                    f"ones, expected {expected}; use one cache per module and batch of sequences"
                )
            if new.dtype != stored.dtype or new.device != stored.device:
                raise ValueError(
                    f"KVCache: new {label} are {new.dtype} on {new.device} but the cache holds "
                    f"{stored.dtype} on {stored.device}"
                )

    def claim(self, module: object) -> None:
        """Bind the cache to ``module``, the first to use it; raise if another module owns it.

        The base class calls this before a variant's ``forward`` runs with a cache.

        Raises:
            ValueError: The cache holds (or held, until `reset`) another module's
                keys and values.
        """
        owner = None if self._owner is None else self._owner()
        if owner is module:
            return
        if self._owner is not None:
            raise ValueError(
                f"KVCache: this cache belongs to another attention module ({self._owner_name}, "
                f"holding {self.length} tokens) and was passed to {_describe(module)}; use "
                f"one cache per attention module, e.g. a model's new_kv_caches() or "
                f"[KVCache() for _ in range(layers)] (not [KVCache()] * layers), or reset() it"
            )
        self._owner = weakref.ref(module)
        self._owner_name = _describe(module)

    def child(self, index: int) -> KVCache:
        """The cache of part ``index`` of a module built from several attention modules."""
        return self._children.setdefault(index, KVCache())

    def reset(self) -> None:
        """Empty the cache to start a new sequence."""
        self._keys = self._values = None
        self._length = 0
        self._held = 0
        self._children.clear()
        self._owner = None
        self._owner_name = ""

    def __repr__(self) -> str:
        if self._keys is None and self._children:
            return f"KVCache(length={self.length}, parts={len(self._children)})"
        shape = None if self._keys is None else tuple(self.keys.shape)
        return f"KVCache(length={self.length}, keys={shape})"


def _describe(module: object) -> str:
    return f"{type(module).__name__} at {id(module):#x}"
