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
* **path values** (numbers only; stagegen.path_oracle): a 50-digit value and a SymPy
  expression in one, so that the forward decides by the value (branches, loops, abs, min,
  max) and builds, along the path it takes, a straight-line expression whose SymPy derivative
  is a second, exact reference.

The path values run an instrumented copy of the ``def`` (stagegen.sites: its comparisons and
tests report the outcome they took); the floats and mpmath numbers run the ``def`` as written.
"""

from __future__ import annotations

import ast
import copy
import builtins
import linecache
import math
import numbers
import operator
from dataclasses import dataclass, field
from types import SimpleNamespace

from .numeric import central_differences, copies, element
from .sites import Recorder, Site, instrument
from .gates import NUMPY_FUNCTIONS  # which np.<fn> array code may call (names only, no rules)

DIGITS = 50  # digits of the reference values
GUARD_DIGITS = 15  # extra working digits, eaten by the difference quotient
FLOAT_LIMIT = 1e250  # a value past this says nothing about float64 code

# What a forward raises where it is not defined (log(-1), 1/0, a complex value in math.exp).
DOMAIN_ERRORS = (ValueError, ZeroDivisionError, OverflowError, TypeError, FloatingPointError)
# The same on mpmath numbers, where a complex value raises ValueError (see checked): any other
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
    instrumented: object = None  # the same def, its decisions reporting (stagegen.sites)
    sites: list[Site] = field(default_factory=list)  # where it decides, indexed as reported
    # A def returning several values is run as the weighted sum of them (weights changed in
    # place by the proof, point by point): one number, whose gradient is what a backward given
    # those weights as its upstream gradients must return.
    weights: list | None = None
    positions: list[int] = field(default_factory=list)  # where those outputs are returned

    def bind(self, math_module, numpy_module, **builtin_overrides):
        """The function, compiled in a fresh namespace: each name the module's imports bind to
        math or numpy (or one of their members) bound to ``math_module`` / ``numpy_module``
        (or that object's member), plus ``builtin_overrides`` (abs, max, min, pow)."""
        return self._bound(self.code, math_module, numpy_module, builtin_overrides)

    def bind_recording(self, recorder: Recorder, math_module, numpy_module, **builtin_overrides):
        """The instrumented copy, bound as ``bind`` binds the def, its decisions reported to
        ``recorder``."""
        overrides = {**builtin_overrides, **recorder.bindings()}
        return self._bound(self.instrumented, math_module, numpy_module, overrides)

    def recorder(self, **kwargs) -> Recorder:
        """A fresh recorder of this def's sites (see stagegen.sites.Recorder)."""
        return Recorder(self.sites, **kwargs)

    def _bound(self, code, math_module, numpy_module, builtin_overrides):
        namespace: dict = {
            "__builtins__": builtins,
            "__name__": "stagegen_oracle",
            WRITE: write_into,
            SLICE: slice,
        }
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
        exec(code, namespace)
        function = namespace[self.name]
        if self.weights is None:
            return function
        weights, positions = self.weights, self.positions

        def weighted(*args):
            returned = function(*args)
            outputs = [returned[k] for k in positions]
            total = 0
            for w, out in zip(weights, outputs):
                product = w * out  # an array output: the sum of its weighted elements
                for term in product.ravel() if hasattr(product, "ravel") else [product]:
                    total = total + term
            return total

        return weighted


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


WRITE = "__stagegen_write__"  # the helper every `a[i] = v` and `a[i] op= v` runs through
SLICE = "__stagegen_slice__"  # the builtin slice, whatever the user calls `slice`


class _WritesThroughHelper(ast.NodeTransformer):
    """``a[i] = v`` -> ``a = WRITE(a, i, v, None)``, ``a[i] += v`` -> ``... "+"``: the write as
    NumPy does it, into ``a`` itself (``write_into``). On 50-digit numbers a float64 array made
    from integers or constants (``np.arange(n) * 1.0``) would round what is written into it to
    float64, so there it becomes an object array first: only that array's dtype differs."""

    OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}

    def visit_Assign(self, node):
        (target,) = node.targets if len(node.targets) == 1 else (None,)
        return self._rewritten(node, target, node.value, None) or node

    def visit_AugAssign(self, node):
        op = self.OPS.get(type(node.op))
        return (op and self._rewritten(node, node.target, node.value, op)) or node

    def _rewritten(self, node, target, value, op):
        if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)):
            return None
        name = target.value.id
        call = ast.Call(
            func=ast.Name(id=WRITE, ctx=ast.Load()),
            args=[
                ast.Name(id=name, ctx=ast.Load()),
                _index_value(target.slice),
                value,
                ast.Constant(value=op),
            ],
            keywords=[],
        )
        assign = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=call)
        return ast.fix_missing_locations(ast.copy_location(assign, node))


