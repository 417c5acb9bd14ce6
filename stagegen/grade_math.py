"""The mathematics of grading: the forward's stages in SymPy, a hand-written backward's
expressions in SymPy, and the comparison of two expressions (symbolic when SymPy shows the
difference is zero within a bounded effort, else at sampled points in 50 digits).

The forward's stages are read by stagegen's own reader and put in SymPy by the proof's
``ToSymPy`` (the gate table's meanings). The backward is read here, from its syntax tree, by a
small reader of its own: it is the student's code, not stagegen's, so it is read as Python
means it (``float(x)`` is ``x``, ``a if c else b`` a piecewise expression).
"""

from __future__ import annotations

import ast
import itertools
import random
from dataclasses import dataclass, field

from .expr import Call, Var, leaves, walk
from .gates import FUNCTIONS
from .parse import MathNames
from .program import Program
from .proof import meaning
from .proof.local import ToSymPy

DIGITS = 50
POINTS = 8  # sample points the numeric comparison uses
PIECEWISE_POINTS = 64  # ... where a side has branches (max, min, abs, `a if c else b`)
ATTEMPTS = 15  # tries per point wanted, to find it inside the forward's domain
SYMBOLIC_LIMIT = 80  # operations in a difference up to which SymPy's expand/together are tried
BUILTIN_FUNCTIONS = {"abs", "max", "min", "pow"}


class Unreadable(Exception):
    """A construct of the backward that grading cannot read; carries the node."""

    def __init__(self, node, message: str, hint: str):
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


