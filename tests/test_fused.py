"""The sdpa kernel is the default, picks the fused kernel, and agrees with the explicit one."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import attnkit
from attnkit._arguments import accepted_arguments
from tests.helpers import TOLERANCES, build, input_width

FUSED = [
    n for n in attnkit.list_variants() if "kernel" in accepted_arguments(attnkit.get_variant(n))
]
BUILTIN_FUSED = ["causal", "multihead", "multihead_wrapper", "self_attention"]
FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"


def ops_run_by(module, x):
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        module(x)
    return {event.name for event in recorded.events()}


def twin(name, **overrides):
    """The same module twice, fused and explicit, with equal parameters."""
    torch.manual_seed(0)
    fused = build(name, **overrides)
    torch.manual_seed(0)
    explicit = build(name, kernel="explicit", **overrides)
    explicit.load_state_dict(fused.state_dict())
    return fused, explicit


def test_every_trainable_builtin_has_both_paths():
    assert set(BUILTIN_FUSED) <= set(FUSED)
    for name in BUILTIN_FUSED:
        assert build(name).kernel.name == "sdpa"


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_the_fused_kernel_is_chosen_by_default(name):
    attention = build(name).eval()
    x = torch.randn(2, 8, input_width(attention))
    with torch.no_grad():
        ran = ops_run_by(attention, x)
    assert FLASH in ran
    assert "aten::softmax" not in ran and "aten::_softmax" not in ran


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_the_fused_kernel_is_chosen_in_training_without_dropout(name):
    attention = build(name).train()
    assert FLASH in ops_run_by(attention, torch.randn(2, 8, input_width(attention)))


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_need_weights_takes_the_explicit_path(name):
    attention = build(name).eval()
    x = torch.randn(2, 8, input_width(attention))
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        attention(x, need_weights=True)
    ran = {event.name for event in recorded.events()}
    assert FLASH not in ran
    assert "aten::softmax" in ran


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_the_explicit_kernel_never_calls_sdpa(name):
    attention = build(name, kernel="explicit").eval()
    ran = ops_run_by(attention, torch.randn(2, 8, input_width(attention)))
    assert not any("scaled_dot_product" in op for op in ran)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_paths_agree(name, dtype, mode):
    fused, explicit = twin(name)
    fused, explicit = (
        fused.to(dtype).train(mode == "train"),
        explicit.to(dtype).train(mode == "train"),
    )
    x = torch.randn(3, 10, input_width(fused), dtype=dtype, requires_grad=True)
    x_explicit = x.detach().clone().requires_grad_()
    out_fused, out_explicit = fused(x), explicit(x_explicit)
    torch.testing.assert_close(out_fused, out_explicit, **TOLERANCES[dtype])
    # Gradients agree too.
    out_fused.square().sum().backward()
    out_explicit.square().sum().backward()
    torch.testing.assert_close(x.grad, x_explicit.grad, **TOLERANCES[dtype])
    for (label, p_fused), p_explicit in zip(
        fused.named_parameters(), explicit.parameters(), strict=True
    ):
        torch.testing.assert_close(p_fused.grad, p_explicit.grad, **TOLERANCES[dtype], msg=label)


@pytest.mark.parametrize("name", ["causal", "multihead", "multihead_wrapper"])
def test_paths_agree_with_dropout_under_one_seed(name):
    """With dropout in training, PyTorch's SDPA draws its dropout mask exactly as nn.Dropout
    does on the weights, so a seeded run is the same on both paths."""
    fused, explicit = twin(name, dropout=0.3)
    fused.train(), explicit.train()
    x = torch.randn(2, 9, input_width(fused))
    torch.manual_seed(7)
    out_fused = fused(x)
    torch.manual_seed(7)
    out_explicit = explicit(x)
    torch.testing.assert_close(out_fused, out_explicit)
    assert not torch.allclose(out_fused, fused.eval()(x))


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_paths_agree_in_bfloat16(name):
    fused, explicit = twin(name)
    fused, explicit = fused.to(torch.bfloat16).eval(), explicit.to(torch.bfloat16).eval()
    x = torch.randn(2, 10, input_width(fused), dtype=torch.bfloat16)
    torch.testing.assert_close(fused(x), explicit(x), **TOLERANCES[torch.bfloat16])


@pytest.mark.parametrize("name", BUILTIN_FUSED)
def test_an_unknown_kernel_is_refused(name):
    with pytest.raises(
        attnkit.UnknownKernelError, match="unknown attention kernel 'spda'; did you mean 'sdpa'"
    ):
        build(name, kernel="spda")
    with pytest.raises(TypeError, match="kernel must be a kernel name such as 'sdpa'"):
        build(name, kernel=3)


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_both_kernels_reproduce_the_chapter(chapter_inputs, kernel):
    torch.manual_seed(123)
    attention = attnkit.create(
        "multihead", d_in=3, d_out=2, context_length=6, num_heads=2, kernel=kernel
    )
    expected_first_row = torch.tensor([0.3190, 0.4858])
    torch.testing.assert_close(attention(chapter_inputs)[0], expected_first_row, atol=5e-5, rtol=0)
