"""SymPy's reading of stagegen's stages, element by element: a number is one element.

``SymbolicForward`` evaluates the program on NumPy object arrays whose elements are SymPy
expressions (literals as exact rationals; NumPy's own dot, transpose, reshape, indexing and
broadcasting; reductions and elementwise functions element by element; a number is a 0-d
array, a list of numbers a 1-d one). ``Reference`` is SymPy's gradient of
``L = sum(out * u)`` (``u``: upstream symbols of the output's shape) with respect to every
input element, at concrete sizes and labels, compiled into straight-line mpmath code: SymPy's
``diff`` of ``L`` itself while it stays small (``WHOLE_NODE_LIMIT``), else the chain rule
element by element over SymPy's local partial derivatives of every stage (skipped past
``STAGEWISE_PARTIAL_LIMIT`` of them): linear in the program, where the whole expression
(a softmax over a layer's scores, a long chain of stages) would swell.

The array proof's symbolic check uses it, and so does the explain view, through
``reference_gradient``, for functions of numbers.
"""

from __future__ import annotations

from ..arrays import shapes
from ..arrays.ir import (
    Arange,
    Dot,
    Draw,
    Filled,
    FullSlice,
    Index,
    Join,
    Move,
    NewAxis,
    Outer,
    Put,
    Reduce,
    Reshape,
    ShapeOf,
    ShapeRead,
    Span,
    Transpose,
    Where,
)
from ..expr import And, Bin, Call, Compare, Cond, Const, Elem, Expr, Neg, Not, Num, Or, Var, walk
from ..gates import NUMPY_BINARY, NUMPY_FUNCTIONS
from ..oracle import tree_size
from ..program import Program
from ..reverse import Backward
from ..types import Types
from . import meaning
from .common import MpmathCode, index_text
from .sampling import show_sizes

WHOLE_NODE_LIMIT = 1500  # size of sum(out * u) (tree nodes) past which SymPy goes stage by stage
STAGEWISE_PARTIAL_LIMIT = 20_000  # local partial derivatives past which SymPy is skipped


_FUNCTIONS: dict = {}


def _functions() -> dict:
    """SymPy functions for max, maximum, minimum and masks, with their derivatives given here.

    SymPy's own Max differentiates by building Max of the remaining arguments and searching
    them for redundant ones, which takes minutes on a softmax over a layer's scores; these
    are plain functions with a one-line derivative, printed as mpmath code directly. Their
    derivatives follow the generated code's conventions at ties (which random points never
    meet): tied maxima of a reduction share the gradient; np.maximum(a, b) gives it to a."""
    if _FUNCTIONS:
        return _FUNCTIONS
    import sympy as sp

    relations = {">": sp.Gt, ">=": sp.Ge, "<": sp.Lt, "<=": sp.Le, "==": sp.Eq, "!=": sp.Ne}

    def indicator(op: str):
        class Mask(sp.Function):
            """1 where ``a op b`` holds, else 0 (a mask; its derivative is zero)."""

            nargs = 2

            @classmethod
            def eval(cls, a, b):
                if a.is_number and b.is_number:
                    return sp.Integer(1 if bool(relations[op](a, b)) else 0)
                return None

            def fdiff(self, argindex=1):
                return sp.Integer(0)

            def _mpmathcode(self, printer):
                a, b = (printer._print(x) for x in self.args)
                return f"(one if ({a}) {op} ({b}) else zero)"

        Mask.__name__ = f"mask_{'_'.join(str(ord(c)) for c in op)}"
        return Mask

    masks = {op: indicator(op) for op in relations}

    class IsMax(sp.Function):
        """The share of the gradient of a max over the arguments that goes to argument k (the
        first argument): 1 for the one maximum, split evenly between tied maxima, else 0."""

        @classmethod
        def eval(cls, k, *args):
            if all(a.is_number for a in args):
                top = sp.Max(*args)
                ties = sum(1 for a in args if bool(sp.Eq(a, top)))
                return sp.Rational(1, ties) if bool(sp.Eq(args[int(k)], top)) else sp.Integer(0)
            return None

        def fdiff(self, argindex=1):
            return sp.Integer(0)

        def _mpmathcode(self, printer):
            k, *args = self.args
            texts = ", ".join(printer._print(a) for a in args)
            share = "(one / sum(1 for t in v if t == max(v)) if v[k] == max(v) else zero)"
            return f"((lambda v, k: {share})([{texts}], {int(k)}))"

    class ReduceMax(sp.Function):
        """max over the arguments (np.max over an axis)."""

        @classmethod
        def eval(cls, *args):
            if len(args) == 1:
                return args[0]
            if all(a.is_number for a in args):
                return sp.Max(*args)
            return None

        def fdiff(self, argindex=1):
            return IsMax(sp.Integer(argindex - 1), *self.args)

        def _mpmathcode(self, printer):
            return f"max({', '.join(printer._print(a) for a in self.args)})"

    def pairwise(name: str, pick: str, first: str, second: str):
        class Pair(sp.Function):
            nargs = 2

            @classmethod
            def eval(cls, a, b):
                if a.is_number and b.is_number:
                    return sp.Max(a, b) if pick == "max" else sp.Min(a, b)
                return None

            def fdiff(self, argindex=1):
                a, b = self.args
                return masks[first](a, b) if argindex == 1 else masks[second](b, a)

            def _mpmathcode(self, printer):
                return f"{pick}({', '.join(printer._print(a) for a in self.args)})"

        Pair.__name__ = name
        return Pair

    _FUNCTIONS.update(
        masks=masks,
        max=ReduceMax,
        maximum=pairwise("maximum", "max", ">=", ">"),  # a tie goes to the first input
        minimum=pairwise("minimum", "min", "<=", "<"),
    )
    return _FUNCTIONS


