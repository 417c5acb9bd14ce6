"""Reverse sweep for array functions: Program -> Backward, every gradient at its exact shape.

Scalar stages multiply a local gradient by the stage's gradient; array stages cannot (the
local gradient of ``x.dot(w)`` is not an array one could multiply by), so each operation here
has a vector-Jacobian rule: given the gradient of its output, the gradient of each input,
written the way a course's solutions write it (``dw = x.T.dot(dout)``). Broadcasting is undone
by summing over the broadcast axes, known from the shapes the reader worked out.
"""

from __future__ import annotations

from ..expr import (
    Bin,
    Call,
    Compare,
    Expr,
    Neg,
    Num,
    Var,
    add,
    div,
    leaves,
    mul,
    neg,
    num,
    power,
    sub,
)
from ..gates import FUNCTIONS
from ..program import Program, Stage
from ..reverse import Backward, Block, GradStatement, _with_inputs, name_gradients, resolve_wrt
from .ir import (
    BroadcastTo,
    Dim,
    Dot,
    FullSlice,
    Index,
    NewAxis,
    Outer,
    Reduce,
    Reshape,
    Transpose,
)
from .shapes import Shape, _factors


class Scatter(Expr):
    """The gradient of a gather ``x[rows, y]``: ``values`` added into zeros of x's shape at the
    index. Only ever the whole value of a gradient statement (emit writes np.add.at)."""

    __slots__ = ("shape", "items", "values")

    def __init__(self, shape: tuple[Expr, ...], items: tuple[Expr, ...], values: Expr):
        self.shape, self.items, self.values = shape, items, values

    def children(self):
        return (*self.shape, *self.items, self.values)

    def rebuilt(self, kids) -> "Scatter":
        n, m = len(self.shape), len(self.items)
        return Scatter(tuple(kids[:n]), tuple(kids[n : n + m]), kids[n + m])


def dims(shape: Shape) -> tuple[Expr, ...]:
    """A symbolic shape as expressions the generated code can print: N, D, H*W, 3."""
    out: list[Expr] = []
    for d in shape:
        coeff, names = _factors(d)
        e: Expr = Num(coeff) if coeff != 1 or not names else Dim(names[0])
        for k, n in enumerate(names):
            if k == 0 and coeff == 1:
                continue
            e = mul(e, Dim(n))
        out.append(e)
    return tuple(out)


