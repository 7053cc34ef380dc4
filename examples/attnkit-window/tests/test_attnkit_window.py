"""attnkit-window's tests: attnkit's conformance kits, float64 references, padding, the
KV cache, the chunked kernel against the explicit one, discovery and errors.

They run against the installed package, as a user's would.
"""

from __future__ import annotations

import doctest
import functools
import math
from importlib.metadata import version

import attnkit_window
import pytest
import torch
from attnkit_window import CHUNKED, SlidingWindowAttention
from torch.utils._python_dispatch import TorchDispatchMode

import attnkit
from attnkit import masks
from attnkit.testing import parametrize_with_checks, parametrize_with_kernel_checks

KERNELS = ["sdpa", "explicit", "chunked"]


@parametrize_with_checks(
    [
        "window",
        ("window", {"window": 1, "num_heads": 1}),
        ("window", {"window": 3, "kernel": "chunked"}),
    ]
)
def test_conformance(variant, check):
    check(variant)


# The kernel as registered (chunks of 128: the kit's 200 queries make one full chunk and
# one partial), and in chunks of 7, which divide none of the kit's sizes.
CHUNKS_OF_7 = attnkit.Kernel(
    "chunked_by_7",
    functools.partial(attnkit_window.chunked, chunk_size=7),
    returns_weights=True,
    summary="The chunked kernel, 7 queries at a time.",
)


@parametrize_with_kernel_checks(["chunked", CHUNKS_OF_7])
def test_kernel_conformance(kernel, check):
    check(kernel)


# --- The variant against a float64 reference --------------------------------------------


def reference(
    module: SlidingWindowAttention, x: torch.Tensor, keep: list[bool] | None = None
) -> torch.Tensor:
    """Sliding-window attention of one sequence in float64, token by token, head by head.

    ``keep[j]`` is False for a padding token, which no query attends to; a query
    with no key left gets a zero context vector (before the output projection).
    """
    x = x.double()
    keep = [True] * x.shape[0] if keep is None else keep
    project = {
        name: (layer.weight.detach().double(), layer.bias)
        for name, layer in [
            ("q", module.W_query),
            ("k", module.W_key),
            ("v", module.W_value),
            ("o", module.out_proj),
        ]
    }

    def linear(name, inputs):
        weight, bias = project[name]
        out = inputs @ weight.T
        return out + bias.detach().double() if bias is not None else out

    queries, keys, values = linear("q", x), linear("k", x), linear("v", x)
    tokens, head_dim = x.shape[0], module.head_dim
    heads = []
    for h in range(module.num_heads):
        part = slice(h * head_dim, (h + 1) * head_dim)
        context = torch.zeros(tokens, head_dim, dtype=torch.float64)
        for i in range(tokens):
            visible = [j for j in range(max(0, i - module.window + 1), i + 1) if keep[j]]
            if not visible:
                continue
            scores = [
                float(queries[i, part] @ keys[j, part]) / math.sqrt(head_dim) for j in visible
            ]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            for j, e in zip(visible, exps, strict=True):
                context[i] += e / sum(exps) * values[j, part]
        heads.append(context)
    return linear("o", torch.cat(heads, dim=-1))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    ("window", "num_heads", "qkv_bias"), [(1, 1, False), (2, 2, True), (3, 4, False), (9, 2, False)]
)
def test_matches_a_float64_reference(kernel, window, num_heads, qkv_bias):
    torch.manual_seed(0)
    module = SlidingWindowAttention(
        d_in=6,
        d_out=8,
        context_length=9,
        num_heads=num_heads,
        qkv_bias=qkv_bias,
        window=window,
        kernel=kernel,
    ).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    plain = module(x)
    context, _ = module(x, need_weights=True)
    for b in range(2):
        expected = reference(module, x[b])
        torch.testing.assert_close(plain[b], expected, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(context[b], expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_weights_form_the_window_band(kernel):
    module = attnkit.create(
        "window", d_in=4, d_out=4, context_length=8, num_heads=2, window=3, kernel=kernel
    )
    _, weights = module(torch.randn(2, 8, 4), need_weights=True)
    band = torch.tensor([[0 <= i - j < 3 for j in range(8)] for i in range(8)])
    assert weights.shape == (2, 2, 8, 8)
    assert torch.equal(weights > 0, band.expand(2, 2, 8, 8))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 8))


def test_float32_is_close_to_float64():
    torch.manual_seed(0)
    module = SlidingWindowAttention(d_in=6, d_out=8, context_length=9, num_heads=2, window=3)
    x = torch.randn(7, 6)
    torch.testing.assert_close(
        module(x).double(), reference(module, x), atol=1e-5, rtol=1e-5, check_dtype=False
    )


