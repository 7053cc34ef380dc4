r"""Attention masks as values: causal, sliding window, padding, documents, prefix-LM.

A mask says which keys each query may attend to. Following PyTorch's
FlexAttention, a mask is defined by a function

$$
\operatorname{mask\_mod}(b, h, q, k) \in \{\text{True}, \text{False}\}
$$

of the batch index $b$, the head $h$, the query position $q$ and the key
position $k$; True means *may attend*. The function is called on index tensors
and must return a bool tensor, so the same definition can be

- materialised as a dense boolean ``(batch, heads, tokens_q, tokens_k)`` tensor
  with `Mask.to_dense`, for SDPA and the explicit reference, or
- compiled into a FlexAttention ``BlockMask`` with `Mask.to_block_mask`,

and a ``mask_mod`` written for FlexAttention (attention-gym's, for instance)
works here unchanged: wrap it in `Mask`.

Positions are absolute. With a KV cache the keys cover ``tokens_k`` positions
and the queries are the *last* ``tokens_q`` of them, so ``q`` runs over
``tokens_k - tokens_q, ..., tokens_k - 1`` while ``k`` runs over
``0, ..., tokens_k - 1``. Without a cache ``tokens_q == tokens_k`` and both
start at 0.

Masks combine with ``&`` (both allow), ``|`` (either allows) and ``~`` (the
complement); the result is again a `Mask` whose ``repr`` is the expression.
Each mask caches what it materialises, per shape and device, so a model that
calls ``to_dense`` in every layer of every step builds it once.

Examples:
    >>> from attnkit import masks
    >>> mask = masks.causal() & masks.sliding_window(2)
    >>> mask
    causal() & sliding_window(2)
    >>> mask.to_dense(1, 1, 4, 4).long()
    tensor([[[[1, 0, 0, 0],
              [1, 1, 0, 0],
              [0, 1, 1, 0],
              [0, 0, 1, 1]]]])
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

__all__ = [
    "Mask",
    "MaskMod",
    "causal",
    "dense",
    "document",
    "padding",
    "prefix_lm",
    "sliding_window",
]

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``mask_mod(batch, head, q_idx, kv_idx) -> bool tensor``, True where a query may attend."""

# Precedence of the operators in a mask's repr, to parenthesise only where needed.
_OR, _AND, _INVERT, _ATOM = 0, 1, 2, 3


