"""The structural operations' vector-Jacobian products: dot and outer, transpose, reshape and
the other moves (expand_dims, squeeze, swapaxes, ravel, copy), the reductions (sum, mean, max,
min, prod, var, std, norm), indexing, np.where, constants (np.zeros, ...) and joins (stack,
concatenate), which move, choose or combine elements rather than map them one by one.

The elementwise operations are the gate table's (gates.py): a local partial per input, lifted to
any shape by summing over broadcast axes (``unbroadcast`` here). These are the rest of the one
table of operations. Each rule takes the gradient ``g`` of the node's output and returns the
gradient of each input, written the way a course's solutions write it (``dw = x.T.dot(dout)``,
``db = dout.sum(axis=0)``); the sweep (reverse.py) never names an operation itself.
"""

from __future__ import annotations

from typing import Callable

from .arrays.ir import (
    BroadcastTo,
    Dim,
    Dot,
    Draw,
    Filled,
    FullSlice,
    Index,
    Join,
    Move,
    NewAxis,
    Others,
    Outer,
    Put,
    Reduce,
    Reshape,
    RestOf,
    Span,
    SumTo,
    Transpose,
    Where,
    distinct_positions,
)
from .arrays.shapes import Shape, factors, has_joint, has_rest, is_rest, multiply
from .expr import (
    Bin,
    Compare,
    Const,
    Expr,
    Invoke,
    Item,
    Neg,
    Num,
    Several,
    Var,
    add,
    div,
    is_num,
    mul,
    neg,
    sub,
)
from .program import backward_name
from .types import Types


class Scatter(Expr):
    """The gradient of a gather ``x[rows, y]``: ``values`` added into zeros of x's shape at the
    index. Only ever the whole value of a gradient statement (lowered to ``np.add.at``, or to
    a plain ``+=`` where the index names each position once: ``distinct``)."""

    __slots__ = ("shape", "items", "values", "distinct")

    def __init__(self, shape, items: tuple[Expr, ...], values: Expr, distinct: bool = False):
        self.shape, self.items, self.values, self.distinct = shape, items, values, distinct

    def children(self):
        return (*self.shape, *self.items, self.values)

    def rebuilt(self, kids) -> "Scatter":
        n, m = len(self.shape), len(self.items)
        return Scatter(tuple(kids[:n]), tuple(kids[n : n + m]), kids[n + m], self.distinct)


class Zeroed(Expr):
    """The gradient of the array before a write ``a[items] = value``: the gradient ``g`` of the
    array after it, with zeros where the write put its value. Only ever the whole value of a
    gradient statement (lowered to a copy of ``g`` and a write of zeros)."""

    __slots__ = ("gradient", "items")

    def __init__(self, gradient: Expr, items: tuple[Expr, ...]):
        self.gradient, self.items = gradient, items

    def children(self):
        return (self.gradient, *self.items)

    def rebuilt(self, kids) -> "Zeroed":
        return Zeroed(kids[0], tuple(kids[1:]))


class NotNamed(ValueError):
    """An index array read from an expression: its gradient has no array to be scattered into."""


def dims(shape: Shape) -> tuple[Expr, ...]:
    """A symbolic shape as expressions the generated code can print: N, D, H*W, 3."""
    out: list[Expr] = []
    for d in shape:
        if is_rest(d):  # the backward binds it to the parameter's own dimensions
            out.append(Dim(d))
            continue
        coeff, names = factors(d)
        e: Expr = Num(coeff) if coeff != 1 or not names else Dim(names[0])
        for k, n in enumerate(names):
            if k == 0 and coeff == 1:
                continue
            e = mul(e, Dim(n))
        out.append(e)
    return tuple(out)


# ---------------------------------------------------------------------------- broadcasting


def unbroadcast(g: Expr, frm: Shape, to: Shape) -> Expr:
    """Sum a gradient of shape ``frm`` down to an input of shape ``to`` (at shape () there is
    nothing to sum: a number's gradient stays as it is)."""
    if has_joint(frm) and to and frm != to:  # x * w of any shapes: summed at run time
        return SumTo(g, dims(to))
    lead = len(frm) - len(to)
    reduces = lead or any(t == 1 and f != 1 for f, t in zip(frm[lead:], to))
    if isinstance(g, Neg) and reduces:
        return neg(unbroadcast(g.operand, frm, to))  # -dxmu.sum(axis=0)
    if lead:  # (np.sum where g may be a Python number: a rest at rank 0)
        spelling = "np" if has_rest(frm) else "method"
        g = Reduce("sum", g, tuple(range(lead)) if to else None, False, spelling)
    kept = tuple(i for i, (f, t) in enumerate(zip(frm[lead:], to)) if t == 1 and f != 1)
    if kept:
        g = Reduce("sum", g, kept, True, "method")
    return g


