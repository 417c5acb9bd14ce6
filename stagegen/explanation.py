"""Explain: one function's forward and backward pass, stage by stage, at a point or symbolically.

This module computes; it never words or draws. It takes the pipeline's results (the Program
and the Backward, exactly as ``stagegen FILE.py`` would generate them) and evaluates, at the
point, every stage's value and, for every gradient statement, its local gradient, the gradient
flowing in and the result, keeping track of which earlier contributions a ``+=`` adds to. It
also names each stage's gate from the gate table. ``narrate`` turns an Explanation into words,
``circuit`` into a drawing.

Numbers come from evaluating our own expressions, printed the way the generated module prints
them, so every value is the one the generated backward computes (the user's module is never
imported or run). The gradient on each input is compared with SymPy's derivative (50 digits) and
with a central finite difference of the forward.

Array code is explained by explain_arrays.py (shapes, dimension arguments, the generated
backward run under a line tracer); the entry points here serve both. The model of a scalar
explanation lives in explained.py, below the renderers, which never import this module.
"""

from __future__ import annotations

import ast
import linecache
import math
from contextlib import contextmanager
from dataclasses import fields
from functools import lru_cache

from . import gates
from .errors import StagegenError
from .explain_arrays import ArrayExplanationData
from .explained import (  # the model; its names stay importable from here
    PRINT,
    BackwardBlock,
    BackwardStep,
    ExplanationData,
    ForwardStep,
    GateInfo,
    InputGradient,
    PathExplanationData,
    point_text,
    precise,
    short,
)
from .expr import Const, Elem, Expr, Invoke, Num, Neg, Var
from .names import as_python_reads
from .program import Program, Stage, backward_name, has_control_flow
from .reverse import Backward

_NAMESPACE = {"__builtins__": {}, "math": math, "abs": abs, "max": max, "min": min}

__all__ = [
    "PRINT",
    "ArrayExplanation",
    "BackwardBlock",
    "BackwardStep",
    "Explanation",
    "ForwardStep",
    "GateInfo",
    "InputGradient",
    "PathExplanation",
    "explain",
    "explain_backward",
    "explain_function",
    "explain_source",
    "parse_at",
    "point_text",
    "precise",
    "short",
]

# ---------------------------------------------------------------------------- gates by name


def gate_name(gate: gates.Gate) -> str:
    return gate.name or "gate"


def _is_operand(e: Expr) -> bool:
    """Inputs that sit directly on a gate: names, list elements, numbers, constants."""
    if isinstance(e, Neg) and isinstance(e.operand, Num):
        return True
    return isinstance(e, (Var, Elem, Num, Const))


def gates_in(e: Expr) -> list[str]:
    """The names of the gates an expression applies, outermost first, each once."""
    found: list[str] = []
    stack = [e]
    while stack:
        node = stack.pop()
        g = gates.gate_of(node)
        if g is None:
            continue
        name = gate_name(g[0])
        if name not in found:
            found.append(name)
        stack.extend(reversed(g[1]))
    return found


def gate_info(expr: Expr) -> GateInfo:
    found = gates.gate_of(expr)
    if found is None:
        return GateInfo("copy", "a copy passes the gradient on unchanged", True, (expr,))
    gate, inputs = found
    if all(_is_operand(i) for i in inputs):
        return GateInfo(gate_name(gate), gate.behaviour, True, inputs)
    parts = gates_in(expr)
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    behaviour = f"a compound stage ({listed} gates): each local gradient chains through them"
    return GateInfo("compound", behaviour, False, inputs)


# ---------------------------------------------------------------------------- the explanation


class Rendered:
    """What every explanation offers besides its contents: its words (narrate.py) and its
    circuit (circuit.py), and its display in a REPL and a notebook. The renderers read only the
    model (explained.py), so they never import this module back."""

    def text(self, color: bool = False) -> str:
        from .narrate import render_text

        return render_text(self, color=color)

    def markdown(self) -> str:
        from .narrate import render_markdown

        return render_markdown(self)

    def html(self) -> str:
        from .narrate import render_html

        return render_html(self)

    def svg(self) -> str:
        from .circuit import circuit_of, to_svg

        return to_svg(circuit_of(self))

    def dot(self) -> str:
        from .circuit import circuit_of, to_dot

        return to_dot(circuit_of(self))

    def __str__(self) -> str:
        from .narrate import render_text

        return render_text(self, audience="python")

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's plain-text display
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        return self.html()


