"""The proof's independent reference: the user's forward, run from its own source text.

Nothing here reads stagegen's model of the function (its stages, its expressions) or prints
code with stagegen's printers. The ``def`` is taken from the text the user wrote (decorators
and annotations dropped, so that nothing else runs), compiled in a fresh namespace that holds
only what the module's own ``import`` statements bind to ``math`` and ``numpy``, read here
with ``ast``. The module itself is never imported. The same source then runs on several kinds
of numbers:

* **floats** (real ``math``, real NumPy): the forward as it runs in production, to find the
  points where it is defined and within float range, and for float64 central differences;
* **mpmath numbers** (50 digits; ``math`` bound to a shim over mpmath, NumPy to a thin proxy
  whose elementwise functions apply mpmath to object arrays, everything else real NumPy):
  the gradient as central differences (stagegen.numeric) with a step of 1e-20, exact to far
  beyond the 1e-7 the proof asks for;
* **SymPy symbols** (numbers only, while the composed expression stays small): SymPy's exact
  derivative of the expression the source builds.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import math
import numbers
from dataclasses import dataclass, field
from types import SimpleNamespace

from .numeric import central_differences, copies, element
from .gates import NUMPY_FUNCTIONS  # which np.<fn> array code may call (names only, no rules)

DIGITS = 50  # digits of the reference values
GUARD_DIGITS = 15  # extra working digits, eaten by the difference quotient
FLOAT_LIMIT = 1e250  # a value past this says nothing about float64 code
SYMPY_STATEMENT_LIMIT = 60  # statements in the def up to which SymPy's route is tried
SYMPY_TREE_LIMIT = 400  # nodes of the composed expression up to which SymPy differentiates
SYMPY_DERIVATIVE_LIMIT = 4000  # nodes of its derivatives up to which they are compiled

# What a forward raises where it is not defined (log(-1), 1/0, a complex value in math.exp).
DOMAIN_ERRORS = (ValueError, ZeroDivisionError, OverflowError, TypeError, FloatingPointError)
# The same on mpmath numbers, where a complex value raises ValueError (see _checked): any other
# exception there is a gap in the shims, never a reason to skip a point silently.
MP_DOMAIN_ERRORS = (ValueError, ZeroDivisionError, OverflowError, FloatingPointError)


class SourceUnavailable(Exception):
    """The function's `def` could not be found in the source text given to the proof."""


class OracleFailure(Exception):
    """The forward as written could not be run on 50-digit numbers (a gap in the shims)."""


def _run_mp(function, point):
    try:
        return function(*point)
    except MP_DOMAIN_ERRORS:
        raise
    except Exception as exc:
        raise OracleFailure(f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------- the source


@dataclass
class UserFunction:
    """One ``def`` as the user wrote it, ready to run against any ``math`` and ``numpy``."""

    name: str
    filename: str
    code: object  # the compiled module holding only the def
    bindings: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    statements: int = 0  # statements in the body (a bound on the composed expression's size)
    # Whether it chooses by its inputs' values (a conditional expression, an `if`, a `while`):
    # run on SymPy symbols, it cannot decide a test.
    branches: bool = False

    def bind(self, math_module, numpy_module, **builtin_overrides):
        """The function, compiled in a fresh namespace: each name the module's imports bind to
        math or numpy (or one of their members) bound to ``math_module`` / ``numpy_module``
        (or that object's member), plus ``builtin_overrides`` (abs, max, min, pow)."""
        namespace: dict = {"__builtins__": builtins, "__name__": "stagegen_oracle"}
        modules = {"math": math_module, "numpy": numpy_module}
        for local, (module, member) in self.bindings.items():
            target = modules[module]
            if target is None:
                continue
            if member is None:
                namespace[local] = target
            elif hasattr(target, member):
                namespace[local] = getattr(target, member)
        namespace.update(builtin_overrides)
        exec(self.code, namespace)
        return namespace[self.name]


def module_bindings(tree: ast.AST) -> dict[str, tuple[str, str | None]]:
    """Names bound to math or numpy (or one of their members) by the import statements in the
    module: {local name: ("math" | "numpy", member or None for the module itself)}."""
    bindings: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("math", "numpy"):
                    bindings[alias.asname or alias.name] = (alias.name, None)
        elif (
            isinstance(node, ast.ImportFrom) and node.module in ("math", "numpy") and not node.level
        ):
            for alias in node.names:
                if alias.name != "*":
                    bindings[alias.asname or alias.name] = (node.module, alias.name)
    return bindings


def _without_annotations(fn: ast.FunctionDef) -> ast.FunctionDef:
    """The def with its decorators and annotations dropped: only the function itself runs."""
    fn.decorator_list = []
    fn.returns = None
    args = fn.args
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if a is not None:
            a.annotation = None
    return fn


def user_function(text: str, name: str, line: int = 0, filename: str = "<string>") -> UserFunction:
    """The ``def name`` of a module's text (the one at ``line``, when several are named so)."""
    try:
        tree = ast.parse(text, filename)
    except SyntaxError as exc:
        raise SourceUnavailable(f"the source text does not parse ({exc.msg})") from None
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
    ]
    at_line = [n for n in found if n.lineno == line]
    top = [n for n in tree.body if n in found]
    chosen = at_line or top[-1:] or (found if len(found) == 1 else [])
    if not chosen or isinstance(chosen[0], ast.AsyncFunctionDef):
        raise SourceUnavailable(f"no `def {name}` at line {line} of the source text")
    fn = _without_annotations(chosen[0])
    module = ast.Module(body=[fn], type_ignores=[])
    code = compile(module, filename, "exec")
    statements = sum(isinstance(n, ast.stmt) for n in ast.walk(fn)) - 1
    branches = any(isinstance(n, (ast.IfExp, ast.If, ast.While)) for n in ast.walk(fn))
    return UserFunction(name, filename, code, module_bindings(tree), statements, branches)