def _index_value(index: ast.expr) -> ast.expr:
    """An index as a value: ``a:b`` as ``slice(a, b)``, inside a tuple too."""
    if isinstance(index, ast.Slice):
        parts = [
            p if p is not None else ast.Constant(value=None)
            for p in (index.lower, index.upper, index.step)
        ]
        return ast.Call(func=ast.Name(id=SLICE, ctx=ast.Load()), args=parts, keywords=[])
    if isinstance(index, ast.Tuple):
        return ast.Tuple(elts=[_index_value(e) for e in index.elts], ctx=ast.Load())
    return index


_UPDATES = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "**": operator.pow,
}  # fmt: skip


def write_into(array, index, value, op):
    """``array[index] = value`` (or ``op=``), as NumPy runs it; the array it wrote into."""
    import numpy as np

    if (
        isinstance(array, np.ndarray)
        and array.dtype.kind == "f"
        and np.asarray(value).dtype == object
    ):
        array = _mpf_array(array)  # (50-digit numbers written: hold them as they are)
    if op is None:
        array[index] = value
    else:  # `a[i] op= v`: the positions read, combined, written back (once each, as NumPy does)
        array[index] = _UPDATES[op](array[index], value)
    return array


def user_function(
    text: str, name: str, line: int = 0, filename: str = "<string>", imported: tuple = ()
) -> UserFunction:
    """The ``def name`` of a module's text (the one at ``line``, when several are named so);
    ``imported`` holds the text of each function it calls from other modules."""
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
    # The module's functions it calls, as written, run beside it.
    callees = [_without_annotations(c) for c in _called_functions(tree, fn)]
    extra_bindings: dict = {}
    for other, imports in imported:
        for node in ast.parse(other).body:
            callees.append(_without_annotations(node))
        extra_bindings.update(module_bindings(ast.parse("\n".join(imports))))
    fn = _WritesThroughHelper().visit(fn)
    callees = [_WritesThroughHelper().visit(c) for c in callees]
    code = compile(ast.Module(body=[*callees, fn], type_ignores=[]), filename, "exec")
    try:
        recording, sites = instrument(fn, text)
        instrumented = compile(
            ast.Module(body=[*callees, recording], type_ignores=[]), filename, "exec"
        )
    except (SyntaxError, ValueError, TypeError):  # a form the instrumenter does not handle:
        instrumented, sites = code, []  # the def as written, its decisions unlocated
    bindings = {**extra_bindings, **module_bindings(tree)}
    return UserFunction(name, filename, code, bindings, instrumented, sites)


def _called_functions(tree: ast.Module, fn: ast.FunctionDef) -> list[ast.FunctionDef]:
    """The module's top-level functions ``fn`` calls, and those they call, each once."""
    top = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: dict[str, ast.FunctionDef] = {}
    pending = [fn]
    while pending:
        for node in ast.walk(pending.pop()):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if name in top and name != fn.name and name not in found:
                    found[name] = top[name]
                    pending.append(top[name])
    return [copy.deepcopy(d) for d in found.values()]


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


