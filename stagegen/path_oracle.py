"""SymPy's derivative of the path the forward took: the proof's exact reference for numbers.

The user's ``def`` (its instrumented copy, stagegen.sites) runs on *path values*: each carries
a concrete value in 50 digits (plus guard digits) and, when asked, a SymPy expression of the
inputs. Every decision uses the concrete value: comparisons, ``bool()``, ``while`` conditions,
``abs``, ``min`` and ``max``, ``range(len(w))``; arithmetic and the ``math`` functions build the
expression. What the run builds is the straight-line function of the path taken at the point,
and SymPy's derivative of it there is the reference: at a point inside a branch (not on its
boundary, which stagegen.sites measures) it is the derivative of the forward.

**Pieces.** A loop composes expressions whose trees double (Newton's ``y = (y + x / y) / 2``
reads ``y`` twice); SymPy's ``diff`` walks trees, not graphs. So a value whose expression grows
past ``PIECE_NODES`` is cut: it becomes a fresh symbol, its definition kept. The reference is
SymPy's exact partial derivatives of every piece, composed by the chain rule in 50 digits
(forward mode, piece by piece, in the order the run made them), as the array proof composes
stages. A small path is one piece: SymPy's derivative of the whole composed expression.

**One derivation per path.** The decisions a run takes determine the expression it builds, so
each point first runs on values alone (cheap: its decisions, which sites it passed too close
to a boundary), and only a path not seen before runs again with expressions and is
differentiated; the pieces and partials are kept and evaluated at every later point on it.

**Limits.** Past ``OPERATION_LIMIT`` operations on expressions (a long loop) or
``DERIVATIVE_LIMIT`` nodes in one partial derivative, or on anything the run cannot follow with
expressions (``float(x)``, ``%``, a ``key=`` function), the path has no SymPy reference and
the proof relies on the 50-digit central differences (stagegen.oracle) alone; the note says
why.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, field
from types import SimpleNamespace

from .oracle import (
    tree_size,
    sympy_number,
    DIGITS,
    GUARD_DIGITS,
    UserFunction,
    checked,
    mpmath_math,
)

PIECE_NODES = 24  # expression size past which a value becomes a piece of its own
OPERATION_LIMIT = 5000  # operations on expressions in one run past which SymPy is not used
DERIVATIVE_LIMIT = 4000  # nodes of a piece's partial derivative past which SymPy is not used


class Untraceable(Exception):
    """The run met something it cannot follow with expressions."""


# ---------------------------------------------------------------------------- one run


class _Run:
    """What the values of one run share: the recorder of decisions, and (when building
    expressions) SymPy, the pieces cut so far, and the operation count."""

    def __init__(self, recorder, sp=None):
        self.recorder = recorder
        self.sp = sp
        self.operations = 0
        self.swollen = False
        self.pieces: list[tuple] = []  # (symbol, definition) in the order they were cut

    @property
    def building(self) -> bool:
        return self.sp is not None and not self.swollen

    def constant(self, value) -> "PathValue":
        """A number the source wrote (a literal, math.pi): no dependence on the inputs."""
        import mpmath

        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, numbers.Integral):
            expr = self.sp.Integer(int(value)) if self.building else None
            return PathValue(mpmath.mpf(int(value)), expr, False, self, 1)
        if isinstance(value, float):  # its exact value (a Float of 53 bits would round)
            expr = sympy_number(self.sp, self.sp.Rational(value)) if self.building else None
            return PathValue(mpmath.mpf(value), expr, False, self, 1)
        if isinstance(value, mpmath.mpf):
            expr = self.sp.Float(value, DIGITS + GUARD_DIGITS) if self.building else None
            return PathValue(value, expr, False, self, 1)
        raise TypeError(f"a {type(value).__name__} where a number was expected")

    def value(self, x) -> "PathValue":
        return x if isinstance(x, PathValue) else self.constant(x)

    def make(self, value, build, operands: list["PathValue"]) -> "PathValue":
        """The result of an operation: its checked value, and its expression built by
        ``build`` from the operands' (None when any has none, or past the limits)."""
        value = checked(value)
        depends = any(o.depends for o in operands)
        size = 1 + sum(o.size for o in operands)
        kinks = frozenset().union(*(o.kinks for o in operands))
        expr = None
        if self.building and all(o.expr is not None for o in operands):
            self.operations += 1
            if self.operations > OPERATION_LIMIT:
                self.swollen = True
            else:
                expr = build(*[o.expr for o in operands])
                if size > PIECE_NODES and depends:
                    symbol = self.sp.Symbol(f"p{len(self.pieces)}", real=True)
                    self.pieces.append((symbol, expr))
                    expr, size = symbol, 1
        return PathValue(value, expr, depends, self, size, kinks)

    def decide(self, outcome, a, b, measured: bool) -> int | None:
        return self.recorder.decide(outcome, a, b, measured)