def broadcast_to(g: Expr, shape: Shape) -> Expr:
    b = BroadcastTo(g, dims(shape))
    object.__setattr__(b, "shape_key", shape)  # not part of equality: read by lift()
    return b


def lift(
    local: Expr, g: Expr, types: Types, frm: Shape, to: Shape, into_rule: bool = False
) -> Expr:
    """An elementwise operation's gradient on one input: ``local * g``, summed back over the
    axes the input was broadcast along. A broadcast ``g`` needs no ``broadcast_to`` when the
    local factor has the full shape already. ``1 / x`` times ``g`` reads ``g / x`` for an array
    and for what a structural rule receives (number code keeps the notes' ``(1 / x) * g``)."""
    sign, inner = (neg, local.operand) if isinstance(local, Neg) else ((lambda e: e), local)
    if (frm or into_rule) and isinstance(inner, Bin) and inner.op == "/" and is_num(inner.left, 1):
        return unbroadcast(sign(div(g, inner.right)), frm, to)
    if isinstance(g, BroadcastTo) and types.shape(local) == g.shape_key:
        g = g.operand
    return unbroadcast(mul(local, g), frm, to)


# ---------------------------------------------------------------------------- the rules

Rule = Callable[[Expr, Expr, Expr, Types], list[tuple[Expr, Expr]]]


def transpose_of(e: Expr) -> Expr:
    return e.operand if isinstance(e, Transpose) else Transpose(e, ".T")


def _dot(node: Dot, g: Expr, value: Expr, types: Types):
    a, b = node.left, node.right
    sa, sb = types.shape(a), types.shape(b)
    if len(sa) == 2 and len(sb) == 2:
        return [(a, Dot(g, transpose_of(b))), (b, Dot(transpose_of(a), g))]
    if len(sa) == 2:  # matrix . vector
        return [(a, Outer(g, b)), (b, Dot(transpose_of(a), g))]
    if len(sb) == 2:  # vector . matrix
        return [(a, Dot(b, g)), (b, Outer(a, g))]
    return [(a, mul(b, g)), (b, mul(a, g))]  # vector . vector


def _transpose(node: Transpose, g: Expr, value: Expr, types: Types):
    return [(node.operand, transpose_of(g))]


def _reshape(node: Reshape, g: Expr, value: Expr, types: Types):
    shape = types.shape(node.operand)
    if has_rest(shape) and isinstance(node.operand, Var):  # back to every dimension it had
        return [(node.operand, Reshape(g, (RestOf(node.operand, 0),)))]
    back = dims(shape)
    products = [k for k, d in enumerate(shape) if isinstance(d, str) and "*" in d]
    if len(shape) > 1 and len(products) == 1:  # (-1, C), as one writes it, not (H * N * W, C)
        back = tuple(Num(-1) if k == products[0] else d for k, d in enumerate(back))
    return [(node.operand, Reshape(g, back))]


def _spread_like(g: Expr, like: Var, shape: Shape) -> Expr:
    """``g`` broadcast to the shape of the value ``like`` (``np.shape(h)``)."""
    b = BroadcastTo(g, (RestOf(like, 0),))
    object.__setattr__(b, "shape_key", shape)  # not part of equality: read by lift()
    return b


def _positive_or_inf(e: Expr) -> Expr:
    """``e`` where it is positive, else inf: a divisor that turns a 0 / 0 into 0."""
    return Where(Compare(">", e, Num(0)), e, Const("inf"))


