"""Narrate: an explanation in words, as text (ANSI-coloured or plain), markdown or HTML.

The words are built once, as rows of highlighted pieces (``highlight.Piece``), and every format
lays out the same rows: the forward with each stage's value, the backward with each statement's
local gradient, the gradient flowing in and the result (and, for ``+=``, the contributions it
adds to), then the gradient on each input beside SymPy's value and a finite difference.
Markdown and HTML page layout live in the jinja2 templates ``explain.md.j2``/``explain.html.j2``.
Array code gets the same layout with other words: each gradient's shape and the dimension
argument that fixes it, and values summarised.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .arrays import shapes
from .explain_arrays import (
    ArrayExplanationData,
    ArrayStep,
    Product,
    Said,
    Scattered,
    Spread,
    Summed,
    shape_text,
    summary,
)
from .explained import (
    PRINT,
    BackwardStep,
    ExplanationData,
    PathExplanationData,
    folded,
    point_text,
    precise,
    short,
)
from .unroll import PathBranch, PathExit, PathLoop, PathStage, path_stages
from .highlight import Piece, ansi, code_pieces, spans
from .types import dimension_names

INDENT = "    "
COMMENT_COLUMN_LIMIT = 44  # trailing comments align up to this code width


@dataclass
class Row:
    code: str = ""  # a line of Python; "" for a comment line of its own
    note: list[Piece] = field(default_factory=list)
    kind: str = "code"  # code | header (a "# backprop ..." line) | detail (under a statement)
    indent: str = ""  # a comment row's indentation (inside a loop or a branch)


@dataclass
class Section:
    title: str
    rows: list[Row]


@dataclass
class Document:
    title: str
    sections: list[Section]
    gradient_names: set[str]
    notes: list[str]


# ---------------------------------------------------------------------------- the words


def document(ex: ExplanationData, audience: str = "cli") -> Document:
    """The words; ``audience`` is who reads them: "cli" (``stagegen explain``) or "python"
    (``stagegen.explain`` in a REPL or a notebook), which ask for values differently."""
    if isinstance(ex, ArrayExplanationData):
        return array_document(ex, audience)
    if isinstance(ex, PathExplanationData):
        return path_document(ex, audience)
    p = ex.program
    shown = _shown_file(p.filename, audience)
    where = f" from {shown}" if shown else ""
    if ex.symbolic and audience == "python":
        at = f"symbolically: the local-gradient formulas (pass values, e.g. {call_example(p)})"
    elif ex.symbolic:
        at = "symbolically: the local-gradient formulas (give --at for numbers)"
    else:
        at = "at " + ", ".join(f"{k} = {point_text(v)}" for k, v in ex.point.items())
    split = ", split into elementary gates" if ex.split else ""
    title = f"{p.name}{where}{split}, {at}"
    sections = [_forward(ex), _backward(ex), _inputs(ex)]
    return Document(title, sections, set(ex.backward.gradient_names.values()), ex.notes)


def _shown_file(filename: str, audience: str) -> str | None:
    """The file named in the title: on the command line, the file given; from Python, only a
    file a reader can open (not a notebook cell's or a REPL's made-up or temporary file), and
    relative to the working directory when it lies below it."""
    if not filename or filename.startswith("<"):
        return None
    if audience != "python":
        return filename
    path = os.path.abspath(filename)
    # A Jupyter cell runs from a file ipykernel writes to a folder of its own (ipykernel_<pid>);
    # a checkout that happens to lie in the temporary folder is still a real file.
    cell = os.path.basename(os.path.dirname(path)).startswith("ipykernel_")
    if not os.path.isfile(path) or cell:
        return None
    return os.path.relpath(path) if _below(path, os.getcwd()) else path


def _below(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # on Windows, paths on two drives have no common path
        return False


_EXAMPLE_VALUES = (3, -4, 2, -1, 0.5)
KEYWORDS = ("split", "function", "at", "seed")  # explain()'s own keywords


def call_example(program) -> str:
    """``explain(f, x=3, y=-4)`` with the function's own parameters."""
    values = []
    for k, param in enumerate(program.params):
        if param.is_list:
            items = [_EXAMPLE_VALUES[(k + i) % len(_EXAMPLE_VALUES)] for i in range(param.length)]
            values.append((param.name, "[" + ", ".join(map(str, items)) + "]"))
        else:
            values.append((param.name, str(_EXAMPLE_VALUES[k % len(_EXAMPLE_VALUES)])))
    if any(name in KEYWORDS for name, _ in values):
        inside = ", ".join(f'"{name}": {text}' for name, text in values)
        return f"explain({program.name}, at={{{inside}}})"
    return f"explain({program.name}, " + ", ".join(f"{n}={t}" for n, t in values) + ")"


