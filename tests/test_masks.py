"""attnkit.masks against loops over indices; combinations, caching, errors, FlexAttention."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from attnkit import masks
from attnkit.masks import Mask

# (tokens_q, tokens_k): no cache, a cache with several new tokens, one decoding step.
SHAPES = [(6, 6), (3, 8), (1, 7)]


# -- independent references: explicit loops over absolute positions ----------------------


def loops(batch, tokens_q, tokens_k, allowed):
    """A (batch, 1, tokens_q, tokens_k) bool tensor from ``allowed(b, q, k)``; q is absolute."""
    offset = tokens_k - tokens_q
    rows = [
        [[allowed(b, offset + i, k) for k in range(tokens_k)] for i in range(tokens_q)]
        for b in range(batch)
    ]
    return torch.tensor(rows, dtype=torch.bool).unsqueeze(1)


def reference(name, arg, batch, tokens_q, tokens_k):
    if name == "causal":
        return loops(batch, tokens_q, tokens_k, lambda b, q, k: q >= k)
    if name == "sliding_window":
        return loops(batch, tokens_q, tokens_k, lambda b, q, k: 0 <= q - k < arg)
    if name == "prefix_lm":
        return loops(batch, tokens_q, tokens_k, lambda b, q, k: k < arg or q >= k)
    if name == "padding":
        rows = arg.tolist()
        return loops(batch, tokens_q, tokens_k, lambda b, q, k: bool(rows[b][k]))
    if name == "document":
        rows = arg.tolist()
        return loops(batch, tokens_q, tokens_k, lambda b, q, k: rows[b][q] == rows[b][k])
    raise AssertionError(name)


def build(name, arg):
    return masks.causal() if name == "causal" else getattr(masks, name)(arg)


def dense(mask, batch, heads, tokens_q, tokens_k):
    """``mask.to_dense`` expanded to its full shape, checking it broadcasts as documented."""
    allowed = mask.to_dense(batch, heads, tokens_q, tokens_k)
    assert allowed.dtype == torch.bool
    assert allowed.shape == (
        batch if mask.depends_on_batch else 1,
        heads if mask.depends_on_head else 1,
        tokens_q,
        tokens_k,
    )
    return allowed.expand(batch, heads, tokens_q, tokens_k)


def padding_rows(tokens):
    """Two rows of 0/1: the first left-padded by 2, the second right-padded by 3."""
    return torch.tensor([[0, 0] + [1] * (tokens - 2), [1] * (tokens - 3) + [0] * 3])


def document_rows(tokens):
    """Two packed rows: documents of lengths 2, 3, rest; and one long document then one short."""
    first = [0] * 2 + [1] * 3 + [2] * (tokens - 5)
    second = [7] * (tokens - 2) + [3] * 2
    return torch.tensor([first, second])


def cases(tokens_k):
    return [
        ("causal", None),
        ("sliding_window", 1),
        ("sliding_window", 3),
        ("prefix_lm", 0),
        ("prefix_lm", 2),
        ("padding", padding_rows(tokens_k)),
        ("padding", padding_rows(tokens_k).bool()),
        ("document", document_rows(tokens_k)),
    ]


@pytest.mark.parametrize(("tokens_q", "tokens_k"), SHAPES)
def test_each_mask_matches_loops_over_indices(tokens_q, tokens_k):
    for name, arg in cases(tokens_k):
        expected = reference(name, arg, 2, tokens_q, tokens_k).expand(2, 3, tokens_q, tokens_k)
        got = dense(build(name, arg), 2, 3, tokens_q, tokens_k)
        assert torch.equal(got, expected), (name, arg)


@pytest.mark.parametrize(("tokens_q", "tokens_k"), SHAPES)
def test_and_or_invert_match_loops(tokens_q, tokens_k):
    all_cases = cases(tokens_k)
    for (name_a, arg_a), (name_b, arg_b) in itertools.combinations(all_cases, 2):
        ref_a = reference(name_a, arg_a, 2, tokens_q, tokens_k)
        ref_b = reference(name_b, arg_b, 2, tokens_q, tokens_k)
        mask_a, mask_b = build(name_a, arg_a), build(name_b, arg_b)
        shape = (2, 1, tokens_q, tokens_k)
        assert torch.equal(dense(mask_a & mask_b, *shape), (ref_a & ref_b).expand(shape))
        assert torch.equal(dense(mask_a | mask_b, *shape), (ref_a | ref_b).expand(shape))
        assert torch.equal(dense(~mask_a, *shape), (~ref_a).expand(shape))


def test_a_causal_sliding_window_needs_no_causal_mask():
    window = masks.sliding_window(3)
    assert torch.equal((masks.causal() & window).to_dense(1, 1, 5, 9), window.to_dense(1, 1, 5, 9))


def test_repr_is_the_expression():
    pad = masks.padding(torch.ones(2, 5, dtype=torch.long))
    causal, window = masks.causal(), masks.sliding_window(4)
    assert repr(causal & window) == "causal() & sliding_window(4)"
    assert (
        repr(causal & window & pad)
        == "causal() & sliding_window(4) & padding(<attention_mask 2x5>)"
    )
    assert repr((causal | masks.prefix_lm(2)) & pad) == (
        "(causal() | prefix_lm(2)) & padding(<attention_mask 2x5>)"
    )
    assert (
        repr(causal | window & pad)
        == "causal() | sliding_window(4) & padding(<attention_mask 2x5>)"
    )
    assert repr(~(causal & window)) == "~(causal() & sliding_window(4))"
    assert repr(~causal & window) == "~causal() & sliding_window(4)"
    assert repr(masks.document(torch.zeros(3, 4, dtype=torch.int32))) == "document(<ids 3x4>)"


def test_flags_for_kernels():
    pad = masks.padding(torch.ones(1, 4, dtype=torch.bool))
    assert masks.causal() is masks.causal()
    assert masks.causal().is_causal
    for mask in (
        masks.causal() & pad,
        masks.prefix_lm(0),
        masks.sliding_window(4),
        ~masks.causal(),
    ):
        assert not mask.is_causal, mask
    assert not masks.causal().depends_on_batch and not masks.causal().depends_on_head
    assert pad.depends_on_batch and not pad.depends_on_head
    assert (masks.causal() & pad).depends_on_batch
    assert masks.document(torch.zeros(1, 4, dtype=torch.long)).depends_on_batch


def test_a_custom_mask_mod_works_as_flex_attention_defines_it():
    def every_other_head(b, h, q_idx, kv_idx):
        return (h % 2 == 0) | (q_idx == kv_idx)

    mask = Mask(every_other_head, depends_on_batch=False)
    assert repr(mask) == "every_other_head"
    allowed = mask.to_dense(3, 4, 2, 5)
    assert allowed.shape == (1, 4, 2, 5)
    assert allowed[0, 0].all() and allowed[0, 2].all()
    assert torch.equal(allowed[0, 1].long(), torch.tensor([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]))
    assert repr(Mask(every_other_head, "odd heads see themselves")) == "odd heads see themselves"


def test_the_mask_keeps_its_own_copy_of_the_tensor():
    attention_mask = torch.ones(1, 4, dtype=torch.bool)
    mask = masks.padding(attention_mask)
    attention_mask[0, 0] = False
    assert mask.to_dense(1, 1, 4, 4).all()


# -- the masks in an attention computation ------------------------------------------------


def attend(query, key, value, allowed):
    """Float64 reference attention; a row with nothing allowed gives zeros."""
    scores = query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ value


def test_outputs_at_real_tokens_do_not_depend_on_the_side_of_the_padding():
    torch.manual_seed(0)
    real, tokens = 5, 8
    x = torch.randn(1, 1, real, 4, dtype=torch.float64)
    noise = lambda n: torch.randn(1, 1, n, 4, dtype=torch.float64) * 100  # noqa: E731
    left = torch.cat([noise(tokens - real), x], dim=2)
    right = torch.cat([x, noise(tokens - real)], dim=2)
    both = torch.cat([left, right])
    attention_mask = torch.tensor([[0] * (tokens - real) + [1] * real, [1] * real + [0] * 3])
    mask = masks.causal() & masks.padding(attention_mask)
    out = attend(both, both, both, mask.to_dense(2, 1, tokens, tokens))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, :, tokens - real :], out[1, :, :real], rtol=0, atol=1e-12)
    unpadded = attend(x, x, x, masks.causal().to_dense(1, 1, real, real))
    torch.testing.assert_close(out[1, :, :real], unpadded[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_changing_one_document_never_changes_another(causal):
    tokens, batch, heads, width = 11, 2, 2, 4
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3], [5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4]])
    mask = masks.document(ids) & masks.causal() if causal else masks.document(ids)
    allowed = mask.to_dense(batch, heads, tokens, tokens)
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        q, k, v = (
            torch.randn(batch, heads, tokens, width, generator=generator, dtype=torch.float64)
            for _ in range(3)
        )
        before = attend(q, k, v, allowed)
        for row in range(batch):
            for doc in ids[row].unique().tolist():
                inside = (ids[row] == doc).view(1, tokens, 1)
                changed = [t.clone() for t in (q, k, v)]
                for t in changed:
                    t[row] += inside * torch.randn(t[row].shape, generator=generator) * 10
                after = attend(*changed, allowed)
                assert not torch.equal(
                    after[row][:, ids[row] == doc], before[row][:, ids[row] == doc]
                )
                outside = ids[row] != doc
                assert torch.equal(after[row][:, outside], before[row][:, outside])
                other = 1 - row
                assert torch.equal(after[other], before[other])


def test_the_dense_mask_works_as_an_sdpa_attn_mask():
    torch.manual_seed(0)
    q = torch.randn(2, 2, 3, 4)
    k, v = torch.randn(2, 2, 8, 4), torch.randn(2, 2, 8, 4)
    attention_mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]])
    mask = masks.sliding_window(4) & masks.padding(attention_mask)
    allowed = mask.to_dense(2, 2, 3, 8)
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    expected = attend(q.double(), k.double(), v.double(), allowed).float()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# -- caching ---------------------------------------------------------------------------


def test_materialised_masks_are_cached_per_shape():
    mask = masks.sliding_window(3)
    first = mask.to_dense(2, 4, 5, 5)
    assert mask.to_dense(2, 4, 5, 5) is first
    assert mask.to_dense(2, 4, 5, 5, device="cpu") is first
    # It does not depend on the batch or the heads, so those share one entry.
    assert mask.to_dense(8, 12, 5, 5) is first
    assert mask.to_dense(2, 4, 4, 5) is not first
    assert mask.to_dense(2, 4, 5, 6) is not first
    pad = masks.padding(torch.ones(2, 5, dtype=torch.long))
    assert pad.to_dense(2, 4, 5, 5) is pad.to_dense(2, 1, 5, 5)


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    mask = masks.prefix_lm(1)
    size = Mask.cache_size
    kept = mask.to_dense(1, 1, 1, 1)
    first_out = mask.to_dense(1, 1, 1, 2)
    for tokens in range(3, size + 1):  # fill the cache
        mask.to_dense(1, 1, 1, tokens)
    assert mask.to_dense(1, 1, 1, 1) is kept  # used again: now the most recent
    mask.to_dense(1, 1, 1, size + 1)  # one more entry than fits
    assert mask.to_dense(1, 1, 1, 1) is kept
    assert mask.to_dense(1, 1, 1, 2) is not first_out


def test_a_mask_first_built_in_inference_mode_serves_autograd_later():
    mask = masks.sliding_window(2) & masks.padding(torch.tensor([[1, 1, 1, 0]]))
    with torch.inference_mode():
        allowed = mask.to_dense(1, 1, 4, 4)
    scores = torch.randn(1, 1, 4, 4, requires_grad=True)
    scores.masked_fill(~allowed, float("-inf")).softmax(-1).sum().backward()
    assert scores.grad is not None


def test_masks_built_from_tensors_move_to_the_requested_device():
    pad = masks.padding(torch.tensor([[1, 1, 0]]))
    for mask in (pad, masks.causal() & pad, ~pad):
        allowed = mask.to_dense(1, 1, 3, 3, device="meta")
        assert allowed.device.type == "meta" and allowed.shape == (1, 1, 3, 3)
        assert mask.to_dense(1, 1, 3, 3).device.type == "cpu"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: masks.sliding_window(0), ValueError, r"window must be a positive int, got 0"),
        (lambda: masks.sliding_window(2.5), TypeError, r"positive int, got float 2.5"),
        (lambda: masks.sliding_window(True), TypeError, r"positive int, got bool True"),
        (lambda: masks.prefix_lm(-1), ValueError, r"prefix must be a non-negative int, got -1"),
        (lambda: masks.prefix_lm("3"), TypeError, r"non-negative int, got str '3'"),
        (
            lambda: masks.padding([[1, 0]]),
            TypeError,
            r"attention_mask must be a torch.Tensor .*list",
        ),
        (
            lambda: masks.padding(torch.ones(4)),
            ValueError,
            r"shape \(batch, tokens\), got .*\(4,\)",
        ),
        (lambda: masks.padding(torch.ones(1, 4)), TypeError, r"bool or integer .*torch.float32"),
        (
            lambda: masks.padding(torch.tensor([[1, 2, 0, -1]])),
            ValueError,
            r"only 0 and 1 .*found -1, 2",
        ),
        (lambda: masks.document(torch.zeros(2, 3)), TypeError, r"integer tensor, got .*float32"),
        (lambda: masks.document(torch.ones(2, 3).bool()), TypeError, r"integer .*torch.bool"),
        (lambda: masks.document(torch.zeros(1, 2, 3).long()), ValueError, r"got shape \(1, 2, 3\)"),
        (lambda: masks.document((0, 1)), TypeError, r"ids must be a torch.Tensor .*tuple"),
        (lambda: Mask(3), TypeError, r"Mask expects a mask_mod function .*got int"),
        (lambda: masks.causal() & 1, TypeError, r"for &: 'Mask' and 'int'"),
        (lambda: 1 | masks.causal(), TypeError, r"for \|: 'int' and 'Mask'"),
        (
            lambda: masks.causal() & (lambda b, h, q, k: q >= k),
            TypeError,
            r"'function'.*wrap a mask_mod function in attnkit.masks.Mask",
        ),
        (
            lambda: masks.causal().to_dense(1, 1, 5, 3),
            ValueError,
            r"tokens_q \(5\) exceeds tokens_k \(3\)",
        ),
        (
            lambda: masks.causal().to_dense(0, 1, 2, 2),
            ValueError,
            r"batch must be a positive int, got 0",
        ),
        (lambda: masks.causal().to_dense(1, True, 2, 2), ValueError, r"heads must be .*got True"),
        (
            lambda: masks.padding(torch.ones(2, 5, dtype=torch.long)).to_dense(3, 1, 5, 5),
            ValueError,
            r"built for shape \(2, 5\), but the attention has batch 3 and 5 key tokens",
        ),
        (
            lambda: (masks.causal() & masks.document(torch.zeros(1, 4).long())).to_dense(
                1, 1, 4, 6
            ),
            ValueError,
            r"document\(ids\) was built for shape \(1, 4\).*"
            r"expected \(batch, tokens_k\) = \(1, 6\)",
        ),
        (
            lambda: Mask(lambda b, h, q, k: q - k).to_dense(1, 1, 2, 2),
            TypeError,
            r"returned torch.int64; a mask_mod must return a bool tensor",
        ),
        (
            lambda: masks.causal().to_block_mask(1, 1, 8, 8, block_size=0),
            ValueError,
            r"block_size must be a positive int, got 0",
        ),
    ],
)
def test_errors_say_what_was_expected_and_what_was_given(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- FlexAttention -----------------------------------------------------------------------

EAGER_FLEX = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


@EAGER_FLEX
@pytest.mark.parametrize(
    ("batch", "heads", "tokens_q", "tokens_k", "block_size"),
    [(1, 1, 4, 12, 8), (2, 2, 16, 16, 128)],
)
def test_the_block_mask_gives_the_dense_masks_attention(
    batch, heads, tokens_q, tokens_k, block_size
):
    from torch.nn.attention.flex_attention import flex_attention

    attention_mask = torch.ones(batch, tokens_k, dtype=torch.long)
    attention_mask[-1, :3] = 0
    ids = torch.tensor([[0] * 5 + [1] * (tokens_k - 5)] * batch)
    mask = (masks.causal() & masks.sliding_window(5) | masks.prefix_lm(2)) & masks.padding(
        attention_mask
    )
    if batch > 1:
        mask = mask & masks.document(ids)
    torch.manual_seed(0)
    q = torch.randn(batch, heads, tokens_q, 8)
    k, v = torch.randn(batch, heads, tokens_k, 8), torch.randn(batch, heads, tokens_k, 8)
    block_mask = mask.to_block_mask(batch, heads, tokens_q, tokens_k, block_size=block_size)
    assert mask.to_block_mask(batch, heads, tokens_q, tokens_k, block_size=block_size) is block_mask
    assert block_mask.shape == (batch, 1, tokens_q, tokens_k)
    got = flex_attention(q, k, v, block_mask=block_mask)
    allowed = mask.to_dense(batch, heads, tokens_q, tokens_k)
    expected = attend(q.double(), k.double(), v.double(), allowed).float()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_mask_mod_goes_straight_to_create_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask

    block_mask = create_block_mask(
        masks.sliding_window(8).mask_mod, None, None, 32, 32, device="cpu", BLOCK_SIZE=8
    )
    assert block_mask.to_dense().long().tolist() == [
        [[[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]]
    ]


def test_a_dense_mask_from_elsewhere_is_used_as_it_is_and_combines():
    allowed = torch.rand(2, 1, 3, 5) > 0.3
    mask = masks.dense(allowed)
    assert torch.equal(mask.to_dense(2, 4, 3, 5), allowed)
    combined = (masks.causal() & mask).to_dense(2, 4, 3, 5)
    reference = torch.zeros(2, 1, 3, 5, dtype=torch.bool)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                reference[b, 0, i, j] = bool(allowed[b, 0, i, j]) and j <= i + 2
    assert torch.equal(combined, reference)
    with pytest.raises(TypeError, match="dense expects a bool tensor"):
        masks.dense(allowed.float())
    with pytest.raises(ValueError, match=r"with tokens_q <= tokens_k, got \(2, 1, 5, 3\)"):
        masks.dense(torch.ones(2, 1, 5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="covers batch 2 and 5 key tokens"):
        mask.to_dense(3, 1, 3, 5)
