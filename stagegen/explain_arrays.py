"""Explain array code: each gradient statement with its shape and the dimension argument that
fixes it, symbolically or at a point of random arrays. It computes; narrate.py words it and
circuit.py draws it; explanation.py is the entry point for numbers and arrays alike.

The notes teach array gradients by dimension analysis: "dW must have W's shape (D, M); the only
product of X (N, D) and dout (N, M) with that shape is X.T.dot(dout)". For every gradient
statement this module finds the shape of the gradient (from the program's types, symbolic
dimensions such as N and D), and for the operations that fix it the argument: every product
(``Dot``, ``Outer``) with its factors' shapes and whether another product of the same factors
has that shape too; a sum over broadcast axes; a gradient spread back over an axis; a scatter.

At a point, nothing here re-derives a gradient: the generated module (the text ``stagegen
FILE.py`` writes) is loaded and its backward run under a line tracer (traced.py), which reads,
after each of its lines, the names the line writes. Generated lines are matched to the sweep's
statements by their ``# backprop`` headers and ``# (n)`` comments, so the values are those of
the code the user would ship. The inputs' gradients are compared with central differences of
the forward.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .arrays import shapes
from .arrays.ir import (
    Arange,
    ArrayPrinter,
    BroadcastTo,
    Copy,
    Dim,
    Dot,
    FullSlice,
    Index,
    Move,
    NewAxis,
    Others,
    Outer,
    Put,
    Reduce,
    Reshape,
    ShapeRead,
    Span,
    Transpose,
    Where,
    Zeros,
    stage_line,
)
from .arrays.shapes import Shape, ShapeError
from .errors import StagegenError
from .explained import short
from .expr import Bin, Call, Compare, Const, Expr, Neg, Num, Var, walk
from .program import Program, Stage, backward_name
from .reverse import Backward
from .structural import Zeroed
from .traced import GeneratedLine, allocates, read_backward, traced_run
from .types import dimension_names

# The teaching aid is for small arrays: every value is drawn, traced and differenced.
ELEMENT_LIMIT = 10_000  # elements per array at the point
DIFFERENCE_LIMIT = 2_000  # elements differenced per input (two forward runs each)

# ---------------------------------------------------------------------------- the model


@dataclass
class Product:
    """A matrix product in a gradient statement, and the dimension argument that fixes it."""

    code: str  # "x.T.dot(dout)"
    factors: list[tuple[str, Shape]]  # [("x", ("N", "D")), ("dout", ("N", "M"))]
    shape: Shape  # the product's shape
    whole: bool  # the product is the statement's value: it must have the gradient's shape
    others: list[str]  # different products of the same factors with that shape (usually none)


@dataclass
class Summed:
    """A gradient summed over broadcast axes: ``dout.sum(axis=0)``."""

    code: str  # what is summed: "dout", "xhat * dout"
    shape: Shape  # its shape
    axes: tuple[int, ...]  # the axes summed
    keepdims: bool


@dataclass
class Spread:
    """A gradient spread back over the axes a sum or a mean took away: ``np.broadcast_to``."""

    code: str  # "dvar / N"
    shape: Shape
    to: Shape
    axes: tuple[int, ...]  # the axes of ``to`` it is repeated along


@dataclass
class Scattered:
    """A gather's gradient added back at its indices with ``np.add.at``."""

    values: str  # "dcorrect"
    index: str  # "(np.arange(n), y)"
    shape: Shape | None  # the values' shape


@dataclass
class Said:
    """What an operation of the gradient code does, in words (a product of the other elements,
    a slice of a joined gradient, a move undone, a divisor kept off zero)."""

    text: str


@dataclass
class ArrayStep:
    """One gradient statement of the generated backward (one or more lines of it)."""

    stage: Stage
    lines: list[str]  # the generated code (a zeros line and np.add.at for a scatter)
    gradient: str  # "dw"
    of: str | None  # the forward value whose gradient it is; None for an intermediate
    accumulate: bool
    shape: Shape | None  # the gradient's symbolic shape
    arguments: list = field(default_factory=list)  # Product | Summed | Spread | Scattered
    earlier: list[int] = field(default_factory=list)  # for +=: stages it adds to
    value: object = None  # at a point: the gradient after these lines


@dataclass
class ArrayBlock:
    stage: Stage
    header: str  # "out = x.dot(w) + b", as the generated comment writes it
    shape: Shape  # the stage's shape
    steps: list[ArrayStep]


@dataclass
class ArrayForwardStep:
    stage: Stage
    code: str  # "out = x.dot(w) + b"
    shape: Shape
    value: object = None


