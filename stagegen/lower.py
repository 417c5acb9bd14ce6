"""Lowering: Backward -> the statements of one generated function, ready to print.

The sweep says what each gradient is; lowering decides how the code holds it, for the values'
types: a list parameter's gradient starts as a list of zeros; an array's gradient that ``+=``
will write into must own its memory (``.copy()``), and so must every returned one; a gather's
gradient is scattered with ``np.add.at``; the dimensions the code needs are bound from the
parameters' shapes (``N, D = x.shape``); an array output's upstream gradient is broadcast to its
shape, so the default 1.0 means the gradient of the sum of the outputs; a selection (number
code's ``g if z > 0 else 0.0``) becomes a mask for arrays; and array code computes what it
would compute twice once (a forward stage's value read by its name, a repeated part named:
shared.py). The printer (emit.py) then only prints, choosing spellings by type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .arrays.ir import (
    AddAt,
    BroadcastTo,
    Copy,
    Dim,
    FullSlice,
    Index,
    JointShape,
    Move,
    NewAxis,
    Put,
    Reshape,
    RestOf,
    ShapeOf,
    ShapeRead,
    Span,
    Transpose,
    Where,
    Zeros,
    transform_array,
)
from .arrays.shapes import JOINT, REST_SIZE, is_rest, rest_param
from .expr import (
    And,
    Bin,
    Call,
    Compare,
    Cond,
    Const,
    Elem,
    Expr,
    Invoke,
    Item,
    Neg,
    Num,
    Var,
    number_value,
    walk,
)
from .layout import LINE_LENGTH
from .names import CALLED_BUILTINS
from .program import Branch, Exit, Loop, Stage, walk_nodes
from .reverse import Backward, Block, BranchBlock, LoopBlock, Restore, Save
from .shared import (
    RESERVED,
    Row,
    name_repeats,
    negations_off_masks,
    reusable_stage,
    reuse_names,
    spelling_free,
)
from .structural import Scatter, Zeroed, dims
from .types import Types


@dataclass
class Line:
    """``target op value  # (stage) note``; a target of None is an expression statement, and a
    tuple target unpacks (``N, D = x.shape``)."""

    target: Expr | tuple[Expr, ...] | None
    value: Expr | str  # a str is standard-library code spelled here (a list of zeros)
    op: str = "="
    stage: int | None = None
    note: str = ""


@dataclass
class LoweredBlock:
    """A block of the backward's body: the gradient lines of one forward stage, under its
    `# backprop` comment. Blocks nest (``lines`` may hold blocks), and a nested block's lines
    are indented under it: the place for the loops and branches of the next issues."""

    stage: Stage  # the forward stage it undoes, named in the `# backprop` header
    lines: list["Line | LoweredBlock"]
    nested: bool = False
    continued: bool = False  # goes on after a restore: no header again


@dataclass
class LoweredCompound:
    """A compound statement: its opening line (``for i in reversed(range(n)):``, ``if x < 0:``,
    ``else:``) with its own lines indented under it."""

    opening: str | Expr
    lines: list
    stage: int | None = None
    opening_kind: str = "code"  # "code": a header printed with its (n); "else"


@dataclass
class Lowered:
    backward: Backward
    numbers_only: list[str]  # number code called with arrays raises here (see NUMBERS_ONLY)
    replay: list[Line]
    setup: list[Line]
    blocks: list[LoweredBlock]
    zero: list[Line]
    upstream_shaped: bool  # the upstream gradient is broadcast to an array output's shape
    # With loops or branches, replay and blocks are trees: Line, LoweredBlock, LoweredCompound.


NUMBERS_ONLY = "numbers only: the forward uses no NumPy"
NUMBER_PARAMETERS = "numbers: an array here raises"
DOMAIN_CHECK = "domain check"  # replayed so that the backward raises where f does


def lower(b: Backward) -> Lowered:
    p = b.program
    types = Types(p)
    gradient_of = b.gradient_of
    returned = {gradient_of(n) for n in b.wrt}
    accumulated = {st.gradient.name for bl in b.blocks for st in bl.statements if st.accumulate}
    # a write's zeros go into the very gradient they come from (a loop or branch shares the
    # name): like +=, that gradient must be an array of its own
    zeroed_in_place = {
        st.gradient.name
        for bl in b.blocks
        for st in bl.statements
        if isinstance(st.value, Zeroed) and st.value.gradient == st.gradient
    }
    accumulated |= zeroed_in_place
    private = _private_gradients(b, returned | accumulated)

    blocks: list[LoweredBlock] = []
    lowered_block: dict[int, LoweredBlock] = {}
    for block in b.blocks:
        lines: list[Line] = []
        for st in block.statements:
            if types.numbers_only:  # a float is never written in place: nothing to lower
                lines.append(
                    Line(st.gradient, st.value, "+=" if st.accumulate else "=", st.stage, st.note)
                )
            else:
                lines += _array_statement_lines(
                    st, types, accumulated, returned, private, zeroed_in_place
                )
        blocks.append(LoweredBlock(block.stage, lines, continued=block.continued))
        lowered_block[id(block)] = blocks[-1]

    # A list gradient as long as the list passed in (`len` may be one of the user's names).
    zeros = "[0.0] * len({})" if "len" not in p.user_names else "[0.0 for _ in {}]"
    setup = [
        Line(Var(gradient_of(q.name)), zeros.format(q.name))
        for q in p.params
        if q.is_list and q.name in b.wrt
    ]
    tested = _tested(b)
    zero = [
        Line(
            Var(gradient_of(n)),
            _zeros_like(p.param(n).shape),
            note=(
                f"{n} reaches the output only through a condition, which has no gradient"
                if n in tested
                else f"{n} does not reach the output"
            ),
        )
        for n in b.zero
    ]
    replay = [line for s in b.replay for line in _stage_lines(s, b)]

    # An array output's upstream gradient, when read, is broadcast to the output's shape (and
    # copied, when the backward adds to it: the caller's array is not written into).
    read_names = {
        n.name
        for line in flat_lines(blocks)
        if isinstance(line.value, Expr)
        for n in walk(line.value)
        if isinstance(n, Var)
    }
    shaped = False
    for (value, _), upstream in zip(p.outputs, b.upstreams or [b.upstream]):
        output_shape = types.shape(value)
        if output_shape and upstream in read_names:
            shaped = True
            spread: Expr = BroadcastTo(Var(upstream), dims(output_shape))
            if upstream in accumulated:
                spread = Copy(spread)
            setup.append(Line(Var(upstream), spread))

    if b.body is not None:
        stacks = sorted({n.stack for n in walk_nodes(b.replay_body) if isinstance(n, Save)})
        replay = [Line(Var(stack), "[]") for stack in stacks]
        replay += _replay_lines(b.replay_body, b, types)
        blocks = _backward_lines(b.body, lowered_block, types)
    replay, blocks = _unpack_calls(replay), _unpack_calls(blocks)
    bound, replace = _bind_dimensions(b, blocks, setup, zero)
    if replace:

        def replace_dim(n: Expr) -> Expr | None:
            return replace.get(n) if isinstance(n, Dim) else None

        for line in [*setup, *zero, *flat_lines(blocks)]:
            if isinstance(line.value, Expr):
                line.value = transform_array(line.value, replace_dim)
    if not types.numbers_only:  # number code is printed as the sweep wrote it
        _share(b, replay, bound + setup + zero, blocks)
        replay = _unpack_shapes(replay, p, types)  # (the top level's: loops come after them)
    return Lowered(
        backward=b,
        numbers_only=_numbers_only(p),
        replay=replay,
        setup=bound + setup,
        blocks=blocks,
        zero=zero,
        upstream_shaped=shaped,
    )


# ---------------------------------------------------------------------------- calls


def _unpack_calls(items: list) -> list:
    """A call returning several values, and the lines reading its parts right after it, as
    one unpacking: ``p, q = two(m, u)``, ``dm, du = two_backward(m, u, dp, dq)`` (``_`` for
    a part nothing reads). Where a part is added to a gradient (``+=``), the lines stay."""
    out: list = []
    k = 0
    while k < len(items):
        item = items[k]
        if isinstance(item, (LoweredBlock, LoweredCompound)):
            item.lines = _unpack_calls(item.lines)
            out.append(item)
            k += 1
            continue
        if (
            isinstance(item, Line)
            and item.op == "="
            and isinstance(item.target, Var)
            and isinstance(item.value, Item)
            and isinstance(item.value.operand, Invoke)
        ):  # one part of a call's values: `dk, _ = scale_backward(k, 2.0, dm)`
            call = item.value.operand
            targets = tuple(
                item.target if i == item.value.index else Var("_") for i in range(call.returns)
            )
            out.append(Line(targets, call, stage=item.stage, note=item.note))
            k += 1
            continue
        found = _parts_read(items, k)
        if found is None:
            out.append(item)
            k += 1
            continue
        parts, saves, used = found
        targets = tuple(parts.get(i, Var("_")) for i in range(item.value.returns))
        # A value saved before a part binds its name again is saved before the call; one
        # saved after its part bound it (a step's new value), after.
        before = [save for save, new in saves if not new]
        after = [save for save, new in saves if new]
        out += before
        out.append(Line(targets, item.value, stage=item.stage, note=item.note))
        out += after
        k += 1 + used
    return out


def _parts_read(items: list, k: int) -> tuple[dict, list, int] | None:
    """({position: target}, saves, lines used) for the lines after ``items[k]`` that each bind
    one part of the call it holds, when they are all plain bindings, each part read once (the
    replay's saves of the names they bind again may sit between them); else None."""
    line = items[k]
    if not (
        isinstance(line, Line)
        and isinstance(line.target, Var)
        and isinstance(line.value, Invoke)
        and line.op == "="
    ):
        return None
    parts: dict[int, Expr] = {}
    saves: list[tuple[Line, bool]] = []  # (the save, whether it saves a part's new value)
    used = 0
    for after in items[k + 1 :]:
        if _is_save(after):
            saved = after.value.split(".append(")[1].rstrip(")")
            saves.append((after, any(t == Var(saved) for t in parts.values())))
            used += 1
            continue
        if not (
            isinstance(after, Line)
            and isinstance(after.value, Item)
            and after.value.operand == line.target
            and after.op == "="
            and after.value.index not in parts
        ):
            break
        parts[after.value.index] = after.target
        used += 1
    while saves and used and _is_save(items[k + used]):
        saves.pop()  # saves after the last part stay where they are
        used -= 1
    if not parts:
        return None
    reads = [
        n
        for other in flat_lines(items)
        if other is not line and isinstance(other.value, Expr)
        for n in walk(other.value)
        if n == line.target
    ]
    return (parts, saves, used) if len(reads) == len(parts) else None


def _is_save(line) -> bool:
    """``h_saved.append(h)``, a line of the forward replay."""
    return (
        isinstance(line, Line)
        and line.target is None
        and isinstance(line.value, str)
        and ".append(" in line.value
    )


# ---------------------------------------------------------------------------- loops and branches


def flat_lines(items: list) -> list[Line]:
    """Every line of a tree of lines and blocks."""
    found = []
    for item in items:
        if isinstance(item, (LoweredBlock, LoweredCompound)):
            found += flat_lines(item.lines)
        else:
            found.append(item)
    return found


def _replay_lines(nodes: list, b: Backward, types: Types) -> list:
    """The forward replay as code: the user's loops and branches around the replayed
    stages, the values the backward reads saved step by step, and each ``while`` (or loop
    that may ``break``) counting its steps."""
    out: list = []
    for node in nodes:
        if isinstance(node, Stage):
            out += _stage_lines(node, b)
        elif isinstance(node, Save):
            out.append(Line(None, f"{node.stack}.append({node.name})"))
        elif isinstance(node, Exit):
            out.append(Line(None, node.kind, stage=node.number))
        elif isinstance(node, Branch):
            out += _branch_lines(
                node, _replay_lines(node.then, b, types), _replay_lines(node.orelse, b, types)
            )
        elif isinstance(node, Loop):
            inner = _replay_lines(node.body, b, types)
            if node.steps:
                out.append(Line(Var(node.steps), Num(0)))
                inner.insert(0, Line(Var(node.steps), Num(1), "+="))
            out.append(LoweredCompound(_forward_header(node), inner, node.number))
    return out


def _stage_lines(stage: Stage, b: Backward) -> list[Line]:
    """A replayed stage; a write into an array as the user wrote it, into a copy of the array
    before it (which the backward may read too), or, in a loop or branch where the array keeps
    its name and no step's value of it is saved, into the array itself."""
    note = DOMAIN_CHECK if stage.target in b.domain_checks else stage.comment
    if isinstance(stage.expr, Put):
        put = stage.expr
        written = Index(Var(stage.target), put.items)
        saved = b.body is not None and any(
            isinstance(n, Save) and n.name == stage.target for n in walk_nodes(b.replay_body)
        )
        if put.operand == Var(stage.target) and not saved:
            return [Line(written, put.value, stage=stage.number, note=note)]
        return [
            Line(Var(stage.target), Copy(put.operand), stage=stage.number),
            Line(written, put.value, stage=stage.number, note=note),
        ]
    return [Line(Var(stage.target), stage.expr, stage=stage.number, note=note)]


def _branch_lines(branch: Branch, then: list, orelse: list) -> list:
    """``if test:`` with its arms; an arm that ends in ``break``/``continue`` is printed
    first, the other arm after the ``if`` as the code it is."""
    test = branch.test
    if _leaves(then):
        return [LoweredCompound(test, then, branch.number, "if")] + orelse
    if _leaves(orelse):
        return [LoweredCompound(_negated(test), orelse, branch.number, "if")] + then
    if not then and not orelse:
        return []
    if not then:
        return [LoweredCompound(_negated(test), orelse, branch.number, "if")]
    out = [LoweredCompound(test, then, branch.number, "if")]
    if _is_if_chain(orelse):  # else: if ... → elif ...
        inner = orelse[0]
        out.append(LoweredCompound(inner.opening, inner.lines, inner.stage, "elif"))
        out += orelse[1:]
    elif orelse:
        out.append(LoweredCompound("else:", orelse, None, "else"))
    return out


def _is_if_chain(lines: list) -> bool:
    """An `if` with its `elif`s and `else`, and nothing else."""
    return (
        bool(lines)
        and all(isinstance(line, LoweredCompound) for line in lines)
        and lines[0].opening_kind == "if"
        and all(line.opening_kind in ("elif", "else") for line in lines[1:])
    )


def _leaves(lines: list) -> bool:
    return bool(lines) and isinstance(lines[-1], Line) and lines[-1].value in ("break", "continue")


def _negated(test: Expr) -> Expr:
    from .expr import Not

    return test.operand if isinstance(test, Not) else Not(test)


def _forward_header(loop: Loop) -> str:
    if loop.index is None:
        return "while True:" if loop.test is None else loop.test
    bounds = _range(loop.start, loop.stop, loop.step)
    return (loop.index, ("reversed", bounds) if loop.backwards else bounds)


def _range(start, stop, step: int):
    return ("range", start, stop, step)


def _backward_lines(items: list, lowered_block: dict, types: Types) -> list:
    out: list = []
    for item in items:
        if isinstance(item, Block):
            if not item.stage.target:  # gradients set to zero
                out += [_zero_line(st, types) for st in item.statements]
            else:
                out.append(lowered_block[id(item)])
        elif isinstance(item, Restore):
            out.append(Line(Var(item.name), f"{item.stack}.pop()", stage=item.stage))
        elif isinstance(item, BranchBlock):
            then = _backward_lines(item.then, lowered_block, types)
            orelse = _backward_lines(item.orelse, lowered_block, types)
            out += _branch_lines(item.branch, then, orelse)
        elif isinstance(item, LoopBlock):
            out += [_zero_line(st, types) for st in item.before]
            loop = item.loop
            out.append(Line(None, f"# backprop {loop.text}:", None))
            out.append(
                LoweredCompound(
                    _backward_header(loop),
                    _backward_lines(item.body, lowered_block, types),
                    loop.number,
                )
            )
    return out


def _backward_header(loop: Loop):
    """The steps of a loop, last first: ``for i in reversed(range(n))``; a counted loop runs
    its counted steps (``for _ in range(steps)`` for a ``while``)."""
    if loop.index is None:
        return ("_", ("range", Num(0), Var(loop.steps), 1))
    start, stop, step = loop.start, loop.stop, loop.step
    if loop.steps:  # it may break: only the steps it ran
        from .expr import Bin

        if loop.backwards:
            start = Bin("-", stop, Var(loop.steps))
        else:
            stop = Bin("+", start, Var(loop.steps)) if number_value(start) != 0 else Var(loop.steps)
        if step != 1:
            raise AssertionError("a counted loop steps by one")
    bounds = ("range", start, stop, step)
    return (loop.index, bounds if loop.backwards else ("reversed", bounds))


def _zero_line(st, types: Types) -> Line:
    shape = types.shape(st.of) if not types.numbers_only else ()
    return Line(st.gradient, _zeros_like(shape), stage=st.stage, note=st.note)


def _tested(b: Backward) -> set[str]:
    """The names the tests of conditional expressions on the gradient's path read, and the
    values those are made of."""
    stage_of = b.program.stage_of
    names: set[str] = set()
    for stage in (block.stage for block in b.blocks):
        for node in walk(stage.expr):
            if isinstance(node, Cond):
                names.update(l.name for l in walk(node.test) if isinstance(l, Var))
    pending = list(names)
    while pending:
        stage = stage_of.get(pending.pop())
        if stage is not None:
            found = {l.name for l in walk(stage.expr) if isinstance(l, Var)} - names
            names |= found
            pending += found
    return names


def _zeros_like(shape) -> Expr:
    return Zeros(dims(shape)) if shape else Num(0.0)


def _unpack_shapes(lines: list[Line], p, types: Types) -> list[Line]:
    """``N, D = x.shape`` as the user wrote it: the replayed reads of every axis of one array,
    from one line of the forward, as one unpacking (numbered as its first)."""
    where = {s.number: s.line for s in p.stages}
    out: list[Line] = []
    k = 0
    while k < len(lines):
        value = getattr(lines[k], "value", None)  # (a loop or branch is no shape read)
        if isinstance(value, ShapeRead) and value.axis == 0:
            run = 1
            while (
                k + run < len(lines)
                and isinstance(getattr(lines[k + run], "value", None), ShapeRead)
                and lines[k + run].value == ShapeRead(value.operand, run, value.spelling)
                and where.get(lines[k + run].stage) == where.get(lines[k].stage)
            ):
                run += 1
            if run > 1 and len(types.shape(value.operand) or ()) == run:
                targets = tuple(lines[k + j].target for j in range(run))
                out.append(Line(targets, ShapeOf(value.operand), stage=lines[k].stage))
                k += run
                continue
        out.append(lines[k])
        k += 1
    return out


def _private_gradients(b: Backward, exposed: set[str]) -> set[str]:
    """Intermediate gradients a view of which may be returned without a copy: computed fresh
    (not a view themselves), written once, never added to, read by one statement only, so that
    nothing else holds their memory (``dx = dx_row.reshape(np.shape(x))``)."""
    written: dict[str, int] = {}
    reads: dict[str, int] = {}
    fresh: set[str] = set()
    for block in b.blocks:
        for st in block.statements:
            name = st.gradient.name
            written[name] = written.get(name, 0) + 1
            if not st.accumulate and not _may_alias(st.value):
                fresh.add(name)
            for node in {n for n in walk(st.value) if isinstance(n, Var)}:
                reads[node.name] = reads.get(node.name, 0) + 1
    return {n for n in fresh - exposed if written[n] == 1 and reads.get(n, 0) == 1}


def _viewed(e: Expr) -> Expr:
    """What a chain of views (reshape, transpose, moves) looks at."""
    while isinstance(e, (Reshape, Transpose, Move)):
        e = e.operand
    return e


def _array_statement_lines(
    st,
    types: Types,
    accumulated: set[str],
    returned: set[str],
    private: set[str] = frozenset(),
    zeroed_in_place: set[str] = frozenset(),
):
    name = st.gradient.name
    value = elementwise_selections(st.value)
    if not st.accumulate and _looked_at(value, types) in zeroed_in_place:
        value = Copy(value)  # dv = dh[:, t].copy(): the write's zeros go into dh next
    if isinstance(value, Scatter) and value.distinct:
        # x[:, t, :] read at a loop's step, x[np.arange(N), y]: added into those positions
        lines = []
        if not st.accumulate:
            lines.append(Line(Var(name), Zeros(value.shape), stage=st.stage))
        target = Index(Var(name), value.items)  # (into new zeros: written, not added)
        lines.append(Line(target, value.values, "+=" if st.accumulate else "=", st.stage, st.note))
        return lines
    if isinstance(value, Scatter):
        lines = []
        if not st.accumulate:
            lines.append(Line(Var(name), Zeros(value.shape), stage=st.stage))
        lines.append(Line(None, AddAt(Var(name), value.items, value.values), stage=st.stage))
        return lines
    if isinstance(value, Zeroed):  # a write's gradient: zero where it wrote
        g, at = value.gradient, Index(Var(name), value.items)
        if g == st.gradient:  # the same gradient (a loop or branch): its own array, zeroed
            return [Line(at, Num(0.0), "=", st.stage, st.note)]
        if st.accumulate:  # (the positions are subtracted once each, as NumPy writes them)
            return [
                Line(st.gradient, g, "+=", st.stage, st.note),
                Line(at, Index(g, value.items), "-=", st.stage),
            ]
        copied = Copy(g) if _may_alias(g) else g
        return [
            Line(st.gradient, copied, "=", st.stage, st.note),
            Line(at, Num(0.0), "=", st.stage),
        ]
    if st.accumulate and isinstance(value, BroadcastTo):
        value = value.operand  # += broadcasts into the full-shaped gradient
    viewed = _viewed(value)
    if (isinstance(viewed, Var) and viewed.name in private) or (
        viewed is not value and not isinstance(viewed, (Var, Index, BroadcastTo))
    ):
        pass  # a gradient no one else holds, or a view of a new array: nothing to copy
    elif not st.accumulate and _may_alias(value):
        # A gradient is an array unless it is a number's (a number's `+=` makes a new one).
        is_array = st.intermediate or bool(types.shape(st.of))
        # += below must not write into another array, nor a returned gradient be one
        if is_array and (name in accumulated or name in returned):
            value = Copy(value)
        elif not is_array and name in accumulated:
            value = Copy(value, number=True)  # the upstream may be a 0-d array
    return [Line(st.gradient, value, "+=" if st.accumulate else "=", st.stage, st.note)]


def _looked_at(e: Expr, types: Types) -> str | None:
    """The name of the array that ``e`` is, or is a view of (a slice, a loop's slot, a
    transpose, a reshape); None for a new array."""
    while True:
        if isinstance(e, (Reshape, Transpose)) or (
            isinstance(e, Move) and e.fn not in ("copy", "astype", "flatten")
        ):
            e = e.operand
        elif isinstance(e, Index) and all(
            isinstance(i, (FullSlice, NewAxis, Span)) or _is_int(i) or types.shape(i) == ()
            for i in e.items
        ):
            e = e.operand
        else:
            return e.name if isinstance(e, Var) else None


def _may_alias(e: Expr) -> bool:
    """Whether the value may share memory with another array (so `+=` must not write into it)."""
    if isinstance(e, (Var, Transpose, Reshape, BroadcastTo, Move)):
        return True  # (a Move: squeeze, expand_dims, transpose, swapaxes of a gradient)
    if isinstance(e, Index):
        return all(isinstance(i, (FullSlice, NewAxis, Span)) or _is_int(i) for i in e.items)
    return False


def _is_int(e: Expr) -> bool:
    return isinstance(e, Num) and isinstance(e.value, int)


def _bind_dimensions(b: Backward, blocks, setup, zero) -> tuple[list[Line], dict]:
    """Lines binding each dimension the code reads from the first parameter that has it
    (``N, D = x.shape``), and the dimensions read from a shape where they are needed instead:
    a name the function already uses, or the user's own ``n = x.shape[0]`` when it is replayed."""
    p = b.program
    types = Types(p)
    used: list[str] = []
    for line in [*flat_lines(blocks), *setup, *zero]:
        for node in walk(line.value) if isinstance(line.value, Expr) else ():
            if isinstance(node, Dim) and node.name not in used:
                used.append(node.name)
    if not used:
        return [], {}
    taken = p.user_names | set(b.gradient_names.values()) | CALLED_BUILTINS
    where: dict[str, tuple[str, int]] = {}
    for q in p.params:
        for k, d in enumerate(q.shape or ()):
            if isinstance(d, str) and "*" not in d and not is_rest(d) and d not in where:
                where[d] = (q.name, k)
    replace: dict[Expr, Expr] = {}
    for stage in b.replay:
        if isinstance(stage.expr, ShapeRead):
            dim = Dim(str(types.of(Var(stage.target)).value))
            replace.setdefault(dim, Var(stage.target))
    for q in p.params:  # a rest is printed from its parameter's shape where it is used
        for k, d in enumerate(q.shape or ()):
            if is_rest(d):
                replace[Dim(d)] = RestOf(Var(q.name), k)
                replace[Dim(REST_SIZE + rest_param(d))] = RestOf(Var(q.name), k, size=True)
    for d in used:  # x * w of any shapes: NumPy's broadcast of theirs, read at run time
        if JOINT in d:
            shapes_of = tuple(RestOf(Var(m), 0) for m in rest_param(d).split(JOINT))
            replace[Dim(d)] = JointShape(shapes_of, size=d.startswith(REST_SIZE))
    by_param: dict[str, list[tuple[int, str]]] = {}
    for d in used:
        if Dim(d) in replace:
            continue
        if d not in where:
            raise AssertionError(f"dimension {d} is not read from any parameter")
        param, k = where[d]
        if d in taken:
            replace[Dim(d)] = ShapeRead(Var(param), k)
        else:
            by_param.setdefault(param, []).append((k, d))
    lines: list[Line] = []
    for q in p.params:
        bound = sorted(by_param.get(q.name, []))
        if len(bound) == len(q.shape or ()) and len(bound) > 1:
            lines.append(Line(tuple(Dim(d) for _, d in bound), ShapeOf(Var(q.name))))
        else:
            lines += [Line(Dim(d), ShapeRead(Var(q.name), k)) for k, d in bound]
    return lines, replace


# ---------------------------------------------------------------------------- shared parts


def _share(b: Backward, replay: list, setup: list[Line], blocks: list) -> None:
    """An array backward's blocks with the forward's names read where a gradient line computes
    a stage's value again, and each costly part a block computes twice named once (see
    shared.py). A stage so read that the replay leaves out, though it reads only parameters
    and replayed values, is replayed: one line that costs what the gradient line saves.
    Forward names are reused in straight-line code only: with loops and branches a name may
    hold another step's value, or be bound again by a restore."""
    p = b.program
    everything = [*flat_lines(replay), *setup, *flat_lines(blocks)]
    named: dict[Expr, str] = {}
    cheap: dict[str, Stage] = {}  # stages the replay may add, by target
    if b.body is None:
        replayed = {s.target for s in b.replay}
        have = replayed | {q.name for q in p.params}
        for stage in b.replay + [s for s in p.stages if s.target not in replayed]:
            if not reusable_stage(stage.expr):
                continue
            if stage.target not in replayed:
                if not {n.name for n in walk(stage.expr) if isinstance(n, Var)} <= have:
                    continue
                cheap[stage.target] = stage
            named.setdefault(spelling_free(stage.expr), stage.target)
    taken = set(RESERVED) | CALLED_BUILTINS | p.user_names | {s.target for s in p.stages}
    taken |= set(b.gradient_names.values()) | {q.name for q in p.params}
    for line in everything:
        taken |= _names_in(line.target, line.value)
    for item in _compounds([*replay, *blocks]):
        taken |= _names_in(item.opening)

    def visit(items: list) -> None:
        for item in items:
            if isinstance(item, LoweredBlock):
                item.lines = _shared_block(item.lines, named, taken)
            elif isinstance(item, LoweredCompound):
                visit(item.lines)

    visit(blocks)
    if named:  # the setup too: `np.broadcast_to(dout, (n, x.shape[1]))` reads the user's `D`
        rows = [
            Row(line.value if isinstance(line.value, Expr) else None, frozenset()) for line in setup
        ]
        for line, value in zip(setup, reuse_names(rows, named)):
            if value is not None:
                line.value = value
    read = _names_in(*(line.value for line in [*setup, *flat_lines(blocks)]))
    for target in [t for t in cheap if t in read]:
        stage = cheap[target]
        line = Line(Var(target), stage.expr, stage=stage.number, note=stage.comment)
        at = next((k for k, r in enumerate(replay) if (r.stage or 0) > stage.number), len(replay))
        replay.insert(at, line)


def _shared_block(lines: list, named: dict, taken: set[str]) -> list:
    if not all(isinstance(line, Line) for line in lines):
        return lines
    rows = [
        Row(
            negations_off_masks(line.value) if isinstance(line.value, Expr) else None,
            frozenset(_written(line)),
            # `d = part` would bind a second name to one array: not where either is
            # written into, nor for two gradients (see shared.py)
            whole=line.op != "=" and line.target is not None,
        )
        for line in lines
    ]
    if named:
        for row, value in zip(rows, reuse_names(rows, named)):
            row.value = value
    out: list[Line] = []
    for placed in name_repeats(rows, taken):
        line = lines[placed.row]
        if placed.name is not None:
            out.append(Line(Var(placed.name), placed.value, stage=line.stage))
        else:
            if placed.value is not None:
                line.value = placed.value
            out.append(line)
    return out


def _written(line: Line) -> set[str]:
    """The names a line binds or writes into."""
    targets = line.target if isinstance(line.target, tuple) else (line.target,)
    found = {_base_name(t) for t in targets if t is not None}
    return (found | _written_in_place(line)) - {None}


def _written_in_place(line: Line) -> set[str]:
    """The arrays a line changes in place: ``d += ...``, ``d[...] += ...``, ``np.add.at(d, ...)``."""
    found = set()
    if isinstance(line.value, AddAt):
        found.add(_base_name(line.value.target))
    if line.op != "=" or isinstance(line.target, Index):
        found.add(_base_name(line.target))
    return found - {None}


def _base_name(target) -> str | None:
    while isinstance(target, Index):
        target = target.operand
    return target.name if isinstance(target, (Var, Dim)) else None


def _names_in(*parts) -> set[str]:
    """Every name some code reads or binds: expressions, code spelled as text, and the tuples
    of targets and of a loop's bounds."""
    found: set[str] = set()
    for part in parts:
        if isinstance(part, str):
            found |= set(re.findall(r"[^\W\d]\w*", part))
        elif isinstance(part, tuple):
            found |= _names_in(*part)
        elif isinstance(part, Expr):
            for n in walk(part):
                if isinstance(n, (Var, Dim, Elem)):
                    found.add(n.name)
                elif isinstance(n, Invoke):
                    found.add(n.function)
    return found


def _compounds(items: list):
    """Every compound statement of a tree of lines and blocks."""
    for item in items:
        if isinstance(item, LoweredCompound):
            yield item
        if isinstance(item, (LoweredBlock, LoweredCompound)):
            yield from _compounds(item.lines)


# ---------------------------------------------------------------------------- number code


def _numbers_only(p) -> list[str]:
    """``x, y = float(x), float(y)``: a backward written for numbers, called with arrays,
    would return gradients of the wrong shape; ``float`` raises on that line instead. In array
    code, the same for its number parameters (``eps``, ``reg``): an array passed there would
    get its gradient summed to one number."""
    if "float" in p.user_names:
        return []  # the user's own `float`: leave the inputs as they are
    array_code = bool(p.numpy)
    names = [
        q.name
        for q in p.params
        if not q.is_list and not q.integer and not (array_code and q.shape is not None)
    ]
    lines: list[str] = []
    group: list[str] = []
    for n in names:  # as few lines as fit, so black has nothing to wrap
        if group and len(_floats(group + [n])) + 4 > LINE_LENGTH:
            lines.append(_floats(group))
            group = []
        group.append(n)
    if group:
        lines.append(_floats(group))
    # list(map(float, w)) costs half of a comprehension; the user's own list or map forbid it
    convert = "[float(v) for v in {}]" if {"list", "map"} & p.user_names else "list(map(float, {}))"
    lines += [f"{q.name} = {convert.format(q.name)}" for q in p.params if q.is_list]
    if not lines:
        return []
    comment = f"  # {NUMBERS_ONLY if not array_code else NUMBER_PARAMETERS}"
    if len(lines[0]) + len(comment) + 4 <= LINE_LENGTH:
        return [lines[0] + comment, *lines[1:]]
    return [comment.strip(), *lines]


def _floats(names: list[str]) -> str:
    return f"{', '.join(names)} = {', '.join(f'float({n})' for n in names)}"


# ---------------------------------------------------------------------------- selections


def elementwise_selections(e: Expr) -> Expr:
    """``e`` with every ``Cond`` written for arrays."""

    def rewrite(node: Expr) -> Expr | None:
        if not isinstance(node, Cond):
            return None
        test = elementwise_selections(node.test)
        body = elementwise_selections(node.body)
        orelse = node.orelse
        sign = _sign_of(node)
        if sign is not None:
            a, g = sign
            return Bin("*", Call("sign", (elementwise_selections(a),)), body)
        if _is_zero(orelse) and _finite_where_masked(body):
            return Bin("*", _mask(test), body)
        # np.where computes both sides everywhere: a log in the selected side is taken of e
        # where the test fails (x ** y's gradient in y at x = 0), so it neither warns nor raises
        # where the forward does not.
        return Where(test, _guard_logs(body, test), elementwise_selections(orelse))

    return transform_array(e, rewrite)


def _guard_logs(e: Expr, test: Expr) -> Expr:
    """``e`` with each log of a value taken of ``e`` (log e = 1, so a division by the log stays
    finite too) where ``test`` fails; a log of a number is left as it is."""

    def guard(node: Expr) -> Expr | None:
        if isinstance(node, Call) and node.fn == "log" and len(node.args) == 1:
            (arg,) = node.args
            if number_value(arg) is not None:
                return node
            return Call("log", (Where(test, _guard_logs(arg, test), Const("e")),))
        return None

    return transform_array(e, guard)


def _mask(test: Expr) -> Expr:
    """A comparison is a mask already; several that must all hold multiply."""
    if isinstance(test, And):
        total = test.items[0]
        for item in test.items[1:]:
            total = Bin("*", total, item)
        return total
    return test


def _sign_of(node: Cond) -> tuple[Expr, Expr] | None:
    """(a, g) for ``g if a > 0 else (-g if a < 0 else 0)``: the abs gate's ``sign(a) * g``."""
    test, inner = node.test, node.orelse
    if not (isinstance(test, Compare) and test.op == ">" and _is_zero(test.right)):
        return None
    if not (isinstance(inner, Cond) and isinstance(inner.test, Compare)):
        return None
    t = inner.test
    if t.op == "<" and t.left == test.left and _is_zero(t.right) and _is_zero(inner.orelse):
        if inner.body == Neg(node.body) or node.body == Neg(inner.body):
            return test.left, node.body
    return None


def _finite_where_masked(e: Expr) -> bool:
    """Whether ``mask * e`` is safe: nothing in ``e`` can be infinite or NaN where the mask is
    0 (a log or a division there would make 0 * inf = NaN)."""
    return not any(
        isinstance(n, Call) or (isinstance(n, Bin) and n.op in ("/", "**")) for n in walk(e)
    )


def _is_zero(e: Expr) -> bool:
    return isinstance(e, Num) and e.value == 0
