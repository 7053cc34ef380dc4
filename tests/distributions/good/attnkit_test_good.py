"""A well-behaved third-party plugin: one non-causal variant, uniform attention."""

import attnkit


class UniformAttention(attnkit.Attention):
    """Every token attends equally to every token."""

    name = "uniform_good"

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
        context = weights[:, 0] @ x
        return (context, weights) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(UniformAttention)
