"""A plugin that keeps its register callback and calls it after loading finished."""

import attnkit

kept = []


class Latecomer(attnkit.Attention):
    """Registered too late, through a register callback kept from the hook."""

    name = "latecomer"

    def forward(self, x, need_weights=False):
        return x


class OnTime(attnkit.Attention):
    """Registered while the hook runs."""

    name = "on_time"

    def forward(self, x, need_weights=False):
        return x


@attnkit.hookimpl
def register_variants(register):
    register(OnTime)
    kept.append(register)
