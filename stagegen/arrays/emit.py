"""Emit for array functions: Backward -> the lines of one generated function.

The layout is the scalar one (templates/function.py.j2); what differs is printed here: the
dimensions the gradient code needs are bound first from the parameters' shapes
(``N, D = x.shape``), an array output's upstream gradient is broadcast to its shape (so the
default 1.0 means the gradient of the sum of the outputs), and a gather's gradient is
scattered with ``np.add.at``, which adds where indices repeat.
"""

from __future__ import annotations

from ..emit import DOMAIN_CHECK, RenderedFunction, _comment, _shorten
from ..expr import Expr, Var, walk
from ..names import CALLED_BUILTINS
from ..reverse import Backward
from .ir import (
    transform_array,
    ArrayPrinter,
    BroadcastTo,
    Copy,
    Dim,
    FullSlice,
    Index,
    NewAxis,
    Reshape,
    ShapeRead,
    Transpose,
    Zeros,
)
from ..lower import elementwise_selections
from ..structural import Scatter, dims


def _may_alias(e: Expr) -> bool:
    """Whether the value may share memory with another array (so `+=` must not write into it)."""
    if isinstance(e, (Var, Transpose, Reshape, BroadcastTo)):
        return True
    if isinstance(e, Index):
        return all(isinstance(i, (FullSlice, NewAxis)) or _is_int(i) for i in e.items)
    return False


def _is_array(st, p) -> bool:
    """Whether a gradient statement writes an array (a number's gradient is a number: `+=`
    makes a new one)."""
    of = st.of.name if isinstance(st.of, Var) else None
    return of is None or of not in p.types or bool(p.types[of].shape)


def _is_int(e: Expr) -> bool:
    from ..expr import Num

    return isinstance(e, Num) and isinstance(e.value, int)


class _IndexPrinter(ArrayPrinter):
    """Inside a tuple passed to np.add.at, ``:`` must be spelled ``slice(None)``."""

    def text(self, e: Expr) -> str:
        if isinstance(e, FullSlice):
            return "slice(None)"
        return super().text(e)