@dataclass
class Forward:
    """The forward in SymPy: a symbol per value, each stage's definition over the symbols of
    the values it reads, and sample points (every value's number) inside its domain."""

    program: Program
    conv: ToSymPy
    definition: dict[str, object] = field(default_factory=dict)  # stage target -> SymPy
    reads: dict[str, list[str]] = field(default_factory=dict)  # stage target -> names read
    points: list[dict] = field(default_factory=list)  # symbol -> sympy Float, per point
    locals: dict = field(default_factory=dict)  # (stage, value) -> its partial derivative
    rng: random.Random = field(default_factory=random.Random)
    tie_pairs: dict = field(default_factory=dict)  # stage -> its ties (see ties)
    attempts: int = 0

    @classmethod
    def of(cls, program: Program, seed: int = 0) -> Forward:
        fw = cls(program, ToSymPy())
        for stage in program.stages:
            fw.definition[stage.target] = fw.conv.convert(stage.expr, {})
            fw.reads[stage.target] = [leaf.name for leaf in leaves(stage.expr)]
        fw.rng = random.Random(seed)
        fw._sample(POINTS)
        return fw

    @property
    def sp(self):
        return self.conv.sp

    def symbol(self, name: str):
        return self.conv.symbol(Var(name))

    def local(self, target: str, of: str):
        """SymPy's partial derivative of stage ``target`` by the value ``of``."""
        key = (target, of)
        if key not in self.locals:
            self.locals[key] = self.sp.diff(self.definition[target], self.symbol(of))
        return self.locals[key]

    def flows(self, target: str, of: str) -> bool:
        """Whether stage ``target`` passes gradient to ``of``: it reads it, and its partial
        derivative by it is not zero (``a - a``; a value read only by a condition)."""
        if of not in self.reads[target]:
            return False
        local = self.local(target, of)
        if local == 0:
            return False
        for point in self.points[:1]:  # not zero at a point: no need to ask SymPy
            try:
                if not _near_zero(self.sp, local.xreplace(point)):
                    return True
            except (TypeError, ValueError):
                pass
        return not symbolically_zero(self.sp, local)

    def _sample(self, count: int) -> list[dict]:
        """At least ``count`` points (fewer if the domain is hard to hit), drawn on demand."""
        sp = self.sp
        params = [p.name for p in self.program.params]
        for _ in range(ATTEMPTS * count):
            if len(self.points) >= count:
                break
            self.attempts += 1
            # mostly both signs (a branch or a kink at 0 is met on both sides), some positive
            # (where a logarithm or a square root of an input is defined)
            low, high = (0.2, 2.0) if self.attempts % 4 == 0 else (-2.0, 2.0)
            point = {self.symbol(p): sp.Float(self.rng.uniform(low, high), DIGITS) for p in params}
            try:
                for target, definition in self.definition.items():
                    value = definition.xreplace(point).evalf(DIGITS)
                    if not _finite_real(sp, value):
                        raise ValueError(target)
                    point[self.symbol(target)] = value
            except (ValueError, TypeError, ZeroDivisionError, OverflowError):
                continue
            self.points.append(point)
        return self.points[:count]

    def ties(self, target: str) -> list[tuple]:
        """Pairs of SymPy values whose equality is a tie in stage ``target``: the inputs of
        each max and min, and each abs's input with 0. SymPy may simplify a tie away
        (min(max(a, b), b) is b), so they are read from the stage as written."""
        if target not in self.tie_pairs:
            pairs = []
            stage = next(s for s in self.program.stages if s.target == target)
            for node in walk(stage.expr):
                if isinstance(node, Call) and node.fn in ("max", "min"):
                    args = [self.conv.convert(a, {}) for a in node.args]
                    pairs += list(itertools.combinations(args, 2))
                elif isinstance(node, Call) and node.fn == "abs":
                    pairs.append((self.conv.convert(node.args[0], {}), self.sp.Integer(0)))
            self.tie_pairs[target] = pairs
        return self.tie_pairs[target]

    def _tied(self, target: str | None, values: dict) -> bool:
        if target is None:
            return False
        return any(_near_zero(self.sp, (p - q).xreplace(values)) for p, q in self.ties(target))

    # -- comparisons -----------------------------------------------------------------------

    def same(self, a, b, stage: str | None = None, extra=(), at_ties=None) -> str | None:
        """'symbolic' or 'sampled' when ``a`` equals ``b``, None when they differ at a sample
        point. ``stage``: a stage whose own value may be replaced by its definition (a local
        gradient read from the cached output, as (1 - sigx) * sigx); ``extra``: symbols
        (gradients) that take random values at each point; ``at_ties``: another right value
        of ``b`` where the stage's max, min or abs is at a tie (see ``ties``)."""
        sp = self.sp
        d = a - b
        if d == 0:
            return "symbolic"
        if stage is not None:
            d = d.xreplace({self.symbol(stage): self.definition[stage]})
        if symbolically_zero(sp, d):
            return "symbolic"
        checked = 0
        rng = random.Random(len(self.points))
        kinks = list(a.atoms(sp.Heaviside, sp.sign) | b.atoms(sp.Heaviside, sp.sign))
        branches = (sp.Piecewise, sp.Heaviside, sp.sign, sp.Max, sp.Min, sp.Abs)
        count = PIECEWISE_POINTS if a.has(*branches) or b.has(*branches) else POINTS
        for point in self._sample(count):
            values = dict(point)
            for s in extra:
                values[s] = sp.Float(rng.uniform(-2, 2), DIGITS)
            # At a tie of max or min, or abs at 0, SymPy's derivative is one choice among the
            # one-sided ones (Heaviside(0) = 1/2): any of them is a right gradient there.
            at = [k for k in kinks if _near_zero(sp, k.args[0].xreplace(values))]
            if len(at) > MAX_KINKS:
                continue
            try:
                x = a.xreplace(values).evalf(DIGITS)
                ys = [
                    b.xreplace(choice).xreplace(values).evalf(DIGITS) for choice in _sides(sp, at)
                ]
            except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                continue
            ys = [y for y in ys if _finite_real(sp, y)]
            if not (_finite_real(sp, x) and ys):
                continue  # outside a domain (a power of a negative number, say): no verdict here
            tolerance = sp.Float(10.0 ** -(DIGITS - 15))
            if not any(abs(x - y) <= tolerance * (1 + abs(y)) for y in ys):
                if at_ties is None or not self._tied(stage, values):
                    return None
                y = at_ties.xreplace(values).evalf(DIGITS)
                if not (_finite_real(sp, y) and abs(x - y) <= tolerance * (1 + abs(y))):
                    return None
            checked += 1
        return "sampled" if checked else "unchecked"


MAX_KINKS = 3  # ties at one point up to which each choice of sides is tried


def _sides(sp, kinks: list) -> list[dict]:
    """Each choice of one-sided derivative at the kinks: a Heaviside step 0 or 1, a sign -1,
    0 or 1 (none when there are no kinks: one empty choice)."""
    options = [(0, 1) if isinstance(k, sp.Heaviside) else (-1, 0, 1) for k in kinks]
    return [
        {k: sp.Integer(c) for k, c in zip(kinks, choice)} for choice in itertools.product(*options)
    ]


