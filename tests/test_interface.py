"""The `attnkit.Attention` base class: metadata defaults and the checks it runs for variants."""

from __future__ import annotations

import pytest
import torch

import attnkit


class Recording(attnkit.Attention):
    """Records the shapes its forward sees.

    A second paragraph that the summary leaves out.
    """

    name = "recording"

    def __init__(self, d_in=None, context_length=None):
        super().__init__(d_in=d_in, context_length=context_length)
        self.seen = []

    def forward(self, x, need_weights=False):
        self.seen.append(tuple(x.shape))
        tokens = x.shape[1]
        weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
        context = weights[:, 0] @ x
        return (context, weights) if need_weights else context


def test_summary_defaults_to_the_first_docstring_line():
    assert Recording.summary == "Records the shapes its forward sees."


def test_an_explicit_summary_wins():
    class Summarised(Recording):
        """Docstring."""

        summary = "Explicit."

    assert Summarised.summary == "Explicit."


def test_metadata_defaults():
    assert Recording.stage is None
    assert Recording.causal is False
    assert Recording.plugin is None


def test_forward_always_sees_a_batch():
    module = Recording(d_in=3)
    module(torch.randn(5, 3))
    module(torch.randn(2, 5, 3))
    assert module.seen == [(1, 5, 3), (2, 5, 3)]


def test_unbatched_results_drop_the_batch_axis():
    context, weights = Recording(d_in=3)(torch.randn(5, 3), need_weights=True)
    assert context.shape == (5, 3)
    assert weights.shape == (1, 5, 5)


def test_checks_run_without_the_subclass_calling_them():
    batched = r"expected input of shape \(batch, tokens, 4\), got \(2, 5, 3\)"
    with pytest.raises(ValueError, match=batched):
        Recording(d_in=4)(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(tokens, 4\), got \(5, 3\)"):
        Recording(d_in=4)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="6 tokens but context_length is 5"):
        Recording(context_length=5)(torch.randn(6, 3))


def test_a_variant_without_d_in_accepts_any_width():
    module = Recording()
    module(torch.randn(2, 4, 7))
    module(torch.randn(2, 4, 2))
    either = r"\(batch, tokens, d_in\) or \(tokens, d_in\), got \(7,\)"
    with pytest.raises(ValueError, match=either):
        module(torch.randn(7))


def test_a_subclass_calling_super_forward_is_checked_once_per_level():
    class Doubled(Recording):
        """Calls its parent's forward."""

        name = "doubled"

        def forward(self, x, need_weights=False):
            return 2 * super().forward(x, need_weights=False)

    module = Doubled(d_in=3)
    assert module(torch.ones(4, 3)).shape == (4, 3)
    assert module.seen == [(1, 4, 3)]


def test_forward_keeps_its_name_and_docstring():
    assert Recording.forward.__name__ == "forward"
    assert "Records" not in (Recording.forward.__doc__ or "")


def test_sizes_show_in_repr():
    attention = attnkit.create("causal", d_in=3, d_out=2, context_length=6)
    assert "d_in=3, d_out=2, context_length=6" in repr(attention)


def test_check_dropout():
    from attnkit.interface import check_dropout

    assert check_dropout(0, "X") == 0.0
    for bad in (-0.01, 1, 2, None, True):
        with pytest.raises(ValueError, match=r"X: dropout must be in \[0, 1\)"):
            check_dropout(bad, "X")


def test_position_ids_default_to_positions_after_the_cache():
    seen = []

    class Positional(attnkit.Attention):
        """Records the positions it is given."""

        name = "positional_example"
        causal = True
        capabilities = frozenset({"position_ids", "kv_cache"})

        def forward(self, x, need_weights=False, *, position_ids=None, cache=None):
            seen.append(position_ids)
            if cache is not None:
                cache.append(x[:, None], x[:, None])
            return x

    module = Positional()
    module(torch.randn(2, 3, 4))
    cache = attnkit.KVCache()
    module(torch.randn(2, 3, 4), cache=cache)
    module(torch.randn(2, 2, 4), cache=cache)
    module(torch.randn(3, 4), position_ids=torch.tensor([5, 6, 7]))
    assert [p.tolist() for p in seen] == [
        [[0, 1, 2], [0, 1, 2]],
        [[0, 1, 2], [0, 1, 2]],
        [[3, 4], [3, 4]],
        [[5, 6, 7]],
    ]
    assert Positional.supports_kv_cache
    with pytest.raises(
        ValueError, match=r"position_ids must have shape \(batch, tokens\) = \(2, 3\)"
    ):
        module(torch.randn(2, 3, 4), position_ids=torch.arange(3))
    with pytest.raises(TypeError, match="position_ids must be an integer tensor"):
        module(torch.randn(2, 3, 4), position_ids=torch.zeros(2, 3))


def test_capabilities_and_supports_kv_cache_stay_in_step():
    class OldStyle(attnkit.Attention):
        name = "old_style_example"
        supports_kv_cache = True

        def forward(self, x, need_weights=False, *, cache=None):
            return x

    assert OldStyle.capabilities == {"weights", "kv_cache"}
    with pytest.raises(TypeError, match=r"unknown \['masks'\]; choose from attention_mask"):

        class Wrong(attnkit.Attention):
            capabilities = frozenset({"masks"})