class _Rules:
    """The vector-Jacobian rules, with the types of every forward expression at hand."""

    def __init__(self, program: Program):
        self.program = program
        self.exprs = program.types["<expressions>"]
        self.hoist = None  # set per stage: names a gradient that several inputs read

    def shape(self, e: Expr) -> Shape:
        if isinstance(e, Var):
            return self.program.types[e.name].shape
        return self.exprs[e].shape

    def differentiable(self, e: Expr) -> bool:
        if isinstance(e, Var):
            return self.program.types[e.name].differentiable
        t = self.exprs.get(e)
        return t is not None and t.differentiable

    # -- broadcasting ------------------------------------------------------------------

    def unbroadcast(self, g: Expr, frm: Shape, to: Shape) -> Expr:
        """Sum a gradient of shape ``frm`` down to an input of shape ``to``."""
        lead = len(frm) - len(to)
        reduces = lead or any(t == 1 and f != 1 for f, t in zip(frm[lead:], to))
        if isinstance(g, Neg) and reduces:
            return neg(self.unbroadcast(g.operand, frm, to))  # -dxmu.sum(axis=0)
        if lead:
            g = Reduce("sum", g, tuple(range(lead)) if to else None, False, "method")
        kept = tuple(i for i, (f, t) in enumerate(zip(frm[lead:], to)) if t == 1 and f != 1)
        if kept:
            g = Reduce("sum", g, kept, True, "method")
        return g

    def scaled(self, factor: Expr, g: Expr, factor_shape: Shape) -> Expr:
        """factor * g; a broadcast g needs no broadcast_to when the factor has its full shape."""
        if isinstance(g, BroadcastTo) and factor_shape == g.shape_key:
            g = g.operand
        return mul(factor, g)

    def broadcast_to(self, g: Expr, shape: Shape) -> Expr:
        b = BroadcastTo(g, dims(shape))
        object.__setattr__(b, "shape_key", shape)  # not part of equality: a note for scaled()
        return b

    # -- the rules ---------------------------------------------------------------------

    def backprop(self, node: Expr, g: Expr, out: Expr | None, active, sink) -> None:
        """Send the gradient ``g`` of ``node`` to the active leaves below it: ``sink(leaf, g)``.
        ``out`` is the stage's own output variable when ``node`` is the stage's root."""
        if not self.differentiable(node) or not any(l in active for l in leaves(node)):
            return
        if _number(g) == 0:
            return  # an identically zero gradient (0.0 * x, x ** 0) is no path at all
        if isinstance(node, Var):
            sink(node, g)
            return
        if self.hoist is not None and _costly(g) and _active_reads(node, active) > 1:
            g = self.hoist(g, node)  # computed once, read by every input below
        here = self.shape(node)
        value = out if out is not None else node  # the node's value, cached when it is the root

        def down(child: Expr, child_g: Expr) -> None:
            self.backprop(child, child_g, None, active, sink)

        def elementwise(child: Expr, child_g: Expr) -> None:
            down(child, self.unbroadcast(child_g, here, self.shape(child)))

        if isinstance(node, Neg):
            elementwise(node.operand, neg(g))
        elif isinstance(node, Bin):
            a, b = node.left, node.right
            if node.op == "+":
                elementwise(a, g)
                elementwise(b, g)
            elif node.op == "-":
                elementwise(a, g)
                elementwise(b, neg(g))
            elif node.op == "*":
                elementwise(a, self.scaled(b, g, self.shape(b)))
                elementwise(b, self.scaled(a, g, self.shape(a)))
            elif node.op == "/":
                elementwise(a, div(g, b))
                # -out / b, not -a / b**2: b**2 overflows (and underflows) where a / b does not
                elementwise(b, mul(neg(div(value, b)), g))
            elif node.op == "**":
                exponent = _number(b)
                if exponent is not None:
                    local = mul(b, power(a, num(exponent - 1)))
                else:
                    local = mul(b, power(a, sub(b, Num(1))))
                elementwise(a, self.scaled(local, g, self.shape(a)))
                if exponent is None:
                    elementwise(b, mul(mul(value, Call("log", (a,))), g))
        elif isinstance(node, Call):
            self._call(node, g, value, elementwise)
        elif isinstance(node, Dot):
            self._dot(node, g, down)
        elif isinstance(node, Transpose):
            down(node.operand, _transpose(g))
        elif isinstance(node, Reshape):
            down(node.operand, Reshape(g, dims(self.shape(node.operand))))
        elif isinstance(node, Reduce):
            self._reduce(node, g, value, down)
        elif isinstance(node, Index):
            self._index(node, g, down, sink)
        else:
            raise TypeError(f"no gradient rule for {node!r}")

    def _call(self, node: Call, g: Expr, value: Expr, elementwise) -> None:
        fn, args = node.fn, node.args
        a = args[0]
        sa = self.shape(node)
        # abs, maximum and minimum keep their array rules (a sign, masks) until the lowering
        # stage unifies them with the gate table; every other function's partial is the table's.
        if fn == "abs":
            elementwise(a, self.scaled(Call("sign", (a,)), g, self.shape(a)))
        elif fn in ("maximum", "minimum"):
            x, y = args
            wins, loses = (">", ">=") if fn == "maximum" else ("<", "<=")
            # A tie goes to the first input, as for max() in scalar code. With a number first,
            # np.maximum(0, z), the mask reads the cached output: (out > 0), as by hand.
            if isinstance(x, Num) or _number(x) is not None:
                elementwise(y, mul(Compare(wins, value, x), g))
                return
            elementwise(x, mul(Compare(loses, x, y), g))
            elementwise(y, mul(Compare(wins, y, x), g))
        elif fn in FUNCTIONS and FUNCTIONS[fn].numpy:
            (partial,) = FUNCTIONS[fn].rule(value, a)
            if isinstance(partial, Bin) and partial.op == "/" and _number(partial.left) == 1:
                elementwise(a, div(g, partial.right))  # 1 / x: the gradient over x, dout / x
            else:
                elementwise(a, self.scaled(partial, g, sa))
        else:
            raise TypeError(f"no gradient rule for np.{fn}")

    def _dot(self, node: Dot, g: Expr, down) -> None:
        a, b = node.left, node.right
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) == 2 and len(sb) == 2:
            down(a, Dot(g, _transpose(b)))
            down(b, Dot(_transpose(a), g))
        elif len(sa) == 2:  # matrix . vector
            down(a, Outer(g, b))
            down(b, Dot(_transpose(a), g))
        elif len(sb) == 2:  # vector . matrix
            down(a, Dot(b, g))
            down(b, Outer(a, g))
        else:  # vector . vector
            down(a, mul(b, g))
            down(b, mul(a, g))

    def _reduce(self, node: Reduce, g: Expr, value: Expr, down) -> None:
        x = node.operand
        sx = self.shape(x)
        axes = tuple(range(len(sx))) if node.axis is None else node.axis
        expanded = g
        if node.axis is not None and not node.keepdims:
            # Put the reduced axes back as size 1 (leading ones broadcast by themselves).
            items: list[Expr] = [NewAxis() if i in axes else FullSlice() for i in range(len(sx))]
            while items and isinstance(items[0], NewAxis):
                items.pop(0)
            while items and isinstance(items[-1], FullSlice):
                items.pop()
            if items:
                expanded = Index(g, tuple(items))
        if node.fn == "sum":
            down(x, self.broadcast_to(expanded, sx))
        elif node.fn == "mean":
            count: Expr = Num(1)
            for d in dims(tuple(sx[i] for i in axes)):
                count = mul(count, d)
            down(x, self.broadcast_to(div(expanded, count), sx))
        else:  # max: the gradient goes to the maxima
            if node.keepdims or node.axis is None:
                peak = value
            else:
                peak = Reduce("max", x, node.axis, True, "method")
            # Tied maxima share the gradient equally (the average of the subgradients), so
            # the gradient still sums to the upstream one: max(x + t) = max(x) + t.
            at_peak = Compare("==", x, peak)
            ties = Reduce("sum", at_peak, node.axis, True, "method")
            down(x, mul(div(at_peak, ties), expanded))

    def _index(self, node: Index, g: Expr, down, sink) -> None:
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
                down(x, sign(Reduce(inner.fn, inner.operand, inner.axis, False, inner.spelling)))
                return
            down(x, Index(g, tuple(items)) if items else g)
            return
        if not isinstance(x, Var):
            raise ValueError("index a named value")
        if isinstance(g, BroadcastTo):
            g = g.operand  # np.add.at broadcasts the values itself
        sink(x, Scatter(dims(self.shape(x)), node.items, g))


