"""Beyond the four stages (issue 11, part 1): gqa, mla and the options of the multi-head variants.

Every option is checked against a float64 reference written here, independently of
the code under test: RoPE as a complex rotation of the pairs ``(x_i, x_{i + d/2})``,
ALiBi's slopes from the paper's recipe, RMSNorm, soft-capping, sinks and the window
from their definitions, and one reference forward pass of a multi-head module that
applies them all. Cached decoding is held to the full pass, option by option and in
combination, and the conformance kit runs on each option.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention

import attnkit
import attnkit_builtins.kernels as builtin_kernels
from attnkit.masks import causal
from attnkit.testing import check_variant
from attnkit_builtins.options import alibi_slopes, apply_rope, rope_angles
from tests.helpers import TOLERANCES

D_IN, D_OUT, HEADS, CONTEXT = 16, 32, 4, 32
HEAD_DIM = D_OUT // HEADS
F32, F64 = TOLERANCES[torch.float32], TOLERANCES[torch.float64]

# FlexAttention run eagerly: the kernel's score modifications are what is under test,
# and compiling FlexAttention on the CPU takes 5 to 15 seconds per shape.
EAGER_FLEX = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

# Tiny modules: one thread is faster, and much faster on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------
# References, float64, written from the definitions.
# ---------------------------------------------------------------------------


def reference_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate the pairs ``(x_i, x_{i + d/2})`` by ``position * base^(-2i/d)`` as complex numbers.

    x: ``(batch, heads, tokens, d)``, positions: ``(batch, tokens)``.
    """
    x = x.double()
    half = x.shape[-1] // 2
    pairs = torch.complex(x[..., :half], x[..., half:])
    i = torch.arange(half, dtype=torch.float64)
    angles = positions.double()[:, None, :, None] * base ** (-2 * i / x.shape[-1])
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)
    return torch.cat((rotated.real, rotated.imag), dim=-1)


def reference_slopes(heads: int) -> list[float]:
    """ALiBi's slopes (Press et al., 2022): ``2^(-8i/n)``, i = 1..n, for n a power of two;
    otherwise those of the largest power of two below, then the odd-numbered slopes of
    the next power of two."""

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8 * i / n) for i in range(1, n + 1)]

    lower = 1
    while lower * 2 <= heads:
        lower *= 2
    extra = [s for i, s in enumerate(geometric(2 * lower)) if i % 2 == 0]
    return geometric(lower) + extra[: heads - lower]


def reference_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight.double()