def _reduce(node: Reduce, g: Expr, value: Expr, types: Types):
    x = node.operand
    sx = types.shape(x)
    axes = tuple(range(len(sx))) if node.axis is None else node.axis
    items: list[Expr] = []
    if node.axis is not None and not node.keepdims:
        # Put the reduced axes back as size 1 (leading ones broadcast by themselves).
        items = [NewAxis() if i in axes else FullSlice() for i in range(len(sx))]
        while items and isinstance(items[0], NewAxis):
            items.pop(0)
        while items and isinstance(items[-1], FullSlice):
            items.pop()

    def expand(e: Expr) -> Expr:
        """``e``, of the reduction's shape, with the reduced axes back as size 1."""
        return Index(e, tuple(items)) if items else e

    expanded = expand(g)
    count: Expr = Num(1)
    reduced = tuple(sx[i] for i in axes)
    if has_rest(reduced):  # how many elements, not which dimensions
        reduced = (multiply(reduced),)
    for d in dims(reduced):
        count = mul(count, d)
    spread = lambda e: broadcast_to(e, sx)  # noqa: E731
    if has_joint(sx) and isinstance(x, Var):  # x * w of any shapes: read from the value
        count = RestOf(x, 0, size=True)
        spread = lambda e: _spread_like(e, x, sx)  # noqa: E731
    if node.fn == "sum":
        return [(x, spread(expanded))]
    if node.fn == "mean":
        return [(x, spread(div(expanded, count)))]
    if node.fn in ("var", "std"):
        # The course's batchnorm: dx = 2 * (x - mu) / N * dvar, with mu the mean over the axes
        # (N - ddof for a ddof). std = sqrt(var): dx = (x - mu) / (N * std) * dstd; where std is 0 (every
        # element equal: always so for one element) the gradient is 0, a subgradient of the
        # kink (and the derivative itself when the axes hold one element).
        # (kept as size 1 where it would not broadcast back: the leading axes need not be)
        leading = node.axis is None or node.axis == tuple(range(len(node.axis)))
        # (np.mean(x) where x may be a Python number: a rest holds no axes at rank 0)
        mu = Reduce("mean", x, node.axis, not leading, "np" if has_rest(sx) else "method")
        centred = sub(x, mu)
        divisor = sub(count, Num(node.ddof)) if node.ddof else count  # N - ddof
        if node.fn == "var":
            return [(x, mul(div(mul(Num(2), centred), divisor), expanded))]
        std = _positive_or_inf(expand(value))
        return [(x, mul(div(centred, mul(divisor, std)), expanded))]
    if node.fn == "norm":
        # dx = x / norm * dnorm; at norm 0 (x = 0) the gradient is 0, a subgradient of the kink.
        return [(x, mul(div(x, _positive_or_inf(expand(value))), expanded))]
    if node.fn == "prod":
        # The product of the other elements, computed without dividing by the element (exact
        # where an element is 0, where out / x would be 0 / 0).
        if node.axis is None and len(sx) > 1:
            flat = Reshape(x, (Num(-1),))
            others: Expr = Reshape(Others(flat, 0, 1, count), dims(sx))
        else:
            others = Others(x, axes[0], len(sx), count)
        return [(x, mul(others, expanded))]
    # max and min: the gradient goes to the extreme elements
    if node.keepdims or node.axis is None:
        peak = value
    else:
        peak = Reduce(node.fn, x, node.axis, True, "method")
    # Tied maxima share the gradient equally (the average of the subgradients), so the
    # gradient still sums to the upstream one: max(x + t) = max(x) + t.
    at_peak = Compare("==", x, peak)
    ties = Reduce("sum", at_peak, node.axis, True, "method")
    return [(x, mul(div(at_peak, ties), expanded))]


def _index(node: Index, g: Expr, value: Expr, types: Types):
    x = node.operand
    arrays = [i for i in node.items if not isinstance(i, (FullSlice, NewAxis))]
    if not arrays:
        # Only : and None: drop the new axes again.
        items = [Num(0) if isinstance(i, NewAxis) else FullSlice() for i in node.items]
        while items and isinstance(items[-1], FullSlice):
            items.pop()
        dropped = tuple(k for k, i in enumerate(items) if isinstance(i, Num))
        if isinstance(g, Neg):
            inner, sign = g.operand, neg
        else:
            inner, sign = g, (lambda e: e)
        if isinstance(inner, Reduce) and inner.keepdims and inner.axis == dropped:
            # x[:, None] read back from a sum with keepdims: the sum without them.
            return [(x, sign(Reduce(inner.fn, inner.operand, inner.axis, False, inner.spelling)))]
        return [(x, Index(g, tuple(items)) if items else g)]
    if not isinstance(x, Var):
        raise NotNamed()
    if isinstance(g, BroadcastTo):
        g = g.operand  # np.add.at broadcasts the values itself
    distinct = distinct_positions(node.items, types.shape(x), types.shape)
    return [(x, Scatter(dims(types.shape(x)), node.items, g, distinct))]


def _put(node: Put, g: Expr, value: Expr, types: Types):
    """``a[items] = v``: the array before the write gets the gradient where the write left it,
    ``v`` the gradient at the positions it went to (summed where it was broadcast; the reader
    refused an index that may repeat a position for a ``v`` with a gradient)."""
    v = node.value
    at = Index(g, node.items)
    object.__setattr__(at, "written", True)  # for the teaching aid's words
    if isinstance(v, Bin) and v.op in ("+", "-") and v.left == Index(node.operand, node.items):
        # `a[i] += v`: the array passes its gradient on untouched, v gets it where it went
        picked = unbroadcast(at, node.selected, types.shape(v.right))
        return [(node.operand, g), (v.right, picked if v.op == "+" else neg(picked))]
    out: list[tuple[Expr, Expr]] = [(node.operand, Zeroed(g, node.items))]
    mask = types.of(node.items[0])
    if mask is not None and mask.kind == "bool":  # one number, written where the mask is True
        return out + [(v, Reduce("sum", at, None, False, "method"))]
    return out + [(v, unbroadcast(at, node.selected, types.shape(v)))]