def _untraceable(what: str):
    def refuse(self, *args):
        raise Untraceable(f"{what} of a value")

    return refuse


class PathValue:
    """A number of the run: its concrete value (an mpmath number) and, when the run builds
    them, its SymPy expression (None otherwise); whether it depends on the inputs; the size
    of its expression since the last cut."""

    __slots__ = ("value", "expr", "depends", "run", "size", "kinks")

    def __init__(self, value, expr, depends: bool, run: _Run, size: int = 1, kinks=frozenset()):
        self.value, self.expr, self.depends, self.run, self.size = (
            value,
            expr,
            depends,
            run,
            size,
        )
        self.kinks = kinks  # kinks (abs, min, max sites) this value sits on, from its inputs

    def on_kink(self, site: int | None) -> "PathValue":
        """This value, marked as computed at a kink (``site``), if any."""
        if site is None:
            return self
        return PathValue(
            self.value, self.expr, self.depends, self.run, self.size, self.kinks | {site}
        )

    def _binary(self, other, value_op, expr_op, reflected=False):
        if not isinstance(other, (PathValue, numbers.Real)) or isinstance(other, complex):
            return NotImplemented
        run = self.run
        a, b = self, run.value(other)
        if reflected:
            a, b = b, a
        return run.make(value_op(a.value, b.value), expr_op, [a, b])

    def __add__(self, o):
        return self._binary(o, operator.add, operator.add)

    def __radd__(self, o):
        return self._binary(o, operator.add, operator.add, True)

    def __sub__(self, o):
        return self._binary(o, operator.sub, operator.sub)

    def __rsub__(self, o):
        return self._binary(o, operator.sub, operator.sub, True)

    def __mul__(self, o):
        return self._binary(o, operator.mul, operator.mul)

    def __rmul__(self, o):
        return self._binary(o, operator.mul, operator.mul, True)

    def __truediv__(self, o):
        return self._binary(o, operator.truediv, operator.truediv)

    def __rtruediv__(self, o):
        return self._binary(o, operator.truediv, operator.truediv, True)

    def __pow__(self, o, modulo=None):
        if modulo is not None:
            raise TypeError("pow() with three arguments")
        return self._binary(o, _mp_power, operator.pow)

    def __rpow__(self, o):
        return self._binary(o, _mp_power, operator.pow, True)

    def __neg__(self):
        return self.run.make(-self.value, operator.neg, [self])

    def __pos__(self):
        return self

    def __abs__(self):
        return _abs(self.run, self)

    # decisions where no site was instrumented (a comparison inside a builtin)
    def _decided(self, other, compare):
        o = other.value if isinstance(other, PathValue) else other
        outcome = bool(compare(self.value, o))
        self.run.recorder.unlocated(outcome)
        return outcome

    def __lt__(self, o):
        return self._decided(o, operator.lt)

    def __le__(self, o):
        return self._decided(o, operator.le)

    def __gt__(self, o):
        return self._decided(o, operator.gt)

    def __ge__(self, o):
        return self._decided(o, operator.ge)

    def __eq__(self, o):
        return self._decided(o, operator.eq)

    def __ne__(self, o):
        return self._decided(o, operator.ne)

    def __bool__(self):
        outcome = bool(self.value)
        self.run.recorder.unlocated(outcome)
        return outcome

    __hash__ = object.__hash__

    # what would leave the path (a float or an integer cut from the expression)
    __float__ = _untraceable("float()")
    __int__ = _untraceable("int()")
    __index__ = _untraceable("an index")
    __round__ = _untraceable("round()")
    __trunc__ = _untraceable("trunc()")
    __floor__ = _untraceable("floor()")
    __ceil__ = _untraceable("ceil()")
    __mod__ = __rmod__ = _untraceable("%")
    __floordiv__ = __rfloordiv__ = _untraceable("//")
    __divmod__ = __rdivmod__ = _untraceable("divmod()")
    __complex__ = _untraceable("complex()")

    def __repr__(self):
        return f"PathValue({self.value}, {self.expr})"


def _mp_power(x, y):
    import mpmath

    if x == 0 and y < 0:
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    return mpmath.power(x, y)


def concrete(value):
    """The number a value decides by."""
    return value.value if isinstance(value, PathValue) else value


