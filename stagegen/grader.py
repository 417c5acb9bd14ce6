"""Grading a hand-written backward line by line, in the notes' terms.

``grade(source, "f_backward")`` reads the forward ``f`` with stagegen's own reader and the
hand-written ``f_backward`` from its syntax tree, then walks the backward in order:

* a **replay** (``sigx = 1.0 / (1 + math.exp(-x))``) must compute the forward stage it names;
* a **gradient statement** ``dv = ...`` or ``dv += ...`` is matched with the forward stages it
  differentiates by the upstream gradients it reads: reading ``ds`` makes it the contribution
  of stage ``s`` to ``v``, and its coefficient of ``ds`` must be SymPy's ∂s/∂v (with forward
  values as symbols, a stage's own value replaced by its definition where needed, so that
  ``(1 - sigx) * sigx`` is the derivative of ``1 / (1 + exp(-x))``; else compared at sampled
  points in 50 digits);
* **accumulation** is tracked: ``=`` where the gradient already holds a contribution (a fork),
  a contribution added twice, an upstream gradient read before all of its contributions
  arrived, a gradient read before it is written, one returned without all its contributions;
* the **return** gives the inputs' gradients in parameter order.

Every line gets a verdict; a wrong one says why, in the gates' terms (the mul gate swaps its
inputs, the sigmoid's local gradient, the power rule, a sign, ``=`` at a fork), falling back
to "the local gradient should be ..., this line gives ...". The report renders as text,
Markdown or HTML (stagegen.grade_render).

Scope: forwards over numbers, written straight-line (the math module). A backward with loops
or branches, and array code, are refused with a located error.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field

from .errors import Source, StagegenError
from .expr import Bin, Var, mul, to_source
from .gates import gate_of, local_gradients
from .grade_math import BackwardReader, Forward, Unreadable
from .parse import MathNames, function_defs, parse_source
from .program import Stage, has_control_flow
from .reader import read_programs

# ---------------------------------------------------------------------------- the report


@dataclass
class GradeIssue:
    """A wrong line: where, and why (in the gates' terms)."""

    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LineVerdict:
    """One line of the backward: what it is, and whether it is right.

    ``ok`` is None for a line with nothing to grade (a comment, the signature, a docstring,
    the continuation of a statement, a helper value)."""

    line: int
    text: str
    kind: str = ""  # "def" | "replay" | "gradient" | "helper" | "return" | ""
    ok: bool | None = None
    stages: tuple[int, ...] = ()  # the forward stages the line replays or differentiates
    messages: list[str] = field(default_factory=list)
    method: str = ""  # "symbolic" or "sampled": how its local gradients were checked

    @property
    def mark(self) -> str:
        return {True: "ok", False: "wrong", None: ""}[self.ok]


@dataclass
class GradeReport:
    filename: str
    forward: str
    backward: str
    stage_count: int
    lines: list[LineVerdict]
    issues: list[GradeIssue]

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def first_error(self) -> GradeIssue | None:
        return self.issues[0] if self.issues else None

    @property
    def graded(self) -> list[LineVerdict]:
        return [v for v in self.lines if v.ok is not None]

    def text(self, color: bool = False, ascii: bool = False) -> str:
        from .grade_render import render_text

        return render_text(self, color=color, ascii=ascii)

    def markdown(self) -> str:
        from .grade_render import render_markdown

        return render_markdown(self)

    def html(self, standalone: bool = False) -> str:
        from .grade_render import render_html

        return render_html(self, standalone=standalone)

    def _repr_html_(self) -> str:
        return self.html()

    def __str__(self) -> str:
        return self.text()


# ---------------------------------------------------------------------------- entry point


def grade(
    source: str,
    backward: str = "f_backward",
    forward: str | None = None,
    filename: str = "<string>",
) -> GradeReport:
    """Grade the hand-written ``backward`` in ``source`` against its forward (by default the
    backward's name without ``_backward``). Raises StagegenError, located, for what grading
    cannot read (loops or branches in the backward, array code, no such function)."""
    if forward is None:
        if not backward.endswith("_backward") or backward == "_backward":
            raise StagegenError(
                f"cannot tell the forward of `{backward}` from its name",
                "name it after its forward (`f_backward` grades against `f`), or give the "
                "forward's name (--forward NAME)",
                filename=filename,
            )
        forward = backward[: -len("_backward")]
    src = Source(source, filename)
    module = parse_source(src)
    by_name = {d.name: d for d in function_defs(module)}
    if backward not in by_name:
        raise StagegenError(
            f"no top-level function named `{backward}`",
            f"functions defined here: {', '.join(by_name) or 'none'}",
            filename=filename,
        )
    program = read_programs(source, filename, [forward])[0]
    _refuse_forward(program, src, by_name[forward])
    grader = _Grader(program, by_name[backward], src, MathNames.from_module(module))
    return grader.run()


def _refuse_forward(program, src: Source, fn: ast.FunctionDef) -> None:
    why = None
    if program.numpy or any(p.shape is not None for p in program.params):
        why = "array code"
    elif any(p.is_list for p in program.params):
        why = "a list parameter"
    elif has_control_flow(program.body):
        why = "loops or branches"
    if why:
        raise src.error(
            fn,
            f"grading reads forwards over numbers written straight-line; `{fn.name}` has {why}",
            "grade a straight-line function of numbers (stagegen FILE.py proves the gradient of "
            "this one)",
        )


_STRAIGHT_LINE = (
    "grading reads straight-line backwards: write it without loops or branches (a conditional "
    "expression `a if c else b` is fine), or check it as a whole against `stagegen FILE.py`'s"
)
_CONTROL = {
    ast.For: "a `for` loop",
    ast.AsyncFor: "a `for` loop",
    ast.While: "a `while` loop",
    ast.If: "an `if` statement",
    ast.With: "a `with` block",
    ast.AsyncWith: "a `with` block",
    ast.Try: "a `try` block",
    ast.FunctionDef: "a nested function",
    ast.AsyncFunctionDef: "a nested function",
    ast.ClassDef: "a class",
    ast.Match: "a `match` statement",
}


class _Wrong(Exception):
    """A statement that cannot be right (it reads a name that has no value yet)."""

    def __init__(self, node, message: str):
        super().__init__(message)
        self.node, self.message = node, message


# ---------------------------------------------------------------------------- the grader


class _Grader:
    def __init__(self, program, fn: ast.FunctionDef, src: Source, names: MathNames):
        self.program = program
        self.fn = fn
        self.src = src
        self.math_name = min(names.modules) if names.modules else "math"
        self.fw = Forward.of(program)
        self.sp = self.fw.sp
        self.reader = BackwardReader(self.fw, names, self._lookup)
        self.stages: dict[str, Stage] = {s.target: s for s in program.stages}
        self.params = [p.name for p in program.params]
        self.values = set(self.params) | set(self.stages)
        self.output = program.output.name
        # Gradient flows along the edges whose partial derivative is not zero.
        flows = self.fw.flows
        live = {self.output}
        for s in reversed(program.stages):
            if s.target in live:
                live.update(v for v in self.fw.reads[s.target] if flows(s.target, v))
        active = {p.name for p in program.params if not (p.integer or p.labels)}
        for s in program.stages:
            if any(v in active and flows(s.target, v) for v in self.fw.reads[s.target]):
                active.add(s.target)
        # The stages whose contributions a value's gradient must receive before it is read.
        self.required: dict[str, list[Stage]] = {
            v: [s for s in program.stages if s.target in live and flows(s.target, v)]
            for v in self.values
            if v in active and v in live
        }
        self.gsym: dict[str, object] = {}
        # what the backward has done so far
        self.upstream: str | None = None  # the upstream gradient's parameter
        self.seeded = False  # without one: whether the backward sets it (df = 1.0)
        self.defined: set[str] = set()  # forward values computed (parameters, replays)
        self.helpers: dict[str, object] = {}  # other names: their meaning
        self.helper_reads: dict[str, list[str]] = {}  # helper -> the gradients it read
        self.written: dict[str, int] = {}  # value -> line its gradient was last written at
        self.received: dict[str, dict[str, int]] = {}  # value -> {stage target: line}
        self.spelled: dict[str, str] = {}  # value -> the name the backward gives its gradient
        self.reads: list[tuple[str, ast.AST]] = []
        self.lines: dict[int, LineVerdict] = {}
        self.issues: list[GradeIssue] = []
        self.returned = False

    # -- names -----------------------------------------------------------------------------

    def grad(self, v: str):
        if v not in self.gsym:
            self.gsym[v] = self.sp.Symbol(f"gradient of {v}", real=True)
        return self.gsym[v]

    def value_of_gradient(self, name: str) -> str | None:
        """The forward value ``name`` is the gradient of (``dx`` -> ``x``), or None."""
        if self.upstream is not None and name == self.upstream:
            return self.output
        if name in self.values or name in self.helpers:
            return None
        for prefix in ("d", "d_", "grad_"):
            if name.startswith(prefix) and name[len(prefix) :] in self.values:
                return name[len(prefix) :]
        return None

    def gradient_name(self, v: str) -> str:
        return self.spelled.get(v) or f"d{v}"

    def _lookup(self, name: str, node: ast.AST):
        if name in self.helpers:
            # a helper holding gradients reads them here too (`dt4_in` below `dt4_in = ... dt4`)
            self.reads += [(v, node) for v in self.helper_reads.get(name, ())]
            return self.helpers[name]
        if name in self.values and (name in self.defined or name in self.params):
            return self.fw.symbol(name)
        v = self.value_of_gradient(name)
        if v == self.output and self.upstream is None and not self.seeded:
            raise _Wrong(
                node,
                f"`{name}` has no value here: take the upstream gradient as the last parameter, "
                f"`{name}=1.0`",
            )
        if v is not None:
            self.spelled.setdefault(v, name)
            self.reads.append((v, node))
            return self.grad(v)
        if name in self.stages:
            stage = self.stages[name]
            raise _Wrong(
                node,
                f"`{name}` has no value here: replay the forward line "
                f"`{self.stage_text(stage)}` (stage ({stage.number})) above this line",
            )
        raise _Wrong(node, f"`{name}` has no value here: it is never assigned before this line")

    def stage_text(self, stage: Stage) -> str:
        return f"{stage.user_name} = {to_source(stage.expr, self.math_name)}"

    # -- the walk --------------------------------------------------------------------------

    def run(self) -> GradeReport:
        fn = self.fn
        first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        for n in range(first, fn.end_lineno + 1):
            self.lines[n] = LineVerdict(
                n, self.src.lines[n - 1] if n <= len(self.src.lines) else ""
            )
        self.lines[fn.lineno].kind = "def"
        self.signature()
        for stmt in fn.body:
            if self.returned:
                break
            kind = _CONTROL.get(type(stmt))
            if kind:
                raise self.src.error(stmt, f"{kind} in `{fn.name}`", _STRAIGHT_LINE)
            try:
                self.statement(stmt)
            except _Wrong as exc:
                self.wrong(stmt, exc.message, node=exc.node)
            except Unreadable as exc:
                raise self.src.error(exc.node, exc.message, exc.hint) from None
        if not self.returned:
            last = fn.body[-1]
            self.wrong(
                last,
                f"`{fn.name}` returns nothing: end it with `return "
                f"{', '.join(self.gradient_name(p) for p in self.params)}`",
                line=last.end_lineno,
            )
        self.issues.sort(key=lambda i: (i.line, i.col))
        return GradeReport(
            self.src.filename,
            self.program.name,
            fn.name,
            len(self.program.stages),
            [self.lines[n] for n in sorted(self.lines)],
            self.issues,
        )

    def verdict(self, stmt: ast.stmt, kind: str, stages=(), method: str = "") -> LineVerdict:
        v = self.lines[stmt.lineno]
        v.kind = v.kind or kind
        if v.ok is None and kind in ("replay", "gradient", "return"):
            v.ok = True
        v.stages = tuple(dict.fromkeys(v.stages + tuple(stages)))
        if method and v.method != "sampled":
            v.method = method
        return v

    def wrong(self, stmt: ast.stmt, message: str, node=None, line: int | None = None) -> None:
        line = line or stmt.lineno
        v = self.lines[line]
        v.ok = False
        if not v.kind:
            v.kind = "statement"
        where = node if node is not None else stmt
        if line != stmt.lineno:
            where = None
        col = self.src.error(where, "").col if where is not None else 1
        text = self._statement_text(stmt)
        full = f"`{text}` — {message}" if text else message
        v.messages.append(full)
        self.issues.append(GradeIssue(line, col, full))

    def _statement_text(self, stmt: ast.stmt) -> str:
        text = self.src.segment(stmt) or ast.unparse(stmt)
        return " ".join(text.split()) if len(text) < 120 else ""

    def signature(self) -> None:
        fn = self.fn
        a = fn.args
        if a.vararg or a.kwarg:
            raise self.src.error(
                fn,
                f"`{fn.name}` takes *args or **kwargs",
                "give it the forward's parameters, then the upstream gradient: "
                f"`def {fn.name}({', '.join(self.params + ['d' + self.output + '=1.0'])})`",
            )
        names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
        missing = [p for p in self.params if p not in names]
        extra = [n for n in names if n not in self.params]
        want = f"def {fn.name}({', '.join(self.params + [f'd{self.output}=1.0'])})"
        if missing:
            self.wrong_def(
                f"`{fn.name}` does not take the forward's input "
                f"{', '.join(f'`{m}`' for m in missing)}: write `{want}`"
            )
        if len(extra) > 1:
            self.wrong_def(
                f"`{fn.name}` takes {', '.join(f'`{e}`' for e in extra)} beside the forward's "
                f"inputs; it takes one upstream gradient: write `{want}`"
            )
        elif extra:
            self.upstream = extra[0]
            self.spelled[self.output] = extra[0]
        self.defined.update(self.params)
        # The upstream gradient is complete from the start (without one, it is 1).
        self.written[self.output] = fn.lineno
        self.received[self.output] = {}

    def wrong_def(self, message: str) -> None:
        v = self.lines[self.fn.lineno]
        v.ok = False
        v.messages.append(message)
        self.issues.append(GradeIssue(self.fn.lineno, self.src.error(self.fn, "").col, message))

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return  # a docstring
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            if isinstance(stmt, ast.AnnAssign):
                if stmt.value is None:
                    return
                targets, value = [stmt.target], stmt.value
            else:
                targets, value = stmt.targets, stmt.value
            if len(targets) != 1:
                raise Unreadable(stmt, "a chained assignment", "write one assignment per line")
            self.assign(stmt, targets[0], value)
            return
        if isinstance(stmt, ast.AugAssign):
            if not isinstance(stmt.target, ast.Name):
                raise Unreadable(stmt, "an assignment to a subscript or attribute", _NAMES)
            v = self.value_of_gradient(stmt.target.id)
            if v is None or not isinstance(stmt.op, ast.Add):
                raise Unreadable(
                    stmt,
                    f"`{ast.unparse(stmt.target)} {_op_text(stmt.op)}= ...`",
                    "grading reads gradients accumulated with `dv += ...`; give other values "
                    "one assignment each",
                )
            self.spelled.setdefault(v, stmt.target.id)
            meaning, reads = self.read(stmt.value)
            self.gradient(stmt, v, meaning, "+=", reads)
            return
        if isinstance(stmt, ast.Return):
            self.return_(stmt)
            return
        # Anything else (a print, an assert, pass, an import) computes no gradient.

    def read(self, node: ast.expr):
        self.reads = []
        meaning = self.reader.read(node)
        reads, self.reads = self.reads, []
        return meaning, reads

    def assign(self, stmt, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Tuple):
            if not (isinstance(value, ast.Tuple) and len(value.elts) == len(target.elts)):
                raise Unreadable(
                    stmt,
                    "a tuple assignment from something other than a tuple of the same length",
                    "write one assignment per line",
                )
            pairs = [(t, self.read(v)) for t, v in zip(target.elts, value.elts)]
        else:
            pairs = [(target, self.read(value))]
        for t, (meaning, reads) in pairs:
            if not isinstance(t, ast.Name):
                raise Unreadable(t, "an assignment to a subscript or attribute", _NAMES)
            self.assign_name(stmt, t.id, meaning, reads)

    def assign_name(self, stmt, name: str, meaning, reads) -> None:
        if self.upstream is not None and name == self.upstream:
            self.wrong(
                stmt,
                f"overwrites the upstream gradient `{name}`: it is given; gradients of other "
                "values are new names",
            )
            return
        if name in self.params:
            if self.fw.same(meaning, self.fw.symbol(name)) is None:
                self.wrong(
                    stmt, f"changes the input `{name}`: the backward reads the forward's inputs"
                )
            else:
                self.verdict(stmt, "replay")
            return
        if name in self.stages:
            self.replay(stmt, self.stages[name], meaning)
            return
        v = self.value_of_gradient(name)
        if v is not None:
            self.spelled.setdefault(v, name)
            self.gradient(stmt, v, meaning, "=", reads)
            return
        # a helper value (a local factor, a partial sum of gradients): its reads count here
        self.helpers[name] = meaning
        self.helper_reads[name] = list(dict.fromkeys(v for v, _ in reads))
        self.verdict(stmt, "helper")
        self.check_reads(stmt, reads)

    def replay(self, stmt, stage: Stage, meaning) -> None:
        if self.fw.same(meaning, self.fw.definition[stage.target]) is None:
            self.wrong(
                stmt,
                f"computes `{stage.target}` differently from the forward's stage ({stage.number}) "
                f"`{self.stage_text(stage)}`: replay it as the forward computes it",
            )
        else:
            self.verdict(stmt, "replay", (stage.number,))
        self.defined.add(stage.target)

    # -- gradient statements ---------------------------------------------------------------

    def gradient(self, stmt, v: str, meaning, op: str, reads) -> None:
        sp = self.sp
        line = stmt.lineno
        if v == self.output:
            if self.upstream is None and meaning.is_number:
                self.verdict(stmt, "gradient")  # the notes' seed, df = 1
                self.seeded = True
            else:
                self.wrong(stmt, f"writes the output's gradient `{self.gradient_name(v)}`")
            return
        own = self.grad(v)
        if op == "=" and meaning.has(own):
            if self.fw.same(sp.diff(meaning, own), sp.Integer(1)) is None:
                self.wrong(stmt, f"scales `{self.gradient_name(v)}` by a factor: contributions add")
                return
            meaning, op = meaning - own, "+="
            reads = [(g, n) for g, n in reads if g != v]
        elif op == "+=" and meaning.has(own):
            self.wrong(stmt, f"reads `{self.gradient_name(v)}` while adding to it")
            return
        gsyms = {s: g for g, s in self.gsym.items()}
        # The upstream gradients it reads, directly or through a helper value.
        present = {gsyms[s] for s in meaning.free_symbols if s in gsyms}
        upstreams = list(dict.fromkeys([g for g, _ in reads if g in present] + sorted(present)))
        if not upstreams and reads:
            # It reads upstream gradients but passes none of them on (its factor is 0, say a
            # condition that never holds): each is a contribution, to be checked as one.
            upstreams = list(dict.fromkeys(g for g, _ in reads))
        before = dict(self.received.get(v, {}))
        if not upstreams:
            if self.fw.same(meaning, sp.Integer(0)) is not None:
                self.zero(stmt, v, op, before)
                return
            if self.upstream is None and v in self.fw.reads.get(self.output, []):
                upstreams, meaning = [self.output], meaning * self.grad(self.output)
            else:
                readers = [s for s in self.program.stages if v in self.fw.reads[s.target]]
                hint = (
                    f": multiply the local gradient by `{self.gradient_name(readers[0].target)}`, "
                    f"the gradient flowing into stage ({readers[0].number})"
                    if len(readers) == 1
                    else ""
                )
                self.wrong(stmt, f"reads no upstream gradient (the chain rule){hint}")
                self.written[v] = line
                return
        coefficients = {u: sp.diff(meaning, self.grad(u)) for u in upstreams}
        extra = tuple(self.gsym.values())
        for u, c in coefficients.items():
            if c.free_symbols & set(gsyms):
                self.wrong(
                    stmt,
                    "multiplies gradients together: a contribution is a local "
                    "gradient times one upstream gradient",
                )
                return
        linear = sum((c * self.grad(u) for u, c in coefficients.items()), sp.Integer(0))
        if self.fw.same(meaning, linear, extra=extra) is None:
            self.wrong(stmt, "adds a term that reads no upstream gradient")
            return
        for u in upstreams:
            self.contribution(stmt, v, u, coefficients[u])
        self.check_reads(stmt, [(g, n) for g, n in reads if g != v])
        if op == "=" and before:
            last = max(before.values())
            self.wrong(
                stmt,
                f"`=` at a fork: `{self.gradient_name(v)}` already holds the gradient from line "
                f"{last}; write `{self.gradient_name(v)} += ...`",
            )
        elif op == "+=" and v not in self.written:
            self.wrong(
                stmt,
                f"`+=` before `{self.gradient_name(v)}` has a value: write its first "
                f"contribution with `{self.gradient_name(v)} = ...`",
            )
        self.written[v] = line

    def zero(self, stmt, v: str, op: str, before: dict) -> None:
        if op == "=" and before:
            self.wrong(
                stmt,
                f"sets `{self.gradient_name(v)}` to 0 after it received the gradient from line "
                f"{max(before.values())}",
            )
        else:
            self.verdict(stmt, "gradient")
        self.written.setdefault(v, stmt.lineno)
        self.received.setdefault(v, {})

    def contribution(self, stmt, v: str, u: str, coefficient) -> None:
        """The part of the statement that reads ``du``: stage ``u``'s contribution to ``dv``."""
        stage = self.stages.get(u)
        up = self.gradient_name(u)
        if stage is None:
            self.wrong(
                stmt, f"`{up}` is the gradient of the input `{u}`: no gradient flows on from it"
            )
            return
        self.verdict(stmt, "gradient", (stage.number,))
        received = self.received.setdefault(v, {})
        if v not in self.fw.reads[u]:
            self.wrong(
                stmt,
                f"stage ({stage.number}) `{self.stage_text(stage)}` does not read `{v}`: "
                f"`{up}` does not flow to `{self.gradient_name(v)}`",
            )
            return
        expected = self.fw.local(u, v)
        # At a tie the gate table's choice (the first input wins) is right too.
        local = local_gradients(stage.expr, out=Var(stage.target)).get(Var(v))
        at_ties = self.fw.conv.convert(local, {}) if local is not None else None
        method = self.fw.same(coefficient, expected, stage=u, at_ties=at_ties)
        if method is None:
            self.wrong(stmt, self.diagnose(stage, v, coefficient, expected))
        else:
            self.verdict(stmt, "gradient", method=method)
        if u in received:
            self.wrong(
                stmt,
                f"adds the gradient from stage ({stage.number}) `{self.stage_text(stage)}` to "
                f"`{self.gradient_name(v)}` again (line {received[u]} added it): it counts twice",
            )
            return
        received[u] = stmt.lineno

    def check_reads(self, stmt, reads) -> None:
        """Each upstream gradient read must hold all of its contributions already."""
        for g, node in dict(reads).items():
            if g == self.output:
                continue
            name = self.gradient_name(g)
            missing = [
                s for s in self.required.get(g, []) if s.target not in self.received.get(g, {})
            ]
            if g not in self.written:
                origin = (
                    f": it receives its gradient from stage ({missing[0].number}) "
                    f"`{self.stage_text(missing[0])}`, whose backprop comes first"
                    if missing
                    else ""
                )
                self.wrong(stmt, f"`{name}` is read before it is written{origin}", node=node)
            elif missing:
                s = missing[0]
                self.wrong(
                    stmt,
                    f"`{name}` is read before it is complete: the gradient from stage "
                    f"({s.number}) `{self.stage_text(s)}` has not been added to it yet "
                    f"(backprop stage ({s.number}) first)",
                    node=node,
                )

    # -- the diagnosis ---------------------------------------------------------------------

    def diagnose(self, stage: Stage, v: str, got, expected) -> str:
        same = self.fw.same
        sp = self.sp
        local = local_gradients(stage.expr, out=Var(stage.target)).get(Var(v))
        want = to_source(local, self.math_name) if local is not None else str(expected)
        up = self.gradient_name(stage.target)
        statement = (
            to_source(mul(local, Var(up)), self.math_name)
            if local is not None
            else f"{want} * {up}"
        )
        on = f"the gradient on `{v}` is `{statement}`"
        if same(got, sp.Integer(0)) is not None:
            return f"passes no gradient to `{v}`: {on}"
        if same(got, -expected) is not None:
            return f"wrong sign: {on}"
        found = gate_of(stage.expr)
        gate, inputs = found if found else (None, ())
        single = gate is not None and all(not gate_of(i) or _is_number(i) for i in inputs)
        name = gate.name if single else ""
        swappable = name == "mul" and Var(v) in inputs and inputs[0] != inputs[1]
        if swappable and same(got, self.fw.symbol(v)) is not None:
            return f"the mul gate swaps its inputs: {on}"
        if name == "power" and inputs[0] == Var(v) and _is_number(inputs[1]):
            n = to_source(inputs[1], self.math_name)
            return f"power rule: d/d{v} {v}**{n} is `{want}`, so {on}"
        factors = _factors(local) if local is not None else []
        if len(factors) <= MAX_FACTORS and (len(factors) > 1 or (factors and want != "1")):
            for k in range(len(factors)):
                for kept in itertools.combinations(range(len(factors)), k):
                    product = sp.Integer(1)
                    for i in kept:
                        product *= self.fw.conv.convert(factors[i], {})
                    if same(got, product, stage=stage.target) is None:
                        continue
                    if not kept:
                        whose = (
                            "the sigmoid's"
                            if name == "sigmoid"
                            else (f"the {name} gate's" if name else f"stage ({stage.number})'s")
                        )
                        return f"missing {whose} local gradient `{want}`: {on}"
                    lost = [
                        to_source(factors[i], self.math_name)
                        for i in range(len(factors))
                        if i not in kept
                    ]
                    return (
                        f"missing the factor{'s' if len(lost) > 1 else ''} "
                        f"{' and '.join(f'`{t}`' for t in lost)} of the local "
                        f"gradient `{want}`: {on}"
                    )
        behaviour = f" ({gate.behaviour})" if single else ""
        return (
            f"the local gradient should be `{want}`{behaviour}, this line gives "
            f"`{_sympy_text(sp, got)}`: {on}"
        )

    # -- the return ------------------------------------------------------------------------

    def return_(self, stmt: ast.Return) -> None:
        self.returned = True
        self.verdict(stmt, "return")
        if stmt.value is None:
            self.wrong(
                stmt,
                f"returns nothing: return `{', '.join(self.gradient_name(p) for p in self.params)}`",
            )
            return
        items = stmt.value.elts if isinstance(stmt.value, ast.Tuple) else [stmt.value]
        which: list[str | None] = []
        for item in items:
            meaning, _ = self.read(item)
            p = next((p for p in self.params if meaning == self.grad(p)), None)
            if p is None and self.fw.same(meaning, self.sp.Integer(0)) is None:
                self.wrong(
                    stmt,
                    f"returns `{ast.unparse(item)}`, which is not the gradient of an input",
                    node=item,
                )
                return
            which.append(p)
        if len(items) == len(self.params):
            order = list(self.params)
        else:
            order = [p for p in self.params if p in which]
            if None in which:
                self.wrong(
                    stmt, "returns 0 for an input it cannot name: return one gradient per input"
                )
                return
        want = ", ".join(self.gradient_name(p) for p in order)
        for p, got in zip(order, which):
            if got is not None and got != p:
                self.wrong(
                    stmt,
                    f"returns the gradients out of order: they come in the order of the inputs, "
                    f"`return {want}`",
                )
                return
            if got is None and self.required.get(p):
                self.wrong(
                    stmt,
                    f"returns 0 for `{p}`, which reaches the output: return `{self.gradient_name(p)}`",
                )
                return
        for p in order:
            missing = [
                s for s in self.required.get(p, []) if s.target not in self.received.get(p, {})
            ]
            if not missing:
                continue
            s = missing[0]
            name = self.gradient_name(p)
            local = local_gradients(s.expr, out=Var(s.target)).get(Var(p))
            add = (
                to_source(mul(local, Var(self.gradient_name(s.target))), self.math_name)
                if local is not None
                else "..."
            )
            if p not in self.written:
                self.wrong(
                    stmt,
                    f"`{name}` is never written: it receives the gradient of stage ({s.number}) `{self.stage_text(s)}`, `{name} = {add}`",
                )
            else:
                self.wrong(
                    stmt,
                    f"`{name}` is returned without the gradient from stage ({s.number}) "
                    f"`{self.stage_text(s)}`: add `{name} += {add}`",
                )


_NAMES = "grading reads assignments to plain names"
MAX_FACTORS = 5  # a local gradient of up to this many factors is searched for a missing one


def _op_text(op: ast.operator) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}.get(
        type(op), "?"
    )


def _is_number(e) -> bool:
    from .expr import Const, Neg, Num

    return isinstance(e, (Num, Const)) or (isinstance(e, Neg) and _is_number(e.operand))


def _factors(e) -> list:
    if isinstance(e, Bin) and e.op == "*":
        return _factors(e.left) + _factors(e.right)
    return [e]


def _sympy_text(sp, e) -> str:
    text = sp.sstr(e)
    return text.replace("*", " * ").replace(" *  * ", "**").replace("/", " / ")
