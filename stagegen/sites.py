"""Where a forward decides: its branch sites, found in its source and recorded as it runs.

The proof runs the user's ``def`` (stagegen.oracle). To follow the path the forward takes at a
point, and to look for points on both sides of every branch, it runs a copy of that ``def``
whose decisions report themselves. ``instrument`` rewrites the copy's syntax tree, nothing
else:

* every comparison ``a < b`` (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``; each link of a
  chain ``a < b < c`` is a site of its own) becomes ``_stagegen_compare_(k, a, "<", b)``,
  which compares the operands' concrete values and records the outcome;
* every test on a value that is not a comparison (``if x:``, ``while n:``, ``a or b``,
  ``not x``, ``c if t else d``, a comprehension's ``if``) becomes ``_stagegen_test_(k, x)``,
  which records ``bool(x)`` and returns ``x`` itself;
* every call of ``abs``, ``fabs``, ``min`` or ``max`` becomes ``_stagegen_call_(k, f, ...)``,
  which calls ``f`` with site ``k`` current, so that a number that decides there (the proof's
  path values, stagegen.path_oracle) can record which way it went (a kink, not a branch).

A ``Recorder`` holds one run's decisions, in order (the path's key: the same decisions mean
the same straight-line function of the inputs), and the branch sites where the run passed too
close to a boundary (a kink too close is reported to the number that decided it): ``|a - b| <= BOUNDARY_RTOL * max(|a|, |b|) + BOUNDARY_ATOL``, where a
difference quotient may straddle the kink, or the float backward may decide otherwise than
the 50-digit forward. Only operands that depend on the inputs are measured so (integer loop
counters decide exactly). ``Coverage`` gathers the outcomes seen over the points.
"""

from __future__ import annotations

import ast
import copy
import numbers
import operator
from dataclasses import dataclass, field

BOUNDARY_RTOL = 1e-9  # relative distance to a branch's boundary below which a point is skipped
BOUNDARY_ATOL = 1e-15  # absolute floor of that distance (a comparison with 0)

COMPARE = "_stagegen_compare_"
CHAIN = "_stagegen_chain_"
TEST = "_stagegen_test_"
CALL = "_stagegen_call_"

_OPERATORS = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
OPERATIONS = dict(_OPERATORS.values())
DECIDING_CALLS = {"abs": "abs", "fabs": "abs", "min": "min", "max": "max"}


@dataclass(frozen=True)
class Site:
    """One place where the forward decides."""

    line: int
    col: int  # 1-based, as errors show it
    kind: str  # "compare" or "test" (branches); "abs", "min" or "max" (kinks)
    text: str  # the source text of the decision
    outcomes: int | None  # how many ways it can go (None: as many as the arguments it is given)

    @property
    def branch(self) -> bool:
        return self.kind in ("compare", "test")

    def where(self) -> str:
        return f"line {self.line}: `{self.text}`"


