"""Padding: real tokens ignore the padding, fully masked rows give zeros, fused stays fused."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import attnkit
from attnkit._arguments import accepted_arguments
from tests.helpers import build, input_width

MASKED = [
    n for n in attnkit.list_variants() if "attention_mask" in attnkit.get_variant(n).capabilities
]
KERNELS = ["sdpa", "explicit"]
FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"


def test_every_builtin_trainable_variant_takes_a_padding_mask():
    assert {"self_attention", "causal", "multihead", "multihead_wrapper"} <= set(MASKED)


def padded(sentences: list[torch.Tensor], length: int, side: str, filler: float):
    """Stack sentences of different lengths into (batch, length, d), padded on ``side``."""
    batch, mask = [], []
    for sentence in sentences:
        pad = length - sentence.shape[0]
        fill = torch.full((pad, sentence.shape[1]), filler)
        real, hidden = (
            torch.ones(sentence.shape[0], dtype=torch.long),
            torch.zeros(pad, dtype=torch.long),
        )
        if side == "left":
            batch.append(torch.cat((fill, sentence)))
            mask.append(torch.cat((hidden, real)))
        else:
            batch.append(torch.cat((sentence, fill)))
            mask.append(torch.cat((real, hidden)))
    return torch.stack(batch), torch.stack(mask)


def real_rows(output: torch.Tensor, mask: torch.Tensor, index: int) -> torch.Tensor:
    return output[index][mask[index].bool()]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", MASKED)
def test_outputs_at_real_tokens_ignore_the_padding(name, kernel):
    torch.manual_seed(0)
    options = (
        {"kernel": kernel} if "kernel" in accepted_arguments(attnkit.get_variant(name)) else {}
    )
    attention = build(name, **options).eval()
    width = input_width(attention)
    sentences = [torch.randn(3, width), torch.randn(6, width)]
    outputs = []
    for side, length, filler in [
        ("left", 6, 0.0),
        ("right", 6, 5.0),
        ("left", 9, -3.0),
        ("right", 8, 1e4),
    ]:
        x, mask = padded(sentences, length, side, filler)
        output = attention(x, attention_mask=mask)
        assert torch.isfinite(output).all(), f"{side} padding gave non-finite outputs"
        outputs.append([real_rows(output, mask, i) for i in range(2)])
    for other in outputs[1:]:
        for ours, theirs in zip(outputs[0], other, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", ["causal", "multihead", "multihead_wrapper"])
def test_a_query_that_sees_only_padding_gets_zeros_and_finite_gradients(name, kernel):
    torch.manual_seed(0)
    attention = build(name, kernel=kernel)
    x = torch.randn(2, 5, input_width(attention), requires_grad=True)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    # Causal and left-padded: the first query may attend only to itself, a padding key.
    output = attention(x, attention_mask=mask)
    bias = attention.out_proj.bias if hasattr(attention, "out_proj") else None
    expected = torch.zeros_like(output[0, 0]) if bias is None else bias.detach()
    torch.testing.assert_close(output[0, 0], expected)
    output.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attention.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["causal", "multihead"])
def test_cached_decoding_with_left_padding_equals_the_full_pass(name):
    torch.manual_seed(0)
    attention = build(name).eval()
    x = torch.randn(2, 7, input_width(attention))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        full = attention(x, attention_mask=mask)
        cache = attnkit.KVCache()
        steps = [attention(x[:, :4], attention_mask=mask[:, :4], cache=cache)]
        for t in range(4, 7):
            steps.append(attention(x[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache))
    cached = torch.cat(steps, dim=1)
    real = mask.bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


def test_multihead_with_padding_still_runs_the_fused_kernel():
    attention = build("multihead").eval()
    x = torch.randn(2, 8, input_width(attention))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :2] = 0
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as recorded:
        attention(x, attention_mask=mask)
    ran = {event.name for event in recorded.events()}
    assert FLASH in ran
    assert "aten::softmax" not in ran and "aten::_softmax" not in ran


@pytest.mark.parametrize(
    ("mask", "error", "message"),
    [
        (torch.ones(2, 5), TypeError, "attention_mask must be bool or integer 0/1"),
        (
            torch.ones(2, 4, dtype=torch.long),
            ValueError,
            r"shape \(batch, past \+ tokens\) = \(2, 5\)",
        ),
        (torch.full((2, 5), 2), ValueError, "only 0 \\(padding\\) and 1 \\(real token\\)"),
        ([[1] * 5] * 2, TypeError, "attention_mask must be a tensor of shape \\(2, 5\\)"),
    ],
)
def test_bad_attention_masks_are_refused(mask, error, message):
    attention = build("causal")
    with pytest.raises(error, match=message):
        attention(torch.randn(2, 5, input_width(attention)), attention_mask=mask)


def test_a_variant_without_the_capability_refuses_a_mask():
    attention = build("simple")
    with pytest.raises(
        TypeError,
        match=r"'simple' variant does not support attention_mask= \(capability 'attention_mask'",
    ):
        attention(torch.randn(2, 5, 8), attention_mask=torch.ones(2, 5, dtype=torch.bool))


def test_an_unbatched_input_takes_an_unbatched_mask():
    attention = build("causal").eval()
    x = torch.randn(5, input_width(attention))
    mask = torch.tensor([0, 1, 1, 1, 1])
    torch.testing.assert_close(
        attention(x, attention_mask=mask), attention(x[None], attention_mask=mask[None])[0]
    )