def source_text(filename: str) -> str | None:
    """The text of a file as Python loaded it (what ``inspect`` reads a function from)."""
    lines = linecache.getlines(filename)
    return "".join(lines) if lines else None


# ---------------------------------------------------------------------------- numbers: floats


def float_value(function, args):
    """The forward in floats, or None where it raises or leaves float range."""
    try:
        value = function(*args)
    except DOMAIN_ERRORS:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or abs(value) > FLOAT_LIMIT:
        return None
    return float(value)


# ---------------------------------------------------------------------------- numbers: mpmath


def _checked(value):
    """A real, finite mpmath number; ValueError for a complex or infinite one (Python's math
    raises a domain error where mpmath would return a complex number)."""
    import mpmath

    if isinstance(value, numbers.Real) and not isinstance(value, mpmath.mpf):
        value = mpmath.mpf(float(value))  # ints, bools (a mask's elements), NumPy scalars
    if isinstance(value, mpmath.mpc):
        raise ValueError("math domain error")
    if not isinstance(value, mpmath.mpf):
        raise TypeError(f"a {type(value).__name__} where a number was expected")
    if not mpmath.isfinite(value):
        raise ValueError("math domain error")
    return value


def _real(fn):
    def call(*args):
        return _checked(fn(*args))

    call.__name__ = getattr(fn, "__name__", "function")
    return call


def _mpmath_functions() -> dict:
    """math's functions in mpmath, by their names in ``math`` (the gate table's keys)."""
    import mpmath as mp

    return dict(
        exp=mp.exp, expm1=mp.expm1, log=mp.log, log2=lambda x: mp.log(x, 2),
        log10=lambda x: mp.log10(x), log1p=mp.log1p, sqrt=mp.sqrt, sin=mp.sin, cos=mp.cos,
        tan=mp.tan, asin=mp.asin, acos=mp.acos, atan=mp.atan, atan2=mp.atan2, sinh=mp.sinh,
        cosh=mp.cosh, tanh=mp.tanh, erf=mp.erf, fabs=mp.fabs,
    )  # fmt: skip


def mpmath_math():
    """A stand-in for ``math`` over mpmath, at the working precision of the caller."""
    import mpmath as mp

    def log(x, base=None):
        return mp.log(x) if base is None else mp.log(x) / mp.log(base)

    def hypot(*args):
        return mp.sqrt(mp.fsum(a * a for a in args))

    def pow_(x, y):
        x, y = mp.mpf(x), mp.mpf(y)
        if x == 0 and y < 0:
            raise ValueError("math domain error")
        return mp.power(x, y)

    functions = dict(_mpmath_functions(), log=log, hypot=hypot, pow=pow_)
    shim = SimpleNamespace(**{k: _real(f) for k, f in functions.items()})
    shim.pi, shim.e, shim.tau = +mp.pi, +mp.e, 2 * mp.pi
    shim.inf, shim.nan = mp.inf, mp.nan
    return shim


