"""Emit: Backward -> the text of the generated module.

This file prints each statement; the jinja2 templates in ``templates/`` own the module's
layout (header, imports, signature, sections) in black's style, and layout.py has black
format the lines that need it. The same input always gives byte-identical output: nothing
here depends on time, paths or set order.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .arrays.ir import ArrayPrinter, SumTo, stage_line, unbroadcast_source
from .expr import Call, Const, Expr, Invoke, Num, Printer, walk
from .layout import LINE_LENGTH, format_code, format_with_black
from .lower import Line, Lowered, LoweredBlock, LoweredCompound, lower
from .arrays.shapes import show
from .program import backward_name
from .reverse import Backward, stages_in


@dataclass
class RenderedFunction:
    backward_name: str
    parameters: str
    docstring: str
    signature_line: str
    dependent: str
    independent: str
    notes: list[str]
    replay: list  # code, or {"opening", "nested", "lines"} for a loop or branch
    checks_domain: bool  # some replayed stages are there only to raise where the forward does
    setup: list[str]
    blocks: list[dict]  # the body's tree: {"opening", "nested", "lines": [code or block]}
    zero: list[str]
    returns: str
    # Code for numbers turns its inputs into floats first: called with arrays, it raises
    # on that line instead of returning gradients of the wrong shape.
    numbers_only: list[str] = field(default_factory=list)
    verbatim: str = ""  # a backward the user wrote: printed as written


def template_dir() -> Path:
    """templates/ sits inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "module.py.j2").is_file():
            return candidate
    raise FileNotFoundError("stagegen's templates/ directory is missing: reinstall stagegen")