class Explanation(Rendered, ExplanationData):
    """An explanation of scalar code (the model in explained.py), renderable."""

    def explained_as(self, program: Program) -> "Explanation":
        from .reverse import differentiate

        # what it is compared with is this explanation's business: only its values are drawn
        return explain_backward(differentiate(program), self.point, split=True, compare=False)


class ArrayExplanation(Rendered, ArrayExplanationData):
    """An explanation of array code (the model in explain_arrays.py), renderable."""


class PathExplanation(Rendered, PathExplanationData):
    """An explanation of code with branches and loops along the path taken at a point (the
    model in explained.py), renderable."""


def parse_at(specs) -> dict[str, float | list[float]]:
    """``--at x=3,y=-4`` (repeatable; lists as ``w=[2,-3,-3]``) -> {"x": 3.0, "y": -4.0}."""
    if isinstance(specs, str):
        specs = [specs]
    values: dict[str, float | list[float]] = {}
    for spec in specs:
        for item in _top_level_split(spec):
            name, eq, text = item.partition("=")
            name, text = as_python_reads(name.strip()), text.strip()
            if not eq or not name.isidentifier() or not text:
                raise _at_error(
                    f"cannot read `{item.strip()}`", "write NAME=NUMBER pairs: --at x=3,y=-4"
                )
            if name in values:
                raise _at_error(f"`{name}` is given twice", "give each input once")
            values[name] = _number_or_list(name, text)
    return values


def _top_level_split(spec: str) -> list[str]:
    items, depth, current = [], 0, ""
    for ch in spec:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [i for i in items if i.strip()] or [spec]


def _number_or_list(name: str, text: str) -> float | list[float]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if isinstance(value, (list, tuple)) and all(_is_number(v) for v in value) and value:
        return [float(v) for v in value]
    if _is_number(value):
        return float(value)
    shown = text if len(text) <= 40 else text[:36] + " ..."
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(_is_real(v) and not _is_number(v) for v in items):
        raise _at_error(
            f"`{name}={shown}` is not a finite float (the largest is about 1.8e308)",
            "give a value a float can hold",
        )
    raise _at_error(
        f"`{name}={shown}` is not a number", "write a number (3, -4, 0.5, 1e-3) or a list [2, -3]"
    )


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    """A real number that a float holds finitely: not inf or nan, nor an int too large."""
    if not _is_real(v):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int beyond 1.8e308
        return False


def _at_error(message: str, hint: str) -> StagegenError:
    return StagegenError(message, hint, filename="--at")


def bind_point(program: Program, values: dict) -> dict[str, float | int | list[float]]:
    """The values of every parameter, checked against the program's parameters: numbers as
    floats, trip counts as whole numbers, lists as lists of floats (long enough for their
    constant indices; a function with loops reads as many as it is given)."""
    names = [p.name for p in program.params]
    signature = f"{program.name}({', '.join(names)})"
    values = {as_python_reads(k) if isinstance(k, str) else k: v for k, v in values.items()}
    for name in values:
        if program.param(name) is None:
            raise program.error(
                f"`{name}` is not a parameter of `{program.name}`",
                f"give values for the parameters of {signature}",
            )
    any_length = has_control_flow(program.body)
    point: dict = {}
    for p in program.params:
        if p.name not in values:
            if p.default is not None and _is_number(_literal(p.default)):
                default = _literal(p.default)
                point[p.name] = int(default) if p.integer else float(default)
                continue
            example = (
                f"{p.name}=[...]" if p.is_list else f"{p.name}=3" if p.integer else f"{p.name}=1.5"
            )
            raise program.error(
                f"no value for `{p.name}`", f"add {example} to the point (it takes {signature})"
            )
        v = values[p.name]
        if p.is_list:
            if not isinstance(v, (list, tuple)) or not all(_is_number(x) for x in v):
                raise program.error(
                    f"`{p.name}` is a list of numbers, not {v!r}", f"give {p.name}=[...]"
                )
            if not any_length and len(v) < p.length:
                raise program.error(
                    f"`{p.name}` is a list: {program.name} reads {p.name}[0] to {p.name}[{p.length - 1}]",
                    f"give {p.name}=[...] with at least {p.length} numbers",
                )
            point[p.name] = [float(x) for x in v]
        elif isinstance(v, (list, tuple)) or not _is_number(v):
            raise program.error(f"`{p.name}` takes one number, not {v!r}", f"give {p.name}=NUMBER")
        elif p.integer:
            if float(v) != int(float(v)) or float(v) < 0:
                raise program.error(
                    f"`{p.name}` is a trip count (a loop runs it), not {short(v)}",
                    f"give {p.name} a whole number from 0",
                )
            point[p.name] = int(float(v))
        else:
            point[p.name] = float(v)
    return point


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def flat_point(program: Program, point: dict) -> dict[str, float]:
    """{"x": 3.0, "w[0]": 2.0, ...}: one entry per scalar input the program reads."""
    flat: dict[str, float] = {}
    for p in program.params:
        if p.is_list:
            for i in range(p.length):
                flat[f"{p.name}[{i}]"] = point[p.name][i]
        else:
            flat[p.name] = point[p.name]
    return flat


