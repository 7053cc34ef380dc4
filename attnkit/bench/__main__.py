"""``python -m attnkit.bench``: the same as ``attnkit bench``."""

from attnkit.bench.command import main

if __name__ == "__main__":
    raise SystemExit(main())