@dataclass
class ArrayLine:
    """A line of the backward outside the blocks: a size read, the upstream's broadcast, a zero
    gradient."""

    code: str
    kind: str  # "size", "upstream", "zero"
    name: str  # the name it binds
    note: str = ""  # the generated comment ("x does not reach the output")
    value: object = None


@dataclass
class ArrayInputGradient:
    name: str  # "w"
    gradient: str  # "dw"
    shape: Shape  # symbolic
    stages: list[int]  # the stages whose statements write it (empty: no path to the output)
    value: object = None
    finite_difference: object = None  # None: not computed (see the explanation's notes)

    @property
    def largest_difference(self) -> float | None:
        if self.value is None or self.finite_difference is None:
            return None
        import numpy as np

        return float(np.max(np.abs(np.asarray(self.value) - self.finite_difference), initial=0.0))

    @property
    def agrees_with_finite_difference(self) -> bool | None:
        import numpy as np

        if self.largest_difference is None:
            return None
        scale = max(1.0, float(np.max(np.abs(np.asarray(self.value)), initial=0.0)))
        return self.largest_difference <= 1e-5 * scale


@dataclass
class ArrayExplanationData:
    """An array function's forward and backward, symbolically (sizes None) or at a point."""

    program: Program
    backward: Backward
    module_text: str  # the generated module whose backward is explained (and run)
    sizes: dict[str, int] | None  # the dimensions' sizes at the point; None: symbolic
    seed: int | None
    values: dict | None  # every parameter's value at the point
    drawn: list[str]  # the parameters whose values were drawn at random
    distribution: str  # what they were drawn from ("a standard normal", ...)
    forward: list[ArrayForwardStep]
    setup: list[ArrayLine]
    upstream: str  # "dout"
    upstream_shape: Shape
    blocks: list[ArrayBlock]
    zero: list[ArrayLine]
    inputs: list[ArrayInputGradient]
    split: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def symbolic(self) -> bool:
        return self.sizes is None

    @property
    def output(self) -> str:
        return self.program.output.name

    @property
    def numbers(self) -> dict:
        """The number parameters' values at the point (given, or their defaults)."""
        if self.values is None:
            return {}
        return {
            p.name: self.values[p.name]
            for p in self.program.params
            if not p.shape and not p.labels and p.name not in self.drawn
        }

    @property
    def gradient_names(self) -> set[str]:
        """Every name the backward gives a gradient."""
        names = {self.upstream} | {g.gradient for g in self.inputs}
        names |= {s.gradient for b in self.blocks for s in b.steps}
        return names | {line.name for line in self.zero}

    def where(self) -> str:
        """ "N=2, D=3, reg=0.5 (seed 0)" or "symbolically"."""
        if self.symbolic:
            return "symbolically"
        given = [f"{k}={v}" for k, v in self.sizes.items()]
        given += [f"{k}={short(v)}" for k, v in self.numbers.items()]
        return ", ".join(given) + f" (seed {self.seed})"

    def __repr__(self) -> str:
        where = self.where() if self.symbolic else "at " + self.where()
        lines = len(self.setup) + sum(len(s.lines) for b in self.blocks for s in b.steps)
        lines += len(self.zero)
        return f"<Explanation of {self.program.name} {where}: {lines} backward lines>"


def shape_text(shape: Shape | None) -> str:
    """``(N, D)``, ``(M,)``; a number's shape is ``()``."""
    return "?" if shape is None else shapes.show(shape)


def summary(value, limit: int = 6) -> str:
    """A value in a few characters: a number as ``short`` writes it; a small array whole
    (``[[0.5, -1.2], [0.3, 2]]``), a larger one by its first elements and its range."""
    import numpy as np

    if value is None:
        return "?"
    a = np.asarray(value)
    if a.ndim == 0:
        return short(a.item())
    if a.size <= limit:
        return _nested(a)
    if a.size and a.min() == a.max():
        return f"all {short(a.flat[0])}"
    first = ", ".join(short(v) for v in a.ravel()[:3])
    low, high = a.min(), a.max()
    return f"[{first}, …] from {short(low)} to {short(high)}"


def _nested(a) -> str:
    if a.ndim == 1:
        return "[" + ", ".join(short(v) for v in a) + "]"
    return "[" + ", ".join(_nested(row) for row in a) + "]"


# ---------------------------------------------------------------------------- shapes