class Mask:
    """A mask: a ``mask_mod`` function with a readable description.

    Build masks with the factories in this module (`causal`, `sliding_window`,
    `padding`, `document`, `prefix_lm`) and combine them with ``&``, ``|`` and
    ``~``. Wrap your own ``mask_mod`` to use a FlexAttention mask as it is.

    Args:
        mask_mod: ``mask_mod(batch, head, q_idx, kv_idx) -> bool tensor``; it is
            called on broadcastable index tensors and must broadcast like them.
        description: What ``repr`` shows; defaults to the function's name.
        depends_on_batch: Whether the mask differs between the sequences of a
            batch. When False, materialised masks have a batch dimension of 1.
        depends_on_head: Whether the mask differs between heads. When False,
            materialised masks have a heads dimension of 1.

    Attributes:
        cache_size: How many materialised masks each mask keeps (least recently
            used first out), separately for dense and block masks.

    Examples:
        >>> import torch
        >>> from attnkit.masks import Mask
        >>> def even_keys(b, h, q_idx, kv_idx):
        ...     return kv_idx % 2 == 0
        >>> mask = Mask(even_keys, depends_on_batch=False, depends_on_head=False)
        >>> mask
        even_keys
        >>> mask.to_dense(2, 4, 2, 4).long()
        tensor([[[[1, 0, 1, 0],
                  [1, 0, 1, 0]]]])
    """

    cache_size: int = 8
    _precedence = _ATOM

    def __init__(
        self,
        mask_mod: MaskMod,
        description: str | None = None,
        *,
        depends_on_batch: bool = True,
        depends_on_head: bool = True,
    ) -> None:
        if not callable(mask_mod):
            raise TypeError(
                "Mask expects a mask_mod function (batch, head, q_idx, kv_idx) -> bool tensor, "
                f"got {type(mask_mod).__name__}"
            )
        self._mask_mod = mask_mod
        self._description = description or getattr(mask_mod, "__name__", "mask_mod")
        self._depends_on_batch = bool(depends_on_batch)
        self._depends_on_head = bool(depends_on_head)
        self._dense: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
        self._blocks: OrderedDict[tuple[Any, ...], BlockMask] = OrderedDict()
        self._combinations: OrderedDict[int, tuple[weakref.ref[Mask], Mask]] = OrderedDict()
        self._implies_causal = False

    # -- what the mask is ----------------------------------------------------------

    @property
    def mask_mod(self) -> MaskMod:
        """The ``mask_mod`` function, ready for FlexAttention's ``create_block_mask``.

        A padding or document mask's function holds a copy of its tensor, on
        that tensor's device; masks built from positions alone hold none and
        work on any device. It sees positions as FlexAttention does, both
        starting at 0; with a KV cache use `to_block_mask` or `to_dense`, which
        shift the queries.
        """
        return self._mod_for(self._device())

    @property
    def depends_on_batch(self) -> bool:
        """Whether the mask differs between the sequences of a batch (padding, documents)."""
        return self._depends_on_batch

    @property
    def depends_on_head(self) -> bool:
        """Whether the mask differs between heads (no built-in mask does)."""
        return self._depends_on_head

    @property
    def implies_causal(self) -> bool:
        """Whether no query may see a later key: `causal`, a sliding window, or ``causal() & ...``.

        A kernel may then skip the key blocks above the diagonal entirely.
        """
        return self._implies_causal

    @property
    def is_causal(self) -> bool:
        """True only for `causal` itself, not for masks that contain it.

        A kernel may then use ``scaled_dot_product_attention(..., is_causal=True)``
        instead of a materialised mask, but only when ``tokens_q == tokens_k``:
        SDPA aligns its causal mask to the top left, while with a KV cache the
        queries are the last positions.
        """
        return False

    def __repr__(self) -> str:
        return self._description

    # -- combining -----------------------------------------------------------------

    def __and__(self, other: object) -> Mask:
        other = _check_operand(self, "&", other)
        # Every layer of a model combines the same two masks: hand back the same
        # combination, and with it the dense mask it has already materialised.
        remembered = self._combinations.get(id(other))
        if remembered is not None and remembered[0]() is other:
            return remembered[1]
        combined = _Combined("&", [self, other])
        _store(self._combinations, id(other), (weakref.ref(other), combined), self.cache_size)
        return combined

    def __or__(self, other: object) -> Mask:
        return _Combined("|", [self, _check_operand(self, "|", other)])

    def __rand__(self, other: object) -> Mask:
        raise _operand_error(other, "&", self)

    def __ror__(self, other: object) -> Mask:
        raise _operand_error(other, "|", self)

    def __invert__(self) -> Mask:
        return _Inverted(self)

    # -- materialising -------------------------------------------------------------

    def to_dense(
        self,
        batch: int,
        heads: int,
        tokens_q: int,
        tokens_k: int,
        *,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The mask as a boolean tensor, True where a query may attend.

        The queries are the last ``tokens_q`` of the ``tokens_k`` key positions
        (see the module's description). The result is cached on the mask per
        shape and device: a second call with the same arguments returns the same
        tensor, so **do not modify it** (copy it first, e.g. with ``.clone()``).
        It may be an expanded view of a smaller tensor.

        Args:
            batch: Sequences in the batch.
            heads: Attention heads.
            tokens_q: Query positions, the last ``tokens_q`` of ``tokens_k``.
            tokens_k: Key positions (cached plus new tokens).
            device: Where to build it; defaults to the device of the tensors the
                mask was built from, else PyTorch's default device.

        Returns:
            Bool ``(batch, heads, tokens_q, tokens_k)``, except that the batch
            dimension is 1 when the mask does not depend on the batch
            (`depends_on_batch`), and the heads dimension is 1 when it does not
            depend on the head: it broadcasts against the scores either way.

        Raises:
            ValueError: A size is not a positive integer, ``tokens_q`` exceeds
                ``tokens_k``, or a padding or document mask was built for
                another batch size or length.
            TypeError: The ``mask_mod`` does not return a bool tensor.

        Examples:
            >>> from attnkit import masks
            >>> masks.causal().to_dense(8, 12, 2, 5).long()  # a cache of 3, 2 new tokens
            tensor([[[[1, 1, 1, 1, 0],
                      [1, 1, 1, 1, 1]]]])
        """
        _check_sizes("to_dense", batch, heads, tokens_q, tokens_k)
        self._check_shapes(batch, tokens_k)
        device = self._resolve(device)
        batch, heads = self._broadcast_sizes(batch, heads)
        key = (batch, heads, tokens_q, tokens_k, device)
        cached = _lookup(self._dense, key)
        if cached is None:
            cached = self._materialise(batch, heads, tokens_q, tokens_k, device)
            _store(self._dense, key, cached, self.cache_size)
        return cached

    def to_block_mask(
        self,
        batch: int,
        heads: int,
        tokens_q: int,
        tokens_k: int,
        *,
        device: torch.device | str | None = None,
        block_size: int = 128,
    ) -> BlockMask:
        """The mask as a FlexAttention ``BlockMask``, for ``flex_attention(..., block_mask=)``.

        Same conventions and caching as `to_dense`: the queries are the last
        ``tokens_q`` of the ``tokens_k`` positions, and a batch or heads size of
        1 is used where the mask does not depend on it (FlexAttention
        broadcasts it).

        Args:
            batch: Sequences in the batch.
            heads: Attention heads.
            tokens_q: Query positions, the last ``tokens_q`` of ``tokens_k``.
            tokens_k: Key positions (cached plus new tokens).
            device: Where to build it; defaults as in `to_dense`.
            block_size: FlexAttention's sparse block size, for queries and keys.

        Returns:
            A ``torch.nn.attention.flex_attention.BlockMask`` of shape
            ``(batch or 1, heads or 1, tokens_q, tokens_k)``.

        Examples:
            >>> from attnkit import masks
            >>> block_mask = masks.causal().to_block_mask(2, 4, 256, 256)
            >>> block_mask.shape
            (1, 1, 256, 256)
            >>> block_mask.to_dense().long()  # one entry per 128 x 128 block
            tensor([[[[1, 0],
                      [1, 1]]]])
        """
        _check_sizes("to_block_mask", batch, heads, tokens_q, tokens_k)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(
                f"to_block_mask: block_size must be a positive int, got {block_size!r}"
            )
        self._check_shapes(batch, tokens_k)
        device = self._resolve(device)
        batch, heads = self._broadcast_sizes(batch, heads)
        key = (batch, heads, tokens_q, tokens_k, device, block_size)
        cached = _lookup(self._blocks, key)
        if cached is None:
            from torch.nn.attention.flex_attention import create_block_mask

            mask_mod = _shifted(self._mod_for(device), tokens_k - tokens_q)
            with torch.inference_mode(False):
                cached = create_block_mask(
                    mask_mod, batch, heads, tokens_q, tokens_k, device=device, BLOCK_SIZE=block_size
                )
            _store(self._blocks, key, cached, self.cache_size)
        return cached

    # -- internals, overridden by the masks built from tensors and by combinations ---

    def _mod_for(self, device: torch.device) -> MaskMod:
        """The mask_mod with its tensors on ``device``."""
        return self._mask_mod

    def _device(self) -> torch.device | None:
        """The device of the tensors the mask holds, if any."""
        return None

    def _check_shapes(self, batch: int, tokens_k: int) -> None:
        """Raise if the tensors the mask holds do not fit ``(batch, tokens_k)``."""

    def _resolve(self, device: torch.device | str | None) -> torch.device:
        if device is not None:
            return torch.device(device)
        return self._device() or torch.get_default_device()

    def _broadcast_sizes(self, batch: int, heads: int) -> tuple[int, int]:
        return (batch if self.depends_on_batch else 1, heads if self.depends_on_head else 1)

    def _materialise(
        self, batch: int, heads: int, tokens_q: int, tokens_k: int, device: torch.device
    ) -> torch.Tensor:
        # Build ordinary tensors even inside inference_mode: a cached inference
        # tensor could not be used later by an autograd-recorded masked_fill.
        with torch.inference_mode(False), torch.no_grad():
            b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
            h = torch.arange(heads, device=device).view(1, -1, 1, 1)
            q = torch.arange(tokens_k - tokens_q, tokens_k, device=device).view(1, 1, -1, 1)
            kv = torch.arange(tokens_k, device=device).view(1, 1, 1, -1)
            allowed = self._mod_for(device)(b, h, q, kv)
            if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
                got = allowed.dtype if isinstance(allowed, torch.Tensor) else type(allowed).__name__
                raise TypeError(
                    f"the mask_mod of {self!r} returned {got}; a mask_mod must return "
                    "a bool tensor (True = may attend)"
                )
            while allowed.dim() < 4:
                allowed = allowed.unsqueeze(0)
            allowed = allowed.broadcast_to(batch, heads, tokens_q, tokens_k)
            if allowed.stride(-1) != 1:
                allowed = allowed.contiguous()
        return allowed


class _Causal(Mask):
    @property
    def is_causal(self) -> bool:
        return True

    @property
    def implies_causal(self) -> bool:
        return True


class _TensorMask(Mask):
    """A mask built from a ``(batch, tokens)`` tensor: padding or document ids."""

    def __init__(
        self,
        name: str,
        tensor: torch.Tensor,
        make: Callable[[torch.Tensor], MaskMod],
        description: str,
    ) -> None:
        self._name = name
        self._tensor = tensor
        self._make = make
        self._mods: dict[torch.device, MaskMod] = {}
        super().__init__(make(tensor), description, depends_on_batch=True, depends_on_head=False)

    def _mod_for(self, device: torch.device) -> MaskMod:
        if device == self._tensor.device:
            return self._mask_mod
        if device not in self._mods:
            self._mods[device] = self._make(self._tensor.to(device))
        return self._mods[device]

    def _device(self) -> torch.device | None:
        return self._tensor.device

    def _check_shapes(self, batch: int, tokens_k: int) -> None:
        if tuple(self._tensor.shape) != (batch, tokens_k):
            raise ValueError(
                f"{self._name} was built for shape {tuple(self._tensor.shape)}, but the "
                f"attention has batch {batch} and {tokens_k} key tokens: expected "
                f"(batch, tokens_k) = ({batch}, {tokens_k})"
            )


class _Dense(Mask):
    """A mask given as a dense boolean tensor, as other libraries build them."""

    def __init__(self, allowed: torch.Tensor) -> None:
        self._allowed = allowed
        batch, heads, tokens_q, tokens_k = allowed.shape
        offset = tokens_k - tokens_q
        pick_b, pick_h = int(batch > 1), int(heads > 1)

        def mask_mod(b, h, q_idx, kv_idx):
            return allowed[b * pick_b, h * pick_h, q_idx - offset, kv_idx]

        description = f"dense(<{batch}x{heads}x{tokens_q}x{tokens_k}>)"
        super().__init__(
            mask_mod, description, depends_on_batch=batch > 1, depends_on_head=heads > 1
        )

    def _device(self) -> torch.device | None:
        return self._allowed.device

    def _mod_for(self, device: torch.device) -> MaskMod:
        if device != self._allowed.device:
            return _Dense(self._allowed.to(device))._mask_mod
        return self._mask_mod

    def _check_shapes(self, batch: int, tokens_k: int) -> None:
        held_batch, _, _, held_k = self._allowed.shape
        if tokens_k != held_k or held_batch not in (1, batch):
            raise ValueError(
                f"{self!r} covers batch {held_batch} and {held_k} key tokens, but the "
                f"attention has batch {batch} and {tokens_k} key tokens"
            )

    def _materialise(
        self, batch: int, heads: int, tokens_q: int, tokens_k: int, device: torch.device
    ) -> torch.Tensor:
        if tokens_q == self._allowed.shape[2] and device == self._allowed.device:
            return self._allowed.expand(batch, heads, tokens_q, tokens_k)
        return super()._materialise(batch, heads, tokens_q, tokens_k, device)


class _Combined(Mask):
    """``a & b & ...`` or ``a | b | ...``."""

    def __init__(self, op: str, parts: list[Mask]) -> None:
        self._op = op
        self._precedence = _AND if op == "&" else _OR
        flat: list[Mask] = []
        for part in parts:
            same = isinstance(part, _Combined) and part._op == op
            flat.extend(part._parts if same else [part])
        self._parts = flat
        self._mods: dict[torch.device, MaskMod] = {}
        description = f" {op} ".join(_operand_repr(part, self._precedence) for part in flat)
        super().__init__(
            self._build(self._device()),
            description,
            depends_on_batch=any(part.depends_on_batch for part in flat),
            depends_on_head=any(part.depends_on_head for part in flat),
        )
        implied = [part.implies_causal for part in flat]
        self._implies_causal = any(implied) if op == "&" else all(implied)

    def _build(self, device: torch.device | None) -> MaskMod:
        # Without a device (no part holds a tensor) every part's own mask_mod will do.
        mods = [part.mask_mod if device is None else part._mod_for(device) for part in self._parts]
        if self._op == "&":

            def mask_mod(b, h, q_idx, kv_idx):
                allowed = mods[0](b, h, q_idx, kv_idx)
                for mod in mods[1:]:
                    allowed = allowed & mod(b, h, q_idx, kv_idx)
                return allowed

        else:

            def mask_mod(b, h, q_idx, kv_idx):
                allowed = mods[0](b, h, q_idx, kv_idx)
                for mod in mods[1:]:
                    allowed = allowed | mod(b, h, q_idx, kv_idx)
                return allowed

        return mask_mod

    def _mod_for(self, device: torch.device) -> MaskMod:
        if device == self._device():
            return self._mask_mod
        if device not in self._mods:
            self._mods[device] = self._build(device)
        return self._mods[device]

    def _device(self) -> torch.device | None:
        for part in self._parts:
            device = part._device()
            if device is not None:
                return device
        return None

    def _check_shapes(self, batch: int, tokens_k: int) -> None:
        for part in self._parts:
            part._check_shapes(batch, tokens_k)


class _Inverted(Mask):
    """``~a``: allowed exactly where ``a`` forbids."""

    _precedence = _INVERT

    def __init__(self, inner: Mask) -> None:
        self._inner = inner
        self._mods: dict[torch.device, MaskMod] = {}
        super().__init__(
            self._build(inner.mask_mod),
            "~" + _operand_repr(inner, _INVERT),
            depends_on_batch=inner.depends_on_batch,
            depends_on_head=inner.depends_on_head,
        )

    @staticmethod
    def _build(inner: MaskMod) -> MaskMod:
        def mask_mod(b, h, q_idx, kv_idx):
            return ~inner(b, h, q_idx, kv_idx)

        return mask_mod

    def _mod_for(self, device: torch.device) -> MaskMod:
        if device == self._device():
            return self._mask_mod
        if device not in self._mods:
            self._mods[device] = self._build(self._inner._mod_for(device))
        return self._mods[device]

    def _device(self) -> torch.device | None:
        return self._inner._device()

    def _check_shapes(self, batch: int, tokens_k: int) -> None:
        self._inner._check_shapes(batch, tokens_k)


# -- the factories -------------------------------------------------------------------


def _causal_mod(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


_CAUSAL = _Causal(_causal_mod, "causal()", depends_on_batch=False, depends_on_head=False)


def causal() -> Mask:
    """Each query sees itself and the keys before it.

    Allowed where ``q_idx >= kv_idx``.

    Always the same object, so that everything materialised from it is cached
    once for the whole program. Its `Mask.is_causal` is True.

    Returns:
        The causal mask; it materialises as ``(1, 1, tokens_q, tokens_k)``.

    Examples:
        >>> from attnkit import masks
        >>> masks.causal() is masks.causal()
        True
        >>> masks.causal().to_dense(1, 1, 3, 3).long()
        tensor([[[[1, 0, 0],
                  [1, 1, 0],
                  [1, 1, 1]]]])
    """
    return _CAUSAL


def sliding_window(window: int) -> Mask:
    """Each query sees the ``window`` most recent keys, itself included.

    Allowed where ``0 <= q_idx - kv_idx < window``.

    This is a *causal* sliding window (transformers' convention): no query sees
    a later key, so ``causal() & sliding_window(w)`` equals ``sliding_window(w)``.
    ``sliding_window(1)`` lets each token see only itself.

    Args:
        window: How many keys each query sees at most, a positive int.

    Returns:
        The mask; it materialises as ``(1, 1, tokens_q, tokens_k)``.

    Raises:
        TypeError: ``window`` is not an int.
        ValueError: ``window`` is not positive.

    Examples:
        >>> from attnkit import masks
        >>> masks.sliding_window(2).to_dense(1, 1, 4, 4).long()
        tensor([[[[1, 0, 0, 0],
                  [1, 1, 0, 0],
                  [0, 1, 1, 0],
                  [0, 0, 1, 1]]]])
    """
    _check_int("sliding_window", "window", window, minimum=1)

    def sliding_window_mod(b, h, q_idx, kv_idx):
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance < window)

    mask = Mask(
        sliding_window_mod,
        f"sliding_window({window})",
        depends_on_batch=False,
        depends_on_head=False,
    )
    mask._implies_causal = True
    return mask


def prefix_lm(prefix: int) -> Mask:
    """Every query sees the first ``prefix`` tokens; after them, attention is causal.

    Allowed where ``kv_idx < prefix or q_idx >= kv_idx``.

    The prefix (a prompt, an image's tokens) is attended bidirectionally, and
    the rest is generated causally. ``prefix_lm(0)`` is plain causal attention.

    Args:
        prefix: How many leading tokens every query sees, a non-negative int.

    Returns:
        The mask; it materialises as ``(1, 1, tokens_q, tokens_k)``.

    Raises:
        TypeError: ``prefix`` is not an int.
        ValueError: ``prefix`` is negative.

    Examples:
        >>> from attnkit import masks
        >>> masks.prefix_lm(2).to_dense(1, 1, 4, 4).long()
        tensor([[[[1, 1, 0, 0],
                  [1, 1, 0, 0],
                  [1, 1, 1, 0],
                  [1, 1, 1, 1]]]])
    """
    _check_int("prefix_lm", "prefix", prefix, minimum=0)

    def prefix_lm_mod(b, h, q_idx, kv_idx):
        return (kv_idx < prefix) | (q_idx >= kv_idx)

    return Mask(
        prefix_lm_mod, f"prefix_lm({prefix})", depends_on_batch=False, depends_on_head=False
    )


def dense(allowed: torch.Tensor) -> Mask:
    """A mask given as a dense boolean tensor: for masks another library has built.

    Hugging Face transformers, for one, builds 4-D masks for its models; this
    wraps one so that any attnkit kernel can take it, FlexAttention's included.

    Args:
        allowed: Bool ``(batch or 1, heads or 1, tokens_q, tokens_k)``, True where a
            query may attend; its queries are the last ``tokens_q`` of the
            ``tokens_k`` positions, as everywhere in this module.

    Raises:
        TypeError: ``allowed`` is not a bool tensor.
        ValueError: It is not 4-D, or has more queries than keys.

    Examples:
        >>> import torch
        >>> from attnkit import masks
        >>> allowed = torch.tensor([[[[True, False], [True, True]]]])
        >>> masks.dense(allowed)
        dense(<1x1x2x2>)
        >>> masks.dense(allowed).to_dense(3, 4, 2, 2).shape
        torch.Size([1, 1, 2, 2])
    """
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
        kind = allowed.dtype if isinstance(allowed, torch.Tensor) else type(allowed).__name__
        raise TypeError(f"dense expects a bool tensor (True = may attend), got {kind}")
    if allowed.dim() != 4 or allowed.shape[2] > allowed.shape[3]:
        raise ValueError(
            "dense expects a bool tensor of shape (batch or 1, heads or 1, tokens_q, tokens_k) "
            f"with tokens_q <= tokens_k, got {tuple(allowed.shape)}"
        )
    return _Dense(allowed)


class TensorMemo:
    """What was computed from a tensor, remembered while the tensor lives unchanged.

    Keyed by the tensor's identity and checked against its version counter, so an
    in-place change is a miss; at most ``size`` entries, least recently stored out.
    Every layer of a model is handed the same ``attention_mask``: this lets them
    all share what the first one built from it.
    """

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[weakref.ref[torch.Tensor], int, Any]] = OrderedDict()

    def get(self, tensor: torch.Tensor) -> Any:
        entry = self._entries.get(id(tensor))
        if entry is None or entry[0]() is not tensor or entry[1] != tensor._version:
            return None
        return entry[2]

    def put(self, tensor: torch.Tensor, value: Any) -> None:
        _store(self._entries, id(tensor), (weakref.ref(tensor), tensor._version, value), self._size)


_PADDING = TensorMemo()


def padding(attention_mask: torch.Tensor) -> Mask:
    """No query attends to a padding key.

    Allowed where ``attention_mask[b, kv_idx]`` is true.

    Hugging Face's convention: 1 or True marks a real token, 0 or False padding.
    Padding may sit on either side. Queries at padding positions still see the
    real keys, so their outputs stay finite; combine with `causal` for a
    decoder. The mask keeps its own copy of ``attention_mask``.

    Args:
        attention_mask: ``(batch, tokens_k)``, bool or integers 0 and 1. With a KV
            cache it covers the cached and the new tokens.

    Returns:
        The mask; it materialises as ``(batch, 1, tokens_q, tokens_k)``.

    Raises:
        TypeError: ``attention_mask`` is not a bool or integer tensor.
        ValueError: It is not 2-D, or holds values other than 0 and 1.

    Examples:
        >>> import torch
        >>> from attnkit import masks
        >>> attention_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])  # first row left-padded
        >>> mask = masks.causal() & masks.padding(attention_mask)
        >>> mask
        causal() & padding(<attention_mask 2x3>)
        >>> mask.to_dense(2, 12, 3, 3).long()
        tensor([[[[0, 0, 0],
                  [0, 1, 0],
                  [0, 1, 1]]],
        <BLANKLINE>
        <BLANKLINE>
                [[[1, 0, 0],
                  [1, 1, 0],
                  [1, 1, 1]]]])
    """
    tensor = _check_tokens_tensor("padding", "attention_mask", attention_mask)
    # Every layer of a model asks for the padding of the same tensor: one mask serves all.
    remembered = _PADDING.get(attention_mask)
    if remembered is not None:
        return remembered
    if tensor.dtype != torch.bool:
        if tensor.is_floating_point() or tensor.is_complex():
            raise TypeError(
                "padding: attention_mask must be bool or integer (1 = real token, "
                f"0 = padding), got dtype {tensor.dtype}"
            )
        bad = tensor[(tensor != 0) & (tensor != 1)]
        if bad.numel():
            found = ", ".join(str(v) for v in bad.unique()[:5].tolist())
            raise ValueError(
                "padding: attention_mask must hold only 0 and 1 (1 = real token, "
                f"0 = padding), found {found}"
            )
    tensor = tensor.detach().to(torch.bool, copy=True)

    def make(keep: torch.Tensor) -> MaskMod:
        def padding_mod(b, h, q_idx, kv_idx):
            return keep[b, kv_idx]

        return padding_mod

    batch, tokens = tensor.shape
    mask = _TensorMask(
        "padding(attention_mask)", tensor, make, f"padding(<attention_mask {batch}x{tokens}>)"
    )
    _PADDING.put(attention_mask, mask)
    return mask


def document(ids: torch.Tensor) -> Mask:
    """Packed sequences: a token attends only within its own document.

    Allowed where ``ids[b, q_idx] == ids[b, kv_idx]``.

    Several documents packed into one row must not see each other. Within a
    document attention is bidirectional; combine with `causal` for a decoder.
    With a KV cache the ids cover every position, cached and new. The mask keeps
    its own copy of ``ids``.

    Args:
        ids: ``(batch, tokens_k)`` integer document ids, one per token; any
            values, equal for the tokens of one document.

    Returns:
        The mask; it materialises as ``(batch, 1, tokens_q, tokens_k)``.

    Raises:
        TypeError: ``ids`` is not an integer tensor.
        ValueError: ``ids`` is not 2-D.

    Examples:
        >>> import torch
        >>> from attnkit import masks
        >>> ids = torch.tensor([[0, 0, 1, 1, 1]])  # two documents in one row
        >>> mask = masks.document(ids) & masks.causal()
        >>> mask.to_dense(1, 1, 5, 5).long()
        tensor([[[[1, 0, 0, 0, 0],
                  [1, 1, 0, 0, 0],
                  [0, 0, 1, 0, 0],
                  [0, 0, 1, 1, 0],
                  [0, 0, 1, 1, 1]]]])
    """
    tensor = _check_tokens_tensor("document", "ids", ids)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"document: ids must be an integer tensor, got dtype {tensor.dtype}")
    tensor = tensor.detach().clone()

    def make(doc: torch.Tensor) -> MaskMod:
        def document_mod(b, h, q_idx, kv_idx):
            return doc[b, q_idx] == doc[b, kv_idx]

        return document_mod

    batch, tokens = tensor.shape
    return _TensorMask("document(ids)", tensor, make, f"document(<ids {batch}x{tokens}>)")


# -- helpers ---------------------------------------------------------------------------


def _shifted(mask_mod: MaskMod, offset: int) -> MaskMod:
    """``mask_mod`` with query positions counted from ``offset``, for FlexAttention."""
    if offset == 0:
        return mask_mod

    def shifted_mod(b, h, q_idx, kv_idx):
        return mask_mod(b, h, q_idx + offset, kv_idx)

    return shifted_mod


def _lookup(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _store(
    cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, size: int
) -> None:
    cache[key] = value
    while len(cache) > max(size, 0):
        cache.popitem(last=False)


def _check_int(function: str, name: str, value: object, *, minimum: int) -> None:
    kind = "a positive int" if minimum == 1 else "a non-negative int"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{function}: {name} must be {kind}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{function}: {name} must be {kind}, got {value}")


def _check_sizes(method: str, batch: int, heads: int, tokens_q: int, tokens_k: int) -> None:
    for name, value in (
        ("batch", batch),
        ("heads", heads),
        ("tokens_q", tokens_q),
        ("tokens_k", tokens_k),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{method}: {name} must be a positive int, got {value!r}")
    if tokens_q > tokens_k:
        raise ValueError(
            f"{method}: tokens_q ({tokens_q}) exceeds tokens_k ({tokens_k}); the queries "
            "are the last tokens_q of the tokens_k key positions, so tokens_q <= tokens_k"
        )


def _check_tokens_tensor(function: str, name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{function}: {name} must be a torch.Tensor of shape (batch, tokens), "
            f"got {type(value).__name__}"
        )
    if value.dim() != 2:
        raise ValueError(
            f"{function}: {name} must have shape (batch, tokens), got shape {tuple(value.shape)}"
        )
    return value


def _operand_repr(mask: Mask, precedence: int) -> str:
    text = repr(mask)
    return f"({text})" if mask._precedence < precedence else text


def _operand_error(left: object, op: str, right: object) -> TypeError:
    def name(operand: object) -> str:
        return "Mask" if isinstance(operand, Mask) else type(operand).__name__

    hint = ""
    if callable(left if not isinstance(left, Mask) else right):
        hint = "; wrap a mask_mod function in attnkit.masks.Mask first"
    return TypeError(
        f"unsupported operand types for {op}: {name(left)!r} and {name(right)!r}; "
        f"masks combine only with other masks{hint}"
    )


def _check_operand(mask: Mask, op: str, other: object) -> Mask:
    if not isinstance(other, Mask):
        raise _operand_error(mask, op, other)
    return other
