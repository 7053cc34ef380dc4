"""What the registry's variants keep beyond the conformance kit's checks.

The kit (`attnkit.testing`) already runs its shape, weights, causality, cache,
gradient, dtype, ``state_dict``, compile and ``.to()`` checks over every
registered variant in ``tests/test_testing.py``; this module holds only what
it does not cover.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit._arguments import accepted_arguments
from tests.helpers import CONTEXT_LENGTH, build, input_width

ALL = attnkit.list_variants()
CAUSAL = [name for name in ALL if attnkit.get_variant(name).causal]


def test_the_five_builtins_are_registered():
    builtins = {"simple", "self_attention", "causal", "multihead", "multihead_wrapper"}
    assert builtins <= set(ALL)
    stages = {name: attnkit.get_variant(name).stage for name in builtins}
    assert stages == {
        "simple": 1,
        "self_attention": 2,
        "causal": 3,
        "multihead": 4,
        "multihead_wrapper": 4,
    }


@pytest.mark.parametrize("name", ALL)
def test_metadata(name):
    cls = attnkit.get_variant(name)
    assert cls.name == name
    assert cls.summary and "\n" not in cls.summary
    assert cls.stage is None or cls.stage in {1, 2, 3, 4}
    assert isinstance(cls.causal, bool)
    assert cls.plugin is not None


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_weights_are_zero_above_the_diagonal(name):
    attention = build(name).eval()
    _, weights = attention(torch.randn(2, 6, input_width(attention)), need_weights=True)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (weights[..., future] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_no_nan_for_large_inputs(name):
    """Large scores saturate the softmax but must not overflow it."""
    attention = build(name).eval()
    x = torch.randn(2, 6, input_width(attention)) * 1e3
    assert torch.isfinite(attention(x)).all()


@pytest.mark.parametrize("name", [n for n in ALL if build(n).context_length is not None])
def test_too_many_tokens_is_refused(name):
    attention = build(name)
    too_many = CONTEXT_LENGTH + 1
    message = f"{too_many} tokens but context_length is {CONTEXT_LENGTH}"
    with pytest.raises(ValueError, match=message):
        attention(torch.randn(1, too_many, input_width(attention)))


@pytest.mark.parametrize("name", ALL)
def test_non_float_input_is_refused(name):
    attention = build(name)
    with pytest.raises(TypeError, match="floating-point input tensor, got dtype torch.int64"):
        attention(torch.ones(2, 3, input_width(attention), dtype=torch.long))
    with pytest.raises(TypeError, match="expected a torch.Tensor as input, got list"):
        attention([[1.0] * input_width(attention)])


@pytest.mark.parametrize("name", ALL)
def test_empty_sequence_is_refused(name):
    attention = build(name)
    with pytest.raises(ValueError, match="expected at least one token"):
        attention(torch.randn(2, 0, input_width(attention)))


def _arguments(name):
    return accepted_arguments(attnkit.get_variant(name))