def _mp_pow(x, y, z=None):
    if z is not None:
        raise TypeError("pow() with three arguments")
    return x**y


class ScalarOracle:
    """Gradients of a scalar function (numbers and lists of numbers) from its source text."""

    def __init__(self, user: UserFunction):
        self.user = user
        self.float_function = user.bind(math, None)
        self.sympy: _SympyGradient | None = None
        self.sympy_note = ""
        if user.branches:
            self.sympy_note = (
                "SymPy's derivative not used (the function chooses by its inputs' values, "
                "which SymPy's symbols cannot decide)"
            )
        elif user.statements > SYMPY_STATEMENT_LIMIT:
            self.sympy_note = (
                f"SymPy's derivative not used ({user.statements} statements: the composed "
                "expression would swell)"
            )

    def value(self, args):
        """The float forward at the arguments (lists copied: the run must not change them)."""
        return float_value(
            self.float_function, [list(a) if isinstance(a, list) else a for a in args]
        )

    def mpmath_gradient(self, args, inputs: list[tuple]):
        """(output, [d output / d input for each input]) in 50 digits, by central differences
        of the forward run on mpmath numbers; None outside the domain (or float range)."""
        import mpmath

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            function = self.user.bind(mpmath_math(), None, pow=_mp_pow)
            exact = [
                [mpmath.mpf(v) for v in a] if isinstance(a, list) else mpmath.mpf(a) for a in args
            ]

            def run(*point):
                try:
                    out = _checked(_run_mp(function, point))
                except MP_DOMAIN_ERRORS:
                    return None
                return out if abs(out) < FLOAT_LIMIT else None

            output = run(*exact)
            if output is None:
                return None
            elements: dict[int, list[tuple]] = {}
            for index in inputs:
                elements.setdefault(index[0], []).append(index[1:])
            found = central_differences(run, exact, list(elements), elements=elements)
            if found is None:
                return None
            gradient = [element(found[index[0]], index[1:]) for index in inputs]
        return output, gradient

    def sympy_gradient(self, args, inputs: list[tuple]):
        """SymPy's exact gradient at the point (50 digits), or None where it is not available
        (the expression is too large, SymPy cannot evaluate it, or it is not real there)."""
        if self.sympy_note:
            return None
        if self.sympy is None:
            try:
                self.sympy = _SympyGradient(self.user, args, inputs)
            except Exception as exc:  # any failure of SymPy: its route is only a second opinion
                self.sympy_note = f"SymPy's derivative not used ({type(exc).__name__}: {exc})"
                return None
            if self.sympy.skipped:
                self.sympy_note = self.sympy.skipped
                return None
        return self.sympy.at(args)


def _tree_size(sp, exprs: list, limit: int) -> int:
    """Nodes of the expressions as trees (shared subtrees counted each time), up to limit + 1."""
    count = 0
    for e in exprs:
        for _ in sp.preorder_traversal(e):
            count += 1
            if count > limit:
                return count
    return count


class _Swollen(Exception):
    """A function was called on an expression past SymPy's size limit."""


def _bounded(sp, fn):
    def call(*args, **kwargs):
        exprs = [a for a in args if isinstance(a, sp.Basic)]
        if _tree_size(sp, exprs, SYMPY_TREE_LIMIT) > SYMPY_TREE_LIMIT:
            raise _Swollen
        return fn(*args, **kwargs)

    return call


