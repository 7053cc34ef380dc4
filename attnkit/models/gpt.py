"""`GPTModel`: a small GPT-style decoder whose attention is chosen by name.

The architecture is GPT-2's, sized by a plain config dict:

```text
token ids             (batch, tokens)
 -> token embedding (+ position embedding), dropout    (batch, tokens, emb_dim)
 -> n_layers x TransformerBlock                        (batch, tokens, emb_dim)
 -> layer norm, linear output head                     (batch, tokens, vocab_size)
```

Each `TransformerBlock` normalises before each sub-layer and adds a residual
around it ("pre-norm"):

$$
h = x + \\operatorname{dropout}\\big(\\operatorname{Attention}(\\operatorname{LN}_1(x))\\big),
\\qquad
y = h + \\operatorname{dropout}\\big(\\operatorname{FF}(\\operatorname{LN}_2(h))\\big)
$$

with $\\operatorname{FF}(h) = W_2\\, \\operatorname{GELU}(W_1 h + b_1) + b_2$, hidden width
``4 * emb_dim``. The attention is ``attnkit.create_from_config(config["attention"], ...)``,
so any registered causal variant, built-in or from a plugin, drops in by name;
what today's LLMs change about attention (grouped key-value heads, a latent
cache, RoPE, ALiBi, QK-norm, soft-capping, a sliding window, sinks) are config
keys too, and a ``layer_pattern`` varies them from layer to layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

import attnkit
from attnkit._arguments import accepted_arguments
from attnkit._suggest import did_you_mean
from attnkit.cache import KVCache
from attnkit.interface import Attention, check_dropout, check_positive_int
from attnkit.models.loss import linear_cross_entropy

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["ATTENTION_ARGUMENTS", "GPTModel", "TransformerBlock", "causal_variants"]

_REQUIRED = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers")
_DEFAULTS: dict[str, Any] = {
    "attention": "multihead",
    "drop_rate": 0.0,
    "qkv_bias": False,
    "position_embedding": True,
    "tie_embeddings": False,
    "attention_options": {},
    "layer_pattern": None,
}

ATTENTION_ARGUMENTS = {
    "d_in": "emb_dim",
    "d_out": "emb_dim",
    "context_length": "context_length",
    "dropout": "drop_rate",
    "num_heads": "n_heads",
    "qkv_bias": "qkv_bias",
    "num_kv_heads": "num_kv_heads",
    "kv_latent_dim": "kv_latent_dim",
    "rope_base": "rope_base",
    "alibi": "alibi",
    "qk_norm": "qk_norm",
    "softcap": "softcap",
    "window": "window",
    "sinks": "sinks",
}
"""The attention's keyword arguments (the chapter's names) and the config keys that fill them.