def _forward(ex: ExplanationData) -> Section:
    rows = []
    for step in ex.forward:
        s = step.stage
        note: list[Piece] = [("dim", f"({s.number}) ")]
        if ex.symbolic:
            note.append(("gate", _gate_phrase(step.gate.name)))
        else:
            note += [("text", f"{s.target} becomes "), ("value", short(step.value))]
        if s.user_name != s.target:
            note.append(("dim", f" — your `{s.user_name}`, re-assigned"))
        if s.comment:
            note.append(("dim", f" — {s.comment}"))
        rows.append(Row(step.code, note))
    title = "forward: the stages and their gates" if ex.symbolic else "forward: each stage's value"
    return Section(title, rows)


def _gate_phrase(name: str) -> str:
    if name in ("compound", "copy"):
        return f"a {name} stage"
    return f"{name} gate"


def _backward(ex: ExplanationData) -> Section:
    up = ex.upstream
    start: list[Piece] = [
        (
            "text",
            f"the gradient of {ex.output} with respect to itself: the backward pass starts here",
        )
    ]
    rows = [Row(f"{up} = 1.0", start)]
    for block in ex.blocks:
        rows.append(
            Row(
                "",
                [
                    ("comment", f"backprop {block.header}"),
                    ("dim", " — "),
                    ("gate", block.gate.behaviour),
                ],
                "header",
            )
        )
        for step in block.steps:
            rows.append(Row(step.code, [("dim", f"({step.stage.number})")]))
            rows += [Row("", note, "detail") for note in _step_notes(ex, step)]
    for name in ex.backward.zero:
        grad = ex.backward.gradient_of(name)
        rows.append(Row(f"{grad} = 0.0", [("text", f"{name} does not reach the output")]))
    title = "backward: each gradient is a local gradient times the gradient flowing in"
    return Section(title, rows)


def _step_notes(ex: ExplanationData, step: BackwardStep) -> list[list[Piece]]:
    local: list[Piece] = [("text", f"local ∂{step.stage.target}/∂{step.of} = {step.local}")]
    if not ex.symbolic and not _is_number_text(step.local):
        local += [("text", " = "), ("local", short(step.local_value))]
    if step.reason:
        local.append(("dim", f" ({step.reason})"))
    earlier = ", ".join(f"({n})" for n in step.earlier)
    if ex.symbolic:
        local.append(("text", f", × {step.upstream} flowing in"))
        if step.accumulate:
            local.append(
                ("text", f"; gradients add at a fork: adds to {step.gradient} from {earlier}")
            )
        return [local]
    flow = [
        ("text", f"× {step.upstream} = "),
        ("grad", short(step.upstream_value)),
        ("text", " flowing in → "),
    ]
    if not step.accumulate:
        return [local, flow + [("text", f"{step.gradient} = "), ("grad", short(step.result))]]
    fork: list[Piece] = [
        ("text", f"gradients add at a fork: {step.gradient} = "),
        ("grad", short(step.before)),
        ("dim", f" (from {earlier})"),
        ("text", " + "),
        ("grad", _signed(step.contribution)),
        ("text", " = "),
        ("grad", short(step.result)),
    ]
    return [local, flow + [("grad", short(step.contribution))], fork]


def _signed(value) -> str:
    text = short(value)
    return f"({text})" if text.startswith("-") else text