def _outer(node: Outer, g: Expr, value: Expr, types: Types):
    # out[i, j] = a[i] * b[j]: da = dout.dot(b), db = dout.T.dot(a)
    return [(node.left, Dot(g, node.right)), (node.right, Dot(transpose_of(g), node.left))]


def _where(node: Where, g: Expr, value: Expr, types: Types):
    # np.where(mask, a, b): the gradient goes to the side the mask chose; the mask gets none.
    frm = types.shape(node)
    return [
        (node.body, unbroadcast(Where(node.test, g, Num(0.0)), frm, types.shape(node.body))),
        (node.orelse, unbroadcast(Where(node.test, Num(0.0), g), frm, types.shape(node.orelse))),
    ]


def _axis_text(axes: tuple[int, ...]) -> str:
    return f"axis={axes[0]}" if len(axes) == 1 else f"axis={axes}"


def _move(node: Move, g: Expr, value: Expr, types: Types):
    x, fn = node.operand, node.fn
    if fn in ("copy", "astype"):  # the identities (astype to float, of floats)
        return [(x, g)]
    if fn == "expand_dims":  # dx = dout.squeeze(axis=k)
        back: Expr = Move("squeeze", g, node.args, "method", _axis_text(node.args), fn)
    elif fn == "squeeze":  # dx = np.expand_dims(dout, k)
        back = Move("expand_dims", g, node.args, "np", _axis_text(node.args), fn)
    elif fn == "transpose":  # the inverse permutation
        inverse = tuple(node.args.index(k) for k in range(len(node.args)))
        back = Move("transpose", g, inverse, "method", ", ".join(map(str, inverse)), fn)
    elif fn == "swapaxes":  # its own inverse
        back = Move("swapaxes", g, node.args, "method", ", ".join(map(str, node.args)), fn)
    else:
        assert fn in ("ravel", "flatten"), fn
        back = Reshape(g, dims(types.shape(x)))
    return [(x, back)]


def _filled(node: Filled | Draw, g: Expr, value: Expr, types: Types):
    """A constant, or ``np.full(shape, c)``: c is in every element (``dc = np.sum(dout)``)."""
    if isinstance(node, Filled) and node.value is not None:
        return [(node.value, unbroadcast(g, types.shape(node), types.shape(node.value)))]
    return []


def _join(node: Join, g: Expr, value: Expr, types: Types):
    """Each part's gradient is its slice of the gradient: ``dx = dout[:, :D]`` (concatenate)
    or ``dx = dout[0]`` (stack)."""
    before: list[Expr] = [FullSlice()] * node.axis
    if node.fn == "stack" or (node.fn == "vstack" and len(types.shape(node.parts[0])) == 1):
        out = []
        for k, part in enumerate(node.parts):
            piece = Index(g, tuple(before + [Num(k)]))
            object.__setattr__(piece, "stacked", True)  # for the teaching aid's words
            out.append((part, piece))
        return out
    out, start = [], None
    last = len(node.parts) - 1
    for k, part in enumerate(node.parts):
        size = dims(types.shape(part))[node.axis]
        stop = None if k == last else (size if start is None else add(start, size))
        out.append((part, Index(g, tuple(before + [Span(start, stop)]))))
        start = stop
    return out


def _invoke(node: Invoke, g: Expr, value: Expr, types: Types):
    """A call to one of the module's functions: its backward, called with the call's arguments
    and the gradient of each value it returns, gives the gradient of each argument (a tuple
    when it returns several, read by position)."""
    upstreams = g.items if isinstance(g, Several) else (g,)
    arguments = node.args + node.defaults + tuple(upstreams)
    backward = Invoke(backward_name(node.function), arguments, len(node.gradients))
    if len(node.gradients) == 1:
        return [(node.args[node.gradients[0]], backward)] if node.args else []
    # (a parameter left to its default has a gradient too, which the call does not need)
    return [
        (node.args[k], Item(backward, i))
        for i, k in enumerate(node.gradients)
        if k < len(node.args)
    ]


STRUCTURAL: dict[type, Rule] = {
    Invoke: _invoke,
    Move: _move,
    Filled: _filled,
    Draw: _filled,
    Join: _join,
    Outer: _outer,
    Where: _where,
    Dot: _dot,
    Transpose: _transpose,
    Reshape: _reshape,
    Reduce: _reduce,
    Index: _index,
    Put: _put,
}


def structural_rule(node: Expr) -> Rule | None:
    return STRUCTURAL.get(type(node))
