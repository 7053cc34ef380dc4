"""`generate`: extend token sequences one token at a time, with or without a KV cache.

A causal model scores the next token from the tokens so far. Without a cache,
each step runs the whole sequence through the model again: generating $n$
tokens after a prompt of $p$ costs about $\\sum_{i<n} (p + i)$ token passes, and
attention over them grows quadratically. With a cache (`attnkit.KVCache`, one
per layer), the prompt runs once ("prefill") and each step then runs only the
newest token, at position ``cache.length``, attending to the stored keys and
values: $p + n$ token passes in all.

Past the context length. The model sees at most ``context_length`` tokens, at
positions ``0 .. context_length - 1``. Once the sequence is longer, both paths
feed its last ``context_length`` tokens (a sliding window). Every token then
sits at a new position, so the cached keys and values are stale: the cached
path empties its caches and recomputes the window, exactly as the uncached
path does, one step at a time. Both paths therefore pick the same tokens
throughout, and the cache speeds up generation until the sequence reaches
``context_length``.
"""

from __future__ import annotations

import math

import torch

from attnkit.cache import KVCache
from attnkit.models.gpt import GPTModel

__all__ = ["generate", "next_token"]


@torch.no_grad()
def generate(
    model: GPTModel,
    token_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    use_cache: bool | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to each sequence in ``token_ids``.

    The model runs in eval mode (no dropout) and is put back into its previous
    mode afterwards. Gradients are off.

    Args:
        model: A `GPTModel` (or any module with its ``forward(token_ids, caches=)``,
            ``context_length``, ``supports_kv_cache`` and ``new_kv_caches``).
        token_ids: The prompts, ``(batch, tokens)`` or ``(tokens,)``, integer ids.
        max_new_tokens: How many tokens to append (0 or more).
        use_cache: ``None`` (default): use a KV cache if the attention supports
            one; ``True``: require one; ``False``: recompute the whole window each step.
        temperature: 0 picks the most likely token (greedy); above 0 samples
            from ``softmax(logits / temperature)``.
        top_k: If given, only the ``top_k`` most likely tokens can be picked.
        generator: The random number generator for sampling.

    Returns:
        ``(batch, tokens + max_new_tokens)`` (or ``(tokens + max_new_tokens,)``
        for an unbatched prompt): the prompts followed by the new tokens.

    Raises:
        TypeError: An argument has the wrong type (nothing is coerced: ``use_cache="no"``
            is refused, not read as true), or ``use_cache=True`` but the attention
            does not support a KV cache.
        ValueError: An argument is out of range.

    Examples:
        >>> import torch
        >>> from attnkit.models import GPTModel, generate
        >>> _ = torch.manual_seed(0)
        >>> model = GPTModel({"vocab_size": 10, "context_length": 8, "emb_dim": 8,
        ...                   "n_heads": 2, "n_layers": 1})
        >>> prompt = torch.tensor([1, 2, 3])
        >>> cached = generate(model, prompt, 10)
        >>> cached.shape
        torch.Size([13])
        >>> torch.equal(cached, generate(model, prompt, 10, use_cache=False))
        True
    """
    _check_arguments(max_new_tokens, temperature, top_k, use_cache, generator, model)
    cached = model.supports_kv_cache if use_cache is None else use_cache
    unbatched = isinstance(token_ids, torch.Tensor) and token_ids.dim() == 1
    sequences = token_ids.unsqueeze(0) if unbatched else token_ids
    caches = model.new_kv_caches() if cached else None
    window = sequences[:, -model.context_length :]
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = model(window, caches=caches)[:, -1]
            new = next_token(logits, temperature=temperature, top_k=top_k, generator=generator)
            sequences = torch.cat((sequences, new), dim=1)
            window = _next_window(model, sequences, caches)
    finally:
        model.train(was_training)
    return sequences.squeeze(0) if unbatched else sequences


def next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits``.

    Args:
        logits: ``(batch, vocab_size)`` scores of the next token.
        temperature: 0 for the arg max; above 0, sample from ``softmax(logits / temperature)``.
        top_k: Keep only the ``top_k`` highest scores (ties with the lowest kept
            score are kept too).
        generator: The random number generator for sampling.

    Returns:
        ``(batch, 1)`` token ids.

    Examples:
        >>> import torch
        >>> next_token(torch.tensor([[0.1, 2.0, 0.3]]))
        tensor([[1]])
    """
    if top_k is not None:
        lowest_kept = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < lowest_kept, float("-inf"))
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probabilities = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probabilities, num_samples=1, generator=generator)


def _next_window(
    model: GPTModel, sequences: torch.Tensor, caches: list[KVCache] | None
) -> torch.Tensor:
    """The tokens to run next: the newest one while the caches have room, else the last window."""
    if caches is not None and caches[0].length < model.context_length:
        return sequences[:, -1:]
    if caches is not None:  # every position shifts by one: the cached keys are stale
        for cache in caches:
            cache.reset()
    return sequences[:, -model.context_length :]


def _check_arguments(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    use_cache: bool | None,
    generator: torch.Generator | None,
    model: GPTModel,
) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"generate: max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be 0 or more, got {max_new_tokens}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"generate: temperature must be a number, got {temperature!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"generate: temperature must be a finite number >= 0, got {temperature!r}")
    vocab_size = model.config["vocab_size"]
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
        raise TypeError(f"generate: top_k must be an int or None, got {top_k!r}")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ValueError(
            f"generate: top_k must be an int from 1 to vocab_size ({vocab_size}), got {top_k!r}"
        )
    if use_cache is not None and not isinstance(use_cache, bool):
        raise TypeError(f"generate: use_cache must be True, False or None, got {use_cache!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generate: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
