"""The kernel conformance kit: every registered kernel passes it, each check fails, naming
its rule, on a kernel broken on purpose, and its doors (the report, the iterator, pytest)
are those of the variant kit.

The broken kernels below each get one thing wrong in an otherwise correct kernel,
`attend`. They are checked as `attnkit.Kernel` objects, without being registered.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import attnkit
from attnkit.testing import (
    KERNEL_CHECKS,
    CheckResult,
    ConformanceReport,
    Outcome,
    check_kernel,
    iter_kernel_checks,
    parametrize_with_kernel_checks,
)

KERNEL_CHECK_NAMES = [check.name for check in KERNEL_CHECKS]


# --- Every registered kernel passes ------------------------------------------------------


@parametrize_with_kernel_checks(attnkit.list_kernels())
def test_registered_kernels_conform(kernel, check):
    check(kernel)


def test_the_builtin_kernels_are_among_the_checked():
    assert {"sdpa", "explicit", "flex"} <= set(attnkit.list_kernels())


# --- A correct kernel, and kernels broken on purpose ----------------------------------------


def attend(
    query,
    key,
    value,
    *,
    mask,
    scale,
    dropout_p,
    training,
    need_weights,
    allowed=None,
    masked_score=float("-inf"),
    zero_blind_rows=True,
    dropout=F.dropout,
    repeat=torch.Tensor.repeat_interleave,
):
    """Correct attention; the keyword arguments after need_weights are the ways to break it."""
    groups = query.shape[1] // key.shape[1]
    key, value = repeat(key, groups, 1), repeat(value, groups, 1)
    scores = (query.float() @ key.float().transpose(-2, -1)) * scale
    if allowed is None and mask is not None:
        allowed = mask.to_dense(*scores.shape)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, masked_score)
        if zero_blind_rows:
            scores = scores.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
    weights = torch.softmax(scores, dim=-1)
    if allowed is not None and zero_blind_rows:
        weights = weights * allowed
    weights = weights.to(value.dtype)
    return dropout(weights, p=dropout_p, training=training) @ value, weights


def kernel(name, returns_weights=True, **defects):
    def function(query, key, value, **arguments):
        return attend(query, key, value, **arguments, **defects)

    function.__doc__ = f"A test kernel: {name}."
    return attnkit.Kernel(name, function, returns_weights=returns_weights)


WORKING = kernel("working")


def _wrong_scale(query, key, value, *, scale, **arguments):
    return attend(query, key, value, scale=1 / query.shape[-1], **arguments)


def _no_mask(query, key, value, *, mask, **arguments):
    return attend(query, key, value, mask=None, **arguments)


def _first_sequence_mask(query, key, value, *, mask, **arguments):
    allowed = None
    if mask is not None:  # the first sequence's mask for every sequence of the batch
        allowed = mask.to_dense(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        allowed = allowed[:1].expand(query.shape[0], query.shape[1], -1, -1)
    return attend(query, key, value, mask=mask, allowed=allowed, **arguments)


def _top_left_causal(query, key, value, *, mask, **arguments):
    allowed = None
    if mask is not None and mask.is_causal:  # SDPA's is_causal=True, right only without cache
        allowed = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool).tril()
    return attend(query, key, value, mask=mask, allowed=allowed, **arguments)


def _tile(tensor, groups, dim):
    return tensor.repeat(1, groups, 1, 1)  # head h gets kv head h % kv_heads, not h // groups


def _returns_float32(query, key, value, **arguments):
    context, weights = attend(query, key, value, **arguments)
    return context.float(), weights


def _weights_ignore_the_mask(query, key, value, *, mask, **arguments):
    context, _ = attend(query, key, value, mask=mask, **arguments)
    _, weights = attend(query, key, value, mask=None, **arguments)
    return context, weights


def _no_weights(query, key, value, **arguments):
    return attend(query, key, value, **arguments)[0], None


def _unscaled_dropout(weights, p, training):
    return weights * (torch.rand_like(weights) >= p) if training else weights


def _dropout_always(weights, p, training):
    return F.dropout(weights, p=p, training=True)


def _no_dropout(weights, p, training):
    return weights


def _half_dropout(weights, p, training):
    keep = torch.rand_like(weights) >= p / 2  # zeroes half as many as it should
    return weights * keep / (1 - p) if training else weights


def _same_dropout(weights, p, training):
    generator = torch.Generator().manual_seed(0)  # the same "random" numbers every call
    keep = torch.rand(weights.shape, generator=generator) >= p
    return weights * keep / (1 - p) if training else weights


def _detaches(query, key, value, **arguments):
    context, weights = attend(query, key, value, **arguments)
    return context.detach(), weights


def _nan_gradient(query, key, value, *, mask, **arguments):
    # -inf added, and the NaN of fully masked rows replaced after the softmax: the right
    # context, NaN gradients.
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-2, -1) * arguments["scale"]
    allowed = mask.to_dense(*scores.shape)
    bias = torch.zeros_like(scores).masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores + bias, dim=-1).nan_to_num(0.0)
    return weights @ value, weights


def _not_implemented(query, key, value, **arguments):
    if torch.is_grad_enabled() and query.requires_grad:
        raise NotImplementedError("kernel 'lazy': no backward pass here; use kernel='sdpa'")
    return attend(query, key, value, **arguments)


def _crashes(query, key, value, **arguments):
    raise RuntimeError("boom")


def _drops_a_query(query, key, value, **arguments):
    context, weights = attend(query, key, value, **arguments)
    return context[:, :, 1:], weights


NUMBER = r"[\d.e+-]+"

BROKEN = [
    (
        "no_mask",
        attnkit.Kernel("wrong_scale", _wrong_scale),
        rf"no_mask: with no mask, the context at \(batch, head, query\) = \(0, 0, 0\) differs "
        rf"from the float64 reference by up to {NUMBER} \(tolerance atol=1e-05, rtol=1e-05\)",
    ),
    *(
        (
            name,
            attnkit.Kernel("ignores_the_mask", _no_mask),
            rf"{name}: with {re.escape(label)}, the context at \(batch, head, query\) = "
            rf"\(\d, \d, \d+\) differs from the float64 reference by up to {NUMBER}",
        )
        for name, label in [
            ("causal", "causal()"),
            ("sliding_window", "sliding_window(48)"),
            ("padding", "padding (left by 70, right from 50)"),
            ("document", "document (3 and 2 documents)"),
            ("prefix_lm", "prefix_lm(130)"),
            ("combined", "(prefix_lm(20) | sliding_window(48)) & padding"),
        ]
    ),
    (
        "padding",
        attnkit.Kernel("first_sequence_mask", _first_sequence_mask),
        rf"padding: with padding \(left by 70, right from 50\), the context at \(batch, head, "
        rf"query\) = \(1, 0, 0\) differs from the float64 reference by up to {NUMBER}",
    ),
    (
        "cache_offset",
        attnkit.Kernel("top_left_causal", _top_left_causal),
        rf"cache_offset: with causal\(\) and 1 query\(ies\) after 199 cached keys, the context "
        rf"at \(batch, head, query\) = \(0, 0, 0\) differs from the float64 reference by up to "
        rf"{NUMBER}",
    ),
    (
        "grouped_heads",
        kernel("tiles_kv_heads", repeat=_tile),
        rf"grouped_heads: with causal\(\) and 4 heads on 2 kv_heads, the context at \(batch, "
        rf"head, query\) = \(0, 1, 0\) differs from the float64 reference by up to {NUMBER}",
    ),
    (
        "shape_and_scale",
        attnkit.Kernel("wrong_scale", _wrong_scale),
        rf"shape_and_scale: with head_dim_v 24 \(head_dim 16\) and scale=0.3, the context at "
        rf"\(batch, head, query\) = \(0, 0, 1\) differs from the float64 reference by up to "
        rf"{NUMBER}",
    ),
    (
        "shape_and_scale",
        attnkit.Kernel("drops_a_query", _drops_a_query),
        r"shape_and_scale: the kernel returned a context of shape \(2, 4, 199, 24\); expected "
        r"\(batch, heads, tokens_q, head_dim_v\) = \(2, 4, 200, 24\)",
    ),
    (
        "masked_rows",
        kernel("nan_rows", zero_blind_rows=False),
        r"masked_rows: the context of query 0 \(batch 0, head 0\), which may attend to no key, "
        r"is NaN; a fully masked row must give zeros, as PyTorch's SDPA does",
    ),
    (
        "masked_rows",
        kernel("uniform_rows", zero_blind_rows=False, masked_score=-1e30),
        rf"masked_rows: the context of query 0 \(batch 0, head 0\), which may attend to no key, "
        rf"is {NUMBER} at most, not zero; a fully masked row must give zeros",
    ),
    (
        "bfloat16",
        attnkit.Kernel("returns_float32", _returns_float32),
        r"bfloat16: the kernel returned a torch.float32 context for torch.bfloat16 inputs; the "
        r"context must keep the inputs' dtype",
    ),
    (
        "weights",
        attnkit.Kernel("weights_ignore_the_mask", _weights_ignore_the_mask, returns_weights=True),
        rf"weights: query 0 \(batch 0, head 0\) gives key \d+, which the mask hides, the weight "
        rf"{NUMBER}; masked keys must get no weight",
    ),
    (
        "weights",
        attnkit.Kernel("no_weights", _no_weights, returns_weights=True),
        r"weights: with need_weights=True the kernel returned None for the weights; a kernel "
        r"that declares returns_weights must return them",
    ),
    (
        "dropout",
        kernel("unscaled_dropout", dropout=_unscaled_dropout),
        rf"dropout: with dropout_p=0.3, the weight {NUMBER} of query \d+ on key \d+ \(batch \d+, "
        rf"head \d\) became {NUMBER}; dropout must zero a weight or scale it by 1 / \(1 - p\) = "
        rf"1.429",
    ),
    (
        "dropout",
        kernel("dropout_always", dropout=_dropout_always),
        rf"dropout: with training=False, dropout_p=0.3 changed the output by up to {NUMBER}; "
        rf"dropout applies only in training",
    ),
    (
        "dropout",
        kernel("no_dropout", dropout=_no_dropout),
        r"dropout: two calls with dropout_p=0.3 in training mode gave identical outputs; "
        r"dropout must draw new random numbers on every call",
    ),
    (
        "dropout",
        kernel("same_dropout", dropout=_same_dropout),
        r"dropout: two calls with dropout_p=0.3 in training mode gave identical outputs",
    ),
    (
        "dropout",
        kernel("half_dropout", dropout=_half_dropout),
        rf"dropout: dropout_p=0.3 zeroed 0.1{NUMBER} of 17408 attention weights; expected 0.3 "
        rf"\(within 0.0208, six standard deviations\)",
    ),
    (
        "backward",
        attnkit.Kernel("detaches", _detaches),
        r"backward: the context does not require grad; the kernel must not detach its result",
    ),
    (
        "backward",
        attnkit.Kernel("nan_gradient", _nan_gradient),
        r"backward: the gradient of the query at \(batch, head, token\) = \(0, 0, 0\) is NaN; "
        r"the float64 reference is finite there",
    ),
    (
        "no_mask",
        attnkit.Kernel("crashes", _crashes),
        r"no_mask: raised RuntimeError: boom \(rule: With no mask, the context agrees with a "
        r"float64 reference",
    ),
]


@pytest.mark.parametrize(
    ("check", "broken", "message"),
    BROKEN,
    ids=[f"{check}-{broken.name}" for check, broken, _ in BROKEN],
)
def test_each_kernel_check_fails_on_a_kernel_that_breaks_its_rule(check, broken, message):
    [result] = check_kernel(broken, checks=[check]).results
    assert result.outcome is Outcome.FAILED, result.message
    assert result.check == check
    assert re.match(message, result.message), result.message


def test_every_kernel_check_has_a_broken_kernel_that_fails_it():
    assert {check for check, _, _ in BROKEN} == set(KERNEL_CHECK_NAMES)


def test_a_correct_kernel_passes_every_check():
    report = check_kernel(WORKING)
    assert report.ok, str(report)
    assert not [result for result in report if result.skipped], str(report)
    without_weights = check_kernel(kernel("working_no_weights", returns_weights=False))
    assert [r.check for r in without_weights if not r.passed] == ["weights"]
    assert without_weights["weights"].message == (
        "weights: the kernel does not declare returns_weights"
    )


def test_dropout_is_reported_with_the_fraction_it_zeroed():
    [result] = check_kernel(WORKING, checks=["dropout"]).results
    assert re.fullmatch(
        r"dropout: dropout_p=0.3 in training zeroed 0\.\d{3} of 17408 weights and scaled the "
        r"rest by 1/\(1 - p\); off when not training",
        result.message,
    )
    fraction = float(result.message.split("zeroed ")[1].split()[0])
    assert abs(fraction - 0.3) < 0.02


# --- A kernel that cannot do something says so, and the check is skipped ---------------------


def test_not_implemented_is_a_skip_with_the_kernels_message():
    lazy = attnkit.Kernel("lazy", _not_implemented)
    report = check_kernel(lazy, checks=["causal", "backward"])
    assert report.ok
    assert report["causal"].passed
    assert report["backward"].skipped
    assert report["backward"].message == (
        "backward: kernel 'lazy': no backward pass here; use kernel='sdpa'"
    )


def test_flex_skips_what_pytorch_cannot_run_on_the_cpu_with_its_message():
    report = check_kernel("flex", checks=["dropout", "backward"])
    assert report["backward"].skipped
    assert "cannot run FlexAttention's backward pass on the CPU" in report["backward"].message
    assert report["dropout"].skipped
    assert "FlexAttention has no dropout" in report["dropout"].message


# --- The doors: report, iterator, pytest ----------------------------------------------------


def test_the_kernel_report_names_the_kernel_and_lists_results_in_check_order():
    report = check_kernel("sdpa", checks=["weights", "causal", "masked_rows"])
    assert isinstance(report, ConformanceReport)
    assert report.variant == "sdpa" and report.cls is attnkit.get_kernel("sdpa")
    assert report.arguments == {}
    assert [r.check for r in report] == ["causal", "masked_rows", "weights"]
    assert report.summary() == "2 passed, 0 failed, 1 skipped"
    lines = str(report).splitlines()
    assert lines[0] == f"sdpa (kernel): {attnkit.get_kernel('sdpa').summary}"
    assert lines[1:-1] == [result.format() for result in report]
    assert re.match(r"  SKIP  weights +the kernel does not declare returns_weights$", lines[3])
    assert lines[-1] == report.summary()


def test_a_kernel_and_a_variant_report_line_up_their_check_names():
    kernel_line = check_kernel("sdpa", checks=["causal"]).results[0].format()
    variant_line = attnkit.testing.check_variant("causal", checks=["causality"]).results[0]
    assert kernel_line.index("causal()") == variant_line.format().index("outputs at")


def test_iter_kernel_checks_runs_each_check_when_asked():
    calls = []

    def counting(query, key, value, **arguments):
        calls.append(query.shape)
        return attend(query, key, value, **arguments)

    results = iter_kernel_checks(
        attnkit.Kernel("counting", counting), checks=["backward", "causal"]
    )
    assert calls == [], "validated, but no check may run yet"
    first = next(results)
    assert isinstance(first, CheckResult) and first.check == "causal" and first.passed
    assert len(calls) == 1
    assert [r.check for r in results] == ["backward"]


def test_checks_can_be_skipped_on_request():
    report = check_kernel("explicit", checks=["causal", "dropout"], skip=["dropout"])
    assert report["dropout"].message == "dropout: skipped on request"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"kernel": "spda"}, attnkit.UnknownKernelError, "did you mean 'sdpa'"),
        ({"kernel": len}, TypeError, "expected a kernel name or an attnkit.Kernel, got"),
        ({"checks": ["casual"]}, ValueError, "unknown check 'casual' in checks; did you mean"),
        ({"skip": ["nope"]}, ValueError, "unknown check 'nope' in skip. Checks: no_mask, causal"),
        ({"checks": ["causality"]}, ValueError, "unknown check 'causality' in checks"),
    ],
    ids=["kernel", "not-a-kernel", "check", "skip", "variant-check"],
)
def test_iter_kernel_checks_refuses_before_any_check_runs(arguments, error, message):
    kernel_ = arguments.pop("kernel", "sdpa")
    with pytest.raises(error, match=re.escape(message)):
        iter_kernel_checks(kernel_, **arguments)  # raises here, not at the first result
    with pytest.raises(error, match=re.escape(message)):
        check_kernel(kernel_, **arguments)


def test_parametrize_with_kernel_checks_makes_one_named_test_per_kernel_and_check():
    mark = parametrize_with_kernel_checks(["sdpa", WORKING]).mark
    names, parameters = mark.args
    assert names == ("kernel", "check")
    ids = [parameter.id for parameter in parameters]
    count = len(KERNEL_CHECK_NAMES)
    assert ids[:count] == [f"sdpa-{name}" for name in KERNEL_CHECK_NAMES]
    assert ids[count:] == [f"working-{name}" for name in KERNEL_CHECK_NAMES]
    kernel_, check = parameters[count].values
    assert kernel_ is WORKING and repr(check) == "no_mask"
    selected = parametrize_with_kernel_checks(["sdpa"], checks=["causal"]).mark.args[1]
    assert [p.id for p in selected] == ["sdpa-causal"]
    with pytest.raises(ValueError, match="unknown check 'casual'"):
        parametrize_with_kernel_checks(["sdpa"], checks=["casual"])


def test_a_check_from_parametrize_with_kernel_checks_fails_passes_or_skips_the_test():
    broken = attnkit.Kernel("ignores_the_mask", _no_mask)
    parameters = {
        p.id: p.values
        for p in parametrize_with_kernel_checks(
            [broken, "sdpa"], checks=["causal", "weights"]
        ).mark.args[1]
    }
    kernel_, check = parameters["ignores_the_mask-causal"]
    with pytest.raises(pytest.fail.Exception, match=r"^ignores_the_mask: causal: with causal\(\)"):
        check(kernel_)
    kernel_, check = parameters["sdpa-weights"]
    with pytest.raises(pytest.skip.Exception, match="does not declare returns_weights"):
        check(kernel_)
    kernel_, check = parameters["sdpa-causal"]
    assert check(kernel_).passed


def test_checking_a_kernel_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    check_kernel("sdpa", checks=["dropout", "causal"])
    assert torch.equal(torch.get_rng_state(), state)
