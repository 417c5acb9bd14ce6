"""Emit: Backward -> the text of the generated module.

This file prints each statement; the jinja2 templates in ``templates/`` own the module's
layout (header, imports, signature, sections) in black's style, and layout.py has black
format the lines that need it. The same input always gives byte-identical output: nothing
here depends on time, paths or set order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .expr import Call, Const, Num, Printer, walk
from .layout import LINE_LENGTH, format_code
from .reverse import Backward


@dataclass
class RenderedFunction:
    backward_name: str
    parameters: str
    docstring: str
    signature_line: str
    dependent: str
    independent: str
    notes: list[str]
    replay: list[str]
    checks_domain: bool  # some replayed stages are there only to raise where the forward does
    setup: list[str]
    blocks: list[dict]
    zero: list[str]
    returns: str
    # Code for numbers turns its inputs into floats first: called with arrays, it raises
    # on that line instead of returning gradients of the wrong shape.
    numbers_only: list[str] = field(default_factory=list)


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


def _uses_math(backward: Backward) -> bool:
    if backward.program.numpy:
        return False
    exprs = [s.expr for s in backward.replay] + [
        st.value for b in backward.blocks for st in b.statements
    ]
    return any(
        isinstance(n, Const)
        or (isinstance(n, Call) and n.fn not in ("abs", "max", "min"))
        or (isinstance(n, Num) and not n.text and _prints_as_math_inf(n.value))
        for e in exprs
        for n in walk(e)
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


def _shorten(text: str, limit: int = 80) -> str:
    """A stage as a one-line comment; a long one is cut (the forward line has it whole)."""
    return text if len(text) <= limit else text[: limit - 4].rstrip() + " ..."


def _comment(stage_number: int, text: str = "") -> str:
    return f"  # ({stage_number}) {text}".rstrip()


DOMAIN_CHECK = "domain check"  # replayed so that the backward raises where f does


def _render_function(b: Backward, printer: Printer) -> RenderedFunction:
    p = b.program
    replay = [
        f"{s.target} = {printer(s.expr)}"
        + _comment(s.number, DOMAIN_CHECK if s.target in b.domain_checks else s.comment)
        for s in b.replay
    ]
    # A list gradient as long as the list passed in (`len` may be one of the user's names).
    zeros = "[0.0] * len({})" if "len" not in p.user_names else "[0.0 for _ in {}]"
    setup = [
        f"{b.gradient_of(q.name)} = {zeros.format(q.name)}"
        for q in p.params
        if q.is_list and q.name in b.wrt
    ]
    blocks = []
    for block in b.blocks:
        lines = []
        for st in block.statements:
            op = "+=" if st.accumulate else "="
            line = f"{printer(st.gradient)} {op} {printer(st.value)}"
            with_note = line + _comment(st.stage, st.note)
            # A note never forces black to wrap a statement: it is left out instead.
            lines.append(
                with_note if len(with_note) + 4 <= LINE_LENGTH else line + _comment(st.stage)
            )
        blocks.append(
            {
                "header": _shorten(f"{block.stage.target} = {printer(block.stage.expr)}"),
                "lines": lines,
            }
        )
    zero = [f"{b.gradient_of(n)} = 0.0  # {n} does not reach the output" for n in b.zero]
    grads = [b.gradient_of(n) for n in b.wrt]
    returns = ", ".join(grads)

    params = []
    for q in p.params:
        params.append(f"{q.name}={q.default}" if q.default is not None else q.name)
    numbers_only = _numbers_only(p)
    upstream_default = "1.0"
    params.append(f"{b.upstream}={upstream_default}")
    output_name = f"the output {p.returned_name}" if p.returned_name else "the returned value"
    wrt_text = ", ".join(b.wrt)
    result = f"({returns})" if len(grads) > 1 else returns
    notes = [f"the gradient of {value} is named `{grad}` ({why})" for value, grad, why in b.renamed]
    return RenderedFunction(
        backward_name=f"{p.name}_backward",
        parameters=", ".join(params),
        docstring=f"Gradient of {p.name} with respect to {wrt_text}, scaled by the upstream gradient {b.upstream}.",
        signature_line=f"{p.name}_backward({', '.join(params)}) -> {result}",
        dependent=output_name,
        independent=wrt_text,
        notes=notes,
        replay=replay,
        checks_domain=bool(b.domain_checks),
        setup=setup,
        blocks=blocks,
        zero=zero,
        returns=returns,
        numbers_only=numbers_only,
    )


NUMBERS_ONLY = "numbers only: array code needs shape annotations"


def _numbers_only(p) -> list[str]:
    """``x, y = float(x), float(y)``: a backward written for numbers, called with arrays,
    would return gradients of the wrong shape; ``float`` raises on that line instead."""
    if "float" in p.user_names:
        return []  # the user's own `float`: leave the inputs as they are
    names = [q.name for q in p.params if not q.is_list]
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
    comment = f"  # {NUMBERS_ONLY}"
    if len(lines[0]) + len(comment) + 4 <= LINE_LENGTH:
        return [lines[0] + comment, *lines[1:]]
    return [comment.strip(), *lines]


def _floats(names: list[str]) -> str:
    return f"{', '.join(names)} = {', '.join(f'float({n})' for n in names)}"


def render(backwards: list[Backward], source_name: str, command: str) -> str:
    """The generated module, formatted by black."""
    math_name = _math_alias(backwards)
    printer = Printer(math_name)
    np_name = next((b.program.numpy for b in backwards if b.program.numpy), None)
    functions = []
    for b in backwards:
        if b.program.numpy:
            from .arrays.emit import render_array_function

            functions.append(render_array_function(b, np_name))
        else:
            functions.append(_render_function(b, printer))
    text = (
        environment()
        .get_template("module.py.j2")
        .render(
            source_name=source_name,
            command=command,
            functions=functions,
            uses_math=any(_uses_math(b) for b in backwards),
            math_name=math_name,
            np_name=np_name,
        )
    )
    return format_code(text)
