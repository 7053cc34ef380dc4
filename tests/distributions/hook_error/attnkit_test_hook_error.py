"""A plugin whose hook registers one variant and then raises."""

import attnkit


class HalfRegistered(attnkit.Attention):
    """Registered just before the hook fails; must not stay registered."""

    name = "half_registered"

    def forward(self, x, need_weights=False):
        return x


@attnkit.hookimpl
def register_variants(register):
    register(HalfRegistered)
    raise RuntimeError("the hook failed on purpose")