# ---------------------------------------------------------------------------- evaluation


@lru_cache(maxsize=2048)
def _compiled(code: str):
    return compile(code, "<stagegen explain>", "eval")


def _evaluate(e: Expr, env: dict) -> float:
    value = eval(_compiled(PRINT(e)), _NAMESPACE, env)  # our own printed expression, not user code
    if isinstance(value, complex) or not math.isfinite(value):
        raise ValueError("the result is not a finite real number")
    return float(value)


def forward_values(program: Program, point: dict) -> dict:
    """Every stage's value at the point; raises ``_Undefined`` at the first stage that fails."""
    env = {k: (list(v) if isinstance(v, list) else v) for k, v in point.items()}
    for stage in program.stages:
        try:
            env[stage.target] = _evaluate(stage.expr, env)
        except (ValueError, ZeroDivisionError, OverflowError, TypeError) as exc:
            raise _Undefined(stage, exc) from None
    return env


class _Undefined(Exception):
    def __init__(self, stage: Stage, exc: Exception):
        self.stage, self.exc = stage, exc


def _source_line(program: Program, line: int, source_text: str | None) -> str:
    """The source line, from the text the program was read from, else from its file."""
    if source_text is not None:
        lines = source_text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""
    return linecache.getline(program.filename, line).rstrip("\n")


def _domain_error(
    program: Program, stage: Stage, exc: Exception, what: str, source_text, flat: dict
) -> StagegenError:
    reason = str(exc) or type(exc).__name__
    at = ", ".join(f"{k}={short(v)}" for k, v in flat.items())
    return StagegenError(
        f"{what} of stage ({stage.number}) `{stage.target} = {PRINT(stage.expr)}` is undefined "
        f"at this point ({reason})",
        f"choose a point inside the function's domain (this one is {at})",
        filename=program.filename,
        line=stage.line,
        col=stage.col,
        source_line=_source_line(program, stage.line, source_text),
    )


# ---------------------------------------------------------------------------- building it


def _leaf_text(leaf) -> str:
    return leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"


def _reason(info: GateInfo, stage: Stage, leaf, env: dict | None) -> str:
    """Why this input's local gradient is what it is, in the gate's own terms."""
    of = _leaf_text(leaf)
    if not info.elementary:
        return ""
    count = sum(1 for i in info.inputs if i == leaf)
    if count > 1:
        times = "twice" if count == 2 else f"{count} times"
        return f"{of} enters the {info.name} gate {times}: its paths add"
    position = info.inputs.index(leaf) if leaf in info.inputs else 0
    if info.name in ("add", "copy"):
        return "passed on unchanged"
    if info.name == "subtract":
        return "passed on negated" if position == 1 else "passed on unchanged"
    if info.name == "mul":
        return f"{of} gets the other input, {PRINT(info.inputs[1 - position])}"
    if info.name == "negate":
        return "the sign flips"
    if info.name in ("max", "min"):
        if env is None:
            return (
                f"1 when {of} is the {'larger' if info.name == 'max' else 'smaller'} input, else 0"
            )
        return _routing(info, stage, leaf, env)
    return ""  # the block's header says it (the gate table's sentence)


