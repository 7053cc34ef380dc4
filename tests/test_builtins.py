"""Each built-in stage against references written independently of it.

The float64 references below are computed from the module's weight matrices
with explicit loops over tokens, not with attnkit's code; a second check holds
the trainable stages to PyTorch's own ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attnkit
from tests.helpers import TOLERANCES


def softmax_row(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [e / sum(exps) for e in exps]


def reference_attention(x, w_query, w_key, w_value, *, scale, causal):
    """One head, one sequence, float64, token by token: returns (context, weights)."""
    x = x.detach().double()
    queries = x @ w_query.detach().double().T
    keys = x @ w_key.detach().double().T
    values = x @ w_value.detach().double().T
    tokens = x.shape[0]
    context = torch.zeros(tokens, values.shape[1], dtype=torch.float64)
    weights = torch.zeros(tokens, tokens, dtype=torch.float64)
    for i in range(tokens):
        visible = range(i + 1) if causal else range(tokens)
        scores = [float(queries[i] @ keys[j]) * scale for j in visible]
        for j, weight in zip(visible, softmax_row(scores), strict=True):
            weights[i, j] = weight
            context[i] += weight * values[j]
    return context, weights


def seeded_inputs(batch=2, tokens=6, width=5):
    generator = torch.Generator().manual_seed(42)
    return torch.randn(batch, tokens, width, generator=generator, dtype=torch.float64)


# --- Stage 1 ------------------------------------------------------------------


def test_simple_matches_reference(chapter_inputs):
    eye = torch.eye(3)
    expected, expected_weights = reference_attention(
        chapter_inputs, eye, eye, eye, scale=1.0, causal=False
    )
    context, weights = attnkit.create("simple")(chapter_inputs.double(), need_weights=True)
    torch.testing.assert_close(context, expected, **TOLERANCES[torch.float64])
    torch.testing.assert_close(weights[0], expected_weights, **TOLERANCES[torch.float64])


def test_simple_reproduces_the_chapter(chapter_inputs):
    context, weights = attnkit.create("simple")(chapter_inputs, need_weights=True)
    # Published in the reference chapter (section 3.3).
    expected_row_2 = torch.tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])
    expected_context = torch.tensor(
        [
            [0.4421, 0.5931, 0.5790],
            [0.4419, 0.6515, 0.5683],
            [0.4431, 0.6496, 0.5671],
            [0.4304, 0.6298, 0.5510],
            [0.4671, 0.5910, 0.5266],
            [0.4177, 0.6503, 0.5645],
        ]
    )
    torch.testing.assert_close(weights[0, 1], expected_row_2, atol=5e-5, rtol=0)
    torch.testing.assert_close(context, expected_context, atol=5e-5, rtol=0)


def test_simple_takes_no_arguments():
    with pytest.raises(TypeError, match="unexpected keyword argument 'd_in'"):
        attnkit.create("simple", d_in=3)


# --- Stage 2 ------------------------------------------------------------------


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_self_attention_matches_reference(qkv_bias):
    torch.manual_seed(0)
    attention = attnkit.create("self_attention", d_in=5, d_out=4, qkv_bias=qkv_bias).double()
    x = seeded_inputs()
    context, weights = attention(x, need_weights=True)
    for b in range(x.shape[0]):
        if qkv_bias:
            expected, expected_weights = _reference_with_bias(attention, x[b], causal=False)
        else:
            expected, expected_weights = reference_attention(
                x[b],
                attention.W_query.weight,
                attention.W_key.weight,
                attention.W_value.weight,
                scale=1 / math.sqrt(4),
                causal=False,
            )
        torch.testing.assert_close(context[b], expected, **TOLERANCES[torch.float64])
        torch.testing.assert_close(weights[b, 0], expected_weights, **TOLERANCES[torch.float64])


def _reference_with_bias(attention, x, *, causal):
    """Fold each bias into an extra input column of ones, then use the plain reference."""
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
    augmented = torch.cat([x, ones], dim=1)

    def fold(linear):
        return torch.cat([linear.weight, linear.bias[:, None]], dim=1)

    return reference_attention(
        augmented,
        fold(attention.W_query),
        fold(attention.W_key),
        fold(attention.W_value),
        scale=1 / math.sqrt(attention.d_out),
        causal=causal,
    )


def test_self_attention_has_bias_only_when_asked():
    without = attnkit.create("self_attention", d_in=3, d_out=2)
    with_bias = attnkit.create("self_attention", d_in=3, d_out=2, qkv_bias=True)
    for linear in (without.W_query, without.W_key, without.W_value):
        assert linear.bias is None
    for linear in (with_bias.W_query, with_bias.W_key, with_bias.W_value):
        assert linear.bias is not None


def test_self_attention_matches_torch_sdpa():
    torch.manual_seed(0)
    attention = attnkit.create("self_attention", d_in=5, d_out=4)
    x = seeded_inputs().float()
    expected = F.scaled_dot_product_attention(
        attention.W_query(x), attention.W_key(x), attention.W_value(x)
    )
    torch.testing.assert_close(attention(x), expected, **TOLERANCES[torch.float32])


def test_self_attention_reproduces_the_chapter(chapter_inputs):
    torch.manual_seed(789)
    attention = attnkit.create("self_attention", d_in=3, d_out=2)
    expected = torch.tensor(
        [
            [-0.0739, 0.0713],
            [-0.0748, 0.0703],
            [-0.0749, 0.0702],
            [-0.0760, 0.0685],
            [-0.0763, 0.0679],
            [-0.0754, 0.0693],
        ]
    )
    torch.testing.assert_close(attention(chapter_inputs), expected, atol=5e-5, rtol=0)


# --- Stage 3 ------------------------------------------------------------------


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_causal_matches_reference(qkv_bias):
    torch.manual_seed(0)
    attention = attnkit.create(
        "causal", d_in=5, d_out=4, context_length=8, qkv_bias=qkv_bias
    ).double()
    x = seeded_inputs()
    context, weights = attention(x, need_weights=True)
    for b in range(x.shape[0]):
        if qkv_bias:
            expected, expected_weights = _reference_with_bias(attention, x[b], causal=True)
        else:
            expected, expected_weights = reference_attention(
                x[b],
                attention.W_query.weight,
                attention.W_key.weight,
                attention.W_value.weight,
                scale=1 / math.sqrt(4),
                causal=True,
            )
        torch.testing.assert_close(context[b], expected, **TOLERANCES[torch.float64])
        torch.testing.assert_close(weights[b, 0], expected_weights, **TOLERANCES[torch.float64])


def test_causal_matches_torch_sdpa():
    torch.manual_seed(0)
    attention = attnkit.create("causal", d_in=5, d_out=4, context_length=8)
    x = seeded_inputs().float()
    expected = F.scaled_dot_product_attention(
        attention.W_query(x), attention.W_key(x), attention.W_value(x), is_causal=True
    )
    torch.testing.assert_close(attention(x), expected, **TOLERANCES[torch.float32])


def test_causal_reproduces_the_chapter(chapter_inputs):
    torch.manual_seed(123)
    batch = torch.stack((chapter_inputs, chapter_inputs))
    attention = attnkit.create("causal", d_in=3, d_out=2, context_length=6, dropout=0.0)
    expected = torch.tensor(
        [
            [-0.4519, 0.2216],
            [-0.5874, 0.0058],
            [-0.6300, -0.0632],
            [-0.5675, -0.0843],
            [-0.5526, -0.0981],
            [-0.5299, -0.1081],
        ]
    )
    context = attention(batch)
    assert context.shape == (2, 6, 2)
    torch.testing.assert_close(context, expected.expand(2, 6, 2), atol=5e-5, rtol=0)


def test_dropout_applies_to_the_weights_in_training_only():
    torch.manual_seed(0)
    attention = attnkit.create("causal", d_in=5, d_out=4, context_length=8, dropout=0.5)
    x = seeded_inputs().float()
    attention.eval()
    evaluated = attention(x)
    attention.train()
    torch.manual_seed(1)
    trained = attention(x)
    assert not torch.allclose(trained, evaluated)
    # Dropout rescales the kept weights by 1 / (1 - p); with the same generator
    # state the result equals explicit dropout applied to the weights.
    _, weights = attention.eval()(x, need_weights=True)
    values = attention.W_value(x)
    torch.manual_seed(1)
    expected = F.dropout(weights[:, 0], p=0.5, training=True) @ values
    torch.testing.assert_close(trained, expected)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, "0.1"])
@pytest.mark.parametrize("name", ["causal", "multihead", "multihead_wrapper"])
def test_dropout_outside_unit_interval_is_refused(name, dropout):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got"):
        attnkit.create(name, d_in=4, d_out=4, context_length=4, dropout=dropout, **_heads(name))


@pytest.mark.parametrize("argument", ["d_in", "d_out", "context_length"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
@pytest.mark.parametrize("name", ["self_attention", "causal", "multihead", "multihead_wrapper"])
def test_sizes_must_be_positive_integers(name, argument, value):
    arguments = {"d_in": 4, "d_out": 4, "context_length": 4, **_heads(name)}
    if name == "self_attention":
        del arguments["context_length"]
        if argument == "context_length":
            return
    arguments[argument] = value
    with pytest.raises(ValueError, match=f"{argument} must be a positive integer, got {value!r}"):
        attnkit.create(name, **arguments)


def _heads(name):
    return {"num_heads": 2} if name.startswith("multihead") else {}


# --- Stage 4 ------------------------------------------------------------------


def test_multihead_matches_per_head_reference():
    torch.manual_seed(0)
    attention = attnkit.create("multihead", d_in=5, d_out=6, context_length=8, num_heads=3).double()
    x = seeded_inputs()
    context, weights = attention(x, need_weights=True)
    head_dim = 2
    for b in range(x.shape[0]):
        heads = []
        for h in range(3):
            rows = slice(h * head_dim, (h + 1) * head_dim)
            head_context, head_weights = reference_attention(
                x[b],
                attention.W_query.weight[rows],
                attention.W_key.weight[rows],
                attention.W_value.weight[rows],
                scale=1 / math.sqrt(head_dim),
                causal=True,
            )
            heads.append(head_context)
            torch.testing.assert_close(weights[b, h], head_weights, **TOLERANCES[torch.float64])
        expected = attention.out_proj(torch.cat(heads, dim=-1))
        torch.testing.assert_close(context[b], expected, **TOLERANCES[torch.float64])


def test_multihead_matches_torch_sdpa():
    torch.manual_seed(0)
    attention = attnkit.create("multihead", d_in=5, d_out=6, context_length=8, num_heads=3)
    x = seeded_inputs().float()

    def heads(projection):
        return projection(x).view(2, 6, 3, 2).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        heads(attention.W_query), heads(attention.W_key), heads(attention.W_value), is_causal=True
    )
    expected = attention.out_proj(context.transpose(1, 2).reshape(2, 6, 6))
    torch.testing.assert_close(attention(x), expected, **TOLERANCES[torch.float32])


def test_multihead_equals_wrapper_plus_projection_when_weights_are_tied():
    torch.manual_seed(0)
    num_heads, head_dim = 3, 2
    wrapper = attnkit.create(
        "multihead_wrapper", d_in=5, d_out=head_dim, context_length=8, num_heads=num_heads
    )
    multihead = attnkit.create(
        "multihead", d_in=5, d_out=num_heads * head_dim, context_length=8, num_heads=num_heads
    )
    with torch.no_grad():
        for projection in ("W_query", "W_key", "W_value"):
            stacked = torch.cat([getattr(head, projection).weight for head in wrapper.heads])
            getattr(multihead, projection).weight.copy_(stacked)
    x = seeded_inputs().float()
    context, weights = multihead(x, need_weights=True)
    wrapped, wrapped_weights = wrapper(x, need_weights=True)
    torch.testing.assert_close(context, multihead.out_proj(wrapped))
    torch.testing.assert_close(weights, wrapped_weights)


def test_multihead_reproduces_the_chapter(chapter_inputs):
    torch.manual_seed(123)
    batch = torch.stack((chapter_inputs, chapter_inputs))
    attention = attnkit.create("multihead", d_in=3, d_out=2, context_length=6, num_heads=2)
    expected = torch.tensor(
        [
            [0.3190, 0.4858],
            [0.2943, 0.3897],
            [0.2856, 0.3593],
            [0.2693, 0.3873],
            [0.2639, 0.3928],
            [0.2575, 0.4028],
        ]
    )
    torch.testing.assert_close(attention(batch), expected.expand(2, 6, 2), atol=5e-5, rtol=0)


def test_multihead_wrapper_reproduces_the_chapter(chapter_inputs):
    torch.manual_seed(123)
    batch = torch.stack((chapter_inputs, chapter_inputs))
    attention = attnkit.create("multihead_wrapper", d_in=3, d_out=2, context_length=6, num_heads=2)
    expected = torch.tensor(
        [
            [-0.4519, 0.2216, 0.4772, 0.1063],
            [-0.5874, 0.0058, 0.5891, 0.3257],
            [-0.6300, -0.0632, 0.6202, 0.3860],
            [-0.5675, -0.0843, 0.5478, 0.3589],
            [-0.5526, -0.0981, 0.5321, 0.3428],
            [-0.5299, -0.1081, 0.5077, 0.3493],
        ]
    )
    context = attention(batch)
    assert context.shape == (2, 6, 4)
    torch.testing.assert_close(context, expected.expand(2, 6, 4), atol=5e-5, rtol=0)


def test_parameters_are_created_query_key_value_then_out_proj():
    attention = attnkit.create("multihead", d_in=3, d_out=4, context_length=6, num_heads=2)
    names = [name for name, _ in attention.named_parameters()]
    assert names == [
        "W_query.weight",
        "W_key.weight",
        "W_value.weight",
        "out_proj.weight",
        "out_proj.bias",
    ]
    biased = attnkit.create(
        "multihead", d_in=3, d_out=4, context_length=6, num_heads=2, qkv_bias=True
    )
    assert [n for n, _ in biased.named_parameters()][:6] == [
        "W_query.weight",
        "W_query.bias",
        "W_key.weight",
        "W_key.bias",
        "W_value.weight",
        "W_value.bias",
    ]


def test_d_out_not_divisible_by_num_heads_is_refused():
    with pytest.raises(ValueError, match=r"d_out \(10\) must be divisible by num_heads \(3\)"):
        attnkit.create("multihead", d_in=4, d_out=10, context_length=6, num_heads=3)


@pytest.mark.parametrize("name", ["multihead", "multihead_wrapper"])
@pytest.mark.parametrize("num_heads", [0, -1, 1.5])
def test_num_heads_must_be_a_positive_integer(name, num_heads):
    with pytest.raises(ValueError, match=f"num_heads must be a positive integer, got {num_heads}"):
        attnkit.create(name, d_in=4, d_out=4, context_length=6, num_heads=num_heads)


def test_num_heads_is_required():
    with pytest.raises(TypeError, match="missing required argument 'num_heads'"):
        attnkit.create("multihead", d_in=4, d_out=4, context_length=6)