class _Shapes:
    """The symbolic shape of any expression of the gradient code: forward values from the
    program's types, gradients from the values they are gradients of, the rest by NumPy's
    rules (``shapes.py``). None where a shape cannot be told (never guessed)."""

    def __init__(self, program: Program, upstream: str):
        self.types = program.types
        self.known: dict[str, Shape] = {upstream: program.types[program.output.name].shape}

    def var(self, name: str) -> Shape | None:
        if name in self.known:
            return self.known[name]
        t = self.types.get(name)
        return None if t is None else t.shape

    def dim(self, e: Expr):
        if isinstance(e, Dim):
            return e.name
        if isinstance(e, Num) and isinstance(e.value, int):
            return e.value
        if isinstance(e, Var):
            t = self.types.get(e.name)
            return t.value if t is not None and t.value is not None else None
        if isinstance(e, ShapeRead):
            s = self.of(e.operand)
            return s[e.axis] if s is not None and e.axis < len(s) else None
        if isinstance(e, Bin) and e.op == "*":
            a, b = self.dim(e.left), self.dim(e.right)
            return None if a is None or b is None else shapes.multiply([a, b])
        return None

    def dims(self, items) -> Shape | None:
        out = [self.dim(d) for d in items]
        return None if any(d is None for d in out) else tuple(out)

    def of(self, e: Expr) -> Shape | None:
        try:
            return self._of(e)
        except (ShapeError, IndexError, TypeError):
            return None

    def _of(self, e: Expr) -> Shape | None:
        if isinstance(e, Var):
            return self.var(e.name)
        if isinstance(e, (Num, Dim, ShapeRead)):
            return ()
        if isinstance(e, (Neg, Copy)):
            return self.of(e.operand)
        if isinstance(e, (Bin, Compare, Call)):
            parts = [self.of(k) for k in e.children()]
            if any(p is None for p in parts):
                return None
            out: Shape = ()
            for p in parts:
                out = shapes.broadcast(out, p)
            return out
        if isinstance(e, (Dot, Outer)):
            a, b = self.of(e.left), self.of(e.right)
            if a is None or b is None:
                return None
            if isinstance(e, Outer):
                return (a[0], b[0]) if len(a) == 1 and len(b) == 1 else None
            return shapes.dot(a, b)
        if isinstance(e, Transpose):
            s = self.of(e.operand)
            return None if s is None else tuple(reversed(s))
        if isinstance(e, Reduce):
            s = self.of(e.operand)
            if s is None:
                return None
            return shapes.reduce(s, shapes.normalize_axis(e.axis, len(s)), e.keepdims)
        if isinstance(e, (Reshape, BroadcastTo)):
            return self.dims(e.shape)
        if isinstance(e, Zeros):
            return self.dims(e.shape)
        if isinstance(e, Arange):
            d = self.dim(e.stop)
            return None if d is None else (d,)
        if isinstance(e, Others):
            return self.of(e.operand)
        if isinstance(e, Where):
            parts = [self.of(k) for k in e.children()]
            if any(p is None for p in parts):
                return None
            out = ()
            for p in parts:
                out = shapes.broadcast(out, p)
            return out
        if isinstance(e, Move):
            return self._moved(e)
        if isinstance(e, Index):
            return self._index(e)
        if _is_scatter(e):
            return self.dims(e.shape)
        return None

    def _moved(self, e: Move) -> Shape | None:
        s = self.of(e.operand)
        if s is None:
            return None
        if e.fn in ("copy", "astype"):
            return s
        if e.fn in ("ravel", "flatten"):
            return (shapes.multiply(s),)
        if e.fn == "squeeze":
            return tuple(d for k, d in enumerate(s) if k not in e.args)
        if e.fn == "expand_dims":
            rest = iter(s)
            return tuple(1 if k in e.args else next(rest) for k in range(len(s) + len(e.args)))
        if e.fn == "transpose":
            return tuple(s[k] for k in e.args)
        out = list(s)  # swapaxes
        a, b = e.args
        out[a], out[b] = out[b], out[a]
        return tuple(out)

    def _index(self, e: Index) -> Shape | None:
        s = self.of(e.operand)
        if s is None:
            return None
        out, axis = [], 0
        for item in e.items:
            if isinstance(item, NewAxis):
                out.append(1)
            elif isinstance(item, FullSlice):
                out.append(s[axis])
                axis += 1
            elif isinstance(item, Num) and isinstance(item.value, int):
                axis += 1  # one slot of the axis: the axis goes
            elif isinstance(item, Span):
                start = 0 if item.start is None else self.dim(item.start)
                stop = s[axis] if item.stop is None else self.dim(item.stop)
                size = _difference(stop, start)
                if size is None:
                    return None
                out.append(size)
                axis += 1
            else:
                return None  # an index array: the gather's shape is its indices' (not needed)
        return tuple(out) + tuple(s[axis:])


