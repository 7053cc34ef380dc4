"""A plugin whose hook implementation is misspelled: register_variant, not register_variants."""

import attnkit


class NeverRegistered(attnkit.Attention):
    """The misspelled hook is never called, so this is never registered."""

    name = "never_registered"

    def forward(self, x, need_weights=False):
        return x


@attnkit.hookimpl
def register_variant(register):
    register(NeverRegistered)
