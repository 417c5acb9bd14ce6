"""Central differences: the one numerical derivative of the proof, the teaching aid and the tests.

For a forward ``f`` whose arguments are numbers, lists of numbers or NumPy arrays, and an
upstream gradient ``u`` (broadcast to the output's shape; 1.0 gives the gradient of the sum of
the outputs), the derivative of ``L = sum(f(*args) * u)`` with respect to one element ``x`` of
one argument is taken as

    (L(x + h) - L(x - h)) / ((x + h) - (x - h))

The two outputs are subtracted element by element before they are weighted and summed, so the
outputs that ``x`` does not reach cancel exactly. The divisor is the width the numbers actually
moved (in floats ``x + h`` is rounded), not ``2h``. Every evaluation gets its own copies of the
list and array arguments: a forward may update its arrays in place, or return one of them.

The same code runs on float64 and on mpmath numbers (floats, or object arrays of ``mpf``): the
kind of the number moved chooses the step, and mpmath's working precision is the caller's.

The step (the policy, stated here only)
---------------------------------------
``h = STEP * max(1, |x|)``: relative to ``x`` above 1, so that a large input moves by the same
number of its own ulps as a small one (a fixed 1e-6 added to 1e12 is lost to rounding);
absolute below 1, so that an input near zero still moves by an amount the other terms of the
function can feel.

* **float64: STEP = 1e-6.** The quotient's error is the truncation ``h**2 |f'''| / 6`` plus
  the rounding of the two outputs, about ``eps |f| / h`` (``eps`` = 2.2e-16); their sum is
  smallest near ``h = eps**(1/3)``, 6e-6. At 1e-6 the truncation is about 2e-13 and the
  rounding 2e-10 of the function's scale: both far under the 1e-7 that every check asks.
* **mpmath: STEP = 10**-20**, at the caller's working precision (the proof's 50 digits plus
  15 guard digits). The subtraction cancels 20 of those digits and the truncation is about
  1e-40: the quotient is right to some 40 digits, so it can serve as the proof's verdict.

Another ``step`` may be passed (the scaling by ``max(1, |x|)`` applies to it as well): the
array proof retries an element at 1e-5 and 1e-7 when a kink (a ReLU, a max) lies within ``h``
of the point, and a test whose absolute tolerance was set for another step keeps that step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FLOAT64_STEP = 1e-6  # relative step for float64 inputs (see the module docstring)
MPMATH_STEP_DIGITS = 20  # relative step for mpmath inputs: 10**-20 (see the module docstring)


def _is_mpmath(x) -> bool:
    return type(x).__module__.startswith("mpmath")


def step_for(x, step=None):
    """The step ``h`` by which ``x`` is moved: ``step`` (by default the one for ``x``'s kind of
    number) times ``max(1, |x|)``."""
    if step is None:
        if _is_mpmath(x):
            import mpmath

            step = mpmath.mpf(10) ** -MPMATH_STEP_DIGITS
        else:
            step = FLOAT64_STEP
    return step * max(1, abs(x))


# ---------------------------------------------------------------------------- elements


def _is_array(value) -> bool:
    # Asked without importing NumPy: the teaching aid and the proof of code for numbers run
    # without it.
    # (a subclass too: the 50-digit oracle's arrays are one, see oracle._mp_array_type)
    return any(t.__name__ == "ndarray" and t.__module__ == "numpy" for t in type(value).__mro__)


def indices(value) -> list[tuple]:
    """Every element of an argument: ``()`` for a number (or a 0-d array), ``(j,)`` for a
    list, NumPy's index tuples for an array."""
    if isinstance(value, list):
        return [(j,) for j in range(len(value))]
    if _is_array(value):
        import numpy as np

        return list(np.ndindex(*value.shape))
    return [()]


def element(value, index: tuple):
    """One element of an argument (``index`` as given by ``indices``)."""
    if _is_array(value):
        return value[index]
    return value[index[0]] if index else value


def copies(args) -> list:
    """The arguments, lists and arrays copied (numbers are immutable)."""
    return [list(a) if isinstance(a, list) else a.copy() if _is_array(a) else a for a in args]