def _difference(a, b):
    """``a - b`` for dimensions that are multiples of one product of names (2*N - N is N), or
    numbers; None otherwise."""
    if a is None or b is None:
        return None
    (ca, na), (cb, nb) = shapes.factors(a), shapes.factors(b)
    if b == 0:
        return a
    if na != nb or ca <= cb:
        return None
    return shapes.multiply([ca - cb, *na])


def _is_scatter(e: Expr) -> bool:
    """The sweep's scatter node (a gather's gradient), known by what it holds."""
    return all(hasattr(e, a) for a in ("shape", "items", "values")) and not isinstance(e, Index)


# ---------------------------------------------------------------------------- arguments


def _stripped(e: Expr) -> Expr:
    """The value without its sign and a constant factor: what fixes its shape."""
    while True:
        if isinstance(e, Neg):
            e = e.operand
        elif isinstance(e, Bin) and e.op == "*" and isinstance(e.left, Num):
            e = e.right
        else:
            return e


def _base(e: Expr) -> tuple[Expr, bool]:
    """A factor without its transpose: (x, True) for ``x.T``."""
    if isinstance(e, Transpose):
        return e.operand, True
    return e, False


class _Arguments:
    def __init__(self, printer: ArrayPrinter, known: _Shapes):
        self.print, self.shapes = printer, known

    def factor_text(self, e: Expr) -> str:
        text = self.print(e)
        return text if isinstance(e, Var) else f"({text})"

    def of(self, value: Expr) -> list:
        found: list = []
        top = _stripped(value)
        for node in walk(value):
            if isinstance(node, (Dot, Outer)):
                product = self.product(node, whole=node is top)
                if product is not None:
                    found.append(product)
        if isinstance(top, Reduce) and top.fn == "sum":
            s = self.shapes.of(top.operand)
            if s is not None:
                axes = shapes.normalize_axis(top.axis, len(s)) or tuple(range(len(s)))
                found.append(Summed(self.print(top.operand), s, axes, top.keepdims))
        elif isinstance(top, BroadcastTo):
            s, to = self.shapes.of(top.operand), self.shapes.of(top)
            if s is not None and to is not None and not shapes.has_rest(to):  # (axes known)
                lead = len(to) - len(s)
                axes = tuple(range(lead)) + tuple(
                    lead + k for k, d in enumerate(s) if d == 1 and to[lead + k] != 1
                )
                if axes:  # (a size-1 axis put back is no spread)
                    found.append(Spread(self.print(top.operand), s, to, axes))
        elif _is_scatter(value):
            items = ", ".join(self.print(i) for i in value.items)
            index = f"({items},)" if len(value.items) == 1 else f"({items})"
            found.append(Scattered(self.print(value.values), index, self.shapes.of(value.values)))
        said: list[str] = []
        for node in walk(value):
            text = _words(node, self.print)
            if text is not None and text not in said:
                said.append(text)
        return found + [Said(t) for t in said]

    def product(self, node: Expr, whole: bool) -> Product | None:
        shape = self.shapes.of(node)
        (a, _), (b, _) = _base(node.left), _base(node.right)
        sa, sb = self.shapes.of(a), self.shapes.of(b)
        if shape is None or sa is None or sb is None:
            return None
        code = self.print(node)

        def key(product: Expr) -> tuple:
            return _product_key(
                product, self.print, {self.print(a): len(sa), self.print(b): len(sb)}
            )

        mine = key(node)
        others: dict = {}
        for candidate in _candidates(a, sa, b, sb):
            try:
                s = self.shapes.of(candidate)
            except ShapeError:
                continue
            k = key(candidate)
            if s == shape and k != mine and k not in others:
                others[k] = self.print(candidate)
        factors = [(self.factor_text(a), sa), (self.factor_text(b), sb)]
        return Product(code, factors, shape, whole, list(others.values()))


_UNDONE = {  # a gradient's move, by what it does
    "squeeze": "takes away the axis np.expand_dims added",
    "expand_dims": "puts back the axis squeeze took away",
    "transpose": "moves the axes back (the inverse permutation)",
    "swapaxes": "swaps the axes back",
}