def _routing(info: GateInfo, stage: Stage, leaf, env: dict) -> str:
    """Why the max (min) gate routes the gradient to this input or not, with the values."""
    of = _leaf_text(leaf)
    mine = _evaluate(leaf, env)
    others = [(PRINT(o), _evaluate(o, env)) for o in info.inputs if o != leaf]
    won = _evaluate(gates.local_gradients(stage.expr)[leaf], env) != 0
    more = "larger" if info.name == "max" else "smaller"
    less = "smaller" if info.name == "max" else "larger"
    if won and any(v == mine for _, v in others):
        return f"{of} = {short(mine)} ties for the {more}: a tie goes to the first"
    compared = ", ".join(f"{name} = {short(v)}" for name, v in others)
    if won:
        return (
            f"{of} = {short(mine)} is the {more} input (against {compared}): it gets the gradient"
        )
    return f"{of} = {short(mine)} is not the {more} input ({compared}): {less} inputs get nothing"


def explain_backward(
    backward: Backward,
    values: dict | None = None,
    *,
    split: bool = False,
    source_text: str | None = None,
    compare: bool = True,
) -> Explanation | ArrayExplanation:
    """Explain one generated backward, at the point ``values`` or symbolically (None). Array
    code is explained from the module generated for its program again (the same backward).
    ``compare``: each input's gradient beside SymPy's and a central difference."""
    program = backward.program
    if _has_arrays(program):  # explained from its generated module, which is written again
        explained = _explain_arrays(program, values, split=False, source_text=source_text)
        explained.split = split  # the program is split already, or not
        return explained
    point = bind_point(program, values) if values is not None else None
    env: dict | None = None
    if point is not None:
        flat = flat_point(program, point)
        try:
            env = forward_values(program, point)
        except _Undefined as u:
            raise _domain_error(program, u.stage, u.exc, "the value", source_text, flat) from None

    forward = [
        ForwardStep(
            stage=s,
            code=f"{s.target} = {PRINT(s.expr)}",
            gate=gate_info(s.expr),
            value=env[s.target] if env is not None else None,
        )
        for s in program.stages
    ]

    gradient_names = backward.gradient_names
    if env is not None:
        env[backward.upstream] = 1.0
        for p in program.params:
            if p.is_list and p.name in backward.wrt:
                env[gradient_names[p.name]] = [0.0] * len(point[p.name])
    written_by: dict[str, list[int]] = {}  # gradient text -> stages that wrote to it
    blocks = []
    for block in backward.blocks:
        stage = block.stage
        info = gate_info(stage.expr)
        upstream = gradient_names[stage.target]
        steps = []
        for st in block.statements:
            grad = PRINT(st.gradient)
            step = BackwardStep(
                code=f"{grad} {'+=' if st.accumulate else '='} {PRINT(st.value)}",
                stage=stage,
                gradient=grad,
                accumulate=st.accumulate,
                of=_leaf_text(st.of),
                local=PRINT(st.local),
                upstream=upstream,
                reason="",
                earlier=list(written_by.get(grad, [])),
            )
            if env is not None:
                try:
                    step.reason = _reason(info, stage, st.of, env)
                    step.local_value = _evaluate(st.local, env)
                    step.upstream_value = float(env[upstream])
                    step.contribution = _evaluate(st.value, env)
                except (ValueError, ZeroDivisionError, OverflowError, TypeError) as exc:
                    raise _domain_error(
                        program, stage, exc, f"the local gradient on `{step.of}`", source_text, flat
                    ) from None
                step.before = _read(env, st.gradient) if st.accumulate else None
                step.result = (
                    step.before + step.contribution if st.accumulate else step.contribution
                )
                _write(env, st.gradient, step.result)
            else:
                step.reason = _reason(info, stage, st.of, None)
            written_by.setdefault(grad, []).append(stage.number)
            steps.append(step)
        blocks.append(BackwardBlock(stage, f"{stage.target} = {PRINT(stage.expr)}", info, steps))

    inputs = []
    for p in program.params:
        if p.name not in backward.wrt:
            continue
        d = gradient_names[p.name]
        names = (
            [(f"{p.name}[{i}]", f"{d}[{i}]") for i in range(p.length)]
            if p.is_list
            else [(p.name, d)]
        )
        for name, grad in names:
            g = InputGradient(name, grad, written_by.get(grad, []))
            if env is not None:
                g.value = _read_text(env, grad) if g.stages else 0.0
            inputs.append(g)

    explanation = Explanation(
        program=program,
        backward=backward,
        point=point,
        forward=forward,
        upstream=backward.upstream,
        blocks=blocks,
        inputs=inputs,
        split=split,
    )
    if point is not None and compare:
        _compare(explanation)
    return explanation