def _set(value, index: tuple, x):
    """Set one element of a list or an array in place and return the list or array; for a
    number (``index`` is ``()``), return ``x``."""
    if _is_array(value):
        value[index] = x
    elif isinstance(value, list):
        value[index[0]] = x
    else:
        return x
    return value


def moved(args, position: int, index: tuple, value) -> list:
    """A copy of the arguments with one element of ``args[position]`` set to ``value``."""
    out = copies(args)
    out[position] = _set(out[position], index, value)
    return out


# ---------------------------------------------------------------------------- differences


@dataclass
class Difference:
    """The forward's outputs on either side of one input element, and the width between."""

    plus: object  # the output at x + h
    minus: object  # the output at x - h
    width: object  # (x + h) - (x - h), as the numbers moved

    def slope(self, upstream=1.0):
        """d sum(out * upstream) / dx: the quotient, weighted by ``upstream`` (a number, or an
        array that broadcasts to the output's shape)."""
        diff = self.plus - self.minus
        if _is_array(diff) or _is_array(upstream):
            import numpy as np

            diff = np.asarray(diff)
            total = np.sum(diff * np.broadcast_to(np.asarray(upstream), diff.shape))
            if isinstance(total, np.floating):
                total = float(total)
        else:
            total = diff * upstream
        return total / self.width

    def rounding(self, upstream=1.0, ulps: int = 16) -> float:
        """A bound on the float64 rounding error of ``slope(upstream)``: ``ulps`` units in the
        last place of every weighted output the move changed, over the width; and one unit of
        every output it left as it was, which it may reach by less than a unit (a saturated
        tanh), over the width."""
        import numpy as np

        plus, minus = np.asarray(self.plus, dtype=float), np.asarray(self.minus, dtype=float)
        weights = np.broadcast_to(np.asarray(upstream, dtype=float), plus.shape)
        changed = (plus - minus) != 0  # outputs the element does not reach cancel exactly
        size = np.abs(plus * weights) + np.abs(minus * weights)
        units = ulps * float(np.sum(size[changed])) + 0.5 * float(np.sum(size[~changed]))
        return float(np.finfo(float).eps) * units / self.width


def central_difference(
    forward: Callable, args, position: int, index: tuple = (), step=None
) -> Difference | None:
    """``forward`` run with element ``index`` of ``args[position]`` moved by ``+h`` and by
    ``-h`` (``h`` from ``step_for``); None when either run returns None (outside the domain)."""
    x = element(args[position], index)
    h = step_for(x, step)
    plus = forward(*moved(args, position, index, x + h))
    if plus is None:
        return None
    minus = forward(*moved(args, position, index, x - h))
    if minus is None:
        return None
    return Difference(plus, minus, (x + h) - (x - h))


def central_differences(
    forward: Callable,
    args,
    wrt,
    upstream=1.0,
    *,
    step=None,
    elements: dict[int, list[tuple]] | None = None,
) -> dict | None:
    """{position: d sum(forward(*args) * upstream) / d args[position]} for each position in
    ``wrt``, shaped like the argument (a number, a list, an array of the argument's dtype); or
    None when a moved point leaves the domain (``forward`` returns None there).

    ``elements`` ({position: [index]}) limits the differences to those elements; the others
    are NaN."""
    out = {}
    for position in wrt:
        value = args[position]
        chosen = indices(value) if elements is None else elements.get(position, [])
        if _is_array(value):
            import numpy as np

            grad = np.full(value.shape, np.nan, dtype=object if value.dtype == object else float)
        else:
            grad = [float("nan")] * len(value) if isinstance(value, list) else float("nan")
        for index in chosen:
            d = central_difference(forward, args, position, index, step)
            if d is None:
                return None
            grad = _set(grad, index, d.slope(upstream))
        out[position] = grad
    return out


__all__ = [
    "FLOAT64_STEP",
    "MPMATH_STEP_DIGITS",
    "Difference",
    "central_difference",
    "central_differences",
    "copies",
    "element",
    "indices",
    "moved",
    "step_for",
]
