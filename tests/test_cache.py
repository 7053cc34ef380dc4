"""The KV cache: feeding tokens one at a time, or in chunks, equals the whole sequence at once."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit._arguments import accepted_arguments
from tests.helpers import CONTEXT_LENGTH, TOLERANCES, build, input_width

CACHED = [n for n in attnkit.list_variants() if attnkit.get_variant(n).supports_kv_cache]
UNCACHED = [n for n in attnkit.list_variants() if not attnkit.get_variant(n).supports_kv_cache]


def test_the_cached_builtins():
    assert {"causal", "multihead", "multihead_wrapper"} <= set(CACHED)
    assert all(attnkit.get_variant(n).causal for n in CACHED)


def feed(attention, x, chunks, *, need_weights=False):
    cache = attnkit.KVCache()
    outputs, weights, start = [], [], 0
    for size in chunks:
        result = attention(x[:, start : start + size], need_weights=need_weights, cache=cache)
        if need_weights:
            outputs.append(result[0])
            weights.append(result[1])
        else:
            outputs.append(result)
        start += size
    assert cache.length == x.shape[1]
    return torch.cat(outputs, dim=1), weights


def paths(name: str) -> list[dict]:
    """Both built-in kernels for variants that offer the choice, else the variant as it is."""
    if "kernel" in accepted_arguments(attnkit.get_variant(name)):
        return [{"kernel": "sdpa"}, {"kernel": "explicit"}]
    return [{}]


@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 1, 3], [9], [2, 5, 2]])
@pytest.mark.parametrize(
    ("name", "options"), [(name, options) for name in CACHED for options in paths(name)]
)
def test_cached_equals_full_sequence(name, options, chunks):
    torch.manual_seed(0)
    attention = build(name, **options).eval().double()
    x = torch.randn(2, 9, input_width(attention), dtype=torch.float64)
    with torch.no_grad():
        cached, _ = feed(attention, x, chunks)
        full = attention(x)
    torch.testing.assert_close(cached, full, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("name", CACHED)
def test_cached_weights_are_the_rows_of_the_full_weights(name):
    attention = build(name).eval()
    x = torch.randn(1, 6, input_width(attention))
    with torch.no_grad():
        _, weights = feed(attention, x, [3, 1, 2], need_weights=True)
        _, full = attention(x, need_weights=True)
    assert [w.shape[-2:] for w in weights] == [(3, 3), (1, 4), (2, 6)]
    torch.testing.assert_close(weights[0], full[..., :3, :3])
    torch.testing.assert_close(weights[1], full[..., 3:4, :4])
    torch.testing.assert_close(weights[2], full[..., 4:6, :6])


@pytest.mark.parametrize("name", CACHED)
def test_the_cache_works_with_gradients_on(name):
    attention = build(name).eval()
    x = torch.randn(2, 5, input_width(attention), requires_grad=True)
    cached, _ = feed(attention, x, [2, 1, 2])
    torch.testing.assert_close(cached, attention(x), **TOLERANCES[torch.float32])
    cached.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", CACHED)
def test_unbatched_input_with_a_cache(name):
    attention = build(name).eval()
    x = torch.randn(5, input_width(attention))
    cache = attnkit.KVCache()
    with torch.no_grad():
        steps = [attention(x[t : t + 1], cache=cache) for t in range(5)]
        torch.testing.assert_close(torch.cat(steps), attention(x), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("name", CACHED)
def test_a_full_cache_refuses_more_tokens(name):
    attention = build(name).eval()
    cache = attnkit.KVCache()
    with torch.no_grad():
        attention(torch.randn(1, CONTEXT_LENGTH - 1, input_width(attention)), cache=cache)
        message = f"the cache holds {CONTEXT_LENGTH - 1} tokens and 2 more were given"
        with pytest.raises(ValueError, match=message):
            attention(torch.randn(1, 2, input_width(attention)), cache=cache)
        attention(torch.randn(1, 1, input_width(attention)), cache=cache)
    assert cache.length == CONTEXT_LENGTH


@pytest.mark.parametrize("name", UNCACHED)
def test_variants_without_the_capability_refuse_a_cache(name):
    attention = build(name)
    with pytest.raises(
        TypeError, match=r"does not support cache= \(capability .kv_cache.; it declares: "
    ):
        attention(torch.randn(1, 3, input_width(attention)), cache=attnkit.KVCache())


def test_a_cache_refuses_a_different_batch():
    attention = build("causal").eval()
    cache = attnkit.KVCache()
    with torch.no_grad():
        attention(torch.randn(2, 3, input_width(attention)), cache=cache)
        with pytest.raises(ValueError, match=r"new keys of shape \(3, 1, 1, 8\) do not match"):
            attention(torch.randn(3, 1, input_width(attention)), cache=cache)


def test_a_cache_refuses_another_dtype():
    attention = build("causal").eval()
    cache = attnkit.KVCache()
    with torch.no_grad():
        attention(torch.randn(1, 3, input_width(attention)), cache=cache)
        with pytest.raises(
            ValueError, match="are torch.float64 on cpu but the cache holds torch.float32"
        ):
            attention.double()(
                torch.randn(1, 1, input_width(attention), dtype=torch.float64), cache=cache
            )


def test_reset_starts_a_new_sequence():
    attention = build("multihead").eval()
    cache = attnkit.KVCache()
    x = torch.randn(1, 4, input_width(attention))
    with torch.no_grad():
        attention(torch.randn(1, 6, input_width(attention)), cache=cache)
        cache.reset()
        assert cache.length == 0
        torch.testing.assert_close(attention(x, cache=cache), attention(x))


def test_the_cache_allocates_once_at_context_length():
    attention = build("multihead").eval()
    cache = attnkit.KVCache()
    with torch.no_grad():
        attention(torch.randn(1, 2, input_width(attention)), cache=cache)
        storage = cache._keys.data_ptr()
        for _ in range(5):
            attention(torch.randn(1, 1, input_width(attention)), cache=cache)
    assert cache._keys.data_ptr() == storage
    assert cache._keys.shape[2] == CONTEXT_LENGTH
    assert cache.keys.shape == (1, 2, 7, 4)
    assert repr(cache) == "KVCache(length=7, keys=(1, 2, 7, 4))"


# --- Misuse found under attack ----------------------------------------------------------------


@pytest.mark.parametrize("name", CACHED)
def test_frozen_key_and_value_projections_still_backpropagate(name):
    """Queries need gradients, keys and values do not: in-place appends broke autograd."""
    attention = build(name)
    for parameter_name, parameter in attention.named_parameters():
        if "W_key" in parameter_name or "W_value" in parameter_name:
            parameter.requires_grad_(False)
    x = torch.randn(2, 6, input_width(attention))
    cached, _ = feed(attention, x, [3, 1, 2])
    cached.sum().backward()
    grads = [p.grad for n, p in attention.named_parameters() if "W_query" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(cached, attention(x), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("name", CACHED)
def test_a_cache_filled_under_inference_mode_continues_under_no_grad(name):
    attention = build(name).eval()
    x = torch.randn(1, 5, input_width(attention))
    cache = attnkit.KVCache()
    with torch.inference_mode():
        first = attention(x[:, :3], cache=cache)
    with torch.no_grad():
        rest = attention(x[:, 3:], cache=cache)
        full = attention(x)
    torch.testing.assert_close(torch.cat((first, rest), dim=1), full, **TOLERANCES[torch.float32])


def test_a_cache_filled_by_one_module_is_refused_by_another():
    wrapper = build("multihead_wrapper")
    causal = build("causal")
    x = torch.randn(1, 7, input_width(wrapper))
    cache = attnkit.KVCache()
    wrapper(x, cache=cache)
    with pytest.raises(ValueError, match="belongs to another") as error:
        causal(x[:, :1], cache=cache)
    message = str(error.value)
    assert "belongs to another attention module (MultiHeadAttentionWrapper" in message
    assert "holding 7 tokens" in message and "passed to CausalAttention" in message
    assert "one cache per attention module" in message
    assert cache.length == 7  # nothing dropped
    cache.reset()
    causal(x[:, :2], cache=cache)  # a reset cache is free again
    assert cache.length == 2


def test_a_cache_argument_must_be_a_kv_cache():
    causal = build("causal")
    with pytest.raises(TypeError, match="cache must be an attnkit.KVCache, got dict"):
        causal(torch.randn(1, 2, input_width(causal)), cache={})