def depends(value) -> bool:
    """Whether a value depends on the inputs (only such decisions can sit on a boundary)."""
    return isinstance(value, PathValue) and value.depends


# ---------------------------------------------------------------------------- decisions


def _abs(run: _Run, x):
    x = run.value(x)
    positive = x.value >= 0
    kink = run.decide(positive, x.value, 0, x.depends)
    return (x if positive else -x).on_kink(kink)


def _extremum(run: _Run, largest: bool, args, kwargs):
    if kwargs.get("key") is not None:
        raise Untraceable("min/max with key=")
    items = list(args[0]) if len(args) == 1 else list(args)
    if not items:
        if "default" in kwargs:
            return kwargs["default"]
        raise ValueError("min()/max() of an empty sequence")
    values = [concrete(i) for i in items]
    best = 0
    for j in range(1, len(items)):
        if (values[j] > values[best]) if largest else (values[j] < values[best]):
            best = j
    others = [v for j, v in enumerate(values) if j != best]
    closest = min(others, key=lambda v: abs(v - values[best])) if others else values[best]
    measured = any(depends(i) for i in items) and bool(others)
    kink = run.decide(best, values[best], closest, measured)
    return run.value(items[best]).on_kink(kink) if kink is not None else items[best]


def _symbolic_functions(sp) -> dict:
    return dict(
        exp=sp.exp, expm1=lambda x: sp.exp(x) - 1,
        log=lambda x, base=None: sp.log(x) if base is None else sp.log(x) / sp.log(base),
        log2=lambda x: sp.log(x) / sp.log(2), log10=lambda x: sp.log(x) / sp.log(10),
        log1p=lambda x: sp.log(1 + x), sqrt=sp.sqrt, sin=sp.sin, cos=sp.cos, tan=sp.tan,
        asin=sp.asin, acos=sp.acos, atan=sp.atan, atan2=sp.atan2, sinh=sp.sinh,
        cosh=sp.cosh, tanh=sp.tanh, erf=sp.erf,
        hypot=lambda *a: sp.sqrt(sum(x**2 for x in a)), pow=lambda x, y: x**y,
    )  # fmt: skip


_FUNCTION_NAMES = [
    "exp", "expm1", "log", "log2", "log10", "log1p", "sqrt", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf", "hypot", "pow",
]  # fmt: skip


def _math_shim(run: _Run):
    """``math`` for the run: mpmath for the values, SymPy for the expressions; fabs decides."""
    import sympy

    numbers_ = mpmath_math()  # checked mpmath functions at the working precision
    symbolic = _symbolic_functions(sympy)

    def function(name):
        value_of, expr_of = getattr(numbers_, name), symbolic[name]

        def call(*args):
            operands = [run.value(a) for a in args]
            return run.make(value_of(*[o.value for o in operands]), expr_of, operands)

        call.__name__ = name
        return call

    shim = SimpleNamespace(**{name: function(name) for name in _FUNCTION_NAMES})
    shim.fabs = lambda x: _abs(run, x)
    for name, symbol in (("pi", sympy.pi), ("e", sympy.E), ("tau", 2 * sympy.pi)):
        value = getattr(numbers_, name)
        setattr(shim, name, PathValue(value, symbol if run.building else None, False, run, 1))
    shim.inf, shim.nan = numbers_.inf, numbers_.nan
    return shim


def _builtins(run: _Run) -> dict:
    def pow_(x, y, z=None):
        if z is not None:
            raise TypeError("pow() with three arguments")
        return run.value(x) ** y

    return dict(
        abs=lambda x: _abs(run, x),
        min=lambda *a, **k: _extremum(run, False, a, k),
        max=lambda *a, **k: _extremum(run, True, a, k),
        pow=pow_,
    )


# ---------------------------------------------------------------------------- paths


@dataclass
class Path:
    """One run's path at a point: the decisions it took (site index, outcome; site -1 where no
    site was instrumented), the sites it passed too close to their boundary, and a key that
    is the same for every point on the same straight-line function. ``followed`` is False
    where the run could not follow the forward (``note`` says why): no reference, no
    coverage from that point."""

    followed: bool
    key: tuple = ()
    decisions: list = field(default_factory=list)
    near: list[int] = field(default_factory=list)  # branch sites, and kinks the output is on
    note: str = ""