def _finite_real(sp, value) -> bool:
    try:
        return bool(value.is_real) and bool(value.is_finite)
    except (AttributeError, TypeError):
        return False


def _near_zero(sp, e) -> bool:
    try:
        value = e.evalf(DIGITS)
        return bool(abs(value) < sp.Float(10.0 ** -(DIGITS - 10)))
    except (TypeError, ValueError):
        return False


def symbolically_zero(sp, d) -> bool:
    if d == 0:
        return True
    if d.has(sp.Piecewise, sp.Heaviside, sp.sign, sp.Max, sp.Min, sp.Abs, sp.DiracDelta):
        return False
    if sp.count_ops(d) > SYMBOLIC_LIMIT:
        return False
    for step in (sp.expand, lambda e: sp.expand(sp.fraction(sp.together(e))[0])):
        try:
            if step(d) == 0:
                return True
        except Exception:  # SymPy gives up on some forms; the caller samples instead
            return False
    return False


class BackwardReader:
    """The expressions of a hand-written backward in SymPy. ``lookup(name, node)`` gives the
    meaning of a name (a symbol, or a helper's expression); the module's imports say what
    ``math.exp``, ``exp`` or ``m.exp`` are."""

    def __init__(self, forward: Forward, names: MathNames, lookup):
        self.fw = forward
        self.sp = forward.sp
        self.names = names
        self.lookup = lookup

    def read(self, node: ast.expr):
        sp = self.sp
        r = self.read
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (bool, int, float)):
                return meaning.number(sp, node.value)
            raise Unreadable(node, "a constant that is not a number", "gradients are numbers")
        if isinstance(node, ast.Name):
            if node.id in self.names.constants:
                return meaning.constant(sp, self.names.constants[node.id])
            return self.lookup(node.id, node)
        if isinstance(node, ast.Attribute):
            module = isinstance(node.value, ast.Name) and node.value.id in self.names.modules
            if module and node.attr in ("pi", "e", "tau"):
                return meaning.constant(sp, node.attr)
            raise Unreadable(
                node, f"`{ast.unparse(node)}` is not a number grading can read", _NUMBERS_ONLY
            )
        if isinstance(node, ast.UnaryOp):
            operand = r(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.Not):
                return sp.Not(operand)
        if isinstance(node, ast.BinOp):
            a, b = r(node.left), r(node.right)
            op = type(node.op)
            if op is ast.Add:
                return a + b
            if op is ast.Sub:
                return a - b
            if op is ast.Mult:
                return a * b
            if op is ast.Div:
                return a / b
            if op is ast.Pow:
                return a**b
        if isinstance(node, ast.IfExp):
            return sp.Piecewise((r(node.body), r(node.test)), (r(node.orelse), True))
        if isinstance(node, ast.Compare):
            relations = {
                ast.Gt: sp.Gt,
                ast.GtE: sp.Ge,
                ast.Lt: sp.Lt,
                ast.LtE: sp.Le,
                ast.Eq: sp.Eq,
                ast.NotEq: sp.Ne,
            }
            items, left = [], r(node.left)
            for op, comparator in zip(node.ops, node.comparators):
                if type(op) not in relations:
                    break
                right = r(comparator)
                items.append(relations[type(op)](left, right))
                left = right
            else:
                return items[0] if len(items) == 1 else sp.And(*items)
        if isinstance(node, ast.BoolOp):
            items = [r(v) for v in node.values]
            return sp.And(*items) if isinstance(node.op, ast.And) else sp.Or(*items)
        if isinstance(node, ast.Call) and not node.keywords:
            fn = self._function(node.func)
            if fn == "float" and len(node.args) == 1:
                return r(node.args[0])
            if fn is not None:
                try:
                    return meaning.function(sp, fn, [r(a) for a in node.args])
                except TypeError:
                    pass
        raise Unreadable(
            node, f"grading cannot read `{ast.unparse(node)}` in a backward", _NUMBERS_ONLY
        )

    def _function(self, func: ast.expr) -> str | None:
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in self.names.modules and func.attr in FUNCTIONS:
                return func.attr
            return None
        if isinstance(func, ast.Name):
            if func.id in self.names.functions:
                return self.names.functions[func.id]
            if func.id in BUILTIN_FUNCTIONS or func.id == "float":
                return func.id
        return None


_NUMBERS_ONLY = (
    "grading reads straight-line code over numbers: arithmetic, the math module's functions, "
    "abs, max, min and conditional expressions"
)
