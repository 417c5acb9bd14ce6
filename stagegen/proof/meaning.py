"""What stagegen's literals and elementwise functions mean in SymPy, for the proof of numbers
and of arrays (where each applies element by element). The functions' meanings are declared in
the gate table, beside their rules (gates.Gate.sympy).

The functions are named by the gate table's keys (``asin``, not NumPy's ``arcsin``). Literals
are exact where SymPy can afford it: an int as an Integer, a float as the rational its ``repr``
spells (``0.1`` is 1/10), so that SymPy's derivatives carry no rounding of their own; a float
with a long spelling as a 65-digit Float (see ``number``).
"""

from __future__ import annotations

from ..gates import ELEMENTWISE
from ..oracle import sympy_number


def number(sp, value):
    """A literal as a SymPy number: booleans and ints as Integers, a float as the rational its
    ``repr`` spells, exact when its denominator is small (0.5, 1e-3), else as a Float of 65
    digits (oracle.sympy_number: SymPy's exact powers of long rationals never finish)."""
    if isinstance(value, (bool, int)):
        return sp.Integer(int(value))
    return sympy_number(sp, sp.Rational(repr(float(value))))


def constant(sp, name: str):
    """``math.pi``, ``math.e``, ``math.tau``."""
    return {"pi": sp.pi, "e": sp.E, "tau": 2 * sp.pi}[name]


def function(sp, fn: str, args: list):
    """SymPy's meaning of the elementwise function ``fn`` (a gate table key) of ``args``, as
    the gate table declares it; TypeError for a function it does not know."""
    gate = ELEMENTWISE.get(fn)
    if gate is None or gate.sympy is None:
        raise TypeError(f"no SymPy counterpart for {fn}")
    return gate.sympy(sp, *args)


__all__ = ["constant", "function", "number"]
