"""A generated backward, read from its module text and run under a line tracer.

The teaching aid shows the values of the code the user would ship, not of a copy of it: the
module ``stagegen FILE.py`` writes is parsed (its statements, their ``# (n)`` comments, the
``# backprop`` headers that open the blocks) and its backward function run with a tracer on
its own frame, which reads, right after each statement, the names the statement writes.
Nothing here knows how the backward was derived.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from dataclasses import dataclass

from .program import backward_name

# ---------------------------------------------------------------------------- reading it


@dataclass
class GeneratedLine:
    """One statement of the generated backward."""

    start: int  # first and last line in the module
    end: int
    code: list[str]  # its lines, dedented, the trailing comment left off
    comment: str  # that comment, without "# "
    block: int  # the "# backprop" block it is in (-1: before the first)
    writes: list[str]  # the names it binds or writes into
    node: ast.stmt = None


@dataclass
class GeneratedBackward:
    """The generated backward function, as read from the module text."""

    lines: list[GeneratedLine]  # its statements
    headers: list[str]  # the blocks' ``# backprop`` comments, without those words
    upstream: str  # its last parameter: the upstream gradient (dout)
    returned: list[str]  # the gradients it returns, in order


def read_backward(text: str, name: str) -> GeneratedBackward:
    """``name``'s backward in the module text: its statements, headers and signature."""
    tree = ast.parse(text)
    fn = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == backward_name(name)
    )
    lines = text.splitlines()
    comments: dict[int, tuple[int, str]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string)
    body = [s for s in fn.body if not _is_docstring(s)]
    inside = {n for s in body for n in range(s.lineno, s.end_lineno + 1)}
    headers = sorted(
        n
        for n, (_, c) in comments.items()
        if c.startswith("# backprop ") and fn.lineno <= n <= fn.end_lineno and n not in inside
    )
    out = []
    for s in body:
        block = sum(1 for h in headers if h < s.lineno) - 1
        code = lines[s.lineno - 1 : s.end_lineno]
        comment = ""
        if s.end_lineno in comments:
            col, comment = comments[s.end_lineno]
            code[-1] = code[-1][:col].rstrip()
            comment = comment[1:].strip()
        indent = s.col_offset
        code = [c[indent:] if c[:indent].isspace() else c.lstrip() for c in code]
        out.append(GeneratedLine(s.lineno, s.end_lineno, code, comment, block, _writes(s), s))
    returned = next(s.value for s in body if isinstance(s, ast.Return))
    names = returned.elts if isinstance(returned, ast.Tuple) else [returned]
    return GeneratedBackward(
        out,
        [comments[n][1][len("# backprop ") :] for n in headers],
        fn.args.args[-1].arg,
        [n.id for n in names],
    )


def _is_docstring(s: ast.stmt) -> bool:
    return isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)


def _writes(s: ast.stmt) -> list[str]:
    if isinstance(s, ast.Assign):
        names = []
        for t in s.targets:
            elts = t.elts if isinstance(t, ast.Tuple) else [t]
            names += [e.id for e in elts if isinstance(e, ast.Name)]
            names += [  # dx[np.arange(N), y] = ...: positions of dx
                e.value.id
                for e in elts
                if isinstance(e, ast.Subscript) and isinstance(e.value, ast.Name)
            ]
        return names
    if isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name):
        return [s.target.id]
    if (
        isinstance(s, ast.AugAssign)
        and isinstance(s.target, ast.Subscript)
        and isinstance(s.target.value, ast.Name)
    ):
        return [s.target.value.id]  # da[:, H : 2 * H] += ...: a slot of da
    call = s.value if isinstance(s, ast.Expr) else None
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "at"
        and call.args
        and isinstance(call.args[0], ast.Name)
    ):
        return [call.args[0].id]  # np.add.at(dx, ...)
    return []


def allocates(line: GeneratedLine) -> bool:
    """``dx = np.zeros(...)``: the start of a scatter, whose np.add.at follows."""
    v = getattr(line.node, "value", None)
    return (
        isinstance(line.node, ast.Assign)
        and isinstance(v, ast.Call)
        and isinstance(v.func, ast.Attribute)
        and v.func.attr in ("zeros", "zeros_like")
    )


# ---------------------------------------------------------------------------- running it


def _copy(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    return value


def traced_run(fn, args: list, lines: list[GeneratedLine]) -> dict[int, dict]:
    """Run ``fn(*args)`` under a line tracer: for each statement (its index in ``lines``), the
    values of the names it writes, read right after it ran."""
    code = fn.__code__
    statement_at = {n: k for k, line in enumerate(lines) for n in range(line.start, line.end + 1)}
    after: dict[int, dict] = {}
    current: list[int | None] = [None]

    def read(frame, k: int) -> None:
        scope = frame.f_locals
        after[k] = {n: _copy(scope[n]) for n in lines[k].writes if n in scope}

    def local(frame, event, arg):
        if event == "line":
            k = statement_at.get(frame.f_lineno)
            if k is not None and k != current[0]:
                if current[0] is not None:
                    read(frame, current[0])
                current[0] = k
        elif event == "return" and current[0] is not None:
            read(frame, current[0])
            current[0] = None
        return local

    def calls(frame, event, arg):
        return local if event == "call" and frame.f_code is code else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return after
