"""``python -m attnkit``: the ``attnkit`` command (see `attnkit.cli`)."""

from attnkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
