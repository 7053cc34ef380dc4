"""Numerical faults found under attack: half-precision overflow and the causal mask's state."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import build, input_width

TRAINABLE_CAUSAL = ["causal", "multihead", "multihead_wrapper"]


@pytest.mark.parametrize("name", ["simple", "self_attention", *TRAINABLE_CAUSAL])
def test_float16_weights_are_finite_where_the_inputs_are_large(name):
    """q @ k^T of unscaled float16 vectors overflows past 65,504; scaling first avoids it."""
    torch.manual_seed(0)
    module = build(name).to(torch.float16).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(1.0)  # every query and key the same large vector
    x = torch.full((1, 4, input_width(module)), 90.0, dtype=torch.float16)
    with torch.no_grad():
        context, weights = module(x, need_weights=True)
        fused = module(x)
    assert torch.isfinite(weights).all() and torch.isfinite(context).all()
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(context, fused, atol=1e-2, rtol=1e-2)
    # Equal scores: each row is uniform over what the query may see.
    torch.testing.assert_close(weights[0, 0, -1].float(), torch.full((4,), 0.25))


@pytest.mark.parametrize("name", TRAINABLE_CAUSAL)
def test_meta_construction_and_to_empty_keep_the_model_causal(name):
    with torch.device("meta"):
        module = build(name)
    module = module.to_empty(device="cpu")
    torch.manual_seed(1)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    x = torch.randn(2, 5, input_width(module))
    _, weights = module(x, need_weights=True)
    upper = torch.ones(5, 5, dtype=torch.bool).triu(1)
    assert torch.isfinite(weights).all()
    assert (weights[..., upper] == 0).all(), "the explicit path must not look ahead"
    changed = x.clone()
    changed[:, 3:] += 1.0
    torch.testing.assert_close(module(changed)[:, :3], module(x)[:, :3])


@pytest.mark.parametrize("name", TRAINABLE_CAUSAL)
def test_weights_load_across_context_lengths(name):
    short = build(name, context_length=8)
    long = build(name, context_length=32)
    long.load_state_dict(short.state_dict())  # strict: no mask buffer in the way
    x = torch.randn(1, 6, input_width(short))
    torch.testing.assert_close(long(x), short(x))
    assert not any(key.endswith("mask") for key in short.state_dict())


@pytest.mark.parametrize("name", TRAINABLE_CAUSAL)
def test_checkpoints_saved_with_a_mask_buffer_still_load(name):
    module = build(name, context_length=8)
    state = module.state_dict()
    legacy = dict(state)
    prefixes = {key.rsplit("W_query", 1)[0] for key in state if "W_query" in key}
    for prefix in prefixes:
        legacy[f"{prefix}mask"] = torch.ones(8, 8, dtype=torch.bool).triu(1)
    fresh = build(name, context_length=16)
    fresh.load_state_dict(legacy)
    x = torch.randn(1, 5, input_width(module))
    torch.testing.assert_close(fresh(x), module(x))
