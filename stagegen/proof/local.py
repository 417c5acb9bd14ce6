"""The local check: every gradient statement's local factor against SymPy's ``diff``.

Where a bug is, which line. Each statement of the backward (outside the intermediates, which
are checked through the statements that read them) prints a factor times the upstream
gradient; the factor must equal SymPy's derivative of the stage's right-hand side by the value
the statement differentiates: equal when the difference simplifies to zero within a bounded
effort, else compared at sampled points of the stage's own inputs in 50 digits (gates with
branches, such as max and abs, always are), and the check says which. It reads stagegen's own
stages, so it cannot see a stage that misreads the source: the end-to-end checks can.
"""

from __future__ import annotations

import random

from ..errors import VerificationError
from ..expr import leaves, mul, size
from ..program import Program
from ..report import LocalCheck
from ..reverse import Backward
from .common import BUG, DIGITS
from .sympy_numbers import MpmathFunction, ToSymPy, leaf_text

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


def check_locals(
    program: Program, backward: Backward, conv: ToSymPy, rng: random.Random
) -> list[LocalCheck]:
    sp = conv.sp
    checks = []
    for block in backward.blocks:
        stage = block.stage
        rhs = conv.convert(stage.expr, {})
        for st in block.statements:
            if st.intermediate:
                continue  # checked through the statements that read it
            # What is printed: the factor times the intermediate's local gradient, if any.
            local = mul(st.factor, st.via.local) if st.via is not None else st.local
            ours = conv.convert(local, {stage.target: rhs})
            theirs = sp.diff(rhs, conv.symbol(st.of))
            method = _is_zero(sp, ours - theirs, size(stage.expr))
            if method is None:
                method = _sampled_equal(program, stage, ours, theirs, conv, rng, st.of)
            checks.append(LocalCheck(stage.number, leaf_text(st.of), method))
    return checks


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
