"""A plugin that fails to import: it needs a module nobody installed."""

import attnkit_missing_dependency  # noqa: F401

import attnkit


@attnkit.hookimpl
def register_variants(register):
    pass
