"""Scalar expressions: the one representation every stage of the pipeline shares.

Nodes are frozen dataclasses, so two expressions that read the same compare equal; that is
what lets the reverse sweep recognise a stage's own output inside its local gradient and
write ``(1 - sigy) * sigy`` instead of recomputing the sigmoid.

The constructors at the bottom (``add``, ``mul``, ...) simplify as they build, so derived
gradients never carry ``1 * d``, ``+ 0`` or ``--x`` noise. User expressions are built with
the plain classes and printed back as the user wrote them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union


class Expr:
    """Base of all expression nodes."""

    __slots__ = ()

    def children(self) -> tuple["Expr", ...]:
        return ()


@dataclass(frozen=True)
class Num(Expr):
    value: Union[int, float]
    text: str = field(default="", compare=False)  # the user's spelling, e.g. "1e3"


@dataclass(frozen=True)
class Const(Expr):
    name: str  # "pi" or "e", printed as math.pi / math.e


@dataclass(frozen=True)
class Var(Expr):
    name: str  # a parameter or a stage target, by its name in the generated code


@dataclass(frozen=True)
class Elem(Expr):
    name: str  # a list parameter (or its gradient list)
    index: "int | Expr"  # a constant, or a loop's index (Var("i"), i + 1)


@dataclass(frozen=True)
class Length(Expr):
    """``len(w)`` of list parameters; ``min(len(w), len(x))`` for several (a zip's length)."""

    lists: tuple[str, ...]


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Bin(Expr):
    op: str  # + - * / **
    left: Expr
    right: Expr

    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class Call(Expr):
    fn: str  # a key of gates.FUNCTIONS: "exp", "log", "max", ...
    args: tuple[Expr, ...]

    def children(self):
        return self.args


@dataclass(frozen=True)
class Compare(Expr):
    op: str  # > >= < <= == !=
    left: Expr
    right: Expr

    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class And(Expr):
    """Conditions that must all hold (a chained ``a < b < c`` is the And of its links)."""

    items: tuple[Expr, ...]

    def children(self):
        return self.items


@dataclass(frozen=True)
class Or(Expr):
    items: tuple[Expr, ...]

    def children(self):
        return self.items


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr

    def children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Cond(Expr):
    test: Expr
    body: Expr
    orelse: Expr

    def children(self):
        return (self.test, self.body, self.orelse)


@dataclass(frozen=True)
class Invoke(Expr):
    """A call to one of the module's own functions (``sigmoid(z)``, ``affine_forward(x, w,
    b)``), or, in a backward, to a backward (``sigmoid_backward(z, ds)``). ``returns`` is how
    many values it gives back (a tuple when more than one); ``gradients`` lists the positions
    of the arguments whose gradients the callee's backward returns, in order."""

    function: str
    args: tuple[Expr, ...]
    returns: int = 1
    gradients: tuple[int, ...] = ()
    defaults: tuple[Expr, ...] = ()  # the values of the parameters the call leaves out
    saved: tuple[int, ...] = ()  # the returned values that are saved values (no gradient)

    def children(self):
        return self.args

    def rebuilt(self, kids) -> "Invoke":
        return Invoke(
            self.function, tuple(kids), self.returns, self.gradients, self.defaults, self.saved
        )


@dataclass(frozen=True)
class Item(Expr):
    """``value[k]``: one of the values a call returns (``loss, scores = g(x)`` reads both)."""

    operand: Expr
    index: int

    def children(self):
        return (self.operand,)

    def rebuilt(self, kids) -> "Item":
        return Item(kids[0], self.index)


@dataclass(frozen=True)
class Several(Expr):
    """The gradients of a call's several outputs, in order, passed to its backward."""

    items: tuple[Expr, ...]

    def children(self):
        return self.items

    def rebuilt(self, kids) -> "Several":
        return Several(tuple(kids))


@dataclass(frozen=True)
class Saved(Expr):
    """``cache = (x, w, b)``: values kept together to be returned, as the course's forward
    passes return their caches. Saved values have no gradient, and nothing computes with them."""

    items: tuple[Expr, ...]


Leaf = Union[Var, Elem]
ZERO = Num(0)
ONE = Num(1)


# ---------------------------------------------------------------------------- traversal


def walk(e: Expr) -> Iterator[Expr]:
    """Every node, parents before children, left to right."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))


def leaves(e: Expr) -> list[Leaf]:
    """The variables and list elements an expression reads, in order of first appearance."""
    seen: dict[Leaf, None] = {}
    for node in walk(e):
        if isinstance(node, (Var, Elem)):
            seen.setdefault(node, None)
    return list(seen)


def rebuild(e: Expr, kids: tuple[Expr, ...]) -> Expr:
    if isinstance(e, Neg):
        return Neg(kids[0])
    if isinstance(e, Bin):
        return Bin(e.op, kids[0], kids[1])
    if isinstance(e, Call):
        return Call(e.fn, kids)
    if isinstance(e, Compare):
        return Compare(e.op, kids[0], kids[1])
    if isinstance(e, And):
        return And(kids)
    if isinstance(e, Or):
        return Or(kids)
    if isinstance(e, Not):
        return Not(kids[0])
    if isinstance(e, Cond):
        return Cond(kids[0], kids[1], kids[2])
    if hasattr(e, "rebuilt"):
        return e.rebuilt(kids)
    return e


def transform(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Rebuild ``e`` top-down; where ``fn`` returns an expression, that node is replaced."""
    replaced = fn(e)
    if replaced is not None:
        return replaced
    kids = e.children()
    if not kids:
        return e
    new = tuple(transform(k, fn) for k in kids)
    return e if new == kids else rebuild(e, new)


def substitute(e: Expr, mapping: dict[Expr, Expr]) -> Expr:
    return transform(e, mapping.get)


def size(e: Expr) -> int:
    return sum(1 for _ in walk(e))


# ---------------------------------------------------------------------------- printing

# Python's operator precedence, low to high.
_COND, _OR, _AND, _NOT, _CMP, _ADD = 0, 1, 2, 3, 4, 6
PREC_MUL, _UNARY, _POW, PREC_ATOM = 7, 8, 9, 10
_BIN_PREC = {"+": _ADD, "-": _ADD, "*": PREC_MUL, "/": PREC_MUL, "**": _POW}


def precedence_of(e: Expr) -> int:
    if isinstance(e, Num):
        return _UNARY if e.value < 0 else PREC_ATOM
    if isinstance(e, Neg):
        # -(a * b) prints as -a * b (see Printer), so it binds like the product, not like a
        # unary minus: as the right side of / or ** it needs its parentheses.
        inner = e.operand
        return _BIN_PREC[inner.op] if isinstance(inner, Bin) and inner.op in ("*", "/") else _UNARY
    if isinstance(e, Bin):
        return _BIN_PREC[e.op]
    if isinstance(e, Compare):
        return _CMP
    if isinstance(e, And):
        return _CMP if chain_of(e) is not None else _AND
    if isinstance(e, Or):
        return _OR
    if isinstance(e, Not):
        return _NOT
    if isinstance(e, Cond):
        return _COND
    # Nodes defined elsewhere (the array operations) say how tightly they bind: ``a @ b``
    # binds like a product, ``a.dot(b)`` like an atom.
    return getattr(e, "precedence", PREC_ATOM)


def format_number(value: Union[int, float]) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(value)


class Printer:
    """Prints expressions as Python source with the fewest parentheses that keep the meaning,
    plus a few that help the reader: ``(a / b) * c`` and ``(1 - s) * s``."""

    def __init__(self, math_name: str = "math"):
        self.math_name = math_name

    def __call__(self, e: Expr) -> str:
        return self.text(e)

    def _wrap(self, e: Expr, parens: bool) -> str:
        inner = self.text(e)
        return f"({inner})" if parens else inner

    def text(self, e: Expr) -> str:
        m = self.math_name
        if isinstance(e, Num):
            return e.text or format_number(e.value)
        if isinstance(e, Const):
            return f"{m}.{e.name}"
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Elem):
            index = e.index if isinstance(e.index, int) else self.text(e.index)
            return f"{e.name}[{index}]"
        if isinstance(e, Length):
            lengths = ", ".join(f"len({name})" for name in e.lists)
            return lengths if len(e.lists) == 1 else f"min({lengths})"
        if isinstance(e, Or):
            return " or ".join(self._wrap(i, precedence_of(i) <= _OR) for i in e.items)
        if isinstance(e, Not):
            return "not " + self._wrap(e.operand, precedence_of(e.operand) < _NOT)
        if isinstance(e, Neg):
            inner = e.operand
            if isinstance(inner, Bin) and inner.op in ("*", "/"):
                # -(a * b) prints as -a * b: negation is exact, so the value is the same.
                return self.text(Bin(inner.op, _negated(inner.left), inner.right))
            return "-" + self._wrap(inner, precedence_of(inner) < _UNARY)
        if isinstance(e, Bin):
            p = _BIN_PREC[e.op]
            if e.op == "**":
                # ** binds tighter than a unary minus on its left, looser on its right.
                left = self._wrap(e.left, precedence_of(e.left) <= _POW)
                right = self._wrap(e.right, precedence_of(e.right) < _UNARY)
                # black's spelling (so comments match the code): a name or number, possibly
                # negated, hugs `**`; a parenthesised operand does not: `(-a) ** b`
                hug = not left.startswith("(") and not right.startswith("(")
                if hug and _simple_power_operand(e.left) and _simple_power_operand(e.right):
                    return f"{left}**{right}"
            else:
                # (a / b) * c and (a @ b) * c: parentheses the reader would write anyway
                readable = (e.op == "*" and isinstance(e.left, Bin) and e.left.op == "/") or (
                    e.op in ("*", "/") and getattr(e.left, "precedence", None) == PREC_MUL
                )
                left = self._wrap(e.left, precedence_of(e.left) < p or readable)
                right = self._wrap(e.right, precedence_of(e.right) <= p)
            return f"{left} {e.op} {right}"
        if isinstance(e, Call):
            args = ", ".join(self.text(a) for a in e.args)
            if e.fn in ("abs", "max", "min"):
                return f"{e.fn}({args})"
            return f"{m}.{e.fn}({args})"
        if isinstance(e, Compare):
            left = self._wrap(e.left, precedence_of(e.left) <= _CMP)
            right = self._wrap(e.right, precedence_of(e.right) <= _CMP)
            return f"{left} {e.op} {right}"
        if isinstance(e, And):
            chain = chain_of(e)
            if chain is not None:  # 0 < x < 1, as the user wrote it
                operands, ops = chain
                parts = [self._wrap(operands[0], precedence_of(operands[0]) <= _CMP)]
                for op, operand in zip(ops, operands[1:]):
                    parts += [op, self._wrap(operand, precedence_of(operand) <= _CMP)]
                return " ".join(parts)
            return " and ".join(self._wrap(i, precedence_of(i) <= _AND) for i in e.items)
        if isinstance(e, Or):
            return " or ".join(self._wrap(i, precedence_of(i) <= _OR) for i in e.items)
        if isinstance(e, Not):
            return "not " + self._wrap(e.operand, precedence_of(e.operand) < _NOT)
        if isinstance(e, Invoke):
            return f"{e.function}({', '.join(self.text(a) for a in e.args)})"
        if isinstance(e, Item):
            return f"{self._wrap(e.operand, precedence_of(e.operand) < PREC_ATOM)}[{e.index}]"
        if isinstance(e, Several):
            return ", ".join(self.text(a) for a in e.items)
        if isinstance(e, Cond):
            body = self._wrap(e.body, precedence_of(e.body) <= _COND)
            test = self._wrap(e.test, precedence_of(e.test) <= _COND)
            return f"{body} if {test} else {self.text(e.orelse)}"
        raise TypeError(f"cannot print {e!r}")


