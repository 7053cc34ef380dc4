"""attnkit-window's tests: a float64 reference, discovery, errors, and attnkit's conformance kit.

They run against the installed package, as a user's would.
"""

from __future__ import annotations

import doctest
import math
from importlib.metadata import version

import attnkit_window
import pytest
import torch
from attnkit_window import SlidingWindowAttention

import attnkit
from attnkit.testing import parametrize_with_checks


@parametrize_with_checks(["window", ("window", {"window": 1, "num_heads": 1})])
def test_conformance(variant, check):
    check(variant)


def reference(module: SlidingWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Sliding-window attention of one sequence in float64, token by token, head by head."""
    x = x.double()
    project = {
        name: (layer.weight.detach().double(), layer.bias)
        for name, layer in [
            ("q", module.W_query),
            ("k", module.W_key),
            ("v", module.W_value),
            ("o", module.out_proj),
        ]
    }

    def linear(name, inputs):
        weight, bias = project[name]
        out = inputs @ weight.T
        return out + bias.detach().double() if bias is not None else out

    queries, keys, values = linear("q", x), linear("k", x), linear("v", x)
    tokens, head_dim = x.shape[0], module.head_dim
    heads = []
    for h in range(module.num_heads):
        part = slice(h * head_dim, (h + 1) * head_dim)
        context = torch.zeros(tokens, head_dim, dtype=torch.float64)
        for i in range(tokens):
            visible = range(max(0, i - module.window + 1), i + 1)
            scores = [
                float(queries[i, part] @ keys[j, part]) / math.sqrt(head_dim) for j in visible
            ]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            for j, e in zip(visible, exps, strict=True):
                context[i] += e / sum(exps) * values[j, part]
        heads.append(context)
    return linear("o", torch.cat(heads, dim=-1))


@pytest.mark.parametrize(
    ("window", "num_heads", "qkv_bias"), [(1, 1, False), (2, 2, True), (3, 4, False), (9, 2, False)]
)
def test_matches_a_float64_reference(window, num_heads, qkv_bias):
    torch.manual_seed(0)
    module = SlidingWindowAttention(
        d_in=6, d_out=8, context_length=9, num_heads=num_heads, qkv_bias=qkv_bias, window=window
    ).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    fused = module(x)
    context, weights = module(x, need_weights=True)
    for b in range(2):
        expected = reference(module, x[b])
        torch.testing.assert_close(fused[b], expected, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(context[b], expected, atol=1e-12, rtol=1e-10)
    # Each query sees exactly min(window, position + 1) keys.
    visible = (weights > 0).sum(-1)
    expected_visible = torch.clamp(torch.arange(1, 8), max=window)
    assert (visible == expected_visible).all()


def test_float32_is_close_to_float64():
    torch.manual_seed(0)
    module = SlidingWindowAttention(d_in=6, d_out=8, context_length=9, num_heads=2, window=3)
    x = torch.randn(7, 6)
    torch.testing.assert_close(
        module(x).double(), reference(module, x), atol=1e-5, rtol=1e-5, check_dtype=False
    )


def test_found_through_its_entry_point():
    assert attnkit.get_variant("window") is SlidingWindowAttention
    info = next(p for p in attnkit.list_plugins() if p.name == "window")
    assert info.distribution == "attnkit-window"
    assert info.version == version("attnkit-window") == attnkit_window.__version__
    assert info.variants == ("window",) and not info.builtin and info.error is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"window": 2.5}, "window must be a positive integer, got 2.5"),
        ({"num_heads": 3}, r"d_out \(8\) must be divisible by num_heads \(3\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        attnkit.create("window", **{"d_in": 4, "d_out": 8, "context_length": 6, **arguments})


def test_docstring_examples():
    result = doctest.testmod(attnkit_window, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
