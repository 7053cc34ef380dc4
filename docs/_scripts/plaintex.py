r"""Formulas in plain words, for the search index.

The pages write math as TeX (``\(\sqrt{d_k}\)``), which KaTeX typesets in the
browser. The search index is built from the page before that happens, so without
help a search result would show the raw TeX and a search for "sqrt" would find
nothing (the word is glued to its backslash and braces). `plain` writes a formula
the way one would type it in an email, ``sqrt(d_k)``, ``softmax((Q K^T)/sqrt(d_k)) V``,
and `index_text` replaces every formula of an indexed text by that form.

    >>> plain(r"\frac{Q K^\top}{\sqrt{d_k}}")
    '(Q K^T)/sqrt(d_k)'
    >>> plain(r"X \in \mathbb{R}^{T \times d_\text{in}}")
    'X ∈ R^(T × d_in)'
    >>> index_text(r"<p>scores divided by \(\sqrt{d_k}\)</p> <code>\(x\)</code>")
    '<p>scores divided by sqrt(d_k)</p> <code>\\(x\\)</code>'
"""

# Writing Greek letters and mathematical signs is this module's job.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import html
import re

__all__ = ["index_text", "plain"]

# Commands that stand for a character or a word.
SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ",
    "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ",
    "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ",
    "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ",
    "Psi": "Ψ", "Omega": "Ω", "top": "T", "intercal": "T", "infty": "∞", "cdot": "·",
    "times": "×", "in": "∈", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠",
    "neq": "≠", "approx": "≈", "sim": "~", "to": "→", "rightarrow": "→", "mapsto": "↦",
    "leftarrow": "←", "gets": "←", "odot": "⊙", "otimes": "⊗", "oplus": "⊕", "partial": "∂",
    "nabla": "∇", "dots": "…", "ldots": "…", "cdots": "…", "vdots": "⋮", "ddots": "⋱",
    "mid": "|", "lvert": "|", "rvert": "|", "vert": "|", "lVert": "‖", "rVert": "‖",
    "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "pm": "±", "mp": "∓", "prime": "′", "ell": "ℓ", "{": "{", "}": "}", "%": "%", "_": "_",
    "&": "&", "#": "#", "$": "$", "lbrace": "{", "rbrace": "}", "ast": "*",
    "star": "*", "circ": "∘", "forall": "for all", "exists": "exists", "sum": "sum",
    "prod": "prod", "max": "max", "min": "min", "exp": "exp", "log": "log", "ln": "ln",
    "sin": "sin", "cos": "cos", "arg": "arg", "argmax": "argmax", "argmin": "argmin",
    "lim": "lim", "det": "det", "sup": "sup", "inf": "inf",
}  # fmt: skip
# Spacing and sizing commands: a space, or nothing.
SPACES = {",": " ", ";": " ", ":": " ", " ": " ", "quad": " ", "qquad": " ", "!": ""}
DROPPED = {
    "left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
    "displaystyle", "textstyle", "scriptstyle", "limits", "nolimits", "nonumber", "notag",
}  # fmt: skip
# Commands whose argument is shown as it is.
TEXT = {
    "text", "textrm", "textbf", "textit", "texttt", "mathrm", "mathbf", "mathit", "mathsf",
    "mathtt", "mathcal", "mathbb", "mathfrak", "boldsymbol", "bm", "operatorname",
    "underbrace", "overbrace", "hat", "tilde", "bar", "vec", "dot", "widehat", "widetilde",
    "overline", "underline", "mathop",
}  # fmt: skip
# Commands with arguments that are not shown.
SKIP_ARGUMENTS = {"label": 1, "tag": 1, "color": 1, "begin": 1, "end": 1, "hspace": 1, "vspace": 1}

_TOKEN = re.compile(r"\\([A-Za-z]+|.)|([{}^_&~])|(\s+)|([^\\{}^_&~\s]+)", re.DOTALL)
_SIMPLE = re.compile(r"[\w′.∞·…]+(?:\([^()]*\))?|\([^()]*\)")