def chain_of(e: And) -> tuple[list[Expr], list[str]] | None:
    """(operands, operators) when ``e`` is a chained comparison ``a < b <= c`` written out as
    the And of its links (each link's right operand the next one's left); None otherwise."""
    items = e.items
    if len(items) < 2 or not all(isinstance(i, Compare) for i in items):
        return None
    if any(a.right != b.left for a, b in zip(items, items[1:])):
        return None
    return [items[0].left, *(i.right for i in items)], [i.op for i in items]


def _negated(e: Expr) -> Expr:
    if isinstance(e, Bin) and e.op in ("*", "/"):
        return Bin(e.op, _negated(e.left), e.right)
    if isinstance(e, Neg):
        return e.operand
    return Neg(e)


def _simple_power_operand(e: Expr) -> bool:
    if isinstance(e, Neg):
        e = e.operand
    return isinstance(e, (Var, Num, Const))


def to_source(e: Expr, math_name: str = "math") -> str:
    return Printer(math_name).text(e)


# ---------------------------------------------------------------------------- simplifying constructors


def is_num(e: Expr, value=None) -> bool:
    return isinstance(e, Num) and (value is None or e.value == value)


def num(value: Union[int, float]) -> Expr:
    """A number; negative ones as Neg so that printing and matching stay uniform."""
    if value < 0:
        return Neg(Num(-value))
    return Num(value)