@dataclass
class _Derivative:
    """The pieces of one path and the output, with SymPy's partial derivatives of each by
    every symbol it reads (inputs and earlier pieces)."""

    inputs: list  # the input symbols, flat, in argument order
    pieces: list  # [(symbol, definition, {symbol read: partial})]
    output: object
    partials: dict  # {symbol read: partial of the output}

    def at(self, args, wanted: list):
        """(output, [d output / d wanted input]) at the point in 50 digits, by the chain rule
        over the pieces; None where a piece is not real and finite there."""
        import mpmath

        with mpmath.workdps(DIGITS):
            env = {s: mpmath.mpf(v) for s, v in zip(self.inputs, _input_values(args))}
            # tangent[s][i]: d s / d wanted[i]
            tangent = {s: [mpmath.mpf(int(s == w)) for w in wanted] for s in self.inputs}
            memo: dict = {}
            try:
                for symbol, definition, partials in self.pieces:
                    env[symbol] = checked(evaluate(definition, env, memo))
                    tangent[symbol] = _chain(partials, env, memo, tangent, len(wanted))
                output = checked(evaluate(self.output, env, memo))
                gradient = _chain(self.partials, env, memo, tangent, len(wanted))
            except Exception:  # not real, not finite, or not evaluable here
                return None
        return output, gradient


def _chain(partials: dict, env: dict, memo: dict, tangent: dict, n: int) -> list:
    import mpmath

    total = [mpmath.mpf(0)] * n
    for symbol, partial in partials.items():
        factor = checked(evaluate(partial, env, memo))
        total = [t + factor * d for t, d in zip(total, tangent[symbol])]
    return total


class PathOracle:
    """The forward along the path it takes at each point: its decisions (``trace``), and
    SymPy's derivative of that path there (``gradient``)."""

    def __init__(self, user: UserFunction):
        self.user = user
        self.derivatives: dict[tuple, _Derivative | str] = {}
        self.note = ""  # why SymPy's derivative was not used, where it was not
        self.partials: dict = {}  # (expression, symbol) -> SymPy's partial: paths share pieces

    def _run(self, args, sp=None):
        """(output, run) of the instrumented def on path values (expressions when ``sp``)."""
        run = _Run(self.user.recorder(concrete=concrete, inexact=depends), sp)
        function = self.user.bind_recording(run.recorder, _math_shim(run), None, **_builtins(run))
        wrapped = []
        for k, a in enumerate(args):
            if isinstance(a, list):
                wrapped.append([self._input(run, f"a{k}_{j}", v) for j, v in enumerate(a)])
            else:
                wrapped.append(self._input(run, f"a{k}", a))
        return function(*wrapped), run

    @staticmethod
    def _input(run: _Run, name: str, value):
        import mpmath

        if isinstance(value, numbers.Integral):
            return int(value)  # a trip count, an index: decides, never differentiated
        symbol = run.sp.Symbol(name, real=True) if run.building else None
        return PathValue(mpmath.mpf(value), symbol, True, run, 1)

    def trace(self, args) -> Path:
        """The path at a point (values only)."""
        import mpmath

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            try:
                output, run = self._run(args)
                checked(concrete(output))
            except Exception as exc:  # where the float forward runs, a gap here is only ours
                return Path(False, note=f"{type(exc).__name__}: {exc}")
        recorder = run.recorder
        kinks = sorted(output.kinks) if isinstance(output, PathValue) else []
        lengths = tuple(len(a) if isinstance(a, list) else None for a in args)
        integers = tuple(a for a in args if isinstance(a, numbers.Integral))
        weights = tuple(  # several outputs: their weighted sum
            tuple(w.ravel().tolist()) if hasattr(w, "ravel") else w for w in self.user.weights or ()
        )
        key = (lengths, integers, weights, tuple(recorder.decisions))
        return Path(True, key, list(recorder.decisions), list(recorder.near) + kinks)

    def gradient(self, path: Path, args, inputs: list[tuple]):
        """SymPy's (output, [d output / d input]) along ``path`` at the point, in 50 digits;
        None where it is not available (``note`` says why)."""
        if not path.followed:
            self.note = self.note or f"SymPy's derivative not used ({path.note})"
            return None
        derivative = self.derivatives.get(path.key)
        if derivative is None:
            try:
                derivative = self._derive(path, args, inputs)
            except Exception as exc:  # any failure of SymPy: its route is a second opinion
                derivative = f"SymPy's derivative not used ({type(exc).__name__}: {exc})"
            self.derivatives[path.key] = derivative
        if isinstance(derivative, str):
            self.note = self.note or derivative
            return None
        return derivative.at(args, [_symbol_of(index) for index in inputs])

    def _derive(self, path: Path, args, inputs) -> _Derivative | str:
        import mpmath
        import sympy as sp

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            output, run = self._run(args, sp)
        if run.recorder.decisions != path.decisions:
            return "SymPy's derivative not used (the run on symbols took another path)"
        if run.swollen:
            return (
                f"SymPy's derivative not used (the path has more than {OPERATION_LIMIT} "
                "operations)"
            )
        out = output.expr if isinstance(output, PathValue) else sp.sympify(output)
        pieces = []
        for symbol, definition in run.pieces:
            pieces.append((symbol, definition, _partials(sp, definition, self.partials)))
        partials = _partials(sp, out, self.partials)
        if any(p is None for _, _, p in pieces) or partials is None:
            return (
                f"SymPy's derivative not used (a partial derivative has more than "
                f"{DERIVATIVE_LIMIT} nodes)"
            )
        return _Derivative(_input_symbols(sp, args), pieces, out, partials)