class _Instrumenter(ast.NodeTransformer):
    def __init__(self, text: str):
        self.text = text
        self.sites: list[Site] = []

    def site(self, node, kind: str, text: str | None = None, outcomes: int | None = 2) -> int:
        if text is None:
            text = ast.get_source_segment(self.text, node) or ast.unparse(node)
        self.sites.append(Site(node.lineno, node.col_offset + 1, kind, text, outcomes))
        return len(self.sites) - 1

    @staticmethod
    def call(name: str, node, args: list, keywords=()) -> ast.Call:
        return ast.copy_location(ast.Call(ast.Name(name, ast.Load()), args, list(keywords)), node)

    # comparisons
    def visit_Compare(self, node: ast.Compare):
        self.generic_visit(node)
        if not all(type(op) in _OPERATORS for op in node.ops):
            return node  # `is`, `in`: not a decision on a value
        operands = [node.left, *node.comparators]
        names = [_OPERATORS[type(op)][0] for op in node.ops]
        if len(names) == 1:
            k = self.site(node, "compare")
            return self.call(
                COMPARE,
                node,
                [ast.Constant(k), node.left, ast.Constant(names[0]), node.comparators[0]],
            )
        links = []
        for i, name in enumerate(names):
            left = ast.get_source_segment(self.text, operands[i]) or ast.unparse(operands[i])
            right = ast.get_source_segment(self.text, operands[i + 1]) or ast.unparse(
                operands[i + 1]
            )
            links.append(self.site(operands[i], "compare", f"{left} {name} {right}"))
        lazy = [_thunk(o) for o in operands]  # a chain evaluates its operands only as needed
        pairs = [ast.Tuple([ast.Constant(n), f], ast.Load()) for n, f in zip(names, lazy[1:])]
        return self.call(
            CHAIN,
            node,
            [
                ast.Tuple([ast.Constant(k) for k in links], ast.Load()),
                lazy[0],
                ast.Tuple(pairs, ast.Load()),
            ],
        )

    # tests on values
    def tested(self, node):
        visited = self.visit(node)
        if isinstance(node, (ast.Compare, ast.BoolOp, ast.Constant)):
            return visited  # recorded link by link, or not a decision
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return visited
        k = self.site(node, "test")
        return self.call(TEST, node, [ast.Constant(k), visited])

    def visit_If(self, node):
        node.test = self.tested(node.test)
        node.body = [self.visit(s) for s in node.body]
        node.orelse = [self.visit(s) for s in node.orelse]
        return node

    visit_While = visit_If

    def visit_IfExp(self, node):
        node.test = self.tested(node.test)
        node.body = self.visit(node.body)
        node.orelse = self.visit(node.orelse)
        return node

    def visit_Assert(self, node):
        node.test = self.tested(node.test)
        return node

    def visit_BoolOp(self, node):
        node.values = [self.tested(v) for v in node.values]
        return node

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            node.operand = self.tested(node.operand)
            return node
        return self.generic_visit(node)

    def visit_comprehension(self, node):
        node.target = self.visit(node.target)
        node.iter = self.visit(node.iter)
        node.ifs = [self.tested(t) for t in node.ifs]
        return node

    # calls that decide
    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute) and func.attr == "fabs":
            name = "fabs"
        kind = DECIDING_CALLS.get(name or "")
        if kind is None:
            return node
        outcomes = 2
        if kind != "abs":
            plain = not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)
            outcomes = len(node.args) if plain and len(node.args) >= 2 else None
        k = self.site(node, kind, outcomes=outcomes)
        return self.call(CALL, node, [ast.Constant(k), func, *node.args], node.keywords)


def _thunk(node) -> ast.Lambda:
    args = ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
    )
    return ast.copy_location(ast.Lambda(args, node), node)


def instrument(fn: ast.FunctionDef, text: str) -> tuple[ast.FunctionDef, list[Site]]:
    """A copy of the def whose decisions report to the functions bound as COMPARE, CHAIN, TEST
    and CALL (see ``Recorder.bindings``), and its sites (indexed by the ``k`` they pass)."""
    walker = _Instrumenter(text)
    copied = walker.visit(copy.deepcopy(fn))
    ast.fix_missing_locations(copied)
    return copied, walker.sites


# ---------------------------------------------------------------------------- one run


def _plain(value):
    return value


def _inexact(value) -> bool:
    """Whether a value is a computed number, whose decisions can sit on a boundary (an
    integer, a loop counter, decides exactly)."""
    return not isinstance(value, numbers.Integral) and hasattr(value, "__float__")


def near_boundary(a, b) -> bool:
    """Whether two concrete numbers are too close for a decision between them to be trusted
    under a central difference's step or a float run's rounding."""
    try:
        gap = abs(a - b)
        return gap <= BOUNDARY_RTOL * max(abs(a), abs(b)) + BOUNDARY_ATOL
    except TypeError:  # not numbers (arrays decide elementwise, not here)
        return False