def _read(env: dict, leaf) -> float:
    return env[leaf.name][leaf.index] if isinstance(leaf, Elem) else env[leaf.name]


def _write(env: dict, leaf, value: float) -> None:
    if isinstance(leaf, Elem):
        env[leaf.name][leaf.index] = value
    else:
        env[leaf.name] = value


def _read_text(env: dict, grad: str) -> float:
    base, _, index = grad.partition("[")
    return env[base][int(index.rstrip("]"))] if index else env[base]


# ---------------------------------------------------------------------------- the checks


def _compare(ex: Explanation) -> None:
    """Fill in SymPy's gradient (50 digits) and a central finite difference for every input."""
    program, point = ex.program, ex.point
    flat = flat_point(program, point)
    try:
        from .proof import reference_gradient

        exact = reference_gradient(program, ex.backward, flat)
        for g in ex.inputs:
            if g.name in exact:
                g.sympy = float(exact[g.name])
    except (ValueError, TypeError, ZeroDivisionError):
        ex.notes.append("SymPy's derivative is not defined at this point")
    for g in ex.inputs:
        g.finite_difference = _central_difference(program, point, g.name)


def _central_difference(program: Program, point: dict, name: str) -> float | None:
    from .numeric import central_difference

    base, _, index = name.partition("[")
    names = list(point)

    def output(*args) -> float | None:
        try:
            return forward_values(program, dict(zip(names, args)))[program.output.name]
        except _Undefined:
            return None

    element = (int(index.rstrip("]")),) if index else ()
    d = central_difference(output, list(point.values()), names.index(base), element)
    return None if d is None else d.slope()


# ---------------------------------------------------------------------------- entry points


def explain_source(
    source: str,
    function: str | None = None,
    values: dict | None = None,
    *,
    split: bool = False,
    filename: str = "<string>",
    seed: int = 0,
) -> Explanation | ArrayExplanation:
    """Explain ``function`` of a module's source text (the only function when None)."""
    from .reader import read_programs

    programs = read_programs(source, filename, [function] if function else None)
    if len(programs) > 1:
        names = ", ".join(p.name for p in programs)
        raise StagegenError(
            f"{len(programs)} functions here: say which one to explain",
            f"name one of: {names} (FILE.py::NAME on the command line)",
            filename=filename,
        )
    return _explain_program(programs[0], values, split=split, source_text=source, seed=seed)


def explain_function(
    func, values: dict | None = None, *, split: bool = False, seed: int = 0
) -> Explanation | ArrayExplanation:
    """Explain a live function object (its source is read, never run)."""
    from .introspect import programs_of_function

    return _explain_program(programs_of_function(func)[0], values, split=split, seed=seed)


def _explain_program(
    program: Program, values, *, split: bool, source_text: str | None = None, seed: int = 0
) -> Explanation | ArrayExplanation:
    from .reverse import differentiate

    for stage in program.stages:
        if isinstance(stage.expr, Invoke):
            raise StagegenError(
                f"`stagegen explain` does not follow the call to `{stage.expr.function}` yet",
                f"explain `{stage.expr.function}` on its own (FILE.py::{stage.expr.function}), "
                "or write its body into this function to see every value",
                filename=program.filename,
                line=stage.line,
                col=stage.col,
            )
    if has_control_flow(program.body):
        return _explain_path(program, values, split=split, source_text=source_text)
    if _has_arrays(program):  # split, if asked, as `stagegen --split` splits it
        return _explain_arrays(program, values, split=split, source_text=source_text, seed=seed)
    if split:
        from .split import split_program

        program = split_program(program)
    return explain_backward(differentiate(program), values, split=split, source_text=source_text)