def _words(node: Expr, print_) -> str | None:
    """The teaching aid's sentence for one node of the gradient code, or None."""
    if isinstance(node, Others):
        return (
            f"{print_(node)}: for each element, the product of the other elements along axis "
            f"{node.axis} (each row of np.eye masks one element out), computed without dividing "
            "by the element, so exact where an element is 0"
        )
    if isinstance(node, Zeroed):
        items = ", ".join(print_(i) for i in node.items)
        return (
            f"{print_(node.gradient)} with zeros at [{items}]: the write replaced the values "
            "there, so the array before it gets no gradient at those positions"
        )
    if isinstance(node, Index) and getattr(node, "written", False):
        return f"{print_(node)}: the gradient at the positions the write put its value in"
    if isinstance(node, Index) and any(isinstance(i, Span) for i in node.items):
        return f"{print_(node)}: this part's slice of the joined gradient"
    if isinstance(node, Index) and getattr(node, "stacked", False):
        return f"{print_(node)}: this part's slice of the stacked gradient"
    if isinstance(node, Move) and node.undoes:
        return f"{print_(node)} {_UNDONE[node.fn]}"
    if isinstance(node, Where) and isinstance(node.orelse, Const) and node.orelse.name == "inf":
        return (
            f"{print_(node)}: where the divisor is 0 (every element equal, or all 0) inf is put "
            "in, so the gradient there is 0, a subgradient of the kink, instead of 0 / 0"
        )
    return None


def _oriented(e: Expr, shape: Shape) -> list[Expr]:
    return [e, Transpose(e)] if len(shape) == 2 else [e]


def _candidates(a: Expr, sa: Shape, b: Expr, sb: Shape) -> list[Expr]:
    """Every product of the two factors, each transposed or not, in either order."""
    out: list[Expr] = []
    for p in _oriented(a, sa):
        for q in _oriented(b, sb):
            out += [Dot(p, q), Dot(q, p)]
    if len(sa) == 1 and len(sb) == 1:
        out += [Outer(a, b), Outer(b, a)]
    return out


def _product_key(node: Expr, printer, ndim: dict[str, int]) -> tuple:
    """What a product computes, in index notation: for each factor, which of its axes are
    summed over ("k") and which become the result's first or second axis. ``v.dot(A)`` and
    ``A.T.dot(v)`` compute the same and get the same key; ``x.T.dot(g)`` and ``g.T.dot(x)``
    are each other's transposes and do not."""
    (a, ta), (b, tb) = _base(node.left), _base(node.right)
    free = iter(("i", "j"))
    if isinstance(node, Outer):
        left, right = (next(free),), (next(free),)
    else:
        nl, nr = ndim[printer(a)], ndim[printer(b)]
        left = (next(free), "k") if nl == 2 else ("k",)
        right = ("k", next(free)) if nr == 2 else ("k",)
    if ta:
        left = tuple(reversed(left))
    if tb:
        right = tuple(reversed(right))
    return tuple(sorted([(printer(a), left), (printer(b), right)]))


# ---------------------------------------------------------------------------- the generated lines


def _match(backward: Backward, lines: list[GeneratedLine]) -> list[list[list[GeneratedLine]]]:
    """For each block of the sweep, for each of its statements, its generated lines."""
    by_block: dict[int, list[GeneratedLine]] = {}
    for line in lines:
        if line.block >= 0 and line.comment.startswith("("):
            by_block.setdefault(line.block, []).append(line)
    matched = []
    for k, block in enumerate(backward.blocks):
        pending = list(by_block.get(k, []))
        number = f"({block.stage.number})"
        if any(not line.comment.startswith(number) for line in pending):
            raise AssertionError(f"the generated block {k} is not stage {number}")
        statements = []
        gradients = {st.gradient.name for st in block.statements}
        for st in block.statements:
            name = st.gradient.name
            taken = []
            # a part lowering computes once for the lines below (shared.py) goes with the
            # statement that first reads it
            while pending and not gradients & set(pending[0].writes):
                taken.append(pending.pop(0))
            if not pending or name not in pending[0].writes:
                raise AssertionError(f"no generated line writes {name} in block {number}")
            taken.append(pending.pop(0))
            if isinstance(st.value, Zeroed) and pending:  # the zeros written where it wrote
                taken.append(pending.pop(0))
            if allocates(taken[-1]):  # the scatter into it follows, maybe after shared parts
                k = next((k for k, p in enumerate(pending) if gradients & set(p.writes)), None)
                if k is not None and name in pending[k].writes:
                    taken += pending[: k + 1]
                    del pending[: k + 1]
            statements.append(taken)
        if pending:
            raise AssertionError(f"generated lines of block {number} match no statement")
        matched.append(statements)
    return matched


# ---------------------------------------------------------------------------- the point


def _signature(program: Program) -> str:
    return f"{program.name}({', '.join(p.name for p in program.params)})"


def _annotated(program: Program, dim: str) -> str:
    for p in program.params:
        if dim in shapes.names_in(p.shape or ()):
            return f'{p.name}: "{", ".join(str(d) for d in p.shape)}"'
    return dim


