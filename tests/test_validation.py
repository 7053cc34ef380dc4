"""Constructor arguments are checked by type and range, instantly, and never coerced."""

from __future__ import annotations

import pytest

import attnkit
from tests.helpers import build

TRAINABLE = ["self_attention", "causal", "multihead", "multihead_wrapper"]


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize(
    ("argument", "value", "error", "message"),
    [
        ("qkv_bias", "no", TypeError, "qkv_bias must be True or False, got 'no'"),
        ("qkv_bias", 1, TypeError, "qkv_bias must be True or False, got 1"),
        ("d_in", 8.0, ValueError, "d_in must be a positive integer, got 8.0"),
        ("d_in", True, ValueError, "d_in must be a positive integer, got True"),
        ("d_out", 0, ValueError, "d_out must be a positive integer, got 0"),
        ("kernel", "fast", KeyError, "unknown attention kernel 'fast'"),
        ("kernel", 3, TypeError, "kernel must be a kernel name such as 'sdpa' or an attnkit"),
    ],
)
def test_wrong_types_and_ranges_are_refused(name, argument, value, error, message):
    with pytest.raises(error, match=message):
        build(name, **{argument: value})


@pytest.mark.parametrize("name", ["causal", "multihead", "multihead_wrapper"])
@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("context_length", "16", "context_length must be a positive integer, got '16'"),
        ("dropout", True, r"dropout must be in \[0, 1\), got True"),
        ("dropout", float("nan"), r"dropout must be in \[0, 1\), got nan"),
    ],
)
def test_causal_arguments_are_refused(name, argument, value, message):
    with pytest.raises(ValueError, match=message):
        build(name, **{argument: value})


@pytest.mark.parametrize("name", ["multihead", "multihead_wrapper"])
def test_num_heads_must_be_a_positive_integer(name):
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got 2.0"):
        build(name, num_heads=2.0)


def test_an_indivisible_huge_width_is_refused_instantly():
    """The message used to enumerate every divisor up to d_out: this call used to hang."""
    with pytest.raises(ValueError, match="nearby choices") as error:
        attnkit.create("multihead", d_in=4, d_out=10**15 + 1, context_length=4, num_heads=2)
    assert str(error.value).startswith(
        "MultiHeadAttention: d_out (1000000000000001) must be divisible by num_heads (2); "
        "nearby choices:"
    )
