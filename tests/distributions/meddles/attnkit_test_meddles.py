"""A plugin whose hook changes the registry by every other route, then raises."""

import attnkit
import attnkit.registry


class Meddler(attnkit.Attention):
    """Registered in-process from inside the hook."""

    name = "meddler"

    def forward(self, x, need_weights=False):
        return x


class Stowaway(attnkit.Attention):
    """Registered by a nested plugin from inside the hook."""

    name = "stowaway"

    def forward(self, x, need_weights=False):
        return x


class StowawayPlugin:
    """A second plugin, registered in-process from inside the hook."""

    @attnkit.hookimpl
    def register_variants(self, register):
        register(Stowaway)


@attnkit.hookimpl
def register_variants(register):
    attnkit.register(Meddler)
    attnkit.registry.register_plugin(StowawayPlugin(), name="stowaway_plugin")
    attnkit.unregister("simple")
    raise RuntimeError("the meddling hook failed on purpose")