@dataclass
class Recorder:
    """One run's decisions. ``concrete`` gives the number a value decides by (a path value's
    50-digit value, or the value itself); ``inexact`` whether it depends on the inputs."""

    sites: list[Site]
    concrete: object = _plain
    inexact: object = _inexact
    decisions: list[tuple[int, object]] = field(default_factory=list)
    near: list[int] = field(default_factory=list)  # sites decided too close to the boundary
    stack: list[int] = field(default_factory=list)

    def record(self, site: int, outcome, a=None, b=None, measured: bool = False) -> bool:
        """Record a decision; whether it was too close to its boundary (a branch site that was
        is listed in ``near``: the caller of a kink decides what its closeness means)."""
        self.decisions.append((site, outcome))
        close = measured and site >= 0 and near_boundary(a, b)
        if close and self.sites[site].branch and site not in self.near:
            self.near.append(site)
        return close

    # bound into the instrumented def
    def compare(self, site: int, a, name: str, b):
        ca, cb = self.concrete(a), self.concrete(b)
        result = OPERATIONS[name](ca, cb)
        if type(result).__name__ in ("bool", "bool_"):  # Python's, or a NumPy scalar's
            measured = self.inexact(a) or self.inexact(b)
            self.record(site, bool(result), ca, cb, measured)
        return result

    def chain(self, sites: tuple, first, links: tuple):
        left = first()
        result = True
        for site, (name, thunk) in zip(sites, links):
            right = thunk()
            result = self.compare(site, left, name, right)
            if not result:
                return result
            left = right
        return result

    def test(self, site: int, value):
        c = self.concrete(value)
        try:
            outcome = bool(c)
        except (TypeError, ValueError):  # an array's truth: NumPy's own error, raised by Python
            return value
        self.record(site, outcome, c, 0, self.inexact(value))
        return value

    def call(self, site: int, function, *args, **kwargs):
        self.stack.append(site)
        try:
            return function(*args, **kwargs)
        finally:
            self.stack.pop()

    def decide(self, outcome, a, b, measured: bool) -> int | None:
        """A decision taken by a function called at the current site (abs, min, max): ``a``
        and ``b`` are the concrete values it decided between. The site, when that was too
        close to the kink: only if the value decided flows into the output does the point sit
        on a kink (a convergence test's ``abs(y_next - y)`` tends to 0 and only decides a
        branch), which the caller follows."""
        site = self.stack[-1] if self.stack else -1
        return site if self.record(site, outcome, a, b, measured) else None

    def unlocated(self, outcome) -> None:
        """A decision made where no site was instrumented (a comparison inside a builtin)."""
        self.decisions.append((-1, outcome))

    def bindings(self) -> dict:
        return {COMPARE: self.compare, CHAIN: self.chain, TEST: self.test, CALL: self.call}


# ---------------------------------------------------------------------------- over the points


class Coverage:
    """The outcomes of each branch site seen over the points of a proof."""

    def __init__(self, sites: list[Site]):
        self.sites = sites
        self.seen: dict[int, set] = {k: set() for k in range(len(sites))}

    def outcomes(self, decisions) -> dict[int, set]:
        found: dict[int, set] = {}
        for site, outcome in decisions:
            if site >= 0:
                found.setdefault(site, set()).add(outcome)
        return found

    def adds(self, decisions) -> bool:
        """Whether a run's decisions include a branch outcome not seen yet."""
        return any(
            self.sites[k].branch and not outcomes <= self.seen[k]
            for k, outcomes in self.outcomes(decisions).items()
        )

    def add(self, decisions) -> None:
        for k, outcomes in self.outcomes(decisions).items():
            self.seen[k] |= outcomes

    def counts(self) -> tuple[int, int]:
        """(outcomes seen, outcomes there are) over the branch sites."""
        seen = total = 0
        for k, site in enumerate(self.sites):
            if site.branch:
                seen += len(self.seen[k])
                total += site.outcomes or max(2, len(self.seen[k]))
        return seen, total

    def complete(self) -> bool:
        seen, total = self.counts()
        return seen == total

    def unseen(self) -> list[str]:
        """The branch outcomes never seen, as ``line 5: `x < 0` never True``."""
        out = []
        for k, site in enumerate(self.sites):
            if site.branch and len(self.seen[k]) < 2:
                missing = {True, False} - self.seen[k]
                shown = " or ".join(str(m) for m in sorted(missing))
                out.append(f"{site.where()} never {shown}")
        return out

    def text(self) -> str:
        """``branches: 5 of 6 outcomes seen``, or "" for a forward without branches."""
        seen, total = self.counts()
        return f"branches: {seen} of {total} outcomes seen" if total else ""


__all__ = [
    "BOUNDARY_ATOL",
    "BOUNDARY_RTOL",
    "Coverage",
    "Recorder",
    "Site",
    "instrument",
    "near_boundary",
]
