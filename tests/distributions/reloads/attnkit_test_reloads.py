"""A plugin whose hook reloads the registry while it is being loaded."""

import attnkit.registry


@attnkit.hookimpl
def register_variants(register):
    attnkit.registry.reload_plugins()