The first six come from the model's own keys and always reach the attention.
The others are optional config keys, passed only when the config sets them:
``num_kv_heads`` (for ``gqa``), ``kv_latent_dim`` (for ``mla``) and the options
of the multi-head variants (``rope_base``, ``alibi``, ``qk_norm``, ``softcap``,
``window``, ``sinks``). As with every argument, a variant that does not take
one is built without it.
"""

# Attention arguments the model derives from its own keys: attention_options may not set them.
_DERIVED = {a: k for a, k in ATTENTION_ARGUMENTS.items() if k in _REQUIRED or k in _DEFAULTS}
# Optional config keys that reach the attention under the same name.
_OPTIONAL = tuple(k for k in ATTENTION_ARGUMENTS.values() if k not in _REQUIRED + tuple(_DEFAULTS))
# What one entry of layer_pattern may set: everything about a layer's attention.
_LAYER_KEYS = ("attention", "n_heads", "qkv_bias", *_OPTIONAL, "attention_options")


def causal_variants() -> list[str]:
    """The registered variants that can serve as a decoder's attention (``causal = True``).

    Examples:
        >>> {"causal", "multihead", "multihead_wrapper"} <= set(causal_variants())
        True
        >>> "self_attention" in causal_variants()
        False
    """
    return [name for name in attnkit.list_variants() if attnkit.get_variant(name).causal]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention and feed-forward, each inside a residual.

    Args:
        attention: The block's attention; maps ``(batch, tokens, emb_dim)`` to the same shape.
        emb_dim: Width of the residual stream.
        drop_rate: Dropout on each sub-layer's output, before the residual sum.
    """

    def __init__(self, attention: Attention, emb_dim: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(emb_dim)
        self.attention = attention
        self.norm2 = nn.LayerNorm(emb_dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(emb_dim, 4 * emb_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * emb_dim, emb_dim),
        )
        self.drop_residual = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x: ``(batch, tokens, emb_dim)`` -> ``(batch, tokens, emb_dim)``.

        With ``cache``, ``x`` holds only the new tokens (see `attnkit.KVCache`).
        """
        normed = self.norm1(x)
        # Only variants with supports_kv_cache take the keyword: pass it only with a cache.
        attended = self.attention(normed) if cache is None else self.attention(normed, cache=cache)
        x = x + self.drop_residual(attended)
        return x + self.drop_residual(self.feed_forward(self.norm2(x)))


class GPTModel(nn.Module):
    """A GPT-style language model whose attention comes from the registry by name.

    Config keys (a plain dict; unknown keys raise, with the closest known key):

    - ``vocab_size``, ``context_length``, ``emb_dim``, ``n_heads``, ``n_layers``:
      positive integers, required.
    - ``attention`` (default ``"multihead"``): the name of a registered variant
      with ``causal = True`` (see `causal_variants`).
    - ``drop_rate`` (default 0.0): dropout on the embeddings, on each residual
      branch and, as ``dropout``, on the attention weights.
    - ``qkv_bias`` (default False): give the query, key and value projections a bias.
    - ``num_kv_heads``, ``kv_latent_dim``, ``rope_base``, ``alibi``, ``qk_norm``,
      ``softcap``, ``window``, ``sinks`` (optional): passed to the attention
      under the same names when set, for example ``num_kv_heads`` for ``gqa``,
      ``kv_latent_dim`` for ``mla``, ``rope_base`` or ``window`` for
      ``multihead`` and ``gqa``.
    - ``position_embedding`` (default True): add a learned position embedding
      to the token embedding, as GPT-2 does. Set it False when the attention
      encodes positions itself (``rope_base`` or ``alibi``), as Llama, Qwen,
      Gemma and Mistral do. Only then: a variant that does not take
      ``rope_base`` (``causal``, ``mla``) is built without it, and without the
      embedding its layers would see no positions at all.
    - ``tie_embeddings`` (default False): the output head shares its weight
      with the token embedding (one ``(vocab_size, emb_dim)`` parameter), as
      GPT-2 does; the book's model keeps them separate.
    - ``attention_options`` (default ``{}``): further keyword arguments for the
      attention, such as ``kernel="explicit"`` or a plugin's own option.
    - ``layer_pattern`` (default None): a list of dicts, repeated over the
      layers: layer ``i`` is built from the config merged with entry
      ``i % len(layer_pattern)``. An entry may set the keys that shape one
      layer's attention: ``attention``, ``n_heads``, ``qkv_bias``, the optional
      keys above and ``attention_options`` (merged with the config's). Gemma 3's
      five sliding-window layers to one global layer are
      ``"layer_pattern": [{"window": 1024}] * 5 + [{}]``; a list of ``n_layers``
      entries spells out every layer.

    Each layer's attention is built by `attnkit.create_from_config` from the
    keys in `ATTENTION_ARGUMENTS` plus ``attention_options``: each variant
    receives the arguments it accepts (``num_heads`` reaches multi-head variants
    only, ``num_kv_heads`` reaches ``gqa`` only), and a misspelled option, one
    that no registered variant accepts, raises. No key is set both at the top
    level and in ``attention_options``.

    The residual stream is ``emb_dim`` wide, so the attention's output must be
    too. It is built with ``d_out = emb_dim`` first. A variant whose output is
    ``k`` times wider than its ``d_out`` (``multihead_wrapper`` concatenates
    ``num_heads`` heads of width ``d_out``, reported by its ``output_dim``) is
    then rebuilt with ``d_out = emb_dim // k``. Rebuilding keeps the model the
    reference chapter's, with ``emb_dim / num_heads`` per head, where a projection
    back to ``emb_dim`` would add weights that no other variant has; and it asks
    the built module for its width rather than naming variants.

    Args:
        config: The model's settings, as above.

    Attributes:
        config: The config with defaults filled in.
        context_length: The most tokens the model can see at once.
        tok_emb: ``nn.Embedding(vocab_size, emb_dim)``.
        pos_emb: ``nn.Embedding(context_length, emb_dim)``, or ``None`` without
            ``position_embedding``.
        blocks: ``n_layers`` `TransformerBlock` modules.
        final_norm: ``nn.LayerNorm(emb_dim)``.
        out_head: ``nn.Linear(emb_dim, vocab_size, bias=False)``; with
            ``tie_embeddings`` its ``weight`` is ``tok_emb.weight``.

    In eval mode the ``nn.Linear`` weights (the attention's too) are stored
    input-major, which makes decoding's one-row products about twice as fast
    on CPU; see `train`.

    Raises:
        TypeError: The config is not a mapping, a value has the wrong type, or an
            attention option is accepted by no registered variant.
        ValueError: A key is unknown or missing, a value is out of range, or the
            attention is not causal or cannot produce ``emb_dim``-wide output.
        attnkit.UnknownVariantError: No variant is registered as ``attention``.

    Examples:
        >>> import torch
        >>> from attnkit.models import GPTModel
        >>> config = {"vocab_size": 50, "context_length": 16, "emb_dim": 8,
        ...           "n_heads": 2, "n_layers": 2, "attention": "causal"}
        >>> model = GPTModel(config)
        >>> model(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 50])
        >>> GPTModel({**config, "attention": "self_attention"})
        Traceback (most recent call last):
        ...
        ValueError: GPTModel: attention 'self_attention' is not causal, so each token would see the tokens after it; choose a causal variant: causal, ...

        GPT-2's output head is its token embedding (one parameter):

        >>> tied = GPTModel({**config, "tie_embeddings": True})
        >>> tied.out_head.weight is tied.tok_emb.weight
        True
        >>> sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in tied.parameters())
        400

        A Gemma-3-like stack: grouped key-value heads, RoPE instead of a learned
        position embedding, five sliding-window layers to one global layer:

        >>> gemma_like = GPTModel({**config, "n_layers": 6, "attention": "gqa",
        ...     "num_kv_heads": 1, "rope_base": 10_000, "position_embedding": False,
        ...     "layer_pattern": [{"window": 4}] * 5 + [{}]})
        >>> [block.attention.options.window for block in gemma_like.blocks]
        [4, 4, 4, 4, 4, None]
        >>> gemma_like.pos_emb is None
        True
    """  # noqa: E501

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = _resolved(config)
        emb_dim = self.config["emb_dim"]
        self.context_length: int = self.config["context_length"]
        self.tok_emb = nn.Embedding(self.config["vocab_size"], emb_dim)
        self.pos_emb: nn.Embedding | None = None
        if self.config["position_embedding"]:
            self.pos_emb = nn.Embedding(self.context_length, emb_dim)
        self.drop_emb = nn.Dropout(self.config["drop_rate"])
        self.blocks = nn.ModuleList(
            TransformerBlock(
                _build_attention(name, arguments, emb_dim), emb_dim, self.config["drop_rate"]
            )
            for name, arguments in _layer_attention(self.config)
        )
        self.final_norm = nn.LayerNorm(emb_dim)
        self.out_head = nn.Linear(emb_dim, self.config["vocab_size"], bias=False)
        if self.config["tie_embeddings"]:
            self.out_head.weight = self.tok_emb.weight

    @classmethod
    def from_transformers(
        cls, gpt2_model: GPT2LMHeadModel, *, drop_rate: float | None = None
    ) -> GPTModel:
        """The `GPTModel` that computes what a transformers ``GPT2LMHeadModel`` computes.

        Its config: ``attention="multihead"``, ``qkv_bias=True``, a learned
        position embedding, ``tie_embeddings`` as ``gpt2_model``'s head is (GPT-2
        ties it), sizes from the weights. Its weights are copies: ``c_attn``
        split into ``W_query``, ``W_key`` and ``W_value`` and, like every
        ``Conv1D``, transposed (see `attnkit.models._gpt2`). It is on
        ``gpt2_model``'s device, in its dtype, and in its train or eval mode.

        Args:
            gpt2_model: A ``transformers.GPT2LMHeadModel``.
            drop_rate: The model's one dropout rate. By default GPT-2's, whose
                ``embd_pdrop``, ``attn_pdrop`` and ``resid_pdrop`` must then agree.

        Raises:
            ImportError: transformers is not installed (``pip install 'attnkit[transformers]'``).
            TypeError: ``gpt2_model`` is not a ``GPT2LMHeadModel``.
            ValueError: Its config sets what `GPTModel` cannot express, each named:
                cross-attention, unscaled or layer-scaled scores, an activation
                other than GELU's tanh approximation, ``n_inner`` other than
                ``4 * n_embd``, a ``layer_norm_epsilon`` other than 1e-5, or three
                different dropout rates without ``drop_rate``.
        """
        from attnkit.models._gpt2 import from_transformers

        return from_transformers(gpt2_model, drop_rate=drop_rate)

    def to_transformers(self, **settings: Any) -> GPT2LMHeadModel:
        """The transformers ``GPT2LMHeadModel`` that computes what this model computes.

        The reverse of `from_transformers`: the weights are copied (transposed
        into GPT-2's ``Conv1D`` layout), the head is tied if ``tie_embeddings``
        is set, ``activation_function`` is GPT-2's ``"gelu_new"`` and all three
        dropout rates are ``drop_rate``. Without ``qkv_bias``, GPT-2's
        ``c_attn`` bias is zero. The model is on this model's device, in its
        dtype and its train or eval mode.

        Args:
            **settings: Further ``GPT2Config`` settings that the weights leave
                open, such as ``attn_implementation="sdpa"`` or
                ``eos_token_id``. ``bos_token_id`` and ``eos_token_id`` default to
                GPT-2's ``<|endoftext|>`` (50256) when the vocabulary holds it,
                else to ``None``.

        Raises:
            ImportError: transformers is not installed (``pip install 'attnkit[transformers]'``).
            ValueError: GPT-2 cannot express this model (each reason named): a
                layer's attention is not ``multihead``, sets an option (RoPE,
                ALiBi, QK-norm, soft-capping, a window, sinks) or has another
                number of heads, or there is no learned position embedding; or
                ``settings`` sets a size or rate that the model decides.
        """
        from attnkit.models._gpt2 import to_transformers

        return to_transformers(self, **settings)

    def train(self, mode: bool = True) -> GPTModel:
        """Set train (``True``) or eval mode, and lay the weights out for it.

        Besides `nn.Module.train`'s work, the ``nn.Linear`` weights on the CPU are
        stored output-major (``nn.Linear``'s layout) in train mode and input-major
        (GPT-2's ``Conv1D`` layout) in eval mode, where decoding's one-row
        products read them about twice as fast. Values, shapes, state dict and
        ``Parameter`` objects stay the same; switching copies each weight once.
        """
        super().train(mode)
        _lay_out_linear_weights(self, input_major=not mode)
        return self

    @property
    def supports_kv_cache(self) -> bool:
        """Whether every block's attention accepts an `attnkit.KVCache`."""
        return all(type(block.attention).supports_kv_cache for block in self.blocks)

    def new_kv_caches(self) -> list[KVCache]:
        """One empty `attnkit.KVCache` per block, for `forward`'s ``caches``.

        Raises:
            TypeError: A block's attention variant does not support a KV cache.
        """
        for block in self.blocks:
            variant = type(block.attention)
            if not variant.supports_kv_cache:
                raise TypeError(
                    f"GPTModel: attention {variant.name!r} does not support a KV cache "
                    f"(supports_kv_cache is False); run it without caches "
                    f"(generate: use_cache=False)"
                )
        return [KVCache() for _ in self.blocks]

    def forward(
        self, token_ids: torch.Tensor, *, caches: Sequence[KVCache] | None = None
    ) -> torch.Tensor:
        """Next-token logits for every position.

        Args:
            token_ids: ``(batch, tokens)`` integer ids below ``vocab_size``.
            caches: One `attnkit.KVCache` per block (see `new_kv_caches`), or
                ``None``. With caches, ``token_ids`` holds only the tokens after
                those already cached, and their positions continue from the
                cache's `length` (which, for a sliding-window cache, keeps
                counting past the tokens it holds).

        Returns:
            Logits ``(batch, tokens, vocab_size)``; position ``t`` scores the token
            that follows ``token_ids[:, t]``.

        Raises:
            TypeError: ``token_ids`` is not an integer tensor.
            ValueError: Its shape or values are out of range, the tokens would run
                past ``context_length``, or ``caches`` has the wrong length.
        """
        return self.out_head(self._hidden_states(token_ids, caches))

    def loss(
        self, token_ids: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100
    ) -> torch.Tensor:
        """The mean next-token cross-entropy against ``targets``, without making the logits.

        Equal to ``F.cross_entropy(model(token_ids).flatten(0, 1), targets.flatten())``,
        but the output head and the loss run together a block of rows at a time
        (`attnkit.models.linear_cross_entropy`): the ``(batch, tokens,
        vocab_size)`` logits, their log-softmax and their gradient are never held,
        which saves their memory (412 MB each for GPT-2's vocabulary at 8 x 256
        tokens) and the time spent writing and reading them.

        Args:
            token_ids: ``(batch, tokens)`` integer ids below ``vocab_size``.
            targets: ``(batch, tokens)``: the id that should follow each token, or
                ``ignore_index`` where none should be scored.
            ignore_index: The target value left out of the mean.

        Returns:
            A scalar tensor, differentiable with respect to every parameter.

        Raises:
            TypeError, ValueError: As `forward` for ``token_ids``; ``targets``
                has another shape or holds an id out of range.
        """
        hidden = self._hidden_states(token_ids, None)
        head = self.out_head.weight
        return linear_cross_entropy(hidden, head, targets, ignore_index=ignore_index)

    def _hidden_states(
        self, token_ids: torch.Tensor, caches: Sequence[KVCache] | None
    ) -> torch.Tensor:
        """The final norm's output, ``(batch, tokens, emb_dim)``: what the output head reads."""
        past = self._check_forward(token_ids, caches)
        x = self.tok_emb(token_ids)
        if self.pos_emb is not None:
            positions = torch.arange(past, past + token_ids.shape[1], device=token_ids.device)
            x = x + self.pos_emb(positions)
        x = self.drop_emb(x)
        for index, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[index])
        return self.final_norm(x)

    def _check_forward(self, token_ids: object, caches: Sequence[KVCache] | None) -> int:
        if not isinstance(token_ids, torch.Tensor) or token_ids.is_floating_point():
            kind = token_ids.dtype if isinstance(token_ids, torch.Tensor) else type(token_ids)
            raise TypeError(f"GPTModel: expected integer token ids, got {kind}")
        if token_ids.dim() != 2 or token_ids.shape[1] < 1:
            raise ValueError(
                f"GPTModel: expected token ids of shape (batch, tokens) with at least one "
                f"token, got {tuple(token_ids.shape)}"
            )
        vocab_size = self.config["vocab_size"]
        low, high = int(token_ids.min()), int(token_ids.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"GPTModel: token id {bad} is out of range; ids must be in [0, {vocab_size})"
            )
        past = 0
        if caches is not None:
            if len(caches) != len(self.blocks):
                raise ValueError(
                    f"GPTModel: expected one KVCache per block ({len(self.blocks)}), "
                    f"got {len(caches)}; use model.new_kv_caches()"
                )
            first_use = {}
            for index, cache in enumerate(caches):
                if not isinstance(cache, KVCache):
                    raise TypeError(
                        f"GPTModel: caches[{index}] is a {type(cache).__name__}, not an "
                        f"attnkit.KVCache; use model.new_kv_caches()"
                    )
                earlier = first_use.setdefault(id(cache), index)
                if earlier != index:
                    raise ValueError(
                        f"GPTModel: caches[{earlier}] and caches[{index}] are the same KVCache "
                        f"object, but each block needs its own; use model.new_kv_caches() "
                        f"(not [KVCache()] * n_layers)"
                    )
            lengths = [cache.length for cache in caches]
            if len(set(lengths)) > 1:
                raise ValueError(
                    f"GPTModel: the caches are out of step (tokens held per block: {lengths}); "
                    f"they must come from one sequence: start again with model.new_kv_caches()"
                )
            past = lengths[0]
        if past + token_ids.shape[1] > self.context_length:
            held = f"the caches hold {past} tokens and " if past else ""
            raise ValueError(
                f"GPTModel: {held}{token_ids.shape[1]} tokens were given, but context_length "
                f"is {self.context_length}; crop the input to its last tokens"
            )
        return past


def _lay_out_linear_weights(model: nn.Module, *, input_major: bool) -> None:
    """Store ``model``'s ``nn.Linear`` weights on the CPU input-major or output-major, in place.

    Only the memory layout changes: each weight keeps its shape ``(out, in)``,
    its values, its ``Parameter`` object (an optimizer's references stay valid)
    and its state-dict entry. Output-major is ``nn.Linear``'s own layout, strides
    ``(in, 1)``; input-major is GPT-2's ``Conv1D`` layout, strides ``(1, out)``,
    so that ``F.linear`` multiplies by a contiguous ``(in, out)`` matrix. On CPU
    a one-row product, which is what each step of decoding is, reads input-major
    weights about twice as fast, while training's large products and their
    gradients run about 5% faster output-major (``benchmarks/gpt2_speed.py``).
    Weights elsewhere than the CPU keep their layout.
    """
    with torch.no_grad(), torch.inference_mode(False):  # the new data: ordinary tensors
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not (isinstance(module, nn.Linear) and isinstance(weight, nn.Parameter)):
                continue
            if weight.device.type != "cpu" or type(weight.data) is not torch.Tensor:
                continue
            out_features = weight.shape[0]
            if input_major and weight.stride() != (1, out_features):
                weight.data = weight.data.t().contiguous().t()
            elif not input_major and not weight.is_contiguous():
                weight.data = weight.data.contiguous()


def _resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, checked key by key."""
    if not isinstance(config, Mapping):
        raise TypeError(f"GPTModel: config must be a dict, got {type(config).__name__}")
    known = (*_REQUIRED, *_DEFAULTS, *_OPTIONAL)
    for key in config:
        if key not in known:
            hint = did_you_mean(key, known)
            hint = f" ({hint})" if hint else ""
            raise ValueError(
                f"GPTModel: unknown config key {key!r}{hint}; known keys: {', '.join(known)}; "
                f"options for the attention go under 'attention_options'"
            )
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise ValueError(
            f"GPTModel: config is missing {', '.join(repr(key) for key in missing)}; "
            f"required keys: {', '.join(_REQUIRED)}"
        )
    resolved = {**_DEFAULTS, **config}
    for key in _REQUIRED:
        check_positive_int(resolved[key], key, "GPTModel")
    check_dropout(resolved["drop_rate"], "GPTModel: drop_rate")
    for key in ("position_embedding", "tie_embeddings"):
        if not isinstance(resolved[key], bool):
            raise TypeError(f"GPTModel: {key} must be a bool, got {resolved[key]!r}")
    _check_attention_settings(resolved, "GPTModel")
    resolved["attention_options"] = dict(resolved["attention_options"])
    resolved["layer_pattern"] = _checked_pattern(resolved["layer_pattern"], resolved["n_layers"])
    return resolved


def _check_attention_settings(settings: Mapping[str, Any], owner: str) -> None:
    """Check the keys that shape an attention, in the config or in a layer_pattern entry."""
    if "qkv_bias" in settings and not isinstance(settings["qkv_bias"], bool):
        raise TypeError(f"{owner}: qkv_bias must be a bool, got {settings['qkv_bias']!r}")
    if "attention" in settings and not isinstance(settings["attention"], str):
        raise TypeError(
            f"{owner}: attention must be a variant name (str), got {settings['attention']!r}"
        )
    if "n_heads" in settings:
        check_positive_int(settings["n_heads"], "n_heads", owner)
    options = settings.get("attention_options", {})
    if not isinstance(options, Mapping):
        raise TypeError(f"{owner}: attention_options must be a dict, got {type(options).__name__}")
    for argument in options:
        if argument in _DERIVED:
            raise ValueError(
                f"{owner}: attention_options may not set {argument!r}; the model sets it "
                f"from {_DERIVED[argument]!r}"
            )
        if argument in _OPTIONAL and argument in settings:
            raise ValueError(
                f"{owner}: {argument!r} is set both as a config key and in attention_options; "
                f"set it once"
            )


def _checked_pattern(pattern: object, n_layers: int) -> list[dict[str, Any]] | None:
    """``layer_pattern``, checked entry by entry, as a list of fresh dicts (or None)."""
    if pattern is None:
        return None
    if isinstance(pattern, (str, Mapping)) or not isinstance(pattern, Sequence):
        raise TypeError(
            f"GPTModel: layer_pattern must be a list of dicts (one per layer of the repeating "
            f"pattern), got {type(pattern).__name__}"
        )
    if not 1 <= len(pattern) <= n_layers:
        raise ValueError(
            f"GPTModel: layer_pattern must have from 1 to n_layers ({n_layers}) entries, "
            f"got {len(pattern)}"
        )
    checked = []
    for index, entry in enumerate(pattern):
        owner = f"GPTModel: layer_pattern[{index}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{owner} must be a dict, got {type(entry).__name__}")
        for key in entry:
            if key in _LAYER_KEYS:
                continue
            if key in _REQUIRED or key in _DEFAULTS:
                raise ValueError(
                    f"{owner} may not set {key!r}, which is the same for every layer; "
                    f"a layer may set: {', '.join(_LAYER_KEYS)}"
                )
            hint = did_you_mean(key, _LAYER_KEYS)
            hint = f" ({hint})" if hint else ""
            raise ValueError(
                f"{owner} has unknown key {key!r}{hint}; a layer may set: {', '.join(_LAYER_KEYS)}"
            )
        _check_attention_settings(entry, owner)
        entry = dict(entry)
        if "attention_options" in entry:
            entry["attention_options"] = dict(entry["attention_options"])
        checked.append(entry)
    return checked


def _layer_attention(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each layer's variant name and attention arguments: the config merged with its entry.

    Layer ``i`` takes entry ``i % len(layer_pattern)``; the entry's keys (and its
    ``attention_options``) override the config's.
    """
    pattern = config["layer_pattern"] or [{}]
    shared = _attention_arguments(config)
    return [
        (entry.get("attention", config["attention"]), {**shared, **_attention_arguments(entry)})
        for entry in (pattern[index % len(pattern)] for index in range(config["n_layers"]))
    ]


def _attention_arguments(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The attention's keyword arguments that the config (or a layer's entry) sets."""
    arguments = {
        argument: settings[key] for argument, key in ATTENTION_ARGUMENTS.items() if key in settings
    }
    arguments.update(settings.get("attention_options", {}))
    return arguments


def _check_causal(name: str) -> None:
    if not attnkit.get_variant(name).causal:
        raise ValueError(
            f"GPTModel: attention {name!r} is not causal, so each token would see the tokens "
            f"after it; choose a causal variant: {', '.join(causal_variants())}"
        )


def _build_attention(name: str, arguments: Mapping[str, Any], emb_dim: int) -> Attention:
    """Build attention ``name`` from ``arguments`` so that it maps ``emb_dim`` to ``emb_dim``."""
    return _fitted(name, arguments, emb_dim)[0]


def _fitted(
    name: str, arguments: Mapping[str, Any], emb_dim: int
) -> tuple[Attention, dict[str, Any]]:
    """The attention, built with the ``d_out`` that makes it ``emb_dim`` wide, and its arguments."""
    _check_causal(name)
    arguments = dict(arguments)
    _check_behaviour_kept(name, arguments)
    attention = _create(name, arguments)
    width = _output_width(attention, emb_dim)
    if width != emb_dim and width % emb_dim == 0 and emb_dim % (width // emb_dim) == 0:
        # The output is `factor` times d_out (heads side by side): shrink d_out to match.
        factor = width // emb_dim
        arguments["d_out"] = emb_dim // factor
        attention = _create(name, arguments)
        width = _output_width(attention, emb_dim)
    if width != emb_dim:
        raise ValueError(
            f"GPTModel: attention {name!r} returns context vectors of width {width}, but the "
            f"residual stream is emb_dim={emb_dim} wide and no d_out gives that width; "
            f"choose emb_dim, n_heads or attention_options to match"
        )
    return attention, arguments


# Options that change what the attention computes: dropping one silently would give a
# model without the positions, window or cap its config asks for. (Sizes such as
# num_kv_heads are dropped quietly for variants that have no use for them.)
_BEHAVIOUR = ("rope_base", "alibi", "qk_norm", "softcap", "window", "sinks")


def _check_behaviour_kept(name: str, arguments: Mapping[str, Any]) -> None:
    accepted = accepted_arguments(attnkit.get_variant(name))
    for option in _BEHAVIOUR:
        if arguments.get(option) not in (None, False) and option not in accepted:
            takers = [
                v
                for v in attnkit.list_variants()
                if option in accepted_arguments(attnkit.get_variant(v))
            ]
            raise ValueError(
                f"GPTModel: the config sets {option}={arguments[option]!r}, but attention "
                f"{name!r} does not take {option}, so the model would silently go without it; "
                f"variants that take it: {', '.join(takers) or 'none'}"
            )


def _create(name: str, arguments: Mapping[str, Any]) -> Attention:
    try:
        return attnkit.create_from_config(name, arguments)
    except TypeError as error:
        raise TypeError(f"GPTModel: cannot build attention {name!r}: {error}") from error


def _output_width(attention: Attention, emb_dim: int) -> int:
    """The width of ``attention``'s context vectors for ``emb_dim``-wide input."""
    return emb_dim if attention.output_dim is None else attention.output_dim
