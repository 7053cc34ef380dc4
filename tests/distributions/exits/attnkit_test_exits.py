"""A plugin that calls sys.exit() while being imported, as a careless script might."""

import sys

sys.exit(3)