def _partials(sp, expr, memo: dict) -> dict | None:
    """{symbol: SymPy's partial derivative of expr by it} for every symbol it reads; None when
    one has more than DERIVATIVE_LIMIT nodes (a nested power's can swell). ``memo`` keeps
    them by (expression, symbol): paths that share a prefix share its pieces."""
    out = {}
    for symbol in _read(expr):
        key = (expr, symbol)
        if key not in memo:
            partial = sp.diff(expr, symbol)
            memo[key] = partial
            if tree_size(sp, partial, DERIVATIVE_LIMIT) > DERIVATIVE_LIMIT:
                memo[key] = None
        if memo[key] is None:
            return None
        out[symbol] = memo[key]
    return out


def _read(expr) -> list:
    """The symbols an expression reads, in a fixed order."""
    return sorted(expr.free_symbols, key=lambda s: s.name)


def _input_symbols(sp, args) -> list:
    """Every input number's symbol, flat, in argument order (integers are not inputs)."""
    out = []
    for k, a in enumerate(args):
        if isinstance(a, list):
            out += [sp.Symbol(f"a{k}_{j}", real=True) for j in range(len(a))]
        elif not isinstance(a, numbers.Integral):
            out.append(sp.Symbol(f"a{k}", real=True))
    return out


def _input_values(args) -> list:
    """The input numbers at a point, flat, in the order of ``_input_symbols``."""
    out = []
    for a in args:
        if isinstance(a, list):
            out += list(a)
        elif not isinstance(a, numbers.Integral):
            out.append(a)
    return out


def _symbol_of(index: tuple):
    """The symbol of an input: (argument position,) or (position, element)."""
    import sympy as sp

    name = f"a{index[0]}_{index[1]}" if len(index) > 1 else f"a{index[0]}"
    return sp.Symbol(name, real=True)


# ---------------------------------------------------------------------------- 50 digits


def _heaviside(x, *rest):
    import mpmath

    return mpmath.mpf(1 if x > 0 else 0 if x < 0 else 0.5)


def evaluate(e, env: dict, memo: dict):
    """A SymPy expression's value in mpmath, walking it as a graph (each distinct
    subexpression once). SymPy's own printers were not used: on a swollen derivative they
    spent minutes in assumption queries."""
    import mpmath

    if e in memo:
        return memo[e]
    if e.is_Symbol:
        value = env[e]
    elif e.is_Rational:
        value = mpmath.mpf(int(e.p)) / int(e.q)
    elif e.is_Float:
        value = mpmath.mpf(e._mpf_)
    elif e.is_NumberSymbol:  # pi, E
        value = mpmath.mpf(str(e.evalf(DIGITS + GUARD_DIGITS)))
    elif e.is_Add:
        value = mpmath.fsum(evaluate(a, env, memo) for a in e.args)
    elif e.is_Mul:
        value = mpmath.fprod(evaluate(a, env, memo) for a in e.args)
    elif e.is_Pow:
        value = mpmath.power(evaluate(e.args[0], env, memo), evaluate(e.args[1], env, memo))
    elif e.is_Function:
        name = type(e).__name__
        args = [evaluate(a, env, memo) for a in e.args]
        special = {"Abs": mpmath.fabs, "Max": max, "Min": min, "Heaviside": _heaviside}
        function = special.get(name) or getattr(mpmath, name.lower(), None)
        if function is None:
            raise TypeError(f"no mpmath counterpart for {name}")
        value = function(*args)
    else:
        raise TypeError(f"cannot evaluate {type(e).__name__}")
    memo[e] = value
    return value


__all__ = ["Path", "PathOracle", "PathValue", "Untraceable", "concrete", "depends", "evaluate"]
