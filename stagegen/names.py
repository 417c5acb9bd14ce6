"""Which names generated code may bind: identifiers that are not keywords, and not the
builtins the generated code itself calls."""

import keyword

# Builtins that generated code calls (list gradients, and the user's own abs/max/min).
CALLED_BUILTINS = frozenset({"len", "abs", "max", "min"})


def usable(name: str, taken) -> bool:
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in CALLED_BUILTINS
        and name not in taken
    )
