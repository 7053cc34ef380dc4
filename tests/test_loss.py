"""`linear_cross_entropy` and `GPTModel.loss` against the plain head and loss in float64.

The reference is ``F.cross_entropy(F.linear(hidden, weight), targets)`` computed in
float64 by autograd; the fused loss is checked in each dtype, for its value and for
both gradients, with blocks small enough that every case spans several of them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import TOLERANCES

import attnkit.models.loss as loss_module
from attnkit.models import GPTModel, linear_cross_entropy

VOCAB, WIDTH = 37, 8


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 3 rows of a 37-word vocabulary: every test spans several, the last partial."""
    monkeypatch.setattr(loss_module, "_BLOCK_ELEMENTS", 3 * VOCAB)


def inputs(rows=(2, 7), seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*rows, WIDTH, generator=generator, dtype=torch.float64)
    weight = torch.randn(VOCAB, WIDTH, generator=generator, dtype=torch.float64) * scale
    targets = torch.randint(0, VOCAB, rows, generator=generator)
    return hidden, weight, targets


def reference(hidden, weight, targets, ignore_index=-100):
    """The loss and both gradients, by autograd through the plain head and loss, in float64."""
    hidden = hidden.double().detach().requires_grad_()
    weight = weight.double().detach().requires_grad_()
    logits = F.linear(hidden, weight)
    loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=ignore_index)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def fused(hidden, weight, targets, dtype, ignore_index=-100):
    hidden = hidden.to(dtype).detach().requires_grad_()
    weight = weight.to(dtype).detach().requires_grad_()
    loss = linear_cross_entropy(hidden, weight, targets, ignore_index=ignore_index)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual.double(), expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("rows", [(1, 1), (2, 7), (13,)], ids=str)
def test_the_loss_and_its_gradients_equal_the_plain_head_and_loss(dtype, rows):
    hidden, weight, targets = inputs(rows)
    expected = reference(hidden, weight, targets)
    for actual, wanted in zip(fused(hidden, weight, targets, dtype), expected, strict=True):
        assert actual.dtype == dtype
        assert_close(actual, wanted, dtype)


def test_ignored_targets_are_left_out_of_the_mean_and_the_gradients():
    hidden, weight, targets = inputs()
    targets[0, :4] = -100
    targets[1, 6] = -100
    expected = reference(hidden, weight, targets)
    for actual, wanted in zip(fused(hidden, weight, targets, torch.float64), expected, strict=True):
        assert_close(actual, wanted, torch.float64)
    _, grad_hidden, _ = fused(hidden, weight, targets, torch.float64)
    assert grad_hidden[0, :4].abs().max() == 0


def test_another_ignore_index():
    hidden, weight, targets = inputs()
    targets[:, 0] = 5
    expected = reference(hidden, weight, targets, ignore_index=5)
    actual = fused(hidden, weight, targets, torch.float64, ignore_index=5)
    for got, wanted in zip(actual, expected, strict=True):
        assert_close(got, wanted, torch.float64)


def test_a_target_whose_probability_underflows_still_gets_its_exact_loss():
    # Logits 1,000 apart: the target's softmax probability is 0 in float32 (and
    # float64), so the row's loss must come from the logits.
    hidden, weight, targets = inputs(scale=400.0)
    targets = F.linear(hidden, weight).argmin(dim=-1)
    expected = reference(hidden, weight, targets)
    loss, grad_hidden, grad_weight = fused(hidden, weight, targets, torch.float32)
    assert expected[0] > 1_000
    assert torch.isfinite(loss) and torch.isfinite(grad_hidden).all()
    assert_close(loss, expected[0], torch.float32)
    assert_close(grad_weight, expected[2], torch.float32)


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_the_weight_may_be_stored_either_way(layout):
    hidden, weight, targets = inputs()
    if layout == "columns":
        weight = weight.t().contiguous().t()
    expected = reference(hidden, weight, targets)
    for actual, wanted in zip(fused(hidden, weight, targets, torch.float64), expected, strict=True):
        assert_close(actual, wanted, torch.float64)


def test_without_gradients_only_the_loss_is_computed():
    hidden, weight, targets = inputs()
    hidden.requires_grad_()
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets)
    assert not loss.requires_grad
    assert_close(loss, reference(hidden, weight, targets)[0], torch.float64)


def test_the_gradient_of_the_loss_scales_the_gradients_and_backward_can_run_twice():
    hidden, weight, targets = inputs()
    hidden.requires_grad_()
    loss = linear_cross_entropy(hidden, weight, targets)
    (3 * loss).backward(retain_graph=True)
    first = hidden.grad.clone()
    hidden.grad = None
    (3 * loss).backward()
    torch.testing.assert_close(hidden.grad, first)
    torch.testing.assert_close(first, 3 * reference(hidden, weight, targets)[1])


def test_every_target_ignored_gives_nan_like_cross_entropy():
    hidden, weight, targets = inputs()
    targets[:] = -100
    assert torch.isnan(linear_cross_entropy(hidden, weight, targets))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda h, w, t: (h, w, t.double()), TypeError, "targets must be an integer tensor"),
        (lambda h, w, t: (h, w, t[:, :3]), ValueError, r"expected targets of shape \(2, 7\)"),
        (lambda h, w, t: (h, w[:, :3], t), ValueError, "expected hidden"),
        (lambda h, w, t: (h, w, t + VOCAB), ValueError, r"in \[0, 37\)"),
        (lambda h, w, t: (h, w, t - VOCAB), ValueError, "out of range"),
    ],
    ids=["float targets", "target shape", "weight width", "too large", "negative"],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(change, error, message):
    with pytest.raises(error, match=message):
        linear_cross_entropy(*change(*inputs()))


@pytest.mark.parametrize("tied", [False, True], ids=["separate head", "tied head"])
def test_gpt_model_loss_equals_cross_entropy_of_its_logits(tied):
    torch.manual_seed(0)
    config = {"vocab_size": VOCAB, "context_length": 16, "emb_dim": 8, "n_heads": 2,
              "n_layers": 2, "tie_embeddings": tied}  # fmt: skip
    model = GPTModel(config).double()
    token_ids = torch.randint(0, VOCAB, (3, 9))
    targets = torch.randint(0, VOCAB, (3, 9))
    targets[0, :2] = -100  # a left-padded row

    expected = F.cross_entropy(model(token_ids).flatten(0, 1), targets.flatten())
    expected.backward()
    expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    loss = model.loss(token_ids, targets)
    loss.backward()

    assert_close(loss, expected.detach(), torch.float64)
    for name, parameter in model.named_parameters():
        assert_close(parameter.grad, expected_grads[name], torch.float64)
    assert model.out_head.weight.grad.stride() == model.out_head.weight.stride()


def test_gpt_model_loss_checks_its_token_ids_as_forward_does():
    model = GPTModel({"vocab_size": VOCAB, "context_length": 4, "emb_dim": 8, "n_heads": 2,
                      "n_layers": 1})  # fmt: skip
    with pytest.raises(ValueError, match="context_length is 4"):
        model.loss(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))