def checked(value):
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
        return checked(fn(*args))

    call.__name__ = getattr(fn, "__name__", "function")
    return call


def mpmath_functions() -> dict:
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

    functions = dict(mpmath_functions(), log=log, hypot=hypot, pow=pow_)
    shim = SimpleNamespace(**{k: _real(f) for k, f in functions.items()})
    shim.pi, shim.e, shim.tau = +mp.pi, +mp.e, 2 * mp.pi
    shim.inf, shim.nan = mp.inf, mp.nan
    return shim


def mp_pow(x, y, z=None):
    if z is not None:
        raise TypeError("pow() with three arguments")
    return x**y


class ScalarOracle:
    """Gradients of a scalar function (numbers and lists of numbers) from its source text.
    (Its SymPy reference, along the path the forward takes: stagegen.path_oracle.)"""

    def __init__(self, user: UserFunction):
        self.user = user
        self.float_function = user.bind(math, None)

    def value(self, args):
        """The float forward at the arguments (lists copied: the run must not change them)."""
        return float_value(
            self.float_function, [list(a) if isinstance(a, list) else a for a in args]
        )

    def mpmath_gradient(self, args, inputs: list[tuple]):
        """(output, [d output / d input for each input]) in 50 digits, by central differences
        of the forward run on mpmath numbers; None outside the domain (or float range).
        Integer arguments (trip counts, indices) stay integers."""
        import mpmath

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            function = self.user.bind(mpmath_math(), None, pow=mp_pow)
            exact = [mp_number(a) for a in args]

            def run(*point):
                try:
                    out = checked(_run_mp(function, point))
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


def tree_size(sp, expr, limit: int) -> int:
    """Nodes of a SymPy expression as a tree (shared subtrees counted each time), up to
    limit + 1: how large a derivative or a composed expression has grown."""
    count = 0
    for _ in sp.preorder_traversal(expr):
        count += 1
        if count > limit:
            break
    return count


# The largest denominator of a number the proof gives SymPy exactly (0.5, 2.5, 1e-3 are exact).
EXACT_DENOMINATOR = 10**4


def sympy_number(sp, exact):
    """A number (a SymPy Rational) as the proof's SymPy expressions hold it: exact while its
    denominator is small, else a Float with the same value to DIGITS + GUARD_DIGITS digits.

    SymPy raises exact numbers to rational powers exactly, by factoring the base and raising
    its primes to the exponent's numerator: ``(a * x) ** c`` with a literal ``a`` and ``c``
    of sixteen digits, or its derivative, never finishes (a float's exact value has a
    denominator of up to 2**1074, its decimal spelling one of 10**17). A Float is raised
    numerically; at 65 digits it holds a float's exact value, and a long decimal to far
    below what the proof measures."""
    if exact.q <= EXACT_DENOMINATOR:
        return exact
    return sp.Float(exact, DIGITS + GUARD_DIGITS)