def number_value(e: Expr):
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Neg) and isinstance(e.operand, Num):
        return -e.operand.value
    return None


def _fold(op: str, a, b):
    """Fold two numbers when the result is exact enough to print back; None otherwise."""
    try:
        if op == "+":
            r = a + b
        elif op == "-":
            r = a - b
        elif op == "*":
            r = a * b
        elif op == "/":
            r = a / b
        else:
            if isinstance(a, int) and isinstance(b, int) and 0 <= b <= 64:
                r = a**b
            else:
                return None
    except (ZeroDivisionError, OverflowError):
        return None
    if isinstance(r, float) and not math.isfinite(r):
        return None
    if isinstance(r, float) and not _exact(op, a, b, r):
        return None  # 1 / 9 stays 1 / 9: a rounded constant would change the gradient's last bits
    return r


def _exact(op: str, a, b, r: float) -> bool:
    """Whether the folded float's decimal spelling is exactly the true result."""
    from fractions import Fraction

    fa, fb = Fraction(repr(a)), Fraction(repr(b))
    true = {"+": fa + fb, "-": fa - fb, "*": fa * fb, "/": fa / fb if fb else None}.get(op)
    return true is not None and Fraction(repr(r)) == true


def neg(a: Expr) -> Expr:
    v = number_value(a)
    if v == 0:
        return a  # the zero side of a selection stays 0.0, not -0.0
    if v is not None:
        return num(-v)
    if isinstance(a, Neg):
        return a.operand
    if isinstance(a, Bin) and a.op == "-":
        return Bin("-", a.right, a.left)
    if isinstance(a, Cond):  # -(d if t else 0.1 * d) is -d if t else -0.1 * d
        return select(a.test, neg(a.body), neg(a.orelse))
    return Neg(a)


