"""The local check: every gradient statement's local factor against SymPy's ``diff``.

Where a bug is, which line (for functions of numbers, whose stages ``ToSymPy`` reads). Each statement of the backward (outside the intermediates, which
are checked through the statements that read them) prints a factor times the upstream
gradient; the factor must equal SymPy's derivative of the stage's right-hand side by the value
the statement differentiates: equal when the difference simplifies to zero within a bounded
effort, else compared at sampled points of the stage's own inputs in 50 digits (gates with
branches, such as max and abs, always are), and the check says which. A stage with
conditional expressions is checked once per choice of sides: with each test decided, stage and
gradient are free of branches, and SymPy compares them exactly. It reads stagegen's own
stages, so it cannot see a stage that misreads the source: the end-to-end checks can.
"""

from __future__ import annotations

import itertools
import random

from ..errors import VerificationError
from ..expr import (
    And,
    Bin,
    Call,
    Invoke,
    Item,
    Compare,
    Cond,
    Const,
    Elem,
    Expr,
    Neg,
    Not,
    Num,
    Or,
    Var,
    leaves,
    mul,
    size,
    to_source,
    transform,
    walk,
)
from ..program import Program
from ..report import LocalCheck
from ..reverse import Backward
from . import meaning
from .common import BUG, DIGITS, MpmathCode, index_text

# ---------------------------------------------------------------------------- to SymPy


class ToSymPy:
    """Our expressions as SymPy expressions, with exact rationals for the literals."""

    def __init__(self):
        import sympy

        self.sp = sympy
        self.symbols: dict[str, object] = {}

    def symbol(self, leaf: Var | Elem):
        key = leaf_text(leaf)
        if key not in self.symbols:
            self.symbols[key] = self.sp.Symbol(key, real=True)
        return self.symbols[key]

    def convert(self, e: Expr, values: dict) -> object:
        sp = self.sp
        c = lambda x: self.convert(x, values)  # noqa: E731
        if isinstance(e, Num):
            return meaning.number(sp, e.value)
        if isinstance(e, Const):
            return meaning.constant(sp, e.name)
        if isinstance(e, (Var, Elem)):
            key = leaf_text(e)
            return values[key] if key in values else self.symbol(e)
        if isinstance(e, Neg):
            return -c(e.operand)
        if isinstance(e, Bin):
            a, b = c(e.left), c(e.right)
            return {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "**": lambda: a**b,
            }[e.op]()
        if isinstance(e, Call):
            args = [c(a) for a in e.args]
            return self.function(e.fn, args)
        if isinstance(e, Compare):
            a, b = c(e.left), c(e.right)
            relation = {">": sp.Gt, ">=": sp.Ge, "<": sp.Lt, "<=": sp.Le, "==": sp.Eq, "!=": sp.Ne}
            return relation[e.op](a, b)
        if isinstance(e, And):
            return sp.And(*[c(i) for i in e.items])
        if isinstance(e, Or):
            return sp.Or(*[c(i) for i in e.items])
        if isinstance(e, Not):
            return sp.Not(c(e.operand))
        if isinstance(e, Cond):
            return sp.Piecewise((c(e.body), c(e.test)), (c(e.orelse), True))
        raise TypeError(f"cannot convert {e!r}")

    def function(self, fn: str, args: list):
        return meaning.function(self.sp, fn, args)


def leaf_text(leaf: Var | Elem) -> str:
    """``x`` for a number, ``w[2]`` for an element of a list (as the symbols are named)."""
    if isinstance(leaf, Elem) and not isinstance(leaf.index, int):
        return f"{leaf.name}[{to_source(leaf.index)}]"  # an element a loop index reads
    return index_text(leaf.name, () if isinstance(leaf, Var) else (leaf.index,))


class MpmathFunction:
    """Several SymPy expressions of the same inputs, evaluated together at a point."""

    def __init__(self, title: str, inputs: list, exprs: list):
        code = MpmathCode()
        self.inputs = inputs
        results = ", ".join(f"real({code.text(e)})" for e in exprs)
        self.run = code.compile(title, inputs, [], f"[{results}]")

    def at(self, point: dict) -> list:
        """Values in the order of the expressions; ``point`` maps each input (symbol or
        name) to a float, in the order of the inputs."""
        return self.run(*point.values())


# ---------------------------------------------------------------------------- the check


SIMPLIFY_LIMIT = 14  # stage size (nodes) up to which SymPy's simplify() is affordable
EXPAND_LIMIT = 60  # stage size up to which expanding the difference is affordable


def _is_zero(sp, d, stage_size: int) -> str | None:
    """'symbolic' when SymPy shows d == 0 within a bounded effort, None otherwise.

    SymPy has no time limits, and cancel() or simplify() can run for minutes on a compound
    stage; so only cheap steps are tried on larger stages, and the caller samples instead."""
    if d == 0:
        return "symbolic"
    if d.has(sp.Piecewise, sp.Heaviside, sp.sign, sp.Max, sp.Min, sp.Abs, sp.DiracDelta):
        return None
    if stage_size > EXPAND_LIMIT or any(
        p.exp.is_Integer and abs(p.exp) > 8 for p in d.atoms(sp.Pow)
    ):
        return None
    steps = [sp.expand, lambda e: sp.expand(sp.fraction(sp.together(e))[0])]
    if stage_size <= SIMPLIFY_LIMIT:
        steps.append(sp.simplify)
    for step in steps:
        try:
            if step(d) == 0:
                return "symbolic"
        except Exception:  # SymPy may give up on some forms; then we sample
            return None
    return None