class _SympyGradient:
    """The user's source run on SymPy symbols, differentiated by SymPy, compiled to mpmath."""

    def __init__(self, user: UserFunction, args, inputs: list[tuple]):
        import sympy as sp

        self.skipped = ""
        shim = SimpleNamespace(
            exp=sp.exp, expm1=lambda x: sp.exp(x) - 1,
            log=lambda x, base=None: sp.log(x) if base is None else sp.log(x) / sp.log(base),
            log2=lambda x: sp.log(x) / sp.log(2), log10=lambda x: sp.log(x) / sp.log(10),
            log1p=lambda x: sp.log(1 + x), sqrt=sp.sqrt, sin=sp.sin, cos=sp.cos, tan=sp.tan,
            asin=sp.asin, acos=sp.acos, atan=sp.atan, atan2=sp.atan2, sinh=sp.sinh,
            cosh=sp.cosh, tanh=sp.tanh, erf=sp.erf, fabs=sp.Abs,
            hypot=lambda *a: sp.sqrt(sum(x**2 for x in a)), pow=lambda x, y: x**y,
            pi=sp.pi, e=sp.E, tau=2 * sp.pi,
        )  # fmt: skip
        # Every function call first checks the size of what it is given: SymPy's automatic
        # evaluation of cos(<a large sum>) looks for multiples of pi with polynomial
        # arithmetic, which can run for minutes before any size check after the call.
        for name, fn in list(vars(shim).items()):
            if callable(fn):
                setattr(shim, name, _bounded(sp, fn))
        builtins_ = {
            n: _bounded(sp, f)
            for n, f in (("abs", sp.Abs), ("max", sp.Max), ("min", sp.Min), ("pow", sp.Pow))
        }
        function = user.bind(shim, None, **builtins_)
        symbols = []
        for k, a in enumerate(args):
            if isinstance(a, list):
                symbols.append([sp.Symbol(f"a{k}_{j}", real=True) for j in range(len(a))])
            else:
                symbols.append(sp.Symbol(f"a{k}", real=True))
        try:
            output = sp.sympify(function(*symbols))
        except _Swollen:
            output = None
        if output is None or _tree_size(sp, [output], SYMPY_TREE_LIMIT) > SYMPY_TREE_LIMIT:
            self.skipped = (
                f"SymPy's derivative not used (the composed expression has more than "
                f"{SYMPY_TREE_LIMIT} nodes)"
            )
            return
        flat = [s for a in symbols for s in (a if isinstance(a, list) else [a])]
        gradient = [sp.diff(output, element(symbols[index[0]], index[1:])) for index in inputs]
        # A small expression can still have a swollen derivative (nested powers): printing it
        # as code would then take minutes.
        if _tree_size(sp, gradient, SYMPY_DERIVATIVE_LIMIT) > SYMPY_DERIVATIVE_LIMIT:
            self.skipped = (
                f"SymPy's derivative not used (it has more than {SYMPY_DERIVATIVE_LIMIT} nodes)"
            )
            return
        self.flat = flat
        self.exprs = [output, *gradient]

    def at(self, args):
        """(output, gradient) at the point in 50 digits; None where SymPy's expressions are not
        real and finite there, or use a function this evaluator does not know."""
        import mpmath

        values = [v for a in args for v in (a if isinstance(a, list) else [a])]
        with mpmath.workdps(DIGITS):
            env = {s: mpmath.mpf(v) for s, v in zip(self.flat, values)}
            memo: dict = {}
            try:
                results = [_checked(_evaluate(e, env, memo)) for e in self.exprs]
            except Exception:  # not real, not finite, or not evaluable here
                return None
        return results[0], results[1:]


def _heaviside(x, *rest):
    import mpmath

    return mpmath.mpf(1 if x > 0 else 0 if x < 0 else 0.5)


def _evaluate(e, env: dict, memo: dict):
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
        value = mpmath.fsum(_evaluate(a, env, memo) for a in e.args)
    elif e.is_Mul:
        value = mpmath.fprod(_evaluate(a, env, memo) for a in e.args)
    elif e.is_Pow:
        value = mpmath.power(_evaluate(e.args[0], env, memo), _evaluate(e.args[1], env, memo))
    elif e.is_Function:
        name = type(e).__name__
        args = [_evaluate(a, env, memo) for a in e.args]
        special = {"Abs": mpmath.fabs, "Max": max, "Min": min, "Heaviside": _heaviside}
        function = special.get(name) or getattr(mpmath, name.lower(), None)
        if function is None:
            raise TypeError(f"no mpmath counterpart for {name}")
        value = function(*args)
    else:
        raise TypeError(f"cannot evaluate {type(e).__name__}")
    memo[e] = value
    return value


# ---------------------------------------------------------------------------- arrays: mpmath