def allowed_keys(
    tokens_q: int, tokens_k: int, window: int | None = None, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """``(batch or 1, 1, tokens_q, tokens_k)``: query ``i`` (position ``tokens_k - tokens_q + i``)
    sees key ``j`` if ``j <= i``, within the window, and not padding."""
    allowed = torch.zeros(tokens_q, tokens_k, dtype=torch.bool)
    for row in range(tokens_q):
        i = tokens_k - tokens_q + row
        for j in range(tokens_k):
            allowed[row, j] = j <= i and (window is None or i - j < window)
    allowed = allowed[None, None]
    if keep is not None:
        allowed = allowed & keep.bool()[:, None, None, :]
    return allowed


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    allowed: torch.Tensor,
    slopes: list[float] | None = None,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), capped, minus ALiBi, masked, with sinks) v, in float64.

    Key-value heads are repeated for their groups of query heads; query ``i`` is
    position ``tokens_k - tokens_q + i``.
    """
    q, k, v = q.double(), k.double(), v.double()
    heads, tokens_q, tokens_k = q.shape[1], q.shape[2], k.shape[2]
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if slopes is not None:
        i = torch.arange(tokens_k - tokens_q, tokens_k, dtype=torch.float64)[:, None]
        j = torch.arange(tokens_k, dtype=torch.float64)[None, :]
        scores = scores - torch.tensor(slopes, dtype=torch.float64)[:, None, None] * (i - j)
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        sink = sinks.double()[None, :, None, None].expand(*scores.shape[:3], 1)
        weights = torch.softmax(torch.cat((scores, sink), dim=-1), dim=-1)[..., :-1]
    else:
        weights = torch.softmax(scores, dim=-1)
    weights = weights.nan_to_num(0.0)  # a query with no key left gets zeros
    return weights @ v


def reference_forward(
    module: attnkit.Attention,
    x: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """A float64 forward pass of a `multihead` or `gqa` module, read from its parameters."""
    x = x.double()
    batch, tokens, _ = x.shape
    options = module.options

    def linear(layer, inputs):
        out = inputs @ layer.weight.double().T
        return out if layer.bias is None else out + layer.bias.double()

    def heads(t, n):
        return t.view(batch, tokens, n, HEAD_DIM).transpose(1, 2)

    q = heads(linear(module.W_query, x), module.num_heads)
    k = heads(linear(module.W_key, x), module.num_kv_heads)
    v = heads(linear(module.W_value, x), module.num_kv_heads)
    if options.q_norm is not None:
        q = reference_rms_norm(q, options.q_norm.weight, options.q_norm.eps)
        k = reference_rms_norm(k, options.k_norm.weight, options.k_norm.eps)
    if options.rope_base is not None:
        if position_ids is None:
            position_ids = torch.arange(tokens)[None].expand(batch, -1)
        q = reference_rope(q, position_ids, options.rope_base)
        k = reference_rope(k, position_ids, options.rope_base)
    context = reference_attention(
        q,
        k,
        v,
        allowed=allowed_keys(tokens, tokens, options.window, attention_mask),
        slopes=reference_slopes(module.num_heads) if options.alibi_slopes is not None else None,
        softcap=options.softcap,
        sinks=options.sinks,
    )
    return linear(module.out_proj, context.transpose(1, 2).reshape(batch, tokens, D_OUT))


# ---------------------------------------------------------------------------
# Building and decoding.
# ---------------------------------------------------------------------------


def make(name: str = "multihead", *, seed: int = 0, **options) -> attnkit.Attention:
    """A module of the sizes above, in eval mode, with QK-norm weights and sinks randomised
    (their defaults, ones and zeros, would hide a missing or misplaced one)."""
    torch.manual_seed(seed)
    arguments = {"d_in": D_IN, "d_out": D_OUT, "context_length": CONTEXT, "num_heads": HEADS}
    module = attnkit.create(name, **arguments, **options).eval()
    with torch.no_grad():
        if module.options.q_norm is not None:
            module.options.q_norm.weight.uniform_(0.5, 1.5)
            module.options.k_norm.weight.uniform_(0.5, 1.5)
        if module.options.sinks is not None:
            module.options.sinks.normal_()
    return module


def inputs(batch: int = 2, tokens: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, tokens, D_IN, generator=torch.Generator().manual_seed(seed))


def decode(module: attnkit.Attention, x: torch.Tensor, chunks: list[int], **kwargs):
    """Feed ``x`` through a fresh KVCache in chunks of these sizes; outputs and the cache."""
    assert sum(chunks) == x.shape[1]
    cache, outputs, start = attnkit.KVCache(), [], 0
    with torch.no_grad():
        for size in chunks:
            outputs.append(module(x[:, start : start + size], cache=cache, **kwargs))
            start += size
    return torch.cat(outputs, dim=1), cache


def close(actual: torch.Tensor, expected: torch.Tensor, tolerance=None) -> None:
    tolerance = tolerance or TOLERANCES[actual.dtype]
    torch.testing.assert_close(actual, expected.to(actual.dtype), **tolerance)


PROMPT_THEN_STEPS = [4, 1, 1, 1, 2, 1]  # 10 tokens: a prompt, then one or two at a time


# ---------------------------------------------------------------------------
# gqa
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"rope_base": 10_000.0, "qk_norm": True, "sinks": True},
        {"alibi": True, "softcap": 2.0, "window": 3},
    ],
    ids=["plain", "rope-qk_norm-sinks", "alibi-softcap-window"],
)
@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_gqa_with_as_many_kv_heads_as_heads_is_multihead_exactly(kernel, options):
    multihead = make("multihead", kernel=kernel, **options)
    gqa = make("gqa", num_kv_heads=HEADS, seed=5, kernel=kernel, **options)
    gqa.load_state_dict(multihead.state_dict())
    x = inputs()
    assert torch.equal(gqa(x), multihead(x))
    steps = decode(gqa, x, PROMPT_THEN_STEPS)[0]
    assert torch.equal(steps, decode(multihead, x, PROMPT_THEN_STEPS)[0])


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_gqa_matches_the_reference_with_kv_heads_shared_by_groups(kv_heads, kernel):
    gqa = make("gqa", num_kv_heads=kv_heads, kernel=kernel)
    assert gqa.W_key.out_features == gqa.W_value.out_features == kv_heads * HEAD_DIM
    x = inputs()
    close(gqa(x), reference_forward(gqa, x))
    with torch.no_grad():
        close(gqa.double()(x.double()), reference_forward(gqa, x))


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_gqa_caches_only_its_kv_heads_and_decodes_like_the_full_pass(kv_heads):
    gqa = make("gqa", num_kv_heads=kv_heads)
    x = inputs()
    steps, cache = decode(gqa, x, PROMPT_THEN_STEPS)
    close(steps, gqa(x))
    assert cache.keys.shape == cache.values.shape == (2, kv_heads, 10, HEAD_DIM)
    assert cache.nbytes() == 2 * 2 * kv_heads * 10 * HEAD_DIM * 4
    multihead_cache = decode(make("multihead"), x, [10])[1]
    assert multihead_cache.nbytes() == cache.nbytes() * HEADS // kv_heads


def test_gqa_refuses_kv_heads_that_do_not_divide_the_heads():
    message = re.escape("GroupedQueryAttention: num_kv_heads (3) must divide num_heads (4)")
    with pytest.raises(ValueError, match=message):
        make("gqa", num_kv_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads must be a positive integer, got 0"):
        make("gqa", num_kv_heads=0)


# ---------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------


def test_the_reference_rope_rotates_pairs_by_the_documented_angles():
    # One pair, d = 2: (1, 0) at position 3 turns by 3 radians (base^0 = 1).
    x = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    rotated = reference_rope(x, torch.tensor([[3]]), 10_000.0)
    close(rotated.view(2), torch.tensor([math.cos(3), math.sin(3)], dtype=torch.float64))


@pytest.mark.parametrize("base", [10_000.0, 500_000.0])
@pytest.mark.parametrize(("tokens", "offset"), [(1, 0), (7, 0), (5, 3), (12, 19)])
def test_apply_rope_matches_a_complex_rotation_of_pairs(base, tokens, offset):
    torch.manual_seed(0)
    x = torch.randn(2, 3, tokens, HEAD_DIM)
    positions = torch.arange(offset, offset + tokens)[None].expand(2, -1)
    cos, sin = rope_angles(positions, HEAD_DIM, base)
    close(apply_rope(x, cos, sin), reference_rope(x, positions, base))


@pytest.mark.parametrize("base", [10_000.0, 500_000.0])
@pytest.mark.parametrize(("tokens", "offset"), [(6, 0), (10, 4), (3, 21)])
@pytest.mark.parametrize("name", ["multihead", "gqa"])
def test_rope_module_matches_the_reference_at_given_positions(base, tokens, offset, name):
    extra = {"num_kv_heads": 2} if name == "gqa" else {}
    module = make(name, rope_base=base, **extra)
    x = inputs(tokens=tokens)
    positions = torch.arange(offset, offset + tokens)[None].expand(2, -1)
    close(module(x, position_ids=positions), reference_forward(module, x, position_ids=positions))
    # RoPE is relative, so shifting every position changes nothing; gaps do change the
    # scores, and positions may differ between the sequences of a batch.
    gaps = torch.stack((positions[0] * 2, positions[0] + torch.arange(tokens) ** 2))
    out = module(x, position_ids=gaps)
    close(out, reference_forward(module, x, position_ids=gaps))
    if tokens > 2:
        assert not torch.allclose(out, module(x, position_ids=positions), atol=1e-4)


def test_rope_is_not_the_identity_and_not_the_interleaved_convention():
    # Guards the reference's convention: the interleaved layout (x_0, x_1) would differ.
    torch.manual_seed(0)
    x = torch.randn(1, 1, 4, HEAD_DIM)
    positions = torch.arange(4)[None]
    cos, sin = rope_angles(positions, HEAD_DIM, 10_000.0)
    rotated = apply_rope(x, cos, sin)
    assert not torch.allclose(rotated[:, :, 1:], x[:, :, 1:], atol=1e-3)
    interleaved = torch.view_as_real(
        torch.view_as_complex(x.double().reshape(1, 1, 4, HEAD_DIM // 2, 2))
        * torch.polar(
            torch.ones(4, HEAD_DIM // 2, dtype=torch.float64),
            positions.double()[0, :, None]
            * 10_000.0 ** (-2 * torch.arange(HEAD_DIM // 2, dtype=torch.float64) / HEAD_DIM),
        )
    ).reshape(1, 1, 4, HEAD_DIM)
    assert not torch.allclose(rotated[:, :, 1:].double(), interleaved[:, :, 1:], atol=1e-3)


@pytest.mark.parametrize("base", [10_000.0, 500_000.0])
@pytest.mark.parametrize("shift", [1, 5, 40])
def test_rope_scores_depend_only_on_relative_positions(base, shift):
    module = make("gqa", num_kv_heads=2, rope_base=base)
    x = inputs(tokens=8)
    positions = torch.arange(8)[None].expand(2, -1)
    _, weights = module(x, need_weights=True, position_ids=positions)
    _, shifted = module(x, need_weights=True, position_ids=positions + shift)
    # Angles are computed in float32: position 48 is known to about 4e-6 radians.
    close(shifted, weights, {"atol": 1e-5, "rtol": 1e-4})
    # ... but the absolute positions are not ignored: reversing them changes the scores.
    _, reversed_ = module(x, need_weights=True, position_ids=positions.flip(-1) + 8)
    assert not torch.allclose(reversed_, weights, atol=1e-3)


def test_rope_reference_is_relative_in_float64():
    # q_m . k_n of the reference depends only on m - n, to float64 precision.
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM, dtype=torch.float64).unbind(0)

    def score(m: int, n: int) -> torch.Tensor:
        qm = reference_rope(q, torch.tensor([[m]]), 10_000.0)
        kn = reference_rope(k, torch.tensor([[n]]), 10_000.0)
        return (qm * kn).sum()

    for m, n, c in [(5, 2, 7), (0, 0, 100), (9, 3, 1000)]:
        close(score(m + c, n + c), score(m, n), F64 | {"atol": 1e-10})


def test_rope_in_float64_is_float64_accurate():
    module = make("multihead", rope_base=10_000.0).double()
    x = inputs().double()
    positions = torch.arange(3, 13)[None].expand(2, -1)
    out = module(x, position_ids=positions)
    assert out.dtype == torch.float64
    close(out, reference_forward(module, x, position_ids=positions))


@pytest.mark.parametrize("chunks", [[10], PROMPT_THEN_STEPS, [1] * 10, [3, 7]])
@pytest.mark.parametrize("name", ["multihead", "gqa"])
def test_rope_positions_continue_across_the_cache(chunks, name):
    extra = {"num_kv_heads": 1} if name == "gqa" else {}
    module = make(name, rope_base=500_000.0, **extra)
    x = inputs()
    steps, cache = decode(module, x, chunks)
    close(steps, module(x))
    close(steps, reference_forward(module, x))
    assert cache.length == 10


def test_rope_follows_position_ids_so_left_padding_changes_nothing():
    module = make("gqa", num_kv_heads=2, rope_base=10_000.0)
    torch.manual_seed(3)
    short, long = torch.randn(4, D_IN), torch.randn(7, D_IN)
    x = torch.stack((torch.cat((torch.randn(3, D_IN), short)), long))  # left-pad to 7
    attention_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    # cumsum(mask) - 1 numbers the real tokens from 0; padding gets 0, its value unused
    # (the base class refuses the -1 that cumsum(mask) - 1 alone would give it).
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = module(x, attention_mask=attention_mask, position_ids=position_ids)
    close(out[0, 3:], module(short[None])[0])
    close(out[1], module(long[None])[0])

    # Generation: the padded prompt, then two new tokens at the following positions.
    new = torch.randn(2, 2, D_IN)
    cache = attnkit.KVCache()
    with torch.no_grad():
        module(x, attention_mask=attention_mask, position_ids=position_ids, cache=cache)
        steps = []
        for t in range(2):
            attention_mask = torch.cat((attention_mask, torch.ones(2, 1, dtype=torch.long)), 1)
            position_ids = position_ids[:, -1:] + 1
            steps.append(
                module(
                    new[:, t : t + 1],
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    cache=cache,
                )
            )
    steps = torch.cat(steps, dim=1)
    close(steps[0], module(torch.cat((short, new[0]))[None])[0, -2:])
    close(steps[1], module(torch.cat((long, new[1]))[None])[0, -2:])


@pytest.mark.parametrize("name", ["multihead", "gqa"])
def test_rope_refuses_an_odd_head_width(name):
    extra = {"num_kv_heads": 2} if name == "gqa" else {}
    with pytest.raises(ValueError, match="head width must be even; got head_dim 3"):
        attnkit.create(name, d_in=4, d_out=6, context_length=8, num_heads=2, rope_base=1e4, **extra)


# ---------------------------------------------------------------------------
# ALiBi
# ---------------------------------------------------------------------------


def test_alibi_slopes_for_eight_heads_are_the_papers():
    expected = [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    assert alibi_slopes(8).tolist() == expected
    assert reference_slopes(8) == expected


@pytest.mark.parametrize("heads", [1, 2, 3, 4, 6, 12, 16, 20])
def test_alibi_slopes_follow_the_papers_recipe(heads):
    expected = reference_slopes(heads)
    assert len(expected) == heads
    close(alibi_slopes(heads).double(), torch.tensor(expected, dtype=torch.float64), F32)


def test_alibi_slopes_for_six_and_twelve_heads_written_out():
    assert reference_slopes(6) == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
    twelve = [2.0**-i for i in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    close(torch.tensor(reference_slopes(12)), torch.tensor(twelve))


@EAGER_FLEX
@pytest.mark.parametrize(
    ("kernel", "dtype"),
    [
        ("explicit", torch.float32),
        ("explicit", torch.float64),
        ("sdpa", torch.float32),
        ("sdpa", torch.float64),
        ("flex", torch.float32),  # eager FlexAttention: float32 is enough to check score_mod
    ],
)
@pytest.mark.parametrize(("tokens_q", "tokens_k", "kv_heads"), [(7, 7, 4), (3, 9, 2), (1, 6, 1)])
def test_kernels_apply_alibi_like_the_reference(
    kernel, tokens_q, tokens_k, kv_heads, dtype, monkeypatch
):
    monkeypatch.setattr(builtin_kernels, "_compiled_flex_attention", lambda: flex_attention)
    torch.manual_seed(0)
    q = torch.randn(2, 4, tokens_q, HEAD_DIM, dtype=dtype)
    k, v = torch.randn(2, 2, kv_heads, tokens_k, HEAD_DIM, dtype=dtype).unbind(0)
    slopes = alibi_slopes(4).to(dtype)
    with torch.no_grad():
        context, _ = attnkit.get_kernel(kernel)(q, k, v, mask=causal(), alibi_slopes=slopes)
    expected = reference_attention(
        q, k, v, allowed=allowed_keys(tokens_q, tokens_k), slopes=reference_slopes(4)
    )
    close(context, expected)


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_alibi_module_matches_the_reference_and_decodes_like_the_full_pass(kernel):
    module = make("gqa", num_kv_heads=2, alibi=True, kernel=kernel)
    x = inputs()
    close(module(x), reference_forward(module, x))
    close(decode(module, x, PROMPT_THEN_STEPS)[0], module(x))
    # The weights the explicit kernel returns carry the same biases.
    context, _ = module(x, need_weights=True)
    close(context, module(x))


def test_alibi_and_rope_together_are_refused():
    with pytest.raises(ValueError, match="rope_base and alibi both encode positions; choose one"):
        make("multihead", rope_base=10_000.0, alibi=True)


# ---------------------------------------------------------------------------
# QK-norm and soft-capping
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["multihead", "gqa"])
def test_qk_norm_is_rms_norm_of_each_heads_queries_and_keys(name):
    extra = {"num_kv_heads": 2} if name == "gqa" else {}
    module = make(name, qk_norm=True, **extra)
    assert module.options.q_norm.normalized_shape == (HEAD_DIM,)
    assert module.options.k_norm.normalized_shape == (HEAD_DIM,)
    x = inputs()
    close(module(x), reference_forward(module, x))
    # Scaling the query and key projections changes nothing once they are normalised.
    baseline = module(x)
    with torch.no_grad():
        module.W_query.weight.mul_(50.0)
        module.W_key.weight.mul_(3.0)
    close(module(x), baseline, {"atol": 1e-4, "rtol": 1e-4})


@EAGER_FLEX
@pytest.mark.parametrize("kernel", ["explicit", "sdpa", "flex"])
@pytest.mark.parametrize(("cap", "tokens_q", "kv_heads"), [(0.5, 6, 4), (5.0, 6, 1), (50.0, 2, 2)])
def test_kernels_soft_cap_the_scores_like_the_reference(
    kernel, cap, tokens_q, kv_heads, monkeypatch
):
    monkeypatch.setattr(builtin_kernels, "_compiled_flex_attention", lambda: flex_attention)
    torch.manual_seed(0)
    q = 3 * torch.randn(2, 4, tokens_q, HEAD_DIM)
    k, v = (3 * torch.randn(2, 2, kv_heads, 6, HEAD_DIM)).unbind(0)
    with torch.no_grad():
        context, _ = attnkit.get_kernel(kernel)(q, k, v, mask=causal(), softcap=cap)
    allowed = allowed_keys(tokens_q, 6)
    close(context, reference_attention(q, k, v, allowed=allowed, softcap=cap))


def test_soft_capped_scores_stay_bounded():
    cap = 2.0
    torch.manual_seed(0)
    q, k, v = (1e4 * torch.randn(3, 1, 2, 6, HEAD_DIM)).unbind(0)
    context, weights = attnkit.get_kernel("explicit")(
        q, k, v, mask=causal(), softcap=cap, need_weights=True
    )
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()
    # Scores in (-cap, cap): a visible key gets at least e^(-2 cap) / (its row's keys).
    visible = allowed_keys(6, 6)[0, 0]
    row_keys = visible.sum(-1, keepdim=True)
    assert (weights[..., visible] > 0).all()
    assert (weights * row_keys >= math.exp(-2 * cap) - 1e-6).where(visible, True).all()
    # Without the cap, the same scores saturate the softmax to one-hot rows.
    _, uncapped = attnkit.get_kernel("explicit")(q, k, v, mask=causal(), need_weights=True)
    assert (uncapped.amax(-1) > 0.999).all()


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_softcap_module_matches_the_reference(kernel):
    module = make("multihead", softcap=1.5, kernel=kernel)
    with torch.no_grad():  # large scores, so that the cap matters
        module.W_query.weight.mul_(20.0)
    x = inputs()
    close(module(x), reference_forward(module, x))
    uncapped = make("multihead", kernel=kernel)
    uncapped.load_state_dict(module.state_dict())
    assert not torch.allclose(uncapped(x), module(x), atol=1e-3)


# ---------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["explicit", "sdpa"])
@pytest.mark.parametrize(("tokens_q", "tokens_k", "kv_heads"), [(6, 6, 4), (2, 7, 2)])
def test_kernels_apply_sinks_like_the_reference(kernel, tokens_q, tokens_k, kv_heads):
    torch.manual_seed(0)
    q = torch.randn(2, 4, tokens_q, HEAD_DIM)
    k, v = torch.randn(2, 2, kv_heads, tokens_k, HEAD_DIM).unbind(0)
    sinks = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    context, _ = attnkit.get_kernel(kernel)(q, k, v, mask=causal(), sinks=sinks)
    allowed = allowed_keys(tokens_q, tokens_k)
    close(context, reference_attention(q, k, v, allowed=allowed, sinks=sinks))
    # A sink takes weight away: the explicit kernel's rows sum to less than one.
    _, weights = attnkit.get_kernel("explicit")(
        q, k, v, mask=causal(), sinks=sinks, need_weights=True
    )
    assert (weights.sum(-1) < 1).all()


@pytest.mark.parametrize("kernel", ["explicit", "sdpa"])
def test_a_very_negative_sink_is_no_sink_and_a_very_large_one_takes_everything(kernel):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 6, HEAD_DIM).unbind(0)
    run = attnkit.get_kernel(kernel)
    plain, _ = run(q, k, v, mask=causal())
    ignored, _ = run(q, k, v, mask=causal(), sinks=torch.full((4,), -1e4))
    close(ignored, plain)
    swallowed, _ = run(q, k, v, mask=causal(), sinks=torch.full((4,), 1e4))
    assert torch.isfinite(swallowed).all()
    assert swallowed.abs().max() < 1e-30


def test_sinks_are_learned_per_head_and_the_module_matches_the_reference():
    module = make("gqa", num_kv_heads=2, sinks=True)
    assert module.options.sinks.shape == (HEADS,)
    assert "options.sinks" in dict(module.named_parameters())
    x = inputs()
    close(module(x), reference_forward(module, x))
    module.train()
    module(x).square().sum().backward()
    assert module.options.sinks.grad is not None and module.options.sinks.grad.abs().sum() > 0


def test_flex_refuses_sinks_on_the_cpu_with_a_clear_message():
    q = torch.randn(1, 2, 3, HEAD_DIM)
    with torch.no_grad(), pytest.raises(NotImplementedError, match="attention sinks need"):
        attnkit.get_kernel("flex")(q, q, q, mask=causal(), sinks=torch.zeros(2))


# ---------------------------------------------------------------------------
# Sliding window
# ---------------------------------------------------------------------------

WINDOWS = [1, 2, 3, 10, 15]  # 10 tokens: from "only itself" to "everything"


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
@pytest.mark.parametrize("window", WINDOWS)
def test_window_is_attention_with_the_band_mask(window, kernel):
    module = make("gqa", num_kv_heads=2, window=window, kernel=kernel)
    x = inputs()
    close(module(x), reference_forward(module, x))
    _, weights = module(x, need_weights=True)
    band = allowed_keys(10, 10, window)[0, 0]
    assert (weights[..., ~band] == 0).all() and (weights[..., band] > 0).all()
    if window >= 10:
        full = make("gqa", num_kv_heads=2, kernel=kernel)
        full.load_state_dict(module.state_dict())
        close(module(x), full(x))


@pytest.mark.parametrize("chunks", [PROMPT_THEN_STEPS, [1] * 10, [7, 3]])
@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
@pytest.mark.parametrize("window", WINDOWS)
def test_window_cache_holds_at_most_window_tokens_and_decodes_like_the_full_pass(
    window, kernel, chunks
):
    module = make("gqa", num_kv_heads=2, window=window, kernel=kernel, rope_base=10_000.0)
    x = inputs()
    cache, outputs, start = attnkit.KVCache(), [], 0
    with torch.no_grad():
        for size in chunks:
            outputs.append(module(x[:, start : start + size], cache=cache))
            start += size
            assert cache.length == start
            assert cache.held == min(start, window)
            assert cache.keys.shape == (2, 2, min(start, window), HEAD_DIM)
    close(torch.cat(outputs, dim=1), module(x))
    close(torch.cat(outputs, dim=1), reference_forward(module, x))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "grad"])
def test_window_cache_decodes_like_the_full_pass_with_or_without_gradients(mode):
    module = make("gqa", num_kv_heads=1, window=3, rope_base=10_000.0, sinks=True)
    x = inputs()
    context = {
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
        "grad": torch.enable_grad,
    }[mode]
    cache, outputs = attnkit.KVCache(), []
    with context():
        for start, size in [(0, 4), (4, 1), (5, 2), (7, 1), (8, 2)]:
            outputs.append(module(x[:, start : start + size], cache=cache))
    assert cache.held == 3 and cache.length == 10
    steps = torch.cat(outputs, dim=1)
    close(steps.detach(), module(x).detach())
    if mode == "grad":
        steps.sum().backward()
        assert module.options.sinks.grad.abs().sum() > 0


@pytest.mark.parametrize("window", [1, 4])
def test_window_cache_memory_stops_growing_at_the_window(window):
    module = make("multihead", window=window)
    x = inputs(batch=1, tokens=CONTEXT)
    cache, sizes = attnkit.KVCache(), []
    with torch.no_grad():
        for t in range(CONTEXT):
            module(x[:, t : t + 1], cache=cache)
            sizes.append(cache.nbytes())
    per_token = 2 * D_OUT * 4  # a key and a value, float32
    assert sizes == [per_token * min(t + 1, window) for t in range(CONTEXT)]
    assert cache.length == CONTEXT and cache.held == window
    # What is really allocated, not only what is visible, stays within a token of it.
    assert cache.keys.untyped_storage().nbytes() <= per_token // 2 * (window + 1)


def test_window_cache_frees_a_long_prompt():
    window = 2
    module = make("multihead", window=window)
    cache = attnkit.KVCache()
    with torch.no_grad():
        module(inputs(batch=1, tokens=CONTEXT), cache=cache)
    assert cache.nbytes() == 2 * window * D_OUT * 4
    allocated = cache.keys.untyped_storage().nbytes() + cache.values.untyped_storage().nbytes()
    assert allocated <= 2 * (window + 1) * D_OUT * 4


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("multihead", {}),
        ("multihead", {"window": 3}),
        ("gqa", {"num_kv_heads": 1}),
        ("gqa", {"num_kv_heads": 2, "window": 5, "rope_base": 1e4}),
        ("mla", {"kv_latent_dim": 6}),
    ],
)
def test_declared_cache_size_is_what_a_real_cache_holds(name, options):
    arguments = {"d_in": D_IN, "d_out": D_OUT, "context_length": CONTEXT, "num_heads": HEADS}
    module = attnkit.create(name, **arguments, **options).eval()
    cls = type(module)
    x = inputs(batch=1, tokens=12)
    cache = attnkit.KVCache()
    with torch.no_grad():
        for t in range(12):
            module(x[:, t : t + 1], cache=cache)
            declared = cls.kv_cache_elements({**arguments, **options}, t + 1)
            assert cache.nbytes() == declared * 4, (t, declared)


# ---------------------------------------------------------------------------
# mla
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_mla_caches_only_the_latent_and_decodes_like_the_full_pass(kernel):
    torch.manual_seed(0)
    mla = attnkit.create(
        "mla", d_in=D_IN, d_out=D_OUT, context_length=CONTEXT, num_heads=HEADS,
        kv_latent_dim=6, kernel=kernel,
    ).eval()  # fmt: skip
    x = inputs()
    steps, cache = decode(mla, x, PROMPT_THEN_STEPS)
    assert cache.values is None
    assert cache.keys.shape == (2, 1, 10, 6)
    assert cache.nbytes() == 2 * 10 * 6 * 4
    close(steps, mla(x))

    # Reference: keys and values every head reconstructs from the latent.
    def linear(layer, inputs):
        return inputs.double() @ layer.weight.double().T + (
            0 if layer.bias is None else layer.bias.double()
        )

    def heads(t):
        return t.view(2, 10, HEADS, HEAD_DIM).transpose(1, 2)

    latent = linear(mla.W_kv_down, x)
    context = reference_attention(
        heads(linear(mla.W_query, x)),
        heads(linear(mla.W_key_up, latent)),
        heads(linear(mla.W_value_up, latent)),
        allowed=allowed_keys(10, 10),
    )
    close(mla(x), linear(mla.out_proj, context.transpose(1, 2).reshape(2, 10, D_OUT)))


def test_mla_gradients_reach_every_projection_and_the_input():
    torch.manual_seed(0)
    mla = attnkit.create(
        "mla", d_in=D_IN, d_out=D_OUT, context_length=CONTEXT, num_heads=HEADS, kv_latent_dim=6
    )
    x = inputs().requires_grad_()
    mla(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in mla.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # With a cache and gradients on, the cached latent stays in the graph.
    mla.zero_grad()
    cache = attnkit.KVCache()
    first = mla(x[:, :6], cache=cache)
    second = mla(x[:, 6:], cache=cache)
    second.sum().backward()
    assert mla.W_kv_down.weight.grad.abs().sum() > 0
    assert first.requires_grad


# ---------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------

ALL_WITH_ROPE = {"rope_base": 10_000.0, "qk_norm": True, "softcap": 3.0, "window": 4, "sinks": True}
ALL_WITH_ALIBI = {"alibi": True, "qk_norm": True, "softcap": 3.0, "window": 4, "sinks": True}


@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
@pytest.mark.parametrize("options", [ALL_WITH_ROPE, ALL_WITH_ALIBI], ids=["rope", "alibi"])
@pytest.mark.parametrize(("name", "extra"), [("gqa", {"num_kv_heads": 2}), ("multihead", {})])
def test_every_option_together_matches_the_reference_and_decodes_like_the_full_pass(
    name, extra, options, kernel
):
    module = make(name, kernel=kernel, **extra, **options)
    x = inputs()
    full = module(x)
    close(full, reference_forward(module, x))
    steps, cache = decode(module, x, PROMPT_THEN_STEPS)
    close(steps, full)
    assert cache.length == 10 and cache.held == 4
    # Gradients reach the QK-norm weights and the sinks.
    module.train()
    module(x).sum().backward()
    for parameter in (module.options.q_norm.weight, module.options.k_norm.weight):
        assert parameter.grad.abs().sum() > 0
    assert module.options.sinks.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [ALL_WITH_ROPE, ALL_WITH_ALIBI], ids=["rope", "alibi"])
def test_every_option_together_in_bfloat16(options):
    module = make("gqa", num_kv_heads=2, **options)
    x = inputs()
    expected = reference_forward(module, x)
    module = module.to(torch.bfloat16)
    close(module(x.bfloat16()), expected)
    close(decode(module, x.bfloat16(), PROMPT_THEN_STEPS)[0], expected)


@pytest.mark.parametrize("name", ["multihead", "gqa"])
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"rope_base": 0}, ValueError, "rope_base must be a positive number, got 0"),
        ({"rope_base": -10_000.0}, ValueError, "rope_base must be a positive number, got -10000.0"),
        ({"rope_base": float("nan")}, ValueError, "rope_base must be a positive number, got nan"),
        ({"rope_base": float("inf")}, ValueError, "rope_base must be a positive number, got inf"),
        ({"rope_base": "10000"}, ValueError, "rope_base must be a positive number, got '10000'"),
        ({"rope_base": True}, ValueError, "rope_base must be a positive number, got True"),
        ({"softcap": 0.0}, ValueError, "softcap must be a positive number, got 0.0"),
        ({"softcap": -1}, ValueError, "softcap must be a positive number, got -1"),
        ({"window": 0}, ValueError, "window must be a positive integer, got 0"),
        ({"window": -2}, ValueError, "window must be a positive integer, got -2"),
        ({"window": 2.5}, ValueError, "window must be a positive integer, got 2.5"),
        ({"alibi": "yes"}, TypeError, "alibi must be True or False, got 'yes'"),
        ({"qk_norm": 1}, TypeError, "qk_norm must be True or False, got 1"),
        ({"sinks": None}, TypeError, "sinks must be True or False, got None"),
    ],
)
def test_bad_option_values_are_refused_with_a_message(name, options, error, message):
    extra = {"num_kv_heads": 2} if name == "gqa" else {}
    owner = {"multihead": "MultiHeadAttention", "gqa": "GroupedQueryAttention"}[name]
    with pytest.raises(error, match=re.escape(f"{owner}: {message}")):
        make(name, **extra, **options)


# ---------------------------------------------------------------------------
# The conformance kit
# ---------------------------------------------------------------------------

EACH_OPTION = [
    {"rope_base": 10_000.0},
    {"rope_base": 500_000.0},
    {"alibi": True},
    {"qk_norm": True},
    {"softcap": 5.0},
    {"window": 3},
    {"window": 1},
    {"window": 50},
    {"sinks": True},
]
KIT_CASES = [(name, options) for name in ("multihead", "gqa") for options in EACH_OPTION] + [
    ("gqa", {"num_kv_heads": 1, "rope_base": 10_000.0, "window": 3}),
    ("gqa", {"num_kv_heads": 2, "num_heads": 4, "d_out": 16, **ALL_WITH_ROPE}),
    ("gqa", {"num_kv_heads": 2, "num_heads": 4, "d_out": 16, **ALL_WITH_ALIBI}),
    ("multihead", ALL_WITH_ROPE),
    ("multihead", ALL_WITH_ALIBI),
    ("mla", {"kv_latent_dim": 3}),
]


def kit_id(case: tuple[str, dict]) -> str:
    name, options = case
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


@pytest.mark.parametrize(("name", "options"), KIT_CASES, ids=[kit_id(c) for c in KIT_CASES])
def test_conformance_kit_passes(name, options):
    # The compile check alone takes about ten seconds per case on the CPU: skipped.
    report = check_variant(name, options, skip=["compile"])
    assert report.ok, str(report)


def test_conformance_kit_accepts_the_weights_of_sinks():
    report = check_variant("gqa", {"sinks": True}, checks=["need_weights"])
    assert report.ok, str(report)