def mp_number(value):
    """An argument on 50-digit numbers: a float (or a list's floats) as mpmath's, an integer
    (a trip count, an index) as itself."""
    import mpmath

    if isinstance(value, list):
        return [mp_number(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    return mpmath.mpf(value)


# ---------------------------------------------------------------------------- arrays: mpmath


_MP_ARRAY: list = []


def _mp_array_type():
    """An object array whose ``astype(float)`` keeps its 50-digit numbers (a copy): the
    forward's ``x.astype(float)`` is an identity on floats, and must stay one here."""
    if not _MP_ARRAY:
        import numpy as np

        class MpArray(np.ndarray):
            def astype(self, dtype, *args, **kwargs):
                if self.dtype == object and np.dtype(dtype).kind == "f":
                    return self.copy()
                return super().astype(dtype, *args, **kwargs)

        _MP_ARRAY.append(MpArray)
    return _MP_ARRAY[0]


def _mpf_array(values):
    """Floats (or an array of them) as an object array of mpmath numbers."""
    import mpmath
    import numpy as np

    a = np.asarray(values)
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(*a.shape):
        out[index] = mpmath.mpf(a[index]) if a.dtype != object else a[index]
    return out.view(_mp_array_type())


class _MpmathNumpy:
    """NumPy with its elementwise functions applied by mpmath to object arrays of mpf;
    everything else is real NumPy (dot, @, sum, mean, max, reshape, indexing, broadcasting)."""

    def __init__(self):
        import mpmath as mp
        import numpy as np

        def unary(fn):
            ufunc = np.frompyfunc(lambda t: checked(fn(checked(t))), 1, 1)
            return lambda x: _unwrap(ufunc(x))

        def binary(pick):
            ufunc = np.frompyfunc(lambda a, b: pick(checked(a), checked(b)), 2, 1)
            return lambda a, b: _unwrap(ufunc(a, b))

        # Every elementwise function array code may call (the gate table's NumPy spellings).
        functions = mpmath_functions() | {
            "abs": mp.fabs, "square": lambda t: t * t, "reciprocal": lambda t: 1 / t,
            "negative": lambda t: -t, "exp2": lambda t: mp.power(2, t), "sign": mp.sign,
            "arcsinh": mp.asinh, "arccosh": mp.acosh, "arctanh": mp.atanh,
            "rad2deg": lambda t: t * 180 / mp.pi, "deg2rad": lambda t: t * mp.pi / 180,
        }  # fmt: skip
        self._own = {spelled: unary(functions[key]) for spelled, key in NUMPY_FUNCTIONS.items()}
        self._own |= {
            "absolute": unary(mp.fabs),
            "maximum": binary(lambda a, b: a if a >= b else b),
            "minimum": binary(lambda a, b: a if a <= b else b),
            "arctan2": binary(mp.atan2), "hypot": binary(mp.hypot),
            "power": binary(lambda a, b: checked(a**b)),
            "logaddexp": binary(lambda a, b: mp.log(mp.exp(a) + mp.exp(b))),
            "logaddexp2": binary(lambda a, b: mp.log(mp.power(2, a) + mp.power(2, b), 2)),
        }  # fmt: skip
        # A new float array holds 50-digit numbers, so that what is written into it stays one.
        for name in ("zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like"):
            self._own[name] = _holding_mpf(getattr(np, name))
        self._np = np

    def __getattr__(self, name):
        own = self.__dict__.get("_own", {})
        if name in own:
            return own[name]
        return getattr(self.__dict__["_np"], name)


def _holding_mpf(make):
    """NumPy's ``make`` (np.zeros, ...), its float arrays as object arrays of mpmath numbers:
    ``h = np.zeros(...)`` then ``h[:, :D] = x`` must not round x's 50 digits to float64."""

    def made(*args, **kwargs):
        out = make(*args, **kwargs)
        return _mpf_array(out) if out.dtype.kind == "f" else out

    return made


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

    def decisions(self, args) -> Recorder | None:
        """The branch decisions of the float64 forward at the arguments (its instrumented copy,
        on copies of them): which way each comparison and test went, and which were too close
        to their boundary (stagegen.sites); None where it raises."""
        import numpy as np

        recorder = self.user.recorder()
        function = self.user.bind_recording(recorder, math, np)
        try:
            with np.errstate(all="ignore"):
                function(*copies(args))
        except DOMAIN_ERRORS:
            return None
        return recorder

    def mpmath_gradient(self, args, differentiable: dict[int, tuple], upstream, elements=None):
        """{argument position: array of d sum(out * upstream) / d element} in 50 digits, by
        central differences over every element (or over ``elements``: {position: [index]});
        None outside the domain. ``differentiable`` maps argument positions to shapes."""
        import mpmath
        import numpy as np

        with mpmath.workdps(DIGITS + GUARD_DIGITS):
            function = self.user.bind(mpmath_math(), _MpmathNumpy(), pow=mp_pow)
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
                    terms = [checked(o) for o in out.reshape(-1)]
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