def add(a: Expr, b: Expr) -> Expr:
    va, vb = number_value(a), number_value(b)
    if va is not None and vb is not None:
        r = _fold("+", va, vb)
        if r is not None:
            return num(r)
    if va == 0:
        return b
    if vb == 0:
        return a
    # Two selections on one test add side by side: the gradient of ``x if x > 0 else 0.1 * x``
    # reads ``d if x > 0 else 0.1 * d``, not the sum of two selections.
    if isinstance(a, Cond) and isinstance(b, Cond) and a.test == b.test:
        return select(a.test, _plus(a.body, b.body), _plus(a.orelse, b.orelse))
    # ... also where the first is a term of a sum: (p + (1 if t else 0.0)) + (0.0 if t else q)
    if isinstance(b, Cond) and isinstance(a, Bin) and a.op == "+":
        if isinstance(a.right, Cond) and a.right.test == b.test:
            return add(a.left, add(a.right, b))
        if isinstance(a.left, Cond) and a.left.test == b.test:
            return add(add(a.left, b), a.right)
    # A number adds into each side: ``1 + (0.0 if t else 0.2 * x)`` is ``1 if t else ...``.
    for x, y in ((a, b), (b, a)):
        if number_value(x) is not None and isinstance(y, Cond):
            return select(y.test, _plus(y.body, x), _plus(y.orelse, x))
    if isinstance(b, Neg):
        return sub(a, b.operand)
    if isinstance(a, Neg):
        return sub(b, a.operand)
    if a == b:
        return mul(Num(2), a)
    return Bin("+", a, b)


def sub(a: Expr, b: Expr) -> Expr:
    va, vb = number_value(a), number_value(b)
    if va is not None and vb is not None:
        r = _fold("-", va, vb)
        if r is not None:
            return num(r)
    if vb == 0:
        return a
    if va == 0:
        return neg(b)
    if isinstance(a, Cond) and isinstance(b, Cond) and a.test == b.test:
        return add(a, neg(b))
    if isinstance(b, Neg):
        return add(a, b.operand)
    if a == b:
        return Num(0)
    return Bin("-", a, b)