class SymbolicForward:
    """The array IR evaluated on NumPy object arrays of SymPy expressions (exact literals)."""

    def __init__(self, program: Program):
        import numpy as np
        import sympy

        self.program, self.np, self.sp = program, np, sympy
        sp = sympy
        # Every elementwise function of the gate table that array code may call, by its key,
        # with the meaning numbers have; maximum and minimum with the derivatives given here.
        self.unary = {
            k: (lambda x, k=k: meaning.function(sp, k, [x])) for k in NUMPY_FUNCTIONS.values()
        }
        functions = _functions()
        self.binary = {
            k: (lambda a, b, k=k: meaning.function(sp, k, [a, b])) for k in NUMPY_BINARY.values()
        }
        self.binary.update(max=functions["maximum"], min=functions["minimum"])
        self.masks = functions["masks"]
        self.reduce_max = functions["max"]

    def run(self, inputs: dict) -> dict:
        """Every stage's value, given the parameters' values (object arrays, int arrays)."""
        env = dict(inputs)
        for stage in self.program.stages:
            env[stage.target] = self.value(stage.expr, env)
        return env

    def _obj(self, v):
        """As an object array of SymPy numbers and expressions (ints become exact Integers)."""
        np, sp = self.np, self.sp
        a = np.asarray(v)
        if a.dtype != object:
            if a.dtype.kind in "iub":
                return (
                    np.frompyfunc(lambda t: sp.Integer(int(t)), 1, 1)(a)
                    .astype(object)
                    .reshape(a.shape)
                )
            return (
                np.frompyfunc(lambda t: meaning.number(sp, float(t)), 1, 1)(a)
                .astype(object)
                .reshape(a.shape)
            )
        return a

    def _ufunc(self, fn, nargs: int):
        np = self.np
        f = np.frompyfunc(fn, nargs, 1)
        return lambda *args: np.asarray(f(*[self._obj(a) for a in args]), dtype=object)

    def value(self, e: Expr, env: dict):
        np, sp = self.np, self.sp
        v = lambda x: self.value(x, env)  # noqa: E731
        if isinstance(e, Num):
            return np.asarray(meaning.number(sp, e.value), dtype=object)
        if isinstance(e, Var):
            return env[e.name]
        if isinstance(e, Elem):  # an element of a list of numbers
            return np.asarray(np.asarray(env[e.name], dtype=object)[e.index], dtype=object)
        if isinstance(e, Const):
            return np.asarray(meaning.constant(sp, e.name), dtype=object)
        if isinstance(e, Cond):
            piecewise = lambda t, a, b: sp.Piecewise((a, t), (b, True))  # noqa: E731
            test = self._relation(e.test, env)
            return self._ufunc(piecewise, 3)(test, v(e.body), v(e.orelse))
        if isinstance(e, Neg):
            return np.asarray(np.negative(self._obj(v(e.operand))), dtype=object)
        if isinstance(e, Bin):
            a, b = self._obj(v(e.left)), self._obj(v(e.right))
            op = {
                "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                "**": np.power,
            }[e.op]  # fmt: skip
            return np.asarray(op(a, b), dtype=object)
        if isinstance(e, Call):
            if e.fn in self.binary and len(e.args) == 2:
                return self._ufunc(self.binary[e.fn], 2)(v(e.args[0]), v(e.args[1]))
            if e.fn in self.unary and len(e.args) == 1:
                return self._ufunc(self.unary[e.fn], 1)(v(e.args[0]))
            # the functions numbers have beyond NumPy's (erf, a log's base, max of three)
            fn = lambda *args, name=e.fn: meaning.function(sp, name, list(args))  # noqa: E731
            return self._ufunc(fn, len(e.args))(*[v(a) for a in e.args])
        if isinstance(e, Compare):
            return self._ufunc(self.masks[e.op], 2)(v(e.left), v(e.right))
        if isinstance(e, Dot):
            return np.asarray(np.dot(self._obj(v(e.left)), self._obj(v(e.right))), dtype=object)
        if isinstance(e, Move):
            x = np.asarray(v(e.operand))
            if e.fn in ("copy", "astype"):
                return x.copy()
            if e.fn in ("ravel", "flatten"):
                return x.reshape(-1)
            if e.fn == "swapaxes":
                return np.swapaxes(x, *e.args)
            if e.fn == "transpose":
                return np.transpose(x, e.args)
            return getattr(np, e.fn)(x, e.args)  # expand_dims, squeeze
        if isinstance(e, Draw):  # the forward's draws again, from the same seed
            like = np.asarray(v(e.like))
            seed = int(np.asarray(v(e.seed)).item())
            draws = np.random.RandomState(seed).rand(*like.shape)
            return self._obj(draws)
        if isinstance(e, Filled):
            if e.fn.endswith("_like"):
                shape = np.asarray(v(e.shape[0])).shape
            elif isinstance(e.shape[0], ShapeOf):
                shape = np.asarray(v(e.shape[0].operand)).shape
            else:
                shape = tuple(int(np.asarray(v(d)).item()) for d in e.shape)
            fill = {"zeros": 0, "ones": 1}.get(e.fn.replace("_like", ""))
            value = sp.Integer(fill) if fill is not None else self._obj(v(e.value)).item()
            out = np.empty(shape, dtype=object)
            out[...] = value
            return out
        if isinstance(e, Join):
            parts = [self._obj(v(p)) for p in e.parts]
            if e.fn == "stack" or (e.fn == "vstack" and parts[0].ndim == 1):
                return np.stack(parts, axis=e.axis)
            return np.concatenate(parts, axis=e.axis)
        if isinstance(e, Outer):
            return np.asarray(np.outer(self._obj(v(e.left)), self._obj(v(e.right))), dtype=object)
        if isinstance(e, Where):  # the mask's elements are 1 or 0 (Mask functions)
            test = self._obj(v(e.test))
            a, b = self._obj(v(e.body)), self._obj(v(e.orelse))
            return np.asarray(test * a + (1 - test) * b, dtype=object)
        if isinstance(e, Transpose):
            return np.asarray(v(e.operand)).T
        if isinstance(e, Reshape):
            dims = [int(np.asarray(v(d)).item()) for d in e.shape]
            return np.asarray(v(e.operand)).reshape(dims)
        if isinstance(e, Reduce):
            return self._reduce(e, np.asarray(v(e.operand)))
        if isinstance(e, Index):
            return np.asarray(v(e.operand))[self._items(e.items, env)]
        if isinstance(e, Put):
            before = self._obj(v(e.operand))
            written = self._obj(v(e.value))
            first, *_ = e.items
            if self.program.types["<expressions>"].get(first, None) is not None and (
                self.program.types["<expressions>"][first].kind == "bool"
            ):  # a mask's elements are 1 or 0 (Mask functions), as in np.where
                test = self._obj(v(first))
                return np.asarray(test * written + (1 - test) * before, dtype=object)
            after = before.copy()
            after[self._items(e.items, env)] = written
            return after
        if isinstance(e, ShapeRead):
            return np.asarray(sp.Integer(np.asarray(v(e.operand)).shape[e.axis]), dtype=object)
        if isinstance(e, Arange):
            return np.arange(int(np.asarray(v(e.stop)).item()))
        raise TypeError(f"the array proof cannot evaluate {e!r}")

    def _items(self, items, env: dict) -> tuple:
        """An index's items as NumPy takes them (labels as integers)."""
        np = self.np
        out = []
        for item in items:
            if isinstance(item, FullSlice):
                out.append(slice(None))
            elif isinstance(item, NewAxis):
                out.append(None)
            elif isinstance(item, Span):
                ends = [
                    None if x is None else int(np.asarray(self.value(x, env)).item())
                    for x in (item.start, item.stop)
                ]
                out.append(slice(*ends))
            else:
                out.append(np.asarray(self.value(item, env)).astype(np.int64))
        return tuple(out)

    def _relation(self, e: Expr, env: dict):
        """A condition (a comparison, or ``and`` of them) as SymPy relations, element by
        element, for a Piecewise."""
        sp = self.sp
        if isinstance(e, And):
            items = [self._relation(i, env) for i in e.items]
            return self._ufunc(lambda *r: sp.And(*r), len(items))(*items)
        if isinstance(e, Or):
            items = [self._relation(i, env) for i in e.items]
            return self._ufunc(lambda *r: sp.Or(*r), len(items))(*items)
        if isinstance(e, Not):
            return self._ufunc(sp.Not, 1)(self._relation(e.operand, env))
        if isinstance(e, Compare):
            relation = {">": sp.Gt, ">=": sp.Ge, "<": sp.Lt, "<=": sp.Le, "==": sp.Eq, "!=": sp.Ne}
            return self._ufunc(relation[e.op], 2)(self.value(e.left, env), self.value(e.right, env))
        raise TypeError(f"the proof cannot read {e!r} as a condition")

    def _reduce(self, e: Reduce, x):
        np, sp = self.np, self.sp
        axes = tuple(range(x.ndim)) if e.axis is None else e.axis
        if x.dtype != object and e.fn == "sum":  # integers (labels, sizes)
            return np.sum(x, axis=axes, keepdims=e.keepdims)
        x = self._obj(x)
        kept = [i for i in range(x.ndim) if i not in axes]
        moved = np.transpose(x, kept + list(axes))
        rows = moved.reshape(tuple(x.shape[i] for i in kept) + (-1,))
        count = rows.shape[-1]
        n = sp.Integer(count)

        def var(row):
            # (sum(r**2) - sum(r)**2 / n) / (n - ddof): the same number as sum((r - mean)**2)
            # / (n - ddof) (exact arithmetic, 50-digit evaluation), of size linear in the row
            # where that form repeats the mean in every term
            total = sp.Add(*row)
            return (sp.Add(*[r**2 for r in row]) - total**2 / n) / (n - e.ddof)

        combine = {
            "max": lambda row: self.reduce_max(*row),
            # min(row) = -max(-row): tied minima share the gradient, as tied maxima do
            "min": lambda row: -self.reduce_max(*[-r for r in row]),
            "sum": lambda row: sp.Add(*row),
            "mean": lambda row: sp.Add(*row) / n,
            "prod": lambda row: sp.Mul(*row),
            "var": var,
            "std": lambda row: sp.sqrt(var(row)),
            "norm": lambda row: sp.sqrt(sp.Add(*[r**2 for r in row])),
        }[e.fn]
        flat = rows.reshape(-1, count)
        out = np.empty(flat.shape[0], dtype=object)
        for k in range(flat.shape[0]):
            out[k] = combine(list(flat[k]))
        out = out.reshape(rows.shape[:-1])
        if e.keepdims:
            out = out.reshape(tuple(1 if i in axes else x.shape[i] for i in range(x.ndim)))
        return np.asarray(out, dtype=object)