def _costly(g: Expr) -> bool:
    """Whether a gradient is worth naming rather than repeating (more than a name or a view)."""
    while isinstance(g, (Neg, BroadcastTo, Transpose)):
        g = g.operand
    return not isinstance(g, (Var, Num))


def _active_reads(node: Expr, active) -> int:
    from ..expr import walk

    return sum(1 for n in walk(node) if isinstance(n, Var) and n in active)


def _number(e: Expr):
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Neg) and isinstance(e.operand, Num):
        return -e.operand.value
    return None


def _transpose(e: Expr) -> Expr:
    return e.operand if isinstance(e, Transpose) else Transpose(e, ".T")


def resolve_array_wrt(program: Program, wrt) -> list[str]:
    labels = [p.name for p in program.params if p.labels]
    if wrt is None:
        return [p.name for p in program.params if not p.labels]
    names = resolve_wrt(program, wrt)
    for name in names:
        if name in labels:
            raise program.error(
                f"`{name}` is used as an index (integer labels), which has no gradient",
                "leave it out of wrt",
            )
    return names


def differentiate_arrays(program: Program, wrt=None) -> Backward:
    wrt_names = resolve_array_wrt(program, wrt)
    rules = _Rules(program)
    stages = program.stages
    output = program.output.name

    # Which stages reach the output, and which depend on a requested input.
    reaches = {output}
    for stage in reversed(stages):
        if stage.target in reaches and program.types[stage.target].differentiable:
            reaches.update(l.name for l in leaves(stage.expr) if isinstance(l, Var))
    active: set[Expr] = {Var(n) for n in wrt_names}
    for stage in stages:
        if program.types[stage.target].differentiable and any(
            l in active for l in leaves(stage.expr)
        ):
            active.add(Var(stage.target))

    dimensions = {d for p in program.params if p.shape for d in _dim_names(p.shape)}
    names, upstream = name_gradients(program, wrt_names, dimensions)

    blocks: list[Block] = []
    written: set[str] = set()
    has_gradient = {output}
    for stage in reversed(stages):
        target = Var(stage.target)
        if target not in active or stage.target not in has_gradient or stage.target not in reaches:
            continue
        d_stage = Var(names.assign(stage.target))
        contributions: dict[Var, list[Expr]] = {}

        def sink(leaf: Var, g: Expr) -> None:
            contributions.setdefault(leaf, []).append(g)

        statements: list[GradStatement] = []

        def hoist(g: Expr, node: Expr) -> Var:
            k = sum(1 for s in statements if s.intermediate)
            suffix = "_in" if k == 0 else f"_in{k + 1}"
            name = names.assign(
                f"{stage.target} input {k}", base=f"{stage.target}{suffix}", noted=False
            )
            statements.append(
                GradStatement(
                    gradient=Var(name),
                    accumulate=False,
                    value=g,
                    local=g,
                    of=Var(name),
                    stage=stage.number,
                    intermediate=True,
                )
            )
            return Var(name)

        rules.hoist = hoist

        try:
            rules.backprop(stage.expr, d_stage, target, active, sink)
        except ValueError:
            raise _located(
                program,
                stage,
                "an index array reads an expression, not a named value",
                "bind the expression to a name first, then index the name",
            ) from None
        for leaf, parts in contributions.items():
            grad = Var(names.assign(leaf.name))
            plain = [p for p in parts if not isinstance(p, Scatter)]
            values: list[Expr] = []
            if plain:
                total = plain[0]
                for p in plain[1:]:
                    total = add(total, p)
                if _number(total) != 0:  # x - x: the parts cancel, no path
                    values.append(total)
            values += [p for p in parts if isinstance(p, Scatter)]
            if not values:
                continue
            for value in values:
                statements.append(
                    GradStatement(
                        gradient=grad,
                        accumulate=grad.name in written,
                        value=value,
                        local=value,
                        of=leaf,
                        stage=stage.number,
                    )
                )
                written.add(grad.name)
            has_gradient.add(leaf.name)
        if statements:
            blocks.append(Block(stage, statements))

    blocks = _without_unread(blocks, {names.assign(n) for n in wrt_names})
    read: set[str] = set()
    for block in blocks:
        for st in block.statements:
            read.update(l.name for l in leaves(st.value) if isinstance(l, Var))
    read -= {v for v in names.names.values()}
    read = _with_inputs(stages, read & {s.target for s in stages})
    replay = [s for s in stages if s.target in read]
    zero = [n for n in wrt_names if names.assign(n) not in written]
    return Backward(
        program=program,
        wrt=wrt_names,
        upstream=upstream,
        replay=replay,
        blocks=blocks,
        gradient_names=names.names,
        zero=zero,
        renamed=names.renamed,
    )


def _without_unread(blocks: list[Block], returned: set[str]) -> list[Block]:
    """Drop gradient statements nothing reads: a gradient whose only paths turned out to be
    zero (``t = x - x``) is computed for nothing otherwise."""
    while True:
        read = {
            l.name
            for b in blocks
            for st in b.statements
            for l in leaves(st.value)
            if isinstance(l, Var)
        }
        kept = [
            Block(b.stage, [st for st in b.statements if st.gradient.name in read | returned])
            for b in blocks
        ]
        kept = [b for b in kept if b.statements]
        if sum(len(b.statements) for b in kept) == sum(len(b.statements) for b in blocks):
            return kept
        blocks = kept


def _dim_names(shape: Shape) -> list[str]:
    return [n for d in shape for n in _factors(d)[1]]


def _located(program: Program, stage: Stage, message: str, hint: str):
    from ..errors import StagegenError

    return StagegenError(message, hint, filename=program.filename, line=stage.line, col=stage.col)