def render_array_function(b: Backward, np_name: str) -> RenderedFunction:
    p = b.program
    printer = ArrayPrinter(np_name)

    # Statements first: they decide which dimensions must be bound.
    accumulated = {st.gradient.name for bl in b.blocks for st in bl.statements if st.accumulate}
    # A returned gradient is the caller's own array: never a view of the upstream or of
    # another gradient (a caller's `dw *= 0.5` must change nothing else).
    returned = {b.gradient_of(n) for n in b.wrt}
    first_seen: set[str] = set()
    block_parts = []
    for block in b.blocks:
        parts = []
        for st in block.statements:
            name = st.gradient.name
            value = elementwise_selections(st.value)
            if isinstance(value, Scatter):
                if not st.accumulate:
                    parts.append((f"{name} = ", Zeros(value.shape), st.stage))
                parts.append((f"{np_name}.add.at({name}, ", value, st.stage))
            else:
                if st.accumulate and isinstance(value, BroadcastTo):
                    value = value.operand  # += broadcasts into the full-shaped gradient
                if not st.accumulate and _may_alias(value):
                    # += below must not write into another array, nor a returned gradient be one
                    if _is_array(st, p) and (name in accumulated or name in returned):
                        value = Copy(value)
                    elif not _is_array(st, p) and name in accumulated:
                        value = Copy(value, number=True)  # the upstream may be a 0-d array
                parts.append((f"{name} {'+=' if st.accumulate else '='} ", value, st.stage))
            first_seen.add(name)
        block_parts.append((block, parts))

    output_type = p.types[p.output.name]
    reads_upstream = any(
        isinstance(node, Var) and node.name == b.upstream
        for _, parts in block_parts
        for _, v, _ in parts
        for node in walk(v)
    )
    upstream_shape = dims(output_type.shape) if output_type.shape and reads_upstream else ()
    zero_values = {n: (Zeros(dims(p.types[n].shape)) if p.types[n].shape else None) for n in b.zero}
    used: list[str] = []
    exprs = [v for _, parts in block_parts for _, v, _ in parts]
    exprs += list(upstream_shape) + [z for z in zero_values.values() if z is not None]
    for e in exprs:
        for node in walk(e):
            if isinstance(node, Dim) and node.name not in used:
                used.append(node.name)

    # Bind each needed dimension from the first parameter that has it; a name the function
    # already uses is read from the shape where it is needed instead.
    taken = p.user_names | set(b.gradient_names.values()) | CALLED_BUILTINS
    setup: list[str] = []
    where: dict[str, tuple[str, int]] = {}
    for q in p.params:
        for k, d in enumerate(q.shape or ()):
            if isinstance(d, str) and "*" not in d and d not in where:
                where[d] = (q.name, k)
    replace: dict[Expr, Expr] = {}
    for stage in b.replay:  # the user's own `n = x.shape[0]`, when it is replayed anyway
        if (
            isinstance(stage.expr, ShapeRead)
            and Dim(str(p.types[stage.target].value)) not in replace
        ):
            replace[Dim(str(p.types[stage.target].value))] = Var(stage.target)
    bound_by_param: dict[str, list[tuple[int, str]]] = {}
    for d in used:
        if Dim(d) in replace:
            continue
        if d not in where:
            raise AssertionError(f"dimension {d} is not read from any parameter")
        param, k = where[d]
        if d in taken:
            replace[Dim(d)] = ShapeRead(Var(param), k)
        else:
            bound_by_param.setdefault(param, []).append((k, d))
    for q in p.params:
        bound = sorted(bound_by_param.get(q.name, []))
        if not bound:
            continue
        if len(bound) == len(q.shape) and len(bound) > 1:
            setup.append(f"{', '.join(d for _, d in bound)} = {q.name}.shape")
        else:
            setup += [f"{d} = {q.name}.shape[{k}]" for k, d in bound]

    def show(e: Expr, with_printer=printer) -> str:
        if replace:
            e = transform_array(e, lambda n: replace.get(n) if isinstance(n, Dim) else None)
        return with_printer(e)

    if upstream_shape:
        shape_text = printer._tuple(
            [
                transform_array(d, lambda n: replace.get(n) if isinstance(n, Dim) else None)
                for d in upstream_shape
            ]
        )
        setup.append(f"{b.upstream} = {np_name}.broadcast_to({b.upstream}, {shape_text})")

    blocks = []
    index_printer = _IndexPrinter(np_name)
    for block, parts in block_parts:
        lines = []
        for prefix, value, stage in parts:
            if isinstance(value, Scatter):
                items = ", ".join(show(i, index_printer) for i in value.items)
                items = f"({items},)" if len(value.items) == 1 else f"({items})"
                line = f"{prefix}{items}, {show(value.values)})"
            else:
                line = prefix + show(value)
            lines.append(line + _comment(stage))
        blocks.append(
            {
                "header": _shorten(f"{block.stage.target} = {printer(block.stage.expr)}"),
                "lines": lines,
            }
        )

    replay = [
        f"{s.target} = {printer(s.expr)}"
        + _comment(s.number, DOMAIN_CHECK if s.target in b.domain_checks else s.comment)
        for s in b.replay
    ]
    zero = []
    for n in b.zero:
        z = zero_values[n]
        zero.append(
            f"{b.gradient_of(n)} = {show(z) if z is not None else '0.0'}  # {n} does not reach the output"
        )
    grads = [b.gradient_of(n) for n in b.wrt]
    returns = ", ".join(grads)
    params = [f"{q.name}={q.default}" if q.default is not None else q.name for q in p.params]
    params.append(f"{b.upstream}=1.0")
    result = f"({returns})" if len(grads) > 1 else returns
    output_name = f"the output {p.returned_name}" if p.returned_name else "the returned value"
    upstream_text = (
        f" (shaped like {p.returned_name or 'the output'}, or a number)" if upstream_shape else ""
    )
    return RenderedFunction(
        backward_name=f"{p.name}_backward",
        parameters=", ".join(params),
        docstring=f"Gradient of {p.name} with respect to {', '.join(b.wrt)}, scaled by the upstream gradient {b.upstream}{upstream_text}.",
        signature_line=f"{p.name}_backward({', '.join(params)}) -> {result}",
        dependent=output_name,
        independent=", ".join(b.wrt),
        notes=[f"the gradient of {v} is named `{g}` ({why})" for v, g, why in b.renamed],
        replay=replay,
        checks_domain=bool(b.domain_checks),
        setup=setup,
        blocks=blocks,
        zero=zero,
        returns=returns,
    )
