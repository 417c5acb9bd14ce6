"""Where a math call is sure to stay inside its domain, by a small sign analysis.

The backward replays a stage that calls log, sqrt, asin, ... (gates.DOMAIN_CHECKED) so that it
raises where the forward raises. When the argument is provably inside the domain, as in
``math.log(1 + math.exp(z))`` or ``math.sqrt(x * x + 1)``, that replay would be wasted work,
so the stage is left out. The analysis is deliberately simple and errs on the side of
replaying: anything it cannot prove counts as "may raise". It reasons about floats, not reals:
a product, quotient or power of positive numbers, or exp of anything, can underflow to 0.0,
so those count only as nonnegative; ``1 + (anything nonnegative)`` is positive.
"""

from __future__ import annotations

from .arrays.ir import Reduce
from .expr import Bin, Call, Const, Expr, Neg, Num, Var, walk
from .gates import DOMAIN_CHECKED
from .program import Program

POSITIVE, NONNEGATIVE, UNKNOWN = 2, 1, 0


class Signs:
    """Sign facts about every stage's value, learned in program order."""

    def __init__(self, program: Program):
        self.known: dict[str, int] = {}
        for stage in program.stages:
            self.known[stage.target] = self.sign(stage.expr)

    def sign(self, e: Expr) -> int:
        if isinstance(e, Num):
            return POSITIVE if e.value > 0 else NONNEGATIVE if e.value == 0 else UNKNOWN
        if isinstance(e, Const):
            return POSITIVE
        if isinstance(e, Var):
            return self.known.get(e.name, UNKNOWN)
        if isinstance(e, Neg):
            return UNKNOWN
        if isinstance(e, Bin):
            return self._binary(e)
        if isinstance(e, Call):
            return self._call(e)
        if isinstance(e, Reduce):
            if e.fn in ("var", "std", "norm"):
                return NONNEGATIVE
            inner = self.sign(e.operand)  # a sum, mean, max, min or product of its signs
            return NONNEGATIVE if inner >= NONNEGATIVE else UNKNOWN
        return UNKNOWN

    def _binary(self, e: Bin) -> int:
        a, b = self.sign(e.left), self.sign(e.right)
        if e.op == "+":
            return max(a, b) if min(a, b) >= NONNEGATIVE else UNKNOWN
        if e.op in "*/":
            if e.op == "*" and e.left == e.right:
                return NONNEGATIVE  # a square
            return NONNEGATIVE if min(a, b) >= NONNEGATIVE else UNKNOWN  # may underflow to 0.0
        if e.op == "**":
            exponent = e.right
            if a == POSITIVE or (isinstance(exponent, Num) and exponent.value % 2 == 0):
                return NONNEGATIVE  # a power of a positive number, or an even power
        return UNKNOWN

    def _call(self, e: Call) -> int:
        signs = [self.sign(a) for a in e.args]
        if e.fn == "cosh":
            return POSITIVE  # at least 1
        if e.fn in ("exp", "exp2"):
            return NONNEGATIVE  # exp(-800) is 0.0
        if e.fn == "square":
            return NONNEGATIVE
        if e.fn == "abs":
            return max(NONNEGATIVE, signs[0])
        if e.fn == "hypot":
            return POSITIVE if POSITIVE in signs else NONNEGATIVE
        if e.fn == "sqrt":
            return signs[0]  # the square root of a positive float never underflows
        if e.fn == "max":
            return max(signs)
        if e.fn == "min":
            return min(signs)
        return UNKNOWN

    def in_domain(self, call: Call) -> bool:
        """True when the call cannot raise a math domain error."""
        arg = self.sign(call.args[0])
        if call.fn in ("log", "log2", "log10"):
            return arg == POSITIVE and all(self.sign(b) == POSITIVE for b in call.args[1:])
        if call.fn == "log1p":
            return arg >= NONNEGATIVE
        if call.fn == "sqrt":
            return arg >= NONNEGATIVE
        if call.fn == "pow":
            return arg == POSITIVE
        return False  # asin, acos: the analysis knows no bounds


def may_raise(program: Program) -> set[str]:
    """Targets of the stages with a domain-checked math call the analysis cannot clear."""
    signs = Signs(program)
    return {
        stage.target
        for stage in program.stages
        if any(
            isinstance(node, Call) and node.fn in DOMAIN_CHECKED and not signs.in_domain(node)
            for node in walk(stage.expr)
        )
    }