def _mpf_array(values):
    """Floats (or an array of them) as an object array of mpmath numbers."""
    import mpmath
    import numpy as np

    a = np.asarray(values)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(*a.shape):
        out[index] = mpmath.mpf(a[index]) if a.dtype != object else a[index]
    return out


class _MpmathNumpy:
    """NumPy with its elementwise functions applied by mpmath to object arrays of mpf;
    everything else is real NumPy (dot, @, sum, mean, max, reshape, indexing, broadcasting)."""

    def __init__(self):
        import mpmath as mp
        import numpy as np

        def unary(fn):
            ufunc = np.frompyfunc(lambda t: _checked(fn(_checked(t))), 1, 1)
            return lambda x: _unwrap(ufunc(x))

        def binary(pick):
            ufunc = np.frompyfunc(lambda a, b: pick(_checked(a), _checked(b)), 2, 1)
            return lambda a, b: _unwrap(ufunc(a, b))

        # Every elementwise function array code may call (the gate table's NumPy spellings).
        functions = _mpmath_functions() | {"abs": mp.fabs}
        self._own = {spelled: unary(functions[key]) for spelled, key in NUMPY_FUNCTIONS.items()}
        self._own |= {
            "absolute": unary(mp.fabs), "square": unary(lambda t: t * t),
            "maximum": binary(lambda a, b: a if a >= b else b),
            "minimum": binary(lambda a, b: a if a <= b else b),
            "arctan2": binary(mp.atan2), "hypot": binary(mp.hypot),
            "power": binary(lambda a, b: _checked(a**b)),
        }  # fmt: skip
        self._np = np

    def __getattr__(self, name):
        own = self.__dict__.get("_own", {})
        if name in own:
            return own[name]
        return getattr(self.__dict__["_np"], name)


def _unwrap(value):
    """A 0-d result of a ufunc as the number itself (as NumPy gives a scalar)."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


class ArrayOracle:
    """The forward of an array function, from its source: in float64 (real NumPy) and on
    object arrays of 50-digit mpmath numbers, for central differences of sum(out * upstream)."""

    def __init__(self, user: UserFunction):
        import numpy as np

        self.user = user
        self.float_function = user.bind(math, np)

    def float_output(self, args):
        """The float64 output (an array), or None where it raises or is not finite."""
        import numpy as np

        try:
            with np.errstate(all="ignore"):
                out = np.asarray(self.float_function(*args), dtype=float)
        except DOMAIN_ERRORS:
            return None
        if not np.all(np.isfinite(out)) or np.any(np.abs(out) > FLOAT_LIMIT):
            return None
        return out

    def mpmath_gradient(self, args, differentiable: dict[int, tuple], upstream, elements=None):
        """{argument position: array of d sum(out * upstream) / d element} in 50 digits, by
        central differences over every element (or over ``elements``: {position: [index]});
        None outside the domain. ``differentiable`` maps argument positions to shapes."""
        import mpmath
        import numpy as np

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            function = self.user.bind(mpmath_math(), _MpmathNumpy(), pow=_mp_pow)
            exact = []  # every float as a 50-digit number; labels stay integers
            for k, a in enumerate(args):
                if differentiable.get(k) or (isinstance(a, np.ndarray) and a.dtype.kind == "f"):
                    exact.append(_mpf_array(a))
                elif k in differentiable or isinstance(a, (float, np.floating)):
                    exact.append(mpmath.mpf(float(a)))
                else:
                    exact.append(a)

            def output(*point):
                try:
                    with np.errstate(all="ignore"):
                        out = np.asarray(_run_mp(function, point), dtype=object)
                    terms = [_checked(o) for o in out.reshape(-1)]
                except MP_DOMAIN_ERRORS:
                    return None
                if any(abs(t) > FLOAT_LIMIT for t in terms):
                    return None
                return np.array(terms, dtype=object).reshape(out.shape)

            if output(*copies(exact)) is None:
                return None
            if elements is not None:  # a number is always differenced (it is one element)
                elements = {
                    k: elements.get(k, []) if shape else [()] for k, shape in differentiable.items()
                }
            upstream = np.asarray(upstream, dtype=float)
            gradients = central_differences(
                output, exact, list(differentiable), upstream, elements=elements
            )
        return gradients