def _has_arrays(program: Program) -> bool:
    """Values with shapes are traced through the generated code, the way their values are
    summarised; numbers are evaluated stage by stage, each local gradient on its own."""
    from .types import Types

    return not Types(program).numbers_only


def _explain_arrays(
    program: Program, values, *, split: bool, source_text: str | None, seed: int = 0
) -> ArrayExplanation:
    """Array code is explained from the module ``stagegen FILE.py`` writes for it: its shapes
    and dimension arguments symbolically; at a point (sizes of the dimensions, numbers), the
    values its backward computes on arrays drawn with ``seed``."""
    from .api import build_programs
    from .explain_arrays import explain_array_build

    build = build_programs([program], program.filename, split=split, source=source_text or "")
    data = explain_array_build(
        build.backwards[0], build.text, values, seed=seed, split=split, source_text=source_text
    )
    return ArrayExplanation(**{f.name: getattr(data, f.name) for f in fields(data)})


def explain(
    target,
    function=None,
    *,
    split: bool = False,
    at: dict | None = None,
    seed: int = 0,
    **values,
):
    """``explain(func, x=3, y=-4)`` or ``explain(source_text, "f", x=3, y=-4)``; for array code,
    the sizes of its dimensions (``explain(affine, N=2, D=3, M=4)``): its arrays are drawn from a
    standard normal with ``seed``.

    With no values, the explanation is symbolic. Pass ``at={...}`` instead of keywords when a
    parameter is named ``split``, ``function``, ``at`` or ``seed``."""
    point = dict(at or {}, **values) or None
    if isinstance(target, str):
        return explain_source(target, function, point, split=split, seed=seed)
    if not callable(target):
        raise TypeError("explain() takes a function or a module's source text")
    return explain_function(target, point, split=split, seed=seed)


# ---------------------------------------------------------------------------- branches and loops


def _explain_path(
    program: Program, values, *, split: bool, source_text: str | None
) -> PathExplanation:
    """Code with branches and loops, explained along the path its forward takes at the point:
    the block tree is run there (stagegen.unroll) and the stages it ran, a straight-line
    program, are explained as straight-line code is, so every value and gradient shown is that
    of the path. The generated backward is shown as written, and its gradients compared."""
    from .reverse import differentiate
    from .unroll import unroll

    first = next(n for n in program.body if not isinstance(n, Stage))
    where = dict(filename=program.filename, line=first.line, col=first.col)
    where["source_line"] = _source_line(program, first.line, source_text)
    if _has_arrays(program):
        raise StagegenError(
            "`explain` shows loops and branches of code on numbers; array code with loops is "
            "not explained yet",
            "generate the backward (`stagegen FILE.py`): it is proven along the path taken",
            **where,
        )
    if values is None:
        from .narrate import call_example

        raise StagegenError(
            "`explain` shows loops and branches along the path taken at a point: it needs one",
            f"give the inputs' values: {_at_example(program)} on the command line, or "
            f"{call_example(program)} from Python",
            **where,
        )
    if split:
        raise StagegenError(
            "`explain --split` does not show loops and branches yet",
            "leave out --split: the circuit is drawn gate by gate anyway",
            **where,
        )
    point = bind_point(program, values)
    path = unroll(program, point, lambda line: _source_line(program, line, source_text))
    straight = path.straight
    explained = explain_backward(
        differentiate(straight), point, split=split, source_text=source_text, compare=False
    )
    ex = PathExplanation(
        program=program,
        path=path,
        straight=explained,
        backward_code=[],
        split=split,
        notes=list(explained.notes),
    )
    for g in ex.inputs:  # the forward itself (its branches decided again), not the path's
        g.finite_difference = _path_difference(program, point, g.name)
    _path_sympy(ex, source_text)
    _compare_generated(ex, source_text)
    return ex


def _at_example(program: Program) -> str:
    """``--at x=3,lo=-4,hi=2`` with the function's own parameters (lists of three numbers)."""
    values = (3, -4, 2, -1, 0.5)
    items = []
    for k, p in enumerate(program.params):
        if p.is_list:
            items.append(f"{p.name}=[{','.join(str(values[(k + i) % 5]) for i in range(3))}]")
        else:
            items.append(f"{p.name}={3 if p.integer else values[k % 5]}")
    spec = ",".join(items)
    return f"--at '{spec}'" if "[" in spec else f"--at {spec}"


