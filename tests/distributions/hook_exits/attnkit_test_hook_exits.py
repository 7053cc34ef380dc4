"""A plugin whose hook registers a variant and then calls sys.exit()."""

import sys

import attnkit


class BeforeExit(attnkit.Attention):
    """Registered just before the hook exits; must not stay registered."""

    name = "before_exit"

    def forward(self, x, need_weights=False):
        return x


@attnkit.hookimpl
def register_variants(register):
    register(BeforeExit)
    sys.exit(4)