def _example_sizes(names: list[str]) -> str:
    return ",".join(f"{n}={2 + k}" for k, n in enumerate(names))


def bind_sizes(program: Program, values: dict) -> tuple[dict[str, int], dict[str, float]]:
    """The sizes of the dimensions and the values of the number parameters, checked."""
    import math

    dims = dimension_names(program)
    open_ = next((p for p in program.params if shapes.has_rest(p.shape)), None)
    if open_ is not None:  # values need every axis; shapes alone do not
        raise program.error(
            f"`{open_.name}` may have any number of dimensions here (neither the code nor the "
            "docstring fixes them), and values need them",
            f"explain without --at to see the shapes; for values, say its shape in the docstring "
            f'(`- {open_.name}: ..., of shape (N, D)`) or annotate it (`{open_.name}: "N, D"`)',
        )
    sizes: dict[str, int] = {}
    numbers: dict[str, float] = {}
    example = _example_sizes(dims)
    for name, v in values.items():
        p = program.param(name)
        if name in dims:
            if isinstance(v, list) or float(v) != int(v) or int(v) < 1:
                raise program.error(
                    f"`{name}={v if isinstance(v, list) else short(v)}` is not a size",
                    f"give each dimension a whole number from 1, as in --at {example}",
                )
            sizes[name] = int(v)
        elif p is not None and (p.shape or p.labels):
            raise program.error(
                f"`{name}` is an array of shape {shape_text(p.shape)}: its values are drawn "
                "at random",
                f"give the sizes of its dimensions instead, as in --at {example} "
                "(and --seed for other values)",
            )
        elif p is not None:
            if isinstance(v, list):
                raise program.error(f"`{name}` takes one number, not a list", f"give {name}=NUMBER")
            numbers[name] = float(v)
        else:
            known = ", ".join(dims) or "none"
            raise program.error(
                f"`{name}` is neither a parameter of `{_signature(program)}` nor one of its "
                f"dimensions ({known})",
                f"give the sizes of its dimensions, as in --at {example}, and values for "
                "its number parameters",
            )
    for d in dims:
        if d not in sizes:
            raise program.error(
                f"no size for the dimension `{d}` ({_annotated(program, d)})",
                f"add {d}=... to the point: every dimension needs a size, as in --at {example}",
            )
    for p in program.params:
        if p.shape or p.labels or p.name in numbers:
            continue
        default = _default_number(p.default)
        if default is None:
            raise program.error(
                f"no value for `{p.name}`",
                f"add {p.name}=1.5 to the point (it takes {_signature(program)})",
            )
        numbers[p.name] = default
    for p in program.params:
        if p.shape:
            count = math.prod(shapes.size(p.shape, sizes))
            if count > ELEMENT_LIMIT:
                raise program.error(
                    f"`{p.name}` would have {count:,} elements at these sizes",
                    f"the teaching aid is for small arrays: keep each under {ELEMENT_LIMIT:,}",
                )
    return sizes, numbers


def _default_number(text: str | None) -> float | None:
    """A parameter's default, when it is a plain number (``eps=1e-5``)."""
    import math

    try:
        value = ast.literal_eval(text) if text is not None else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(float(value)):
            return float(value)
    return None


def label_bounds(program: Program, sizes: dict[str, int]) -> dict[str, int]:
    """For each labels parameter, the length of the axis it indexes (the shortest, if several),
    read from the stages' index expressions: ``x[np.arange(n), y]`` puts y in range(C)."""
    labels = {p.name for p in program.params if p.labels}
    bounds: dict[str, int] = {}
    for stage in program.stages:
        for node in walk(stage.expr):
            if not isinstance(node, Index) or not isinstance(node.operand, Var):
                continue
            operand = program.types[node.operand.name].shape
            axis = 0
            for item in node.items:
                if isinstance(item, NewAxis):
                    continue
                for leaf in walk(item):
                    if isinstance(leaf, Var) and leaf.name in labels and axis < len(operand):
                        length = shapes.size((operand[axis],), sizes)[0]
                        bounds[leaf.name] = min(bounds.get(leaf.name, length), length)
                axis += 1
    return bounds


# How the arrays are drawn: a standard normal first; where that leaves a stage's domain (np.log,
# np.sqrt of a negative number), positive numbers, and the explanation says so.
DISTRIBUTIONS = ("a standard normal", "uniformly from [0.5, 2]")


