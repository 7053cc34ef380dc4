"""A plugin registering a name that attnkit-test-good registers too."""

import attnkit


class AnotherUniformAttention(attnkit.Attention):
    """Uniform attention again, under a name that is already taken."""

    name = "uniform_good"

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
        context = weights[:, 0] @ x
        return (context, weights) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(AnotherUniformAttention)