def _path_difference(program: Program, point: dict, name: str) -> float | None:
    """A central difference of the forward (its block tree run again at each nudged point)."""
    from .numeric import central_difference
    from .unroll import unroll

    base, _, index = name.partition("[")
    names = list(point)

    def output(*args) -> float | None:
        try:
            value = unroll(program, dict(zip(names, args))).value
        except StagegenError:
            return None
        return float(value)

    element = (int(index.rstrip("]")),) if index else ()
    d = central_difference(output, list(point.values()), names.index(base), element)
    return None if d is None else d.slope()


def _path_sympy(ex: PathExplanation, source_text: str | None) -> None:
    """SymPy's derivative of the path at the point, as the proof computes it (the user's `def`
    run on 50-digit numbers that build SymPy expressions, cut into pieces where they swell:
    stagegen.path_oracle), independent of the unrolling shown."""
    from .oracle import SourceUnavailable, source_text as file_text, user_function
    from .path_oracle import PathOracle

    program = ex.program
    text = source_text if source_text is not None else file_text(program.filename)
    position = {p.name: k for k, p in enumerate(program.params)}
    indices = []
    for g in ex.inputs:
        base, _, rest = g.name.partition("[")
        indices.append((position[base], int(rest[:-1])) if rest else (position[base],))
    spent = {"spent": False}
    try:
        if text is None:
            raise SourceUnavailable("the source text is not available")
        paths = PathOracle(user_function(text, program.name, program.line, program.filename))
        args = [ex.path.point[p.name] for p in program.params]
        with _time_budget(SYMPY_SECONDS, spent):
            path = paths.trace(args)
            found = paths.gradient(path, args, indices)
    except _OutOfTime:
        pass
    except Exception as exc:  # SymPy's value is a second opinion: say why it is missing
        ex.notes.append(f"SymPy's derivative of this path is not shown ({type(exc).__name__})")
        return
    if spent["spent"]:  # (the oracle may have caught the signal's exception itself)
        ex.notes.append(
            f"SymPy's derivative of this path is not shown (it took more than {SYMPY_SECONDS} s)"
        )
        return
    if found is None:
        ex.notes.append(paths.note or "SymPy's derivative of this path is not defined here")
        return
    for g, value in zip(ex.inputs, found[1]):
        g.sympy = float(value)


SYMPY_SECONDS = 10  # SymPy's derivative of a path is a second opinion: it may not take longer


class _OutOfTime(Exception):
    pass


@contextmanager
def _time_budget(seconds: float, budget: dict):
    """Raise _OutOfTime in the block after ``seconds`` and mark the budget spent (a timer
    signal: only in the main thread of a process that has no timer of its own; elsewhere the
    block runs unbounded)."""
    import signal
    import threading

    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    )
    if not usable:
        yield
        return

    def out_of_time(signum, frame):
        budget["spent"] = True
        raise _OutOfTime()

    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _compare_generated(ex: PathExplanation, source_text: str | None) -> None:
    """The generated backward, as `stagegen FILE.py` writes it, and what it returns at the
    point: each input's gradient beside the path's."""
    from .api import build_programs, load_backward_module

    program = ex.program
    build = build_programs([program], program.filename, source=source_text or "")
    ex.backward_code = _function_lines(build.text, backward_name(program.name))
    backward = build.backwards[0]
    function = load_backward_module(build.text, program.filename)[backward_name(program.name)]
    args = [ex.path.point[p.name] for p in program.params]
    try:
        returned = function(*args)
    except Exception as exc:  # the path explained fine: say so, and what the backward raised
        ex.notes.append(f"the generated backward raised {type(exc).__name__}: {exc}")
        return
    if len(backward.wrt) == 1:
        returned = (returned,)
    by_name = {}
    for name, value in zip(backward.wrt, returned):
        if isinstance(value, list):
            for i, v in enumerate(value):
                by_name[f"{name}[{i}]"] = v
        else:
            by_name[name] = value
    for g in ex.inputs:
        if g.name in by_name:
            g.generated = float(by_name[g.name])


def _function_lines(text: str, name: str) -> list[str]:
    """The lines of one function of a module's text, as written."""
    tree = ast.parse(text)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return text.splitlines()[fn.lineno - 1 : fn.end_lineno]