def _is_number_text(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _inputs(ex: ExplanationData) -> Section:
    rows = []
    for g in ex.inputs:
        stages = ", ".join(f"({n})" for n in g.stages) or "nowhere: no path to the output"
        if ex.symbolic:
            written = "the sum of the contributions from " if len(g.stages) > 1 else "written at "
            rows.append(Row(g.gradient, [("text", f"{written}{stages}")]))
            continue
        note: list[Piece] = [("text", "SymPy "), ("grad", precise(g.sympy))]
        note += [("text", ", finite difference "), ("grad", _fd(g.finite_difference))]
        agree = g.agrees_with_sympy
        if agree is False:
            note.append(("bad", " ✗ differs from SymPy"))
        elif g.agrees_with_finite_difference is False:
            note.append(("bad", " ✓ SymPy; the finite difference differs (a kink here?)"))
        elif agree:
            note.append(("ok", " ✓ agree"))
        rows.append(Row(f"{g.gradient} = {precise(g.value)}", note))
    if ex.symbolic:
        title = "gradient on each input: where its contributions come from"
    else:
        title = "gradient on each input, beside SymPy's value and a central finite difference"
    return Section(title, rows)


def _fd(value) -> str:
    return "undefined" if value is None else f"{value:.7g}"


# ---------------------------------------------------------------------------- a path


def path_document(ex: PathExplanationData, audience: str = "cli") -> Document:
    """Branches and loops along the path taken: the forward as the path ran it (each branch
    named, each loop by its steps, long ones folded), the backward over the same path last
    stage first, each input's gradient, and the generated backward as written."""
    p = ex.program
    shown = _shown_file(p.filename, audience)
    where = f" from {shown}" if shown else ""
    at = ", ".join(f"{k} = {point_text(v)}" for k, v in ex.point.items())
    title = f"{p.name}{where}, at {at}: along the path the forward takes there"
    sections = [_path_forward(ex), _path_backward(ex), _path_inputs(ex), _generated(ex)]
    names = set(ex.straight.backward.gradient_names.values())
    return Document(title, sections, names, ex.notes)


def _depth(level: int) -> str:
    return INDENT * level


def _step_title(loop, step, count: int) -> list[Piece]:
    text = f"step {step.number} of {count}"
    if step.index is not None:
        text += f": {loop.index} = {step.index}"
    return [("text", text)]


def _fold_note(loop, hidden) -> list[Piece]:
    first, last = hidden[0], hidden[-1]
    what = f"... {len(hidden)} more steps of ({loop.number}), steps {first.number} to {last.number}"
    if first.index is not None:
        what += f" ({loop.index} = {first.index} to {last.index})"
    return [("dim", what + " ...")]


def _path_forward(ex: PathExplanationData) -> Section:
    values = {step.stage.target: step.value for step in ex.straight.forward}
    rows: list[Row] = []

    def add(body, level: int) -> None:
        for node in body:
            pad = _depth(level)
            if isinstance(node, PathStage):
                s = node.straight
                note: list[Piece] = [("dim", f"({s.number}) "), ("text", f"{s.target} becomes ")]
                note.append(("value", short(values.get(s.target))))
                if s.user_name != s.target:
                    note.append(("dim", f" — your `{s.user_name}`"))
                rows.append(Row(f"{pad}{s.target} = {PRINT(s.expr)}", note))
            elif isinstance(node, PathBranch):
                b = node.branch
                reads = ", ".join(f"{name} = {short(v)}" for name, v in node.reads)
                said = "taken" if node.taken else "not taken"
                note = [("dim", f"({b.number}) "), ("gate", said)]
                if reads:
                    note.append(("text", f": {reads}"))
                rows.append(Row(f"{pad}{b.text}:", note))
                if not node.taken:
                    if not node.body:
                        continue
                    rows.append(Row(f"{pad}else:", [("dim", "the other arm runs")]))
                add(node.body, level + 1)
            elif isinstance(node, PathLoop):
                loop = node.loop
                count = len(node.steps)
                steps = "1 step" if count == 1 else f"{count} steps"
                note = [("dim", f"({loop.number}) "), ("gate", steps), ("text", f", {node.ended}")]
                rows.append(Row(f"{pad}{loop.text}:", note))
                first, hidden, last = folded(node.steps)
                for step in first:
                    rows.append(Row("", _step_title(loop, step, count), "header", pad + INDENT))
                    add(step.body, level + 1)
                if hidden:
                    rows.append(Row("", _fold_note(loop, hidden), "header", pad + INDENT))
                for step in last:
                    rows.append(Row("", _step_title(loop, step, count), "header", pad + INDENT))
                    add(step.body, level + 1)
            elif isinstance(node, PathExit):
                said = "leaves the loop" if node.exit.kind == "break" else "skips to the next step"
                rows.append(
                    Row(
                        f"{pad}{node.exit.kind}",
                        [("dim", f"({node.exit.number}) "), ("gate", said)],
                    )
                )

    add(ex.path.body, 0)
    return Section("forward along the path taken: each branch, each loop's steps, each value", rows)


def _path_backward(ex: PathExplanationData) -> Section:
    straight = ex.straight
    up = straight.upstream
    said = ex.output
    if ex.program.returned_name and ex.program.returned_name != ex.output:
        said += f" (your `{ex.program.returned_name}`, returned)"
    start = f"the gradient of {said} with respect to itself: the backward pass starts here"
    rows = [Row(f"{up} = 1.0", [("text", start)])]
    blocks = {block.stage.target: block for block in straight.blocks}
    wrote: dict[str, dict] = {}  # gradient -> {stage number: [where in the loops]}

    def active(body) -> bool:
        return any(node.target in blocks for node in path_stages(body))

    def add(body, level: int, context) -> None:
        pad = _depth(level)
        for node in reversed(body):
            if not isinstance(node, PathStage) and not active([node]):
                continue  # a branch or loop none of whose stages the gradient passes
            if isinstance(node, PathStage):
                block = blocks.get(node.target)
                if block is None:
                    continue
                header = [("comment", f"backprop {block.header}"), ("dim", " — ")]
                rows.append(Row("", header + [("gate", block.gate.behaviour)], "header", pad))
                for step in block.steps:
                    rows.append(Row(f"{pad}{step.code}", [("dim", f"({step.stage.number})")]))
                    notes = _step_notes(straight, step)
                    if step.accumulate:
                        earlier = _contributions(wrote.get(step.gradient, {}))
                        notes[-1] = [
                            p if not p[1].startswith(" (from") else ("dim", f" (from {earlier})")
                            for p in notes[-1]
                        ]
                    rows.extend(Row("", note, "detail", pad) for note in notes)
                    _record(wrote, step.gradient, step.stage.number, context)
            elif isinstance(node, PathBranch):
                b = node.branch
                said = "taken" if node.taken else "not taken"
                if not node.taken:
                    said += ": the gradient goes back through the other arm"
                rows.append(
                    Row("", [("comment", f"backprop {b.text}: "), ("gate", said)], "header", pad)
                )
                add(node.body, level + 1, context)
            elif isinstance(node, PathLoop):
                loop = node.loop
                count = len(node.steps)
                note = [
                    ("comment", f"backprop {loop.text}: "),
                    ("gate", f"its {count} steps, last first"),
                ]
                rows.append(Row("", note, "header", pad))
                first, hidden, last = folded(list(reversed(node.steps)))
                for step in first + [None] + last if hidden else first:
                    if step is None:
                        note = _fold_note(loop, hidden)
                        rows.append(Row("", note, "header", pad + INDENT))
                        for folded_step in hidden:  # not shown, but a later += adds to them
                            _count(folded_step.body, blocks, wrote, loop, folded_step)
                        continue
                    if active(step.body):
                        rows.append(Row("", _step_title(loop, step, count), "header", pad + INDENT))
                    add(step.body, level + 1, _where(loop, step))

    add(ex.path.body, 0, None)
    for name in straight.backward.zero:
        grad = straight.backward.gradient_of(name)
        rows.append(
            Row(f"{grad} = 0.0", [("text", f"{name} does not reach the output on this path")])
        )
    title = "backward along the same path, last stage first: local gradient × gradient flowing in"
    return Section(title, rows)


def _where(loop, step) -> tuple[str, str]:
    """A step as a fork's note names it: ("i", "2"), or ("step", "3") in a while loop."""
    if step.index is not None:
        return (loop.index, str(step.index))
    return ("step", str(step.number))


def _record(wrote: dict, gradient: str, number: int, where) -> None:
    places = wrote.setdefault(gradient, {}).setdefault(number, [])
    if where and where not in places:
        places.append(where)


def _count(body, blocks, wrote, loop, step) -> None:
    """Record the contributions of folded steps (a later += says it adds to them)."""
    for node in path_stages(body):
        if node.target in blocks:
            for s in blocks[node.target].steps:
                _record(wrote, s.gradient, s.stage.number, _where(loop, step))


def _contributions(places: dict) -> str:
    """ "(3) at i = 19, 18, ..., 2", "(2), (4)": where a gradient's earlier contributions
    come from (the innermost loop's steps named)."""
    out = []
    for number, where in places.items():
        if not where:
            out.append(f"({number})")
            continue
        values = [v for _, v in where]
        if len(values) > 4:
            values = values[:2] + ["..."] + values[-1:]
        name = where[0][0]
        if name == "step":
            out.append(f"({number}) at step{'s' if len(where) > 1 else ''} {', '.join(values)}")
        else:
            out.append(f"({number}) at {name} = {', '.join(values)}")
    return ", ".join(out)


def _path_inputs(ex: PathExplanationData) -> Section:
    rows = []
    for g in ex.inputs:
        note: list[Piece] = [("text", "generated backward "), ("grad", precise(g.generated))]
        if g.sympy is not None:
            note += [("text", ", SymPy on this path "), ("grad", precise(g.sympy))]
        note += [("text", ", finite difference "), ("grad", _fd(g.finite_difference))]
        if g.agrees_with_generated is False:
            note.append(("bad", " ✗ the generated backward differs"))
        elif g.agrees_with_sympy is False:
            note.append(("bad", " ✗ differs from SymPy"))
        elif g.agrees_with_finite_difference is False:
            note.append(("bad", " ✓ SymPy; the finite difference differs (a branch boundary?)"))
        elif g.agrees_with_generated:
            note.append(("ok", " ✓ agree"))
        rows.append(Row(f"{g.gradient} = {precise(g.value)}", note))
    title = (
        "gradient on each input: the generated backward's, SymPy's derivative of this path, "
        "a central difference of the forward"
    )
    return Section(title, rows)


def _generated(ex: PathExplanationData) -> Section:
    rows = [Row(line) for line in ex.backward_code if line.strip()]
    title = "the generated backward, as `stagegen` writes it: the path above is what it runs here"
    return Section(title, rows)


# ---------------------------------------------------------------------------- array code


def _of(name: str) -> str:
    return f"{name}'s"


def _shaped(code: str, shape) -> str:
    """``dout (N, M)``; ``dloss / n (a number)``."""
    return f"{code} (a number)" if shape == () else f"{code} {shape_text(shape)}"


def _axes(axes) -> str:
    if len(axes) == 1:
        return f"axis {axes[0]}"
    return "axes " + ", ".join(str(a) for a in axes[:-1]) + f" and {axes[-1]}"


def _has_shape(step: ArrayStep) -> str:
    """ "dw has w's shape (D, M)", "dreg is a number, as reg is"."""
    if step.of is None:
        return _shaped(step.gradient, step.shape)
    if step.shape == ():
        return f"{step.gradient} is a number, as {step.of} is"
    return f"{step.gradient} has {_of(step.of)} shape {shape_text(step.shape)}"


def product_sentence(step: ArrayStep, product) -> str:
    """The notes' dimension argument: "dw must have w's shape (D, M); the only product of
    x (N, D) and dout (N, M) with that shape is x.T.dot(dout)"."""
    (a, sa), (b, sb) = product.factors
    factors = f"{_shaped(a, sa)} and {_shaped(b, sb)}"
    if product.whole and product.shape == step.shape and step.of is not None:
        lead = f"{step.gradient} must have {_of(step.of)} shape {shape_text(step.shape)}; "
        if not product.others:
            return f"{lead}the only product of {factors} with that shape is {product.code}"
    else:
        lead = f"{_shaped(product.code, product.shape)}: "
        if not product.others:
            return f"{lead}the only product of {factors} with that shape"
    also = " and ".join(product.others)
    return (
        f"{lead}{factors} give that shape as {product.code}, and also as {also}: here the "
        "shapes alone do not decide (the derivation does)"
    )


def argument_sentences(step: ArrayStep, added_to: set[str] = frozenset()) -> list[str]:
    """What fixes the gradient's shape, one sentence each (the shape alone if nothing does);
    ``added_to``: the gradients a later ``+=`` or ``np.add.at`` writes into."""
    out: list[str] = []
    products = [a for a in step.arguments if isinstance(a, Product)]
    for product in products:
        out.append(product_sentence(step, product))
    fixed = any(p.whole and p.shape == step.shape and step.of for p in products)
    code = " ".join(step.lines)
    for arg in step.arguments:
        if isinstance(arg, Summed):
            if step.shape == () and not arg.keepdims:
                how = "is summed to one number"
            else:
                kept = ", kept as size 1" if arg.keepdims else ""
                how = f"is summed over {_axes(arg.axes)}{kept}"
            out.append(f"{_has_shape(step)}: {_shaped(arg.code, arg.shape)} {how}")
            fixed = True
        elif isinstance(arg, Spread):
            how = (
                "np.broadcast_to: a view, no copy"
                if "broadcast_to(" in code
                else "the += broadcasts it"
            )
            out.append(
                f"{_has_shape(step)}: {_shaped(arg.code, arg.shape)} is spread along "
                f"{_axes(arg.axes)} ({how})"
            )
            fixed = True
        elif isinstance(arg, Said):
            out.append(arg.text)
        elif isinstance(arg, Scattered):
            into = step.gradient if step.accumulate else "zeros of that shape"
            code = "".join(step.lines)
            how = "added" if step.accumulate or "np.add.at" in code else "written"
            out.append(
                f"{_has_shape(step)}: {_shaped(arg.values, arg.shape)} is {how} into {into} "
                f"at {arg.index}"
                + (" (np.add.at adds where an index repeats)" if "np.add.at" in code else "")
            )
            fixed = True
    if not fixed:
        if step.of is None:
            first = (
                f"{_has_shape(step)}: the gradient inside stage ({step.stage.number}), "
                "computed once for the inputs below"
            )
        else:
            first = _has_shape(step)
        copied = re.fullmatch(rf"{re.escape(step.gradient)} = (\w+)\.copy\(\)", code)
        if copied and not step.accumulate:
            source = copied.group(1)
            if step.gradient in added_to:
                first += f"; a copy, since a += below must not write into {source}"
            else:
                first += f"; a copy: the gradient returned is an array of its own, not {source}"
        out.insert(0, first)
    return out


def _valued(name: str, shape, value, kind: str = "value") -> list[Piece]:
    """``out (N, M) = (2, 4): [...]``, or ``n = 3`` for a number."""
    import numpy as np

    if not shape:
        return [("text", f"{name} = "), (kind, summary(value))]
    sized = f"{shape_text(shape)} = {shape_text(np.shape(value))}"
    return [("text", f"{name} {sized}: "), (kind, summary(value))]


def array_document(ex: ArrayExplanationData, audience: str = "cli") -> Document:
    p = ex.program
    shown = _shown_file(p.filename, audience)
    where = f" from {shown}" if shown else ""
    split = ", split into elementary operations" if ex.split else ""
    dims = dimension_names(p)
    example = ", ".join(f"{d}={2 + k}" for k, d in enumerate(dims))
    if ex.symbolic and any(shapes.has_rest(q.shape) for q in p.params):
        at = "symbolically: each gradient's shape and what fixes it (`...` is any number of axes)"
    elif ex.symbolic:
        if audience == "python":
            ask = f"pass sizes, e.g. explain({p.name}, {example})" if dims else "pass values"
        else:
            ask = f"give --at {example.replace(', ', ',')} for values" if dims else "give --at"
        at = f"symbolically: each gradient's shape and what fixes it ({ask})"
    else:
        drawn = [n for n in ex.drawn if not p.param(n).labels]
        labels = [n for n in ex.drawn if p.param(n).labels]
        said = f"{', '.join(drawn)} drawn {_from(ex.distribution)}" if drawn else ""
        if labels:
            said += ("; " if said else "") + f"{', '.join(labels)} drawn in range"
        at = f"at {ex.where()}" + (f": {said}" if said else "")
    title = f"{p.name}{where}{split}, {at}"
    sections = [_array_forward(ex), _array_backward(ex), _array_inputs(ex)]
    return Document(title, sections, ex.gradient_names, ex.notes)


def _from(distribution: str) -> str:
    return distribution if distribution.startswith("uniformly") else f"from {distribution}"


def _array_forward(ex: ArrayExplanationData) -> Section:
    rows = []
    if not ex.symbolic:
        for param in ex.program.params:
            note = _valued(param.name, param.shape, ex.values[param.name])
            note[0] = ("text", note[0][1][len(param.name) + 1 :])  # the row's code names it
            if param.labels:
                note.insert(0, ("dim", "labels "))
            rows.append(Row(param.name, note))
    for step in ex.forward:
        s = step.stage
        note: list[Piece] = [("dim", f"({s.number}) ")]
        if ex.symbolic:
            note.append(("text", _shaped(s.target, step.shape)))
        else:
            note += _valued(s.target, step.shape, step.value)
        if s.user_name != s.target:
            note.append(("dim", f" — your `{s.user_name}`, re-assigned"))
        if s.comment:
            note.append(("dim", f" — {s.comment}"))
        rows.append(Row(step.code, note))
    title = (
        "forward: the stages and their shapes"
        if ex.symbolic
        else "forward: the inputs and each stage's value, summarised"
    )
    return Section(title, rows)


def _array_backward(ex: ArrayExplanationData) -> Section:
    rows = []
    out = ex.output
    if not any(line.kind == "upstream" for line in ex.setup):
        start = f"the gradient of {out} with respect to itself: the backward pass starts here"
        rows.append(Row(f"{ex.upstream} = 1.0", [("text", start)]))
    for line in ex.setup:
        if line.kind == "upstream":
            note: list[Piece] = [
                (
                    "text",
                    f"the gradient flowing into {out}, {shape_text(ex.upstream_shape)}: 1.0 "
                    f"by default, the gradient of the sum of {_of(out)} elements",
                )
            ]
        elif ex.symbolic:
            note = [("text", "a size, read from a parameter")]
        else:
            value = ", ".join(map(str, line.value)) if isinstance(line.value, tuple) else line.value
            note = [("text", f"{line.name} = "), ("value", str(value))]
        rows.append(Row(line.code, note))
    added_to = {s.gradient for b in ex.blocks for s in b.steps if s.accumulate}
    for block in ex.blocks:
        header: list[Piece] = [("comment", f"backprop {block.header}")]
        header += [("dim", " — "), ("text", _shaped(block.stage.target, block.shape))]
        rows.append(Row("", header, "header"))
        for step in block.steps:
            for k, code in enumerate(step.lines):
                last = k == len(step.lines) - 1
                rows.append(Row(code, [("dim", f"({step.stage.number})")] if last else []))
            for sentence in argument_sentences(step, added_to):
                rows.append(Row("", [("text", sentence)], "detail"))
            if step.accumulate:
                earlier = ", ".join(f"({n})" for n in step.earlier)
                fork = f"gradients add at a fork: adds to {step.gradient} from {earlier}"
                rows.append(Row("", [("text", fork)], "detail"))
            if not ex.symbolic:
                value = [("text", "→ ")] + _valued(step.gradient, step.shape, step.value, "grad")
                rows.append(Row("", value, "detail"))
    for line in ex.zero:
        rows.append(Row(line.code, [("text", line.note)]))
    title = "backward: each gradient has its value's shape, and the shapes fix products and sums"
    return Section(title, rows)


def _array_inputs(ex: ArrayExplanationData) -> Section:
    rows = []
    for g in ex.inputs:
        stages = ", ".join(f"({n})" for n in g.stages)
        if ex.symbolic:
            if not g.stages:
                written = "zeros: no path to the output"
            elif len(g.stages) > 1:
                written = f"the sum of the contributions from {stages}"
            else:
                written = f"written at {stages}"
            shape = "a number" if g.shape == () else f"{_of(g.name)} shape {shape_text(g.shape)}"
            rows.append(Row(g.gradient, [("text", f"{shape}, {written}")]))
            continue
        note = _valued(g.gradient, g.shape, g.value, "grad")[1:]  # the row's code names it
        if g.shape:
            note.insert(0, ("text", f"{shape_text(g.shape)}: "))
        if g.finite_difference is not None:
            note.append(("text", "; finite difference: largest difference "))
            note.append(("grad", f"{g.largest_difference:.2g}"))
            if g.agrees_with_finite_difference:
                note.append(("ok", " ✓ agree"))
            else:
                note.append(("bad", " ✗ differs (a kink here?)"))
        rows.append(Row(g.gradient, note))
    if ex.symbolic:
        title = "gradient on each input: its shape, and where its contributions come from"
    else:
        title = "gradient on each input, beside a central finite difference of the forward"
    return Section(title, rows)


# ---------------------------------------------------------------------------- layout


def _lines(section: Section, gradient_names, paint) -> list[str]:
    """Each row as one painted line, trailing comments aligned (paint: pieces -> str)."""
    widths = [len(r.code) for r in section.rows if r.code and len(r.code) <= COMMENT_COLUMN_LIMIT]
    column = max(widths, default=0)
    out = []
    for r in section.rows:
        if r.code:
            pad = " " * max(column - len(r.code), 0)
            line = paint(code_pieces(r.code, gradient_names))
            if r.note:
                line += pad + paint([("comment", "  # ")] + r.note)
        else:
            lead = "# " if r.kind == "header" else "#   "
            line = r.indent + paint([("comment", lead)] + r.note)
        out.append(line)
    return out


def render_text(ex: ExplanationData, color: bool = False, audience: str = "cli") -> str:
    doc = document(ex, audience)
    paint = lambda pieces: ansi(pieces, color)  # noqa: E731
    out = [paint([("heading", doc.title)])]
    for section in doc.sections:
        out += ["", paint([("heading", section.title)])]
        out += [INDENT + line for line in _lines(section, doc.gradient_names, paint)]
    out += [""] + [paint([("dim", f"note: {n}")]) for n in doc.notes] if doc.notes else []
    return "\n".join(out).rstrip("\n") + "\n"


def template(name: str):
    """A jinja2 template of templates/ (explain.md.j2, explain.html.j2, tour.md.j2), from the
    same environment that renders the generated modules."""
    from .emit import environment

    return environment().get_template(name)


def render_markdown(ex: ExplanationData, svg_path: str | None = None, audience: str = "cli") -> str:
    doc = document(ex, audience)
    plain = lambda pieces: ansi(pieces, False)  # noqa: E731
    sections = [
        {"title": s.title, "lines": _lines(s, doc.gradient_names, plain)} for s in doc.sections
    ]
    return template("explain.md.j2").render(
        title=doc.title, sections=sections, notes=doc.notes, svg_path=svg_path
    )


def render_html(ex: ExplanationData, standalone: bool = False, audience: str | None = None) -> str:
    """One self-contained piece of HTML: code and circuit. A whole page with ``standalone`` (what
    ``stagegen explain --format html`` writes); else a fragment for a notebook, whose reader asks
    for values from Python (``audience`` says otherwise when given)."""
    import html

    from .circuit import circuit_of, to_svg

    doc = document(ex, audience or ("cli" if standalone else "python"))
    # Inline SVG in HTML needs no namespace declaration: the page names no URL at all.
    svg = to_svg(circuit_of(ex), fluid=True).replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)
    sections = [
        {"title": html.escape(s.title), "lines": _lines(s, doc.gradient_names, spans)}
        for s in doc.sections
    ]
    return template("explain.html.j2").render(
        title=html.escape(doc.title),
        sections=sections,
        notes=[html.escape(n) for n in doc.notes],
        svg=svg,
        standalone=standalone,
    )