SIDES_LIMIT = 5  # distinct tests in one stage up to which each choice of sides is checked


def tests_of(e: Expr) -> list[Expr]:
    """The distinct tests of the conditional expressions in ``e``, in order."""
    found: dict[Expr, None] = {}
    for node in walk(e):
        if isinstance(node, Cond):
            found.setdefault(node.test, None)
    return list(found)


def decided(e: Expr, outcomes: dict[Expr, bool]) -> Expr:
    """``e`` with each conditional expression whose test has an outcome replaced by the side
    that outcome takes."""

    def choose(node: Expr) -> Expr | None:
        if isinstance(node, Cond) and node.test in outcomes:
            return decided(node.body if outcomes[node.test] else node.orelse, outcomes)
        return None

    return transform(e, choose)


def check_locals(
    program: Program, backward: Backward, conv: ToSymPy, rng: random.Random
) -> list[LocalCheck]:
    """Each statement's local gradient against SymPy's derivative of its stage. A stage with
    conditional expressions is checked once per choice of sides (each test true, then false),
    on the branch-free stage and gradient that choice leaves: the gradient of the side the
    forward takes is the derivative of that side, wherever the test holds."""
    checks = []
    for block in backward.blocks:
        stage = block.swept or block.stage
        if isinstance(stage.expr, (Invoke, Item)):
            # A call's gradients are its callee's backward, proven on its own; the caller's
            # end-to-end check covers how they are passed on.
            checks += [
                LocalCheck(stage.number, leaf_text(st.of), "callee")
                for st in block.statements
                if not st.intermediate
            ]
            continue
        tests = tests_of(stage.expr)
        if len(tests) > SIDES_LIMIT:
            tests = []  # too many choices: the stage is read as a Piecewise and sampled
        choices = [dict(zip(tests, c)) for c in itertools.product((True, False), repeat=len(tests))]
        for st in block.statements:
            if st.intermediate:
                continue  # checked through the statements that read it
            # What is printed: the factor times the intermediate's local gradient, if any.
            local = mul(st.factor, st.via.local) if st.via is not None else st.local
            methods = [
                _check_one(program, stage, decided(stage.expr, c), decided(local, c), st, conv, rng)
                for c in choices
            ]
            method = "symbolic" if all(m == "symbolic" for m in methods) else "sampled"
            checks.append(LocalCheck(stage.number, leaf_text(st.of), method))
    return checks


def _check_one(program, stage, expr: Expr, local: Expr, st, conv: ToSymPy, rng) -> str:
    """'symbolic' or 'sampled': the local gradient ``local`` of the stage ``expr`` (the stage's
    right-hand side, or the side a choice of tests leaves of it) by ``st.of``; raises if not."""
    sp = conv.sp
    rhs = conv.convert(expr, {})
    ours = conv.convert(local, {stage.target: rhs})
    theirs = sp.diff(rhs, conv.symbol(st.of))
    method = _is_zero(sp, ours - theirs, size(expr))
    if method is None:
        method = _sampled_equal(program, stage, ours, theirs, conv, rng, st.of)
    return method


def _sampled_equal(program, stage, ours, theirs, conv, rng, of) -> str:
    """Compare two local gradients at random points of the stage's own inputs, in 50 digits."""
    inputs = sorted({conv.symbol(l) for l in leaves(stage.expr)}, key=str)
    both = MpmathFunction(f"local gradient of stage ({stage.number})", inputs, [ours, theirs])
    agreed = 0
    for attempt in range(60):
        subs = {s: rng.uniform(-2, 2) if attempt % 2 else rng.uniform(0.2, 2) for s in inputs}
        try:
            a, b = both.at(subs)
        except (ValueError, TypeError, ZeroDivisionError):
            continue
        if abs(a - b) > 10.0 ** (-DIGITS + 10) * (1 + abs(b)):
            raise VerificationError(
                f"local gradient of stage ({stage.number}) `{stage.target}` with respect to `{leaf_text(of)}` "
                f"is {ours}, but SymPy's derivative is {theirs} (they differ at "
                + ", ".join(f"{k}={float(v):.6g}" for k, v in subs.items())
                + ")",
                BUG,
                filename=program.filename,
                line=stage.line,
                col=stage.col,
            )
        agreed += 1
        if agreed >= 5:
            return "sampled"
    raise VerificationError(
        f"could not check the local gradient of stage ({stage.number}) `{stage.target}` with respect to `{leaf_text(of)}`: "
        "SymPy could not simplify the difference, and no sample point was in the domain",
        "this is a limitation of the checker; run with --no-verify to skip it",
        filename=program.filename,
        line=stage.line,
        col=stage.col,
    )