def draw(
    program: Program, sizes: dict, numbers: dict, seed: int, distribution: int = 0
) -> tuple[dict, list[str]]:
    """Every parameter's value: arrays from ``DISTRIBUTIONS[distribution]``, labels uniformly in
    the range of the axis they index, numbers as given."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bounds = label_bounds(program, sizes)
    values: dict = {}
    drawn = []
    for p in program.params:
        if p.labels:
            shape = shapes.size(p.shape or (), sizes)
            values[p.name] = rng.integers(0, bounds.get(p.name, 2), size=shape)
            drawn.append(p.name)
        elif p.shape:
            shape = shapes.size(p.shape, sizes)
            if distribution == 0:
                values[p.name] = rng.standard_normal(shape)
            else:
                values[p.name] = rng.uniform(0.5, 2.0, size=shape)
            drawn.append(p.name)
        else:
            values[p.name] = numbers[p.name]
    return values, drawn


class _Forward:
    """The forward, stage by stage, from the expressions as the generated code prints them."""

    def __init__(self, program: Program, printer: ArrayPrinter):
        import builtins

        import numpy as np

        self.program = program
        # NumPy's C code imports its helpers lazily, with the builtins of the calling frame.
        self.namespace = {"__builtins__": builtins, program.numpy: np}
        self.code = []
        for s in program.stages:
            if isinstance(s.expr, Put):  # a copy of the array before, then the write into it
                made = compile(printer(Copy(s.expr.operand)), "<stagegen explain>", "eval")
                write = stage_line(s.target, s.expr, printer)
                self.code.append((s, made, compile(write, "<stagegen explain>", "exec")))
            else:
                self.code.append((s, compile(printer(s.expr), "<stagegen explain>", "eval"), None))

    def run(self, values: dict, check=None) -> dict:
        import numpy as np

        env = dict(values)
        with np.errstate(all="ignore"):
            for stage, code, write in self.code:
                env[stage.target] = eval(code, self.namespace, env)  # our own printed code
                if write is not None:
                    exec(write, self.namespace, env)
                if check is not None:
                    check(stage, env[stage.target])
        return env

    def output(self, values: dict) -> float:
        import numpy as np

        return float(np.sum(self.run(values)[self.program.output.name]))


def _finite_or_raise(program: Program, source_text: str | None):
    import numpy as np

    def check(stage: Stage, value) -> None:
        a = np.asarray(value)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            line = ""
            if source_text is not None:
                text = source_text.splitlines()
                line = text[stage.line - 1] if 0 < stage.line <= len(text) else ""
            raise StagegenError(
                f"stage ({stage.number}) `{stage.target}` is not finite at this point "
                f"({summary(a)})",
                "choose other sizes or numbers (arrays are drawn from a standard normal, and "
                "from [0.5, 2] when that leaves a stage's domain)",
                filename=program.filename,
                line=stage.line,
                col=stage.col,
                source_line=line,
            )

    return check


def _central_difference(output, values: dict, name: str):
    """d output / d name, element by element, by central differences (``output`` of the
    values by name: the sum of the function's output)."""
    from .numeric import central_differences

    names = list(values)
    position = names.index(name)
    moved = lambda *args: output(dict(zip(names, args)))  # noqa: E731
    return central_differences(moved, list(values.values()), [position])[position]


def _source_output(program: Program, source_text: str | None):
    """The sum of the output of the forward as the user wrote it (run from its source text, as
    the proof runs it), so that "agree" beside each gradient is not stagegen checking its own
    reading; None where the text is not at hand."""
    import math

    import numpy as np

    from .proof.common import user_function_of

    try:
        user = user_function_of(program, source_text)
    except StagegenError:
        return None
    if program.returns > 1:  # the first output's sum, as the backward's upstreams say
        user.weights = [1.0] + [0.0] * (len(program.outputs) - 1)
        user.positions = program.positions
    function = user.bind(math, np)
    names = [p.name for p in program.params]
    return lambda values: float(np.sum(function(*[values[n] for n in names])))


# ---------------------------------------------------------------------------- building it


def explain_array_build(
    backward: Backward,
    module_text: str,
    at: dict | None = None,
    *,
    seed: int = 0,
    split: bool = False,
    source_text: str | None = None,
) -> ArrayExplanationData:
    """Explain the backward of an array program, given the text of its generated module: at the
    point ``at`` (sizes of the dimensions, values of the number parameters) or symbolically."""
    program = backward.program
    printer = ArrayPrinter(program.numpy)
    generated = read_backward(module_text, program.name)
    lines = generated.lines
    known = _Shapes(program, generated.upstream)
    arguments = _Arguments(printer, known)
    matched = _match(backward, lines)

    sizes = values = None
    drawn: list[str] = []
    distribution = 0
    after: dict[int, dict] = {}
    forward_env: dict = {}
    forward = _Forward(program, printer)
    if at is not None:
        sizes, numbers = bind_sizes(program, at)
        check = _finite_or_raise(program, source_text)
        for distribution in range(len(DISTRIBUTIONS)):
            values, drawn = draw(program, sizes, numbers, seed, distribution)
            try:
                forward_env = forward.run(values, check)
                break
            except StagegenError as exc:
                if distribution == 0:
                    first = exc
                if distribution == len(DISTRIBUTIONS) - 1 or not drawn:
                    raise first from None
        from .api import load_backward_module

        namespace = load_backward_module(module_text, program.filename)
        fn = namespace[backward_name(program.name)]
        after = traced_run(fn, [values[p.name] for p in program.params], lines)
    index_of = {id(line): k for k, line in enumerate(lines)}

    def value_after(line: GeneratedLine, name: str):
        return after.get(index_of[id(line)], {}).get(name)

    steps_forward = [
        ArrayForwardStep(
            s,
            stage_line(s.target, s.expr, printer),
            program.types[s.target].shape,
            forward_env.get(s.target),
        )
        for s in program.stages
    ]

    setup, zero = [], []
    for line in lines:
        if not line.writes or line.comment.startswith("("):
            continue  # the forward replay, the return
        code = " ".join(line.code)
        found = [value_after(line, n) for n in line.writes]
        value = found[0] if len(found) == 1 else tuple(found)
        if line.block >= 0:
            zero.append(ArrayLine(code, "zero", line.writes[0], line.comment, value))
        else:
            kind = "upstream" if line.writes == [generated.upstream] else "size"
            setup.append(ArrayLine(code, kind, ", ".join(line.writes), line.comment, value))

    written_by: dict[str, list[int]] = {}
    blocks = []
    for block, statement_lines in zip(backward.blocks, matched):
        stage = block.stage
        steps = []
        for st, taken in zip(block.statements, statement_lines):
            grad = st.gradient.name
            of = st.of.name if isinstance(st.of, Var) else None
            intermediate = of is None or of == grad or of not in program.types
            shape = known.var(of) if not intermediate else known.of(st.value)
            if shape is not None:
                known.known[grad] = shape
            step = ArrayStep(
                stage=stage,
                lines=[c for line in taken for c in line.code],
                gradient=grad,
                of=None if intermediate else of,
                accumulate=st.accumulate,
                shape=shape,
                arguments=arguments.of(st.value),
                earlier=list(written_by.get(grad, [])),
                value=value_after(taken[-1], grad),
            )
            written_by.setdefault(grad, []).append(stage.number)
            steps.append(step)
        blocks.append(
            ArrayBlock(
                stage,
                generated.headers[len(blocks)],
                program.types[stage.target].shape,
                steps,
            )
        )

    inputs = []
    for name, grad in zip(backward.wrt, generated.returned, strict=True):
        g = ArrayInputGradient(name, grad, program.types[name].shape, written_by.get(grad, []))
        inputs.append(g)
    explanation = ArrayExplanationData(
        program=program,
        backward=backward,
        module_text=module_text,
        sizes=sizes,
        seed=seed if at is not None else None,
        values=values,
        drawn=drawn,
        distribution=DISTRIBUTIONS[distribution] if at is not None else "",
        forward=steps_forward,
        setup=setup,
        upstream=generated.upstream,
        upstream_shape=program.types[program.output.name].shape,
        blocks=blocks,
        zero=zero,
        inputs=inputs,
        split=split,
    )
    if at is not None:
        if distribution:
            explanation.notes.append(
                f"the arrays are drawn {DISTRIBUTIONS[distribution]} because with "
                f"{DISTRIBUTIONS[0]} {first.message}"
            )
        output = forward.output
        source = _source_output(program, source_text)
        try:
            if source is not None:
                source(values)  # (runs here: then it is the reference)
                output = source
        except Exception:  # a form only the proof's own NumPy runs: stagegen's reading, then
            pass
        _values_of_inputs(explanation, after, output)
    return explanation


def _values_of_inputs(ex: ArrayExplanationData, after: dict, output) -> None:
    """Each input's gradient as the backward returns it, beside a central difference of
    ``output`` (the sum of the function's output, by the values by name)."""
    final: dict = {}
    for k in sorted(after):
        final.update(after[k])
    for g in ex.inputs:
        g.value = final.get(g.gradient)
        count = getattr(ex.values[g.name], "size", 1)
        if count > DIFFERENCE_LIMIT:
            ex.notes.append(
                f"{g.name} has {count:,} elements: no finite differences past "
                f"{DIFFERENCE_LIMIT:,} (choose smaller sizes to see them)"
            )
            continue
        g.finite_difference = _central_difference(output, ex.values, g.name)