@lru_cache(maxsize=1)
def environment():
    """The jinja2 environment over templates/ (generated modules and explanations alike)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


def _nodes(lowered: Lowered):
    """Every node of every expression the backward prints."""
    exprs = []

    def collect(items):
        for item in items:
            if isinstance(item, (LoweredBlock, LoweredCompound)):
                collect(item.lines)
                if isinstance(item, LoweredCompound) and isinstance(item.opening, Expr):
                    exprs.append(item.opening)
            elif isinstance(item.value, Expr):
                exprs.append(item.value)

    collect(lowered.replay)
    collect(lowered.setup)
    collect(lowered.blocks)
    return (n for e in exprs for n in walk(e))


def _uses_math(lowered: Lowered) -> bool:
    return any(
        isinstance(n, Const)
        or (isinstance(n, Call) and n.fn not in ("abs", "max", "min"))
        or (isinstance(n, Num) and not n.text and _prints_as_math_inf(n.value))
        for n in _nodes(lowered)
    )


def _prints_as_math_inf(value) -> bool:
    """An infinite number prints as ``math.inf`` (a literal like 1e309 is refused when read,
    but the module must still run if one is built another way)."""
    return isinstance(value, float) and math.isinf(value)


def _math_alias(backwards: list[Backward]) -> str:
    """``math``, unless a user name or a gradient name in the module is already ``math``."""
    taken: set[str] = set()
    for b in backwards:
        taken |= b.program.user_names | set(b.gradient_names.values())
    for candidate in ("math", "math_", "_math", "pymath"):
        if candidate not in taken:
            return candidate
    k = 1
    while f"math_{k}" in taken:
        k += 1
    return f"math_{k}"


def _replayed_callees(backwards: list[Backward]) -> list:
    """The module's forward functions that a backward's replay calls (and what they call), in
    the order they were read: the generated module carries their text, so it runs alone."""
    by_name = {}
    for b in backwards:
        for p in [b.program, *b.program.all_callees()]:
            by_name.setdefault(p.name, p)
    wanted: dict[str, object] = {}
    for b in backwards:
        for stage in b.replay if b.replay_body is None else stages_in(b.replay_body):
            if isinstance(stage.expr, Invoke):
                called = by_name[stage.expr.function]
                for p in [*called.all_callees(), called]:
                    wanted.setdefault(p.name, p)
    return list(wanted.values())


def _imports_for(
    replayed: list, handwritten: list, uses_math: bool, math_name: str, np_name: str | None
) -> list:
    """The user's imports of math and NumPy that the functions copied as written (forward
    functions replayed, backwards written by hand) read, but for those the module imports
    anyway."""
    texts = [p.text for p in replayed] + [p.handwritten.text for p in handwritten]
    if not texts:
        return []
    already = set()
    if uses_math:
        already.add("import math" if math_name == "math" else f"import math as {math_name}")
    if np_name:
        already.add("import numpy" if np_name == "numpy" else f"import numpy as {np_name}")
    read: set[str] = set()
    for text in texts:
        read |= {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
    found = dict.fromkeys(line for p in replayed + handwritten for line in p.imports)
    return [line for line in found if line not in already and _bound_by(line) & read]


def _bound_by(line: str) -> set[str]:
    """The names an import statement binds."""
    node = ast.parse(line).body[0]
    return {(a.asname or a.name).split(".")[0] for a in node.names}


def _shorten(text: str, limit: int = 80) -> str:
    """A stage as a one-line comment; a long one is cut (the forward line has it whole)."""
    return text if len(text) <= limit else text[: limit - 4].rstrip() + " ..."


def _comment(stage_number: int | None, text: str = "") -> str:
    if stage_number is None:
        return f"  # {text}" if text else ""
    return f"  # ({stage_number}) {text}".rstrip()


def _line_text(line: Line, printer: Printer) -> str:
    """One lowered line as code, with its ``# (n)`` comment; a note never forces black to wrap
    a statement: it is left out instead."""
    value = line.value if isinstance(line.value, str) else printer(line.value)
    if line.target is None:
        code = value
    else:
        code = f"{_target_text(line.target, printer)} {line.op} {value}"
    with_note = code + _comment(line.stage, line.note)
    if line.stage is None or len(with_note) + 4 <= LINE_LENGTH or not line.note:
        return with_note
    return code + _comment(line.stage)


def _target_text(target, printer: Printer) -> str:
    """A name, or the names a tuple unpacks into (``N, D``; ``p, q``)."""
    if isinstance(target, tuple):
        return ", ".join(printer(t) for t in target)
    return printer(target)


def _stage_line(stage, bound: str | None, printer: Printer) -> str:
    return (
        f"{bound} = {printer(stage.expr)}"
        if bound
        else stage_line(stage.target, stage.expr, printer)
    )


def _block(block: LoweredBlock, printer: Printer) -> dict:
    """A block of the body's tree, for the template: its opening line, whether its lines are
    indented under it, and its lines (code, or blocks inside it)."""
    stage = block.stage
    bound = stage.user_name if isinstance(stage.expr, Invoke) and stage.expr.returns > 1 else None
    header = f"# backprop {_shorten(_stage_line(stage, bound, printer))}"
    return {
        "opening": "" if block.continued else header,
        "nested": block.nested,
        "lines": [
            _block(item, printer) if isinstance(item, LoweredBlock) else _line_text(item, printer)
            for item in block.lines
        ],
    }


def _item(item, printer: Printer):
    """A line, a stage's block or a compound statement of the body's tree, for the template."""
    if isinstance(item, LoweredBlock):
        return _block(item, printer)
    if isinstance(item, LoweredCompound):
        return {
            "opening": _opening(item, printer),
            "nested": True,
            "lines": [_item(i, printer) for i in item.lines] or ["pass"],
        }
    if item.target is None and isinstance(item.value, str) and item.value.startswith("#"):
        return item.value
    return _line_text(item, printer)


def _opening(item: LoweredCompound, printer: Printer) -> str:
    if item.opening_kind == "else":
        return "else:"
    opening = item.opening
    if item.opening_kind in ("if", "elif"):
        code = f"{item.opening_kind} {printer(opening)}:"
    elif isinstance(opening, str):
        code = opening
    elif isinstance(opening, tuple):
        index, bounds = opening
        code = f"for {index} in {_bounds(bounds, printer)}:"
    else:
        code = f"while {printer(opening)}:"
    return code + _comment(item.stage)


def _bounds(bounds: tuple, printer: Printer) -> str:
    if bounds[0] == "reversed":
        return f"reversed({_bounds(bounds[1], printer)})"
    _, start, stop, step = bounds
    if step != 1:
        return f"range({printer(start)}, {printer(stop)}, {step})"
    if isinstance(start, Num) and start.value == 0:
        return f"range({printer(stop)})"
    return f"range({printer(start)}, {printer(stop)})"


def _replay_text(line, printer: Printer):
    """A replayed forward line keeps the user's comment whole (it is the user's own line)."""
    if not isinstance(line, Line) or line.target is None or line.op != "=":
        return _item(line, printer)
    value = line.value if isinstance(line.value, str) else printer(line.value)
    return f"{_target_text(line.target, printer)} = {value}" + _comment(line.stage, line.note)


def _replay_item(item, printer: Printer):
    if isinstance(item, LoweredCompound):
        return {
            "opening": _opening(item, printer),
            "nested": True,
            "lines": [_replay_item(i, printer) for i in item.lines] or ["pass"],
        }
    return _replay_text(item, printer)


def _render_function(lowered: Lowered, printer: Printer) -> RenderedFunction:
    b = lowered.backward
    p = b.program
    replay = [_replay_item(line, printer) for line in lowered.replay]
    blocks = [_item(block, printer) for block in lowered.blocks]
    grads = [b.gradient_of(n) for n in b.wrt]
    returns = ", ".join(grads)
    params = [f"{q.name}={q.default}" if q.default is not None else q.name for q in p.params]
    several = len(b.upstreams) > 1
    # With several outputs, each upstream gradient the caller leaves out counts as zero.
    params += [f"{u}={'0.0' if several else '1.0'}" for u in b.upstreams or [b.upstream]]
    output_name = f"the output {p.returned_name}" if p.returned_name else "the returned value"
    if several:
        output_name = "the outputs " + ", ".join(
            name or f"#{k + 1}" for k, (_, name) in enumerate(p.outputs)
        )
    wrt_text = ", ".join(b.wrt)
    result = f"({returns})" if len(grads) > 1 else returns
    shaped = (
        f" (shaped like {p.returned_name or 'the output'}, or a number)"
        if lowered.upstream_shaped
        else ""
    )
    docstring = f"Gradient of {p.name} with respect to {wrt_text}, scaled by the upstream gradient {b.upstream}{shaped}."
    if several:
        docstring = (
            f"Gradient of {p.name} with respect to {wrt_text}: the sum of each output's gradient "
            f"scaled by its upstream gradient ({', '.join(b.upstreams)}); one left out counts "
            "as zero."
        )
    if p.saved:
        docstring += " The saved values it also returns (a cache) have no gradient."
    return RenderedFunction(
        backward_name=backward_name(p.name),
        parameters=", ".join(params),
        docstring=docstring,
        signature_line=f"{backward_name(p.name)}({', '.join(params)}) -> {result}",
        dependent=output_name,
        independent=wrt_text,
        notes=[f"the gradient of {v} is named `{g}` ({why})" for v, g, why in b.renamed]
        + _shape_notes(p),
        replay=replay,
        checks_domain=bool(b.domain_checks),
        setup=[_line_text(line, printer) for line in lowered.setup],
        blocks=blocks,
        zero=[_line_text(line, printer) for line in lowered.zero],
        returns=returns,
        numbers_only=lowered.numbers_only,
    )


def render(backwards: list[Backward], source_name: str, command: str) -> str:
    """The generated module, formatted by black."""
    math_name = _math_alias(backwards)
    np_name = next((b.program.numpy for b in backwards if b.program.numpy), None)
    functions = []
    uses_math = False
    replayed = _replayed_callees(backwards)
    helpers: list[str] = []
    for b in backwards:
        lowered = lower(b)
        if not helpers and any(isinstance(n, SumTo) for n in _nodes(lowered)):
            helpers.append(unbroadcast_source(np_name))
        # Spelling by type: array code calls NumPy (np.exp, np.pi); number code the standard
        # library (math.exp), so that it runs with nothing installed.
        printer = (
            ArrayPrinter(np_name, masks=_masks(b.program))
            if b.program.numpy
            else Printer(math_name)
        )
        uses_math = uses_math or (not b.program.numpy and _uses_math(lowered))
        rendered = _render_function(lowered, printer)
        own = b.program.handwritten
        if own is not None:  # proven (stagegen.proof), then used as written
            rendered.verbatim = format_with_black(own.text).rstrip("\n")
            rendered.signature_line = f"{own.name}: written by hand in {source_name}"
            rendered.dependent = "its forward " + b.program.name
            rendered.notes = ["proven against the forward by stagegen, and used as written"]
        functions.append(rendered)
    text = (
        environment()
        .get_template("module.py.j2")
        .render(
            source_name=source_name,
            command=command,
            functions=functions,
            forward_functions=[format_with_black(p.text).rstrip("\n") for p in replayed],
            forward_imports=_imports_for(
                replayed,
                [b.program for b in backwards if b.program.handwritten],
                uses_math,
                math_name,
                np_name,
            ),
            uses_math=uses_math,
            math_name=math_name,
            np_name=np_name,
            helpers=helpers,
        )
    )
    return format_code(text)


def _masks(program) -> set[str]:
    """The names holding masks (boolean arrays), which NumPy does not negate."""
    return {
        name
        for name, t in program.types.items()
        if isinstance(name, str) and getattr(t, "kind", None) == "bool"
    }


def _shape_notes(program) -> list[str]:
    """Where an unannotated function's shapes come from (``x (N, ...)`` from the code), so a
    reader sees what the backward assumes; nothing for annotated ones."""
    by_source: dict[str, list] = {}
    for p in program.params:
        if p.shape_source:
            by_source.setdefault(p.shape_source, []).append(p)
    anything = by_source.pop("no shape", [])  # nothing fixes them: read when the backward runs
    notes = [
        f"shapes from {source}: {', '.join(f'{p.name} {show(p.shape)}' for p in found)}"
        for source, found in by_source.items()
    ]
    if anything:
        notes.append(f"any shape: {', '.join(p.name for p in anything)}")
    return notes
