"""What stagegen's literals and elementwise functions mean in SymPy: one table for the proof of
numbers and of arrays (where each applies element by element).

The functions are named by the gate table's keys (``asin``, not NumPy's ``arcsin``). Literals
are exact: an int as an Integer, a float as the rational its ``repr`` spells (``0.1`` is 1/10),
so that SymPy's derivatives carry no rounding of their own.
"""

from __future__ import annotations


def number(sp, value):
    """A literal as an exact SymPy number (booleans and ints as Integers)."""
    if isinstance(value, (bool, int)):
        return sp.Integer(int(value))
    return sp.Rational(repr(float(value)))


def constant(sp, name: str):
    """``math.pi``, ``math.e``, ``math.tau``."""
    return {"pi": sp.pi, "e": sp.E, "tau": 2 * sp.pi}[name]


def function(sp, fn: str, args: list):
    """SymPy's meaning of the elementwise function ``fn`` (a gate table key) of ``args``;
    TypeError for a function it does not know."""
    simple = {
        "exp": sp.exp, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
        "asin": sp.asin, "acos": sp.acos, "atan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh,
        "tanh": sp.tanh, "erf": sp.erf, "abs": sp.Abs,
    }  # fmt: skip
    if fn in simple:
        return simple[fn](*args)
    if fn == "log":
        return sp.log(args[0]) if len(args) == 1 else sp.log(args[0]) / sp.log(args[1])
    if fn == "log2":
        return sp.log(args[0]) / sp.log(2)
    if fn == "log10":
        return sp.log(args[0]) / sp.log(10)
    if fn == "log1p":
        return sp.log(1 + args[0])
    if fn == "expm1":
        return sp.exp(args[0]) - 1
    if fn == "atan2":  # Python's and NumPy's atan2(0, 0) is 0; SymPy's is nan
        return sp.Integer(0) if args[0] == 0 and args[1] == 0 else sp.atan2(*args)
    if fn == "hypot":
        return sp.sqrt(sum(a**2 for a in args))
    if fn == "pow":
        return args[0] ** args[1]
    if fn == "max":
        return sp.Max(*args)
    if fn == "min":
        return sp.Min(*args)
    raise TypeError(f"no SymPy counterpart for {fn}")


__all__ = ["constant", "function", "number"]