def symbol_array(sp, np, name: str, shape: tuple):
    symbols = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        symbols[index] = sp.Symbol(index_text(name, index), real=True)
    return symbols


class Reference:
    """SymPy's gradient of sum(out * u) for one program at concrete sizes and labels, compiled
    into mpmath code; ``at`` evaluates it at a point. Two routes:

    * whole: the output elements as SymPy expressions of the input elements, and SymPy's
      ``diff`` of ``sum(out * u)`` by every input element (while that expression is small);
    * stage by stage: every element of every stage as a SymPy expression of the elements of the
      values it reads, SymPy's ``diff`` by each of them (the local partial derivatives), and
      the chain rule applied element by element in 50-digit arithmetic: linear in the size of
      the program, where the whole expression (a softmax over a layer's scores) would swell.
    """

    def __init__(self, program: Program, backward: Backward, sizes: dict, labels: dict):
        import numpy as np
        import sympy as sp

        self.program, self.sizes, self.labels = program, sizes, labels
        self.types = Types(program)
        self.wrt = list(backward.wrt)
        self.inputs: dict = dict(labels)
        self.float_symbols: dict[str, object] = {}  # param -> object array of its symbols
        for p in program.params:
            if not p.labels:
                shape = (p.length,) if p.is_list else shapes.size(p.shape or (), sizes)
                symbols = symbol_array(sp, np, p.name, shape)
                self.float_symbols[p.name] = symbols
                self.inputs[p.name] = symbols
        self.out_shape = shapes.size(self.types.shape(Var(program.output.name)), sizes)
        # (not an identifier, so no parameter or stage can share its symbols)
        self.upstream = symbol_array(sp, np, "<upstream>", self.out_shape)
        self.skipped = ""
        self.function = None
        self.method = ""
        whole = self._whole(sp, np)
        if not whole:
            self._stage_by_stage(sp, np)

    def _order(self) -> list:
        return [s for a in self.float_symbols.values() for s in a.reshape(-1)] + list(
            self.upstream.reshape(-1)
        )

    def _whole(self, sp, np) -> bool:
        # Only the stages the output reads, each checked as it is built: SymPy's automatic
        # simplification of a swollen element (tanh of a long sum) can take minutes by itself.
        program, forward = self.program, SymbolicForward(self.program)
        needed = {program.output.name}
        for stage in reversed(program.stages):
            if stage.target in needed:
                needed |= {n.name for n in walk(stage.expr) if isinstance(n, Var)}
        env = dict(self.inputs)
        for stage in program.stages:
            if stage.target not in needed:
                continue
            env[stage.target] = forward.value(stage.expr, env)
            elements = np.asarray(env[stage.target], dtype=object).reshape(-1)
            if self.types.of(Var(stage.target)).kind == "float" and any(
                tree_size(sp, sp.sympify(x), WHOLE_NODE_LIMIT) > WHOLE_NODE_LIMIT for x in elements
            ):
                return False
        out = np.asarray(env[program.output.name], dtype=object)
        outputs = [sp.sympify(o) for o in out.reshape(-1)]
        total = sp.Add(*[o * u for o, u in zip(outputs, self.upstream.reshape(-1))])
        if tree_size(sp, total, WHOLE_NODE_LIMIT) > WHOLE_NODE_LIMIT:
            return False
        gradients = [
            sp.diff(total, s) for name in self.wrt for s in self.float_symbols[name].reshape(-1)
        ]
        self.function = _compile(
            sp, f"SymPy reference for {self.program.name}", self._order(), outputs + gradients
        )
        self.method = "SymPy element by element"
        return True

    def _stage_by_stage(self, sp, np) -> None:
        program = self.program
        forward = SymbolicForward(program)
        env = dict(self.inputs)
        stages = []  # (symbols of the stage's elements, their expressions)
        partial_count = 0
        for stage in program.stages:
            value = np.asarray(forward.value(stage.expr, env), dtype=object)
            if self.types.of(Var(stage.target)).kind == "int":
                env[stage.target] = value  # sizes and indices: concrete
                continue
            symbols = symbol_array(sp, np, stage.target, value.shape)
            env[stage.target] = symbols
            exprs = [sp.sympify(e) for e in value.reshape(-1)]
            stages.append((list(symbols.reshape(-1)), exprs))
            partial_count += sum(len(e.free_symbols) for e in exprs)
            if partial_count > STAGEWISE_PARTIAL_LIMIT:
                self.skipped = (
                    f"symbolic check skipped: more than {STAGEWISE_PARTIAL_LIMIT} local partial "
                    f"derivatives on {show_sizes(self.sizes)}; central differences only"
                )
                return
        out = np.asarray(env[program.output.name], dtype=object)
        code = MpmathCode()
        order = self._order()
        for s in order:
            code.name_of(s)
        adjoint = lambda s: "a_" + code.name_of(s)  # noqa: E731
        body, sweep = [], []
        differentiable = {s for a in self.float_symbols.values() for s in a.reshape(-1)}
        for symbols, exprs in stages:
            differentiable.update(symbols)
        for symbols, exprs in stages:
            for symbol, e in zip(symbols, exprs):
                body.append(f"{code.name_of(symbol)} = real({code.text(e)})")
                terms = []
                for k, s in enumerate(sorted(e.free_symbols & differentiable, key=str)):
                    d = sp.diff(e, s)
                    if d != 0:
                        local = f"p_{code.name_of(symbol)}_{k}"
                        body.append(f"{local} = real({code.text(d)})")
                        terms.append(f"{adjoint(s)} += {adjoint(symbol)} * {local}")
                sweep.append(terms)
        body += [f"{adjoint(s)} = zero" for s in sorted(differentiable, key=code.name_of)]
        for o, u in zip(out.reshape(-1), self.upstream.reshape(-1)):
            body.append(f"{adjoint(o)} += {code.name_of(u)}")
        for terms in reversed(sweep):
            body += reversed(terms)
        outputs = [code.text(sp.sympify(o)) for o in out.reshape(-1)]
        gradients = [adjoint(s) for name in self.wrt for s in self.float_symbols[name].reshape(-1)]
        result = ", ".join([f"real({o})" for o in outputs] + gradients)
        self.function = code.compile(
            f"SymPy chain rule for {program.name}", order, body, f"[{result}]"
        )
        self.method = "the chain rule element by element with SymPy's local derivatives"

    def at(self, values: dict, upstream):
        """(output, {param: gradient array}) in 50 digits; ValueError outside the domain."""
        import numpy as np

        args = []
        for name in self.float_symbols:
            args += [float(t) for t in np.asarray(values[name], dtype=float).reshape(-1)]
        weights = np.broadcast_to(np.asarray(upstream, dtype=float), self.out_shape)
        args += [float(t) for t in weights.reshape(-1)]
        results = self.function(*args)
        n_out = int(np.prod(self.out_shape, dtype=int))
        out = np.array(results[:n_out], dtype=object).reshape(self.out_shape)
        gradients, k = {}, n_out
        for name in self.wrt:
            shape = self.float_symbols[name].shape
            n = int(np.prod(shape, dtype=int))
            gradients[name] = np.array(results[k : k + n], dtype=object).reshape(shape)
            k += n
        return out, gradients


def _compile(sp, title: str, inputs: list, exprs: list):
    """Straight-line mpmath code for several expressions, common subexpressions named once."""
    code = MpmathCode()
    for s in inputs:
        code.name_of(s)
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_common"), order="none")
    body = [f"{code.name_of(s)} = {code.text(e)}" for s, e in replacements]
    results = ", ".join(f"real({code.text(e)})" for e in reduced)
    return code.compile(title, inputs, body, f"[{results}]")


def reference_gradient(program: Program, backward: Backward, point: dict[str, float]) -> dict:
    """SymPy's gradient of a function of numbers at a point, in 50 digits: {input name (``w[0]``
    for list elements): value}. Raises ValueError (or ZeroDivisionError) where the function
    is not defined."""
    import numpy as np

    reference = Reference(program, backward, {}, {})
    values = {
        p.name: (
            [point[index_text(p.name, (i,))] for i in range(p.length)]
            if p.is_list
            else point[p.name]
        )
        for p in program.params
    }
    _, gradients = reference.at(values, 1.0)
    return {
        index_text(name, index): gradients[name][index]
        for name in backward.wrt
        for index in np.ndindex(*gradients[name].shape)
    }
