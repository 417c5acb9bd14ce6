"""Every value's type: a shape (``()`` for a number, symbolic dimensions for an array) and a
kind (a float, integer labels or sizes, a boolean mask).

The readers type what they read; everything after them asks this module, so a number is just
the 0-d case: a function of numbers has no recorded types, and every value in it is a float of
shape ``()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arrays.shapes import Shape, broadcast, names_in
from .expr import Const, Elem, Expr, Num, Var


@dataclass(frozen=True)
class Type:
    shape: Shape
    kind: str = "float"  # "float", "int" (indices, sizes) or "bool" (a mask)
    value: object = None  # for an int read from a shape: its dimension ("N")

    @property
    def differentiable(self) -> bool:
        return self.kind == "float"


NUMBER = Type(())


class Types:
    """The types of a program's values and of the expressions its reader typed; an expression
    built later (a gradient) gets the shape its operands broadcast to, where that is known."""

    def __init__(self, program):
        self.values = program.types
        self.expressions = program.types.get("<expressions>", {})
        self.numbers_only = not self.values  # every value a float of shape (): nothing to look up

    def of(self, e: Expr) -> Type | None:
        if self.numbers_only:
            return NUMBER
        if isinstance(e, Var):
            return self.values.get(e.name, NUMBER)
        if isinstance(e, Elem):
            return NUMBER
        if isinstance(e, (Num, Const)):
            return Type((), "int" if isinstance(getattr(e, "value", 0.0), int) else "float")
        return self.expressions.get(e)

    def shape(self, e: Expr) -> Shape | None:
        """The shape of ``e``; None when it cannot be told (then callers keep what is safe)."""
        known = self.of(e)
        if known is not None:
            return known.shape
        shape_key = getattr(e, "shape_key", None)
        if shape_key is not None:
            return shape_key
        kids = e.children()
        if not kids or type(e).__name__ not in _ELEMENTWISE:
            return None
        shape: Shape = ()
        for k in kids:
            ks = self.shape(k)
            if ks is None:
                return None
            try:
                shape = broadcast(shape, ks)
            except Exception:
                return None
        return shape

    def differentiable(self, e: Expr) -> bool:
        known = self.of(e)
        return known.differentiable if known is not None else True


def dimension_names(program) -> list[str]:
    """The dimension names of a program's annotations (``N``, ``D``), in the order the
    parameters name them: the backward binds them, so no other value may take them."""
    names: list[str] = []
    for p in program.params:
        for n in names_in(p.shape or ()):
            if n not in names:
                names.append(n)
    return names


_ELEMENTWISE = {"Bin", "Neg", "Call", "Cond", "Compare", "And"}