def mul(a: Expr, b: Expr) -> Expr:
    va, vb = number_value(a), number_value(b)
    if va is not None and vb is not None:
        r = _fold("*", va, vb)
        if r is not None:
            return num(r)
    if va == 0 or vb == 0:
        return a if va == 0 else b  # keeps 0.0 a float
    if va == 1:
        return b
    if vb == 1:
        return a
    if va == -1:
        return neg(b)
    if vb == -1:
        return neg(a)
    if isinstance(a, Neg):
        return neg(mul(a.operand, b))
    if isinstance(b, Neg):
        return neg(mul(a, b.operand))
    # (1 / 9) * d reads better, and rounds once, as d / 9.
    for x, y in ((a, b), (b, a)):
        if (
            isinstance(x, Bin)
            and x.op == "/"
            and number_value(x.left) == 1
            and number_value(x.right) is not None
        ):
            return div(y, x.right)
    # A selector times a factor: move the factor into the branches that are not zero,
    # so a max gate reads ``dz = dm if z >= w else 0.0``. Not where both hold several
    # selections: each would be copied into every side of the other, and a product of k
    # conditional expressions would give 2**k sides.
    if (isinstance(a, Cond) or isinstance(b, Cond)) and _distributes(a, b):
        if isinstance(a, Cond):
            return select(a.test, mul(a.body, b), mul(a.orelse, b))
        return select(b.test, mul(a, b.body), mul(a, b.orelse))
    # Numbers and constants go first (so x * pi + pi * x is seen as a double), and
    # numbers gather: 2 * (3 * x) -> 6 * x.
    if vb is not None or (isinstance(b, Const) and va is None and not isinstance(a, Const)):
        a, b, va, vb = b, a, vb, va
    if va is not None and isinstance(b, Bin) and b.op == "*":
        inner = number_value(b.left)
        if inner is not None:
            r = _fold("*", va, inner)
            if r is not None:
                return mul(num(r), b.right)
    if a == b:
        return Bin("**", a, Num(2))
    return Bin("*", a, b)


def div(a: Expr, b: Expr) -> Expr:
    va, vb = number_value(a), number_value(b)
    if va is not None and vb is not None:
        r = _fold("/", va, vb)
        if r is not None:
            return num(r)
    if va == 0:
        return Num(0)
    if vb == 1:
        return a
    if vb == -1:
        return neg(a)
    if isinstance(a, Neg):
        return neg(div(a.operand, b))
    if isinstance(b, Neg):
        return neg(div(a, b.operand))
    return Bin("/", a, b)


def power(a: Expr, b: Expr) -> Expr:
    vb = number_value(b)
    if vb == 1:
        return a
    if vb == 0:
        return Num(1)
    va = number_value(a)
    if va is not None and vb is not None:
        r = _fold("**", va, vb)
        if r is not None:
            return num(r)
    return Bin("**", a, b)


def select(test: Expr, body: Expr, orelse: Expr) -> Expr:
    """``body if test else orelse``; a side that tests the same condition again is already
    decided (``(a if t else b) if t else c`` is ``a if t else c``)."""
    if isinstance(body, Cond) and body.test == test:
        body = body.body
    if isinstance(orelse, Cond) and orelse.test == test:
        orelse = orelse.orelse
    if body == orelse:
        return body
    return Cond(test, body, orelse)


DISTRIBUTED_SELECTIONS = 4  # selections in a product up to which it is written side by side


def _distributes(a: Expr, b: Expr) -> bool:
    """Whether ``a * b``, one of them a selection, is written as a selection of products."""
    counts = [sum(1 for n in walk(e) if isinstance(n, Cond)) for e in (a, b)]
    return min(counts) == 0 or sum(counts) <= DISTRIBUTED_SELECTIONS


def _plus(a: Expr, b: Expr) -> Expr:
    """``a + b`` for the sides of two selections: a zero side adds nothing (``2 + 0.0`` stays
    ``2``, so the gradient does not read ``2.0 * d``)."""
    if number_value(b) == 0:
        return a
    if number_value(a) == 0:
        return b
    return add(a, b)
