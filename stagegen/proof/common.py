"""What every check of the proof shares, for numbers and arrays alike.

The measure (``RTOL`` and ``agree``: a generated gradient against a reference, element by
element, a number being one element), what a check found (``Outcome``), the ranges the random
points are drawn from, the user's ``def`` as the references run it (from the source text,
through stagegen.oracle), the generated backward's gradients as returned, and SymPy
expressions compiled into straight-line 50-digit mpmath code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import VerificationError
from ..oracle import DIGITS, FLOAT_LIMIT, SourceUnavailable, user_function
from ..program import Program, backward_name

RTOL = 1e-7  # relative error (with a floor under small values) the generated gradient must meet
BUG = "this is a bug in stagegen: please report it with this function"

# Ranges the random points cycle through: positive ones (for logs and roots), either sign,
# and narrow ones, where iterated maps and steep functions stay within float range.
RANGES = [(0.2, 2.0), (-2.0, 2.0), (0.05, 0.95), (-0.5, 0.5), (0.5, 1.5)]


# ---------------------------------------------------------------------------- the measure


@dataclass
class Outcome:
    """What one check found: how its reference was computed, at how many points, the largest
    errors; ``summary`` is its part of the report's ``reference``."""

    method: str
    done: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    summary: str = ""
    branches: str = ""  # "branches: 5 of 6 outcomes seen" (functions that branch)


def agree(outcome: Outcome, got, want, floor: float, failure) -> None:
    """Compare generated gradient elements with their references, in order (flat sequences of
    floats, or arrays, read in C order): raise ``failure(k)`` at the first element ``k`` that
    is not finite or is off by more than RTOL, relative to the reference, or to ``floor`` when
    the reference is smaller (a 50-digit reference is never exactly 0.0); else record the
    largest errors in ``outcome``."""
    got, want = _flat(got), _flat(want)
    errors, relatives = [], []
    for k, (g, w) in enumerate(zip(got, want)):
        err = abs(g - w)
        rel = err / max(abs(w), floor)
        if not math.isfinite(g) or rel > RTOL:
            raise failure(k)
        errors.append(err)
        relatives.append(rel)
    if errors:
        outcome.max_abs = max(outcome.max_abs, float(max(errors)))
        outcome.max_rel = max(outcome.max_rel, float(max(relatives)))


def _flat(values) -> list:
    reshape = getattr(values, "reshape", None)
    return list(reshape(-1)) if reshape is not None else list(values)


def index_text(name: str, index: tuple) -> str:
    """One element's name: ``x`` for a number, ``x[2]`` or ``x[0, 1]`` for an element."""
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


def returned_gradients(program: Program, backward, result) -> list:
    """The generated backward's return value as one gradient per differentiated parameter."""
    results = [result] if len(backward.wrt) == 1 else list(result)
    if len(results) != len(backward.wrt):
        raise program.error(
            f"{backward_name(program.name)} returned {len(results)} gradients, "
            f"expected {len(backward.wrt)}",
            BUG,
            VerificationError,
        )
    return results


# ---------------------------------------------------------------------------- 50-digit code


class MpmathCode:
    """SymPy expressions printed as straight-line mpmath code and compiled once, so a reference
    is evaluated per point in 50-digit floats. (evalf with exact substitution can run for
    minutes: it raises exact rationals to rational powers inside Max and Min.)"""

    def __init__(self):
        from sympy.printing.pycode import MpmathPrinter

        self.names: dict = {}  # SymPy symbol -> Python identifier in the compiled function
        name_of = self.name_of

        class Printer(MpmathPrinter):
            def _print_Symbol(self, symbol):
                return name_of(symbol)

            # SymPy's derivatives of abs() and of 0 ** y bring in re(), im(), arg() and zoo,
            # which SymPy's own mpmath printer does not print: a function mpmath has under
            # the same name is printed as that; a complex infinity is outside the domain: nan,
            # which real() refuses.
            def _print_not_supported(self, e):
                import mpmath

                name = type(e).__name__.lower()
                if getattr(e, "is_Function", False) and callable(getattr(mpmath, name, None)):
                    return f"mpmath.{name}({', '.join(self._print(a) for a in e.args)})"
                return super()._print_not_supported(e)

            def _print_ComplexInfinity(self, e):
                return "mpmath.nan"

            # Heaviside (in SymPy's derivatives of Max and Min) as a conditional expression:
            # SymPy's own printer rewrites it as a Piecewise and runs solveset on its condition,
            # which raised KeyError on Heaviside(b - b / (asin(9 * sin(b) / 10)**2 + 1)).
            def _print_Heaviside(self, e):
                x = self._print(e.args[0])
                at_zero = self._print(e.args[1]) if len(e.args) > 1 else "(one / 2)"
                return f"(one if ({x}) > 0 else zero if ({x}) < 0 else {at_zero})"

        self.printer = Printer()

    def name_of(self, symbol) -> str:
        if symbol not in self.names:
            self.names[symbol] = f"v{len(self.names)}"
        return self.names[symbol]

    def text(self, expr) -> str:
        return self.printer.doprint(expr)

    def compile(self, title: str, inputs: list, body: list[str], result: str):
        """A Python function of the input symbols (taking floats) running ``body``."""
        import mpmath

        lines = [f"def function({', '.join(self.name_of(s) for s in inputs)}):"]
        lines += [f"    {line}" for line in body] + [f"    return {result}"]
        namespace = {
            "mpmath": mpmath,
            "real": finite_real,
            "one": mpmath.mpf(1),
            "zero": mpmath.mpf(0),
        }
        exec(compile("\n".join(lines), f"<{title}>", "exec"), namespace)
        function = namespace["function"]

        def run(*values):
            with mpmath.workdps(DIGITS):
                return function(*(mpmath.mpf(v) for v in values))

        return run


def finite_real(value):
    """A stage's 50-digit value, or ValueError where the function leaves its domain or floats."""
    import mpmath

    if not isinstance(value, mpmath.mpf):
        try:  # ints, floats and constants such as mpmath.e; complex values are outside
            value = mpmath.mpf(value)
        except (TypeError, ValueError):
            raise ValueError("outside the domain") from None
    if not mpmath.isfinite(value) or abs(value) > FLOAT_LIMIT:
        raise ValueError("outside the domain")
    return value


def user_function_of(program: Program, source: str | None):
    """The program's `def` as the user wrote it, from the source text it was read from."""
    try:
        if source is None:
            raise SourceUnavailable("the source text was not given to the proof")
        imported = tuple(
            (callee.text, tuple(callee.imports))
            for callee in program.all_callees()
            if callee.filename != program.filename
        )
        return user_function(source, program.name, program.line, program.filename, imported)
    except SourceUnavailable as exc:
        raise program.error(
            f"cannot prove {program.name}: {exc}",
            "pass the module's text (stagegen.generate/verify do), or run with --no-verify",
            VerificationError,
        ) from None


def oracle_failure(program: Program, exc: Exception) -> VerificationError:
    return program.error(
        f"the proof could not run {program.name} as written on 50-digit numbers ({exc})",
        "this is a limitation of the checker: please report it with this function; "
        "--no-verify skips the proof",
        VerificationError,
    )


__all__ = [
    "BUG",
    "DIGITS",
    "FLOAT_LIMIT",
    "RANGES",
    "RTOL",
    "MpmathCode",
    "Outcome",
    "agree",
    "index_text",
    "returned_gradients",
    "finite_real",
    "oracle_failure",
    "user_function_of",
]