class _Parser:
    def __init__(self, tex: str) -> None:
        self.tokens = [match.groups() for match in _TOKEN.finditer(tex)]
        self.position = 0

    def _next(self):
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _group(self) -> str:
        """The next argument: a braced group, a command, or a single character."""
        while self.position < len(self.tokens) and self.tokens[self.position][2]:
            self.position += 1  # spaces before an argument
        if self.position >= len(self.tokens):
            return ""
        text = self.tokens[self.position][3]
        if text is None:
            return self._atom()
        self.position += 1
        if len(text) > 1:  # `x_ij` is `x_i` followed by `j`, as in TeX
            self.tokens.insert(self.position, (None, None, None, text[1:]))
        return text[0]

    def _optional(self) -> str | None:
        r"""An optional ``[...]`` argument, if one comes next (``\sqrt[3]{x}``)."""
        if self.position >= len(self.tokens):
            return None
        text = self.tokens[self.position][3] or ""
        if not text.startswith("[") or "]" not in text:
            return None
        argument, rest = text[1:].split("]", 1)
        self.tokens[self.position] = (None, None, None, rest)
        if not rest:
            self.position += 1
        return argument

    def _atom(self) -> str:
        command, special, space, text = self._next()
        if space:
            return " "
        if text is not None:
            return text
        if special == "{":
            return self.sequence(until="}")
        if special in ("^", "_"):
            argument = self._group()
            return special + (argument if _SIMPLE.fullmatch(argument) else f"({argument})")
        if special is not None:  # & (a column), ~ (a space), or a stray }
            return "" if special == "}" else " "
        if command == "\\":  # a new line, perhaps with extra space: \\[0.5em]
            self._optional()
            return "; "
        if command in SPACES:
            return SPACES[command]
        if command in DROPPED:
            return ""
        if command in SKIP_ARGUMENTS:
            for _ in range(SKIP_ARGUMENTS[command]):
                self._group()
            return ""
        if command in SYMBOLS:
            return SYMBOLS[command]
        if command in TEXT:
            return self._group()
        if command in ("frac", "dfrac", "tfrac"):
            numerator, denominator = self._group(), self._group()
            return f"{_wrap(numerator)}/{_wrap(denominator)}"
        if command == "sqrt":
            degree = self._optional()
            argument = self._group()
            return f"root{degree}({argument})" if degree else f"sqrt({argument})"
        return command  # an unknown command, by its name

    def sequence(self, until: str | None = None) -> str:
        parts = []
        while self.position < len(self.tokens):
            if until and self.tokens[self.position][1] == until:
                self.position += 1
                break
            parts.append(self._atom())
        return "".join(parts)


def _wrap(text: str) -> str:
    text = text.strip()
    return text if _SIMPLE.fullmatch(text) else f"({text})"


def plain(tex: str) -> str:
    r"""A TeX formula in plain words and characters: ``\sqrt{d_k}`` becomes ``sqrt(d_k)``."""
    text = _Parser(tex).sequence()
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,;.)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return re.sub(r"(;\s*)+", "; ", text).strip(" ;")


_MATH = re.compile(r"\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_CODE = re.compile(r"(<code>.*?</code>)", re.DOTALL)


def index_text(text: str) -> str:
    r"""``text`` (HTML-escaped, as the search index holds it) with each formula in plain words.

    Inline ``\(...\)`` and display ``\[...\]`` formulas are replaced; code is left as it is.
    """

    def replace(match: re.Match[str]) -> str:
        tex = html.unescape(match.group(1) or match.group(2))
        return html.escape(plain(tex), quote=False)

    parts = _CODE.split(text)  # odd parts are code
    return "".join(part if i % 2 else _MATH.sub(replace, part) for i, part in enumerate(parts))
