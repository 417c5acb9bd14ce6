"""Which names generated code may bind: identifiers that are not keywords, and not the
builtins the generated code itself calls."""

import keyword
import unicodedata

# Builtins that generated code calls (list gradients, the user's own abs/max/min, and float:
# a backward for numbers turns its inputs into floats).
CALLED_BUILTINS = frozenset({"len", "abs", "max", "min", "float"})


def usable(name: str, taken) -> bool:
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in CALLED_BUILTINS
        and name not in taken
    )


def as_python_reads(name: str) -> str:
    """A name as Python reads it in source: identifiers are compared in NFKC form, so `ﬁ` is
    `fi` and `Ｎ` is `N`. Names given from outside the source (--wrt, --function, --at) are
    read this way too, to find what the syntax tree calls them."""
    return unicodedata.normalize("NFKC", name)
