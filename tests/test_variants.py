"""The contract every registered variant keeps, checked for each name in the registry."""

from __future__ import annotations

import io

import pytest
import torch

import attnkit
from attnkit._arguments import accepted_arguments
from tests.helpers import CONTEXT_LENGTH, TOLERANCES, build, input_width

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


@pytest.mark.parametrize("name", ALL)
def test_batched_and_unbatched_shapes(name):
    torch.manual_seed(0)
    attention = build(name).eval()
    x = torch.randn(2, 5, input_width(attention))
    batched = attention(x)
    assert batched.shape[:2] == (2, 5)
    unbatched = attention(x[1])
    assert unbatched.shape == batched.shape[1:]
    torch.testing.assert_close(unbatched, batched[1])


@pytest.mark.parametrize("name", ALL)
def test_need_weights(name):
    torch.manual_seed(0)
    attention = build(name).eval()
    x = torch.randn(2, 5, input_width(attention))
    context, weights = attention(x, need_weights=True)
    torch.testing.assert_close(context, attention(x))
    assert weights.dim() == 4 and weights.shape[0] == 2 and weights.shape[2:] == (5, 5)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    _, unbatched = attention(x[0], need_weights=True)
    assert unbatched.shape == weights.shape[1:]


@pytest.mark.parametrize("name", CAUSAL)
def test_causality(name):
    """Changing the tokens after position t leaves the outputs up to t unchanged."""
    torch.manual_seed(0)
    attention = build(name).eval()
    x = torch.randn(1, 8, input_width(attention))
    before = attention(x)
    for t in range(7):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :]) * 10
        after = attention(changed)
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], msg=f"position {t}")
        assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_weights_are_zero_above_the_diagonal(name):
    attention = build(name).eval()
    _, weights = attention(torch.randn(2, 6, input_width(attention)), need_weights=True)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (weights[..., future] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    attention = build(name)
    x = torch.randn(2, 5, input_width(attention), requires_grad=True)
    attention(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for parameter_name, parameter in attention.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} got a zero gradient"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    original = build(name).eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    restored = build(name).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 5, input_width(original))
    torch.testing.assert_close(restored(x), original(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", ALL)
def test_dtypes(name, dtype):
    torch.manual_seed(0)
    reference = build(name).eval().to(torch.float64)
    attention = build(name).eval()
    attention.load_state_dict(reference.state_dict())
    attention = attention.to(dtype)
    x = torch.randn(2, 5, input_width(attention), dtype=torch.float64)
    context = attention(x.to(dtype))
    assert context.dtype == dtype
    assert not context.isnan().any()
    # bfloat16 keeps 8 bits of mantissa; its error compounds through three projections.
    tolerance = TOLERANCES[dtype] if dtype == torch.float64 else {"atol": 5e-2, "rtol": 5e-2}
    torch.testing.assert_close(context.to(torch.float64), reference(x), **tolerance)


@pytest.mark.parametrize("name", ALL)
def test_no_nan_for_large_inputs(name):
    """Large scores saturate the softmax but must not overflow it."""
    attention = build(name).eval()
    x = torch.randn(2, 6, input_width(attention)) * 1e3
    assert torch.isfinite(attention(x)).all()


@pytest.mark.parametrize("name", ALL)
def test_eval_mode_is_deterministic(name):
    attention = build(name, **({"dropout": 0.5} if "dropout" in _arguments(name) else {})).eval()
    x = torch.randn(2, 6, input_width(attention))
    torch.testing.assert_close(attention(x), attention(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_wrong_rank_is_refused(name):
    attention = build(name)
    width = input_width(attention)
    for shape in [(width,), (1, 2, 3, width)]:
        with pytest.raises(ValueError, match=r"expected input of shape \(batch, tokens, "):
            attention(torch.randn(shape))


@pytest.mark.parametrize("name", [n for n in ALL if build(n).d_in is not None])
def test_wrong_d_in_is_refused(name):
    attention = build(name)
    with pytest.raises(ValueError, match="expected input of shape") as error:
        attention(torch.randn(2, 6, attention.d_in + 1))
    message = str(error.value)
    assert f"expected input of shape (batch, tokens, {attention.d_in})" in message
    assert f"got (2, 6, {attention.d_in + 1})" in message


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


@pytest.mark.parametrize("name", ALL)
def test_module_moves_with_to(name):
    attention = build(name).to(torch.float64)
    for tensor in attention.parameters():
        assert tensor.dtype == torch.float64
    for buffer in attention.buffers():
        assert buffer.dtype in (torch.float64, torch.bool)


def _arguments(name):
    return accepted_arguments(attnkit.get_variant(name))