def test_need_weights_with_a_kernel_without_weights_uses_explicit():
    torch.manual_seed(0)
    fused = SlidingWindowAttention(d_in=6, d_out=8, context_length=9, num_heads=2, window=3)
    assert not fused.kernel.returns_weights
    explicit = SlidingWindowAttention(
        d_in=6, d_out=8, context_length=9, num_heads=2, window=3, kernel="explicit"
    )
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, 7, 6)
    context, weights = fused(x, need_weights=True)
    expected_context, expected_weights = explicit(x, need_weights=True)
    torch.testing.assert_close(context, expected_context)
    torch.testing.assert_close(weights, expected_weights)


# --- Padding, with the window -------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_padding_with_the_window(kernel):
    """Left and right padding: outputs at real tokens as without padding; no weight on padding."""
    torch.manual_seed(0)
    module = SlidingWindowAttention(
        d_in=6, d_out=8, context_length=12, num_heads=2, window=3, kernel=kernel
    )
    sentences = [torch.randn(5, 6), torch.randn(8, 6)]
    garbage = torch.randn(12, 6) * 100  # what sits in the padding must not matter
    for side in ("left", "right"):
        x = garbage[None, :10].repeat(2, 1, 1)
        keep = torch.zeros(2, 10, dtype=torch.bool)
        spans = []
        for b, sentence in enumerate(sentences):
            n = len(sentence)
            span = slice(10 - n, 10) if side == "left" else slice(0, n)
            x[b, span], keep[b, span] = sentence, True
            spans.append(span)
        context, weights = module(x, need_weights=True, attention_mask=keep)
        assert torch.isfinite(context).all()
        assert (weights.masked_select(~keep[:, None, None, :]) == 0).all()
        for b, (sentence, span) in enumerate(zip(sentences, spans, strict=True)):
            alone = module(sentence)
            torch.testing.assert_close(context[b, span], alone, atol=1e-5, rtol=1e-5)
            expected = reference(module, x[b], keep[b].tolist())
            torch.testing.assert_close(context[b].double(), expected, atol=1e-5, rtol=1e-5)


def test_an_integer_attention_mask_equals_a_bool_one():
    module = attnkit.create("window", d_in=4, d_out=4, context_length=6, window=2)
    x = torch.randn(2, 6, 4)
    keep = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    torch.testing.assert_close(module(x, attention_mask=keep), module(x, attention_mask=keep == 1))


# --- The KV cache -----------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_cached_decoding_equals_the_full_pass(kernel):
    """A left-padded prompt, then one token at a time: the outputs of the whole sequence."""
    torch.manual_seed(0)
    module = SlidingWindowAttention(
        d_in=6, d_out=8, context_length=12, num_heads=2, window=3, kernel=kernel
    ).eval()
    x = torch.randn(2, 10, 6)
    keep = torch.ones(2, 10, dtype=torch.bool)
    keep[0, :3] = False  # the first sequence's prompt is 3 tokens shorter
    with torch.no_grad():
        full = module(x, attention_mask=keep)
        cache = attnkit.KVCache()
        steps = [module(x[:, :4], attention_mask=keep[:, :4], cache=cache)]
        for t in range(4, 10):
            context, weights = module(
                x[:, t : t + 1], need_weights=True, attention_mask=keep[:, : t + 1], cache=cache
            )
            assert weights.shape == (2, 2, 1, t + 1)
            assert (weights[..., : t + 1 - 3] == 0).all()  # outside the window
            steps.append(context)
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(steps, dim=1)[keep], full[keep], atol=1e-5, rtol=1e-5)


# --- The chunked kernel ----------------------------------------------------------------------


def kernel_inputs(
    batch=2, heads=4, kv_heads=2, tokens_q=10, tokens_k=10, head_dim=8, dtype=torch.float32
):
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_()

    return (
        random(batch, heads, tokens_q, head_dim),
        random(batch, kv_heads, tokens_k, head_dim),
        random(batch, kv_heads, tokens_k, head_dim + 2),
    )


