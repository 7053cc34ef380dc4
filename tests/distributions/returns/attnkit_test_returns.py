"""A plugin whose hook returns its classes instead of calling register()."""

import attnkit


class Returned(attnkit.Attention):
    """Returned from the hook, so never registered."""

    name = "returned"

    def forward(self, x, need_weights=False):
        return x


@attnkit.hookimpl
def register_variants(register):
    return [Returned]
