"""A plugin whose entry-point name, "good", attnkit-test-good uses too."""

import attnkit


class NamesakeAttention(attnkit.Attention):
    """Uniform attention from a plugin whose name is taken."""

    name = "namesake"

    def forward(self, x, need_weights=False):
        tokens = x.shape[1]
        weights = x.new_full((x.shape[0], 1, tokens, tokens), 1 / tokens)
        context = weights[:, 0] @ x
        return (context, weights) if need_weights else context


@attnkit.hookimpl
def register_variants(register):
    register(NamesakeAttention)
