"""Close-match suggestions for names a user mistyped: one home for "did you mean".

Examples:
    >>> did_you_mean("casual", ["causal", "multihead"])
    "did you mean 'causal'?"
    >>> did_you_mean("xyz", ["causal"])
    ''
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["close_matches", "did_you_mean"]


def close_matches(word: object, choices: Iterable[str], n: int = 1) -> list[str]:
    """Up to ``n`` of ``choices`` close to ``word``, closest first; a case-only difference counts.

    Bounded work: `difflib` compares against each choice once, so a long list of
    choices costs linear time, never a search over derived candidates.
    """
    word = str(word)
    choices = list(dict.fromkeys(choices))
    matches = difflib.get_close_matches(word, choices, n=n, cutoff=0.6)
    matches += [c for c in choices if c.lower() == word.lower() and c not in matches]
    return matches[: max(n, 1)]


def did_you_mean(word: object, choices: Iterable[str], n: int = 1) -> str:
    """``"did you mean 'a'?"`` (or ``'a' or 'b'``) for the close matches, or ``""`` if none."""
    matches = close_matches(word, choices, n)
    if not matches:
        return ""
    return f"did you mean {' or '.join(repr(m) for m in matches)}?"
