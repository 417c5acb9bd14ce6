"""The driver: one function's proof, for numbers and arrays alike.

It takes the user's ``def`` from the source text (the references run that, never stagegen's
stages or printed code), seeds the function's random numbers, runs every check of the
function's kind, and assembles the report: the references the checks used, the points, the
largest errors. A function whose values are all numbers (shape ``()``, and lists of numbers)
is checked against references for numbers: SymPy's local derivative of every stage, and the
forward as written run on 50-digit numbers (stagegen.proof.numbers); any other function
element by element (stagegen.proof.arrays). The measure is the same (proof.common.agree).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..program import Program
from ..report import FunctionReport
from ..reverse import Backward
from ..types import Types
from . import arrays, numbers
from ..oracle import UserFunction
from .common import user_function_of


@dataclass
class Trial:
    """One function under proof: what every check reads, and the report they fill in."""

    program: Program
    backward: Backward
    backward_fn: object  # the generated ``<name>_backward``, loaded from the module text
    points: int
    report: FunctionReport
    user: UserFunction  # the forward as written
    rng: object  # the function's random numbers (Python's for numbers, NumPy's for arrays)


def route_of(program: Program):
    """The checks for the function's kind: numbers (every value of shape ``()``, where the
    reader records no types) or arrays."""
    return numbers if Types(program).numbers_only else arrays


def check_function(
    program: Program, backward: Backward, backward_fn, points: int = 5, source: str | None = None
) -> FunctionReport:
    """Prove one function's generated backward; raises VerificationError on a disagreement."""
    user = user_function_of(program, source)
    if program.returns > 1:  # checked as the weighted sum of the outputs (not saved values)
        user.weights = [1.0] * len(program.outputs)
        user.positions = program.positions
    route = route_of(program)
    report = FunctionReport(program.name, len(program.stages))
    trial = Trial(
        program, backward, backward_fn, points, report, user, route.random_numbers(program)
    )
    outcomes = route.checks(trial)
    report.reference = " and ".join(o.summary for o in outcomes if o.summary)
    report.max_abs_error = max((o.max_abs for o in outcomes), default=0.0)
    report.max_rel_error = max((o.max_rel for o in outcomes), default=0.0)
    return report


__all__ = ["Trial", "check_function", "route_of"]