def mask_kinds(batch: int, tokens_k: int) -> dict[str, masks.Mask | None]:
    keep = torch.ones(batch, tokens_k, dtype=torch.bool)
    keep[0, :3] = False  # left padding
    keep[-1, -2:] = False  # right padding
    ids = torch.arange(tokens_k).div(4, rounding_mode="floor").expand(batch, -1)
    return {
        "none": None,
        "causal": masks.causal(),
        "window": masks.sliding_window(3),
        "padding": masks.causal() & masks.padding(keep),
        "document": masks.causal() & masks.document(ids),
        "prefix_lm": masks.prefix_lm(4),
        "all_padding": masks.padding(torch.zeros(batch, tokens_k, dtype=torch.bool)),
    }


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 10, 64], ids=lambda size: f"chunk{size}")
@pytest.mark.parametrize("mask", list(mask_kinds(2, 10)))
@pytest.mark.parametrize("tokens_q", [10, 3], ids=["full", "past"])
def test_chunked_equals_explicit(chunk_size, mask, tokens_q):
    """Chunks that divide the 10 queries (1, 5, 10) and that do not (3, 64): outputs, weights
    and gradients as the explicit kernel's, with 4 heads on 2 kv_heads, and for 3 queries
    after 7 cached keys. (The kernel kit, above, checks chunks of 128 and of 7 on 200.)"""
    query, key, value = kernel_inputs(tokens_q=tokens_q)
    mask = mask_kinds(2, 10)[mask]
    explicit = attnkit.get_kernel("explicit")
    for need_weights in (False, True):
        context, weights = CHUNKED(
            query, key, value, mask=mask, need_weights=need_weights, chunk_size=chunk_size
        )
        expected, expected_weights = explicit(query, key, value, mask=mask, need_weights=True)
        torch.testing.assert_close(context, expected, atol=1e-5, rtol=1e-5)
        if need_weights:
            torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)
        else:
            assert weights is None
    gradients = torch.autograd.grad(context.square().sum(), (query, key, value))
    expected_gradients = torch.autograd.grad(expected.square().sum(), (query, key, value))
    for got, want in zip(gradients, expected_gradients, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an operation creates while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_chunked_never_holds_more_than_a_chunk_of_scores():
    tokens, chunk_size = 256, 32
    query = key = value = torch.randn(1, 1, tokens, 4)
    mask = masks.causal() & masks.padding(torch.ones(1, tokens, dtype=torch.bool))
    with torch.no_grad(), LargestTensor() as chunked:
        CHUNKED(query, key, value, mask=mask, chunk_size=chunk_size)
    with torch.no_grad(), LargestTensor() as explicit:
        attnkit.get_kernel("explicit")(query, key, value, mask=mask)
    assert chunked.largest <= chunk_size * tokens < explicit.largest


def test_chunked_serves_other_variants_too():
    torch.manual_seed(0)
    fused = attnkit.create("multihead", d_in=8, d_out=8, context_length=16, num_heads=2)
    chunked = attnkit.create(
        "multihead", d_in=8, d_out=8, context_length=16, num_heads=2, kernel="chunked"
    )
    chunked.load_state_dict(fused.state_dict())
    x = torch.randn(2, 16, 8)
    torch.testing.assert_close(chunked(x), fused(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int, got 0"),
        ({"chunk_size": 2.0}, ValueError, "chunk_size must be a positive int, got 2.0"),
        ({"block": 4}, TypeError, r"takes one option, chunk_size; got block \(choose a kernel"),
    ],
)
def test_chunked_refuses_bad_options(options, error, message):
    query, key, value = kernel_inputs()
    with pytest.raises(error, match=message):
        CHUNKED(query, key, value, **options)


def test_chunked_refuses_a_mask_made_for_another_shape():
    query, key, value = kernel_inputs()
    mask = masks.padding(torch.ones(3, 10, dtype=torch.bool))  # 3 sequences, not 2
    with pytest.raises(ValueError, match=r"built for shape \(3, 10\)"):
        CHUNKED(query, key, value, mask=mask)


# --- Discovery and errors -----------------------------------------------------------------


def test_found_through_its_entry_point():
    assert attnkit.get_variant("window") is SlidingWindowAttention
    kernel = attnkit.get_kernel("chunked")
    assert kernel.function is attnkit_window.chunked and kernel.returns_weights
    assert kernel.plugin == "window"
    info = next(p for p in attnkit.list_plugins() if p.name == "window")
    assert info.distribution == "attnkit-window"
    assert info.version == version("attnkit-window") == attnkit_window.__version__
    assert info.variants == ("window",) and info.kernels == ("chunked",)
    assert not info.builtin and info.error is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"window": 2.5}, "window must be a positive integer, got 2.5"),
        ({"num_heads": 3}, r"d_out \(8\) must be divisible by num_heads \(3\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        attnkit.create("window", **{"d_in": 4, "d_out": 8, "context_length": 6, **arguments})


@pytest.mark.parametrize(
    ("kernel", "error", "message"),
    [
        ("spda", attnkit.UnknownKernelError, "unknown attention kernel 'spda'; did you mean"),
        (3, TypeError, r"kernel must be the name of a registered kernel \(chunked, .*\) or an "),
        (None, TypeError, "or an attnkit.Kernel, got None"),
    ],
)
def test_a_bad_kernel_is_refused(kernel, error, message):
    with pytest.raises(error, match=message):
        SlidingWindowAttention(d_in=4, d_out=4, context_length=6, kernel=kernel)


def test_docstring_examples():
    result = doctest.testmod(attnkit_window, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
