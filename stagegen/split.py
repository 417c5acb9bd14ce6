"""--split: break compound right-hand sides into elementary stages, the way the notes stage
``f(x, y)`` by hand: ``sigy``, ``xpy``, ``xpysqr``, ``invden``...

Each gate of the gate table becomes a stage of its own (the sigmoid stays one gate, as in the
notes). Names are built from the operands when they are short (``x + y`` -> ``xpy``,
``xpy ** 2`` -> ``xpysqr``, ``1 / den`` -> ``invden``), and from the gate otherwise (``sum``,
``prod``). A subexpression that occurs twice in one statement becomes one stage.

A conditional expression stays one stage, as written: its sides run only where its test
chooses them, and a stage of their own would run them everywhere.

Array code (a program with ``numpy`` set) is split by the same rule: every elementwise gate is
a stage, and so is every structural operation (a product ``x.dot(w)`` or ``x @ w``, ``.T``, a
reshape, a reduction, an index), each named after what it does (``xdotw``, ``sumexp``). What
carries no gradient stays where it is written: index items (``np.arange(n)``, labels ``y``),
masks and shape reads. Each new stage gets its type, and each rebuilt expression the type of
the expression it replaces (a name stands for a value of the same shape), so the reverse sweep
reads every shape from ``program.types`` as it does for an unsplit program.
"""

from __future__ import annotations

import dataclasses
import itertools

from .arrays.ir import Dot, FullSlice, Index, NewAxis, Reduce, Reshape, Transpose, rebuild_array
from .expr import Bin, Call, Cond, Const, Elem, Expr, Neg, Num, Var
from .gates import sigmoid_input
from .names import usable
from .program import Branch, Loop, Program, Stage
from .types import dimension_names

_MAX_NAME = 9
_OP_LETTER = {"+": "p", "-": "m", "*": "t", "/": "d"}
_OP_WORD = {"+": "total", "-": "diff", "*": "prod", "/": "quot", "**": "power"}
_BUILTINS = {
    "abs",
    "max",
    "min",
    "pow",
    "sum",
    "round",
    "len",
    "list",
    "math",
    "id",
    "input",
    "type",
    "range",
}


def _is_operand(e: Expr) -> bool:
    """Leaves, numbers, constants, and a negated leaf stay inside their gate."""
    if isinstance(e, Neg):
        e = e.operand
    return isinstance(e, (Var, Elem, Num, Const))


def _short(e: Expr) -> str | None:
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Elem):
        return f"{e.name}{e.index}"
    if isinstance(e, Num) and isinstance(e.value, int) and 0 <= e.value < 100:
        return str(e.value)
    if isinstance(e, Neg):
        inner = _short(e.operand)
        return f"n{inner}" if inner else None
    return None


def _describe(e: Expr) -> str:
    """A readable name for the stage that computes ``e`` (its operands are already names)."""
    u = sigmoid_input(e)
    if u is not None:
        return f"sig{_short(u) or ''}"
    if isinstance(e, Bin):
        a, b = _short(e.left), _short(e.right)
        if e.op == "/" and isinstance(e.left, Num) and e.left.value == 1 and b:
            name = f"inv{b}"
        elif e.op == "**" and isinstance(e.right, Num) and e.right.value == 2 and a:
            name = f"{a}sqr"
        elif e.op == "**" and isinstance(e.right, Num) and e.right.value == 3 and a:
            name = f"{a}cube"
        elif e.op == "*" and isinstance(e.left, Num) and b:
            name = f"{b}s"  # a scaled input (the notes' f_a gate)
        elif a and b and e.op in _OP_LETTER and not a[0].isdigit():
            name = f"{a}{_OP_LETTER[e.op]}{b}"
        else:
            name = _OP_WORD[e.op]
        return name if len(name) <= _MAX_NAME else _OP_WORD[e.op]
    if isinstance(e, Neg):
        a = _short(e.operand)
        return f"n{a}" if a and len(a) < _MAX_NAME else "neg"
    if isinstance(e, Call):
        args = [_short(x) for x in e.args]
        joined = "".join(x for x in args if x) if all(args) else ""
        name = f"{e.fn}{joined}"
        return name if len(name) <= _MAX_NAME else e.fn
    if isinstance(e, Cond):
        return "chosen"
    return _describe_structural(e) or "t"


# A structural operation's name when its operand's name is too long to build on. (Not "sum" or
# "max": those would shadow the builtins.)
_STRUCTURAL_WORD = {
    "sum": "summed", "mean": "avg", "max": "peak", "min": "low", "prod": "product",
    "var": "variance", "std": "spread", "norm": "length",
}  # fmt: skip


def _describe_structural(e: Expr) -> str | None:
    """Names for the array operations: ``xdotw``, ``xT``, ``sumexp``, ``meanx``, ``xr``."""
    if isinstance(e, Dot):
        a, b = _short(e.left), _short(e.right)
        name = f"{a}dot{b}" if a and b else ""
        return name if name and len(name) <= _MAX_NAME else "dot"
    if isinstance(e, Transpose):
        a = _short(e.operand)
        return f"{a}T" if a and len(a) < _MAX_NAME else "transp"
    if isinstance(e, Reshape):
        a = _short(e.operand)
        return f"{a}r" if a and len(a) < _MAX_NAME else "reshaped"
    if isinstance(e, Reduce):
        a = _short(e.operand)
        name = f"{e.fn}{a}" if a else ""
        return name if name and len(name) <= _MAX_NAME else _STRUCTURAL_WORD[e.fn]
    if isinstance(e, Index):
        if all(isinstance(i, (FullSlice, NewAxis)) for i in e.items):
            return "expanded"  # only `:` and None: the same values with new axes
        return "picked"
    return None


class _Splitter:
    def __init__(self, program: Program):
        self.program = program
        # Typed values (array code): every value's type, by name, and every expression's, by
        # value, kept up to date for the new stages (number code records none: all are floats).
        self.typed = bool(program.types)
        # Every value's type, by name, and every expression's, by value; the new
        # stages and the rebuilt expressions are added to copies (the program read stays as is).
        self.types = dict(program.types)
        self.exprs = dict(program.types.get("<expressions>", {}))
        self.taken = (
            set(program.user_names)
            | {s.target for s in program.stages}
            | {p.name for p in program.params}
            | set(dimension_names(program))
        )
        if program.numpy:
            self.taken.add(program.numpy)  # the name NumPy is imported as
        # Nor d<name> of the user's names: an invented `den` beside a parameter `en` would take
        # the name of en's gradient. (Kept apart: these are not names anyone has bound.)
        self.avoided = {f"d{name}" for name in self.taken}
        self.stages: list[Stage] = []

    def fresh(self, base: str) -> str:
        if not base.isidentifier():  # e.g. "2sqr" from the constant 2 ** 2
            base = "t"
        candidates = [base] + [f"{base}_{k}" for k in range(1, 10_000)]
        chosen = next(
            c
            for c in candidates
            if usable(c, self.taken) and c not in _BUILTINS and c not in self.avoided
        )
        self.taken.add(chosen)
        return chosen

    def stage(self, original: Stage) -> None:
        if self.typed and not self._stageable(original.expr):
            self.stages.append(original)  # a mask or a size: kept whole, as written
            return
        memo: dict[Expr, Expr] = {}
        root = self._gate(original.expr, original, memo)
        self._retype(original.expr, root)
        self.stages.append(dataclasses.replace(original, expr=root))

    def _stageable(self, e: Expr) -> bool:
        """Array code: whether ``e`` may become a stage of its own. Only float values do: index
        items, masks and shape reads are integers or booleans (and `:` or None has no type)."""
        t = self.exprs.get(e)
        return t is not None and t.differentiable

    def _retype(self, original: Expr, new: Expr) -> None:
        """Give ``new`` (``original`` with some inputs replaced by stage names) and each of its
        rebuilt nodes the type of the node it stands for."""
        if not self.typed or new is original or original not in self.exprs:
            return
        self.exprs.setdefault(new, self.exprs[original])
        if isinstance(new, Var) and not isinstance(original, Var):
            return
        for a, b in zip(original.children(), new.children()):
            self._retype(a, b)

    def _gate(self, e: Expr, origin: Stage, memo: dict) -> Expr:
        """``e`` with every non-operand input replaced by the name of a new stage."""
        u = sigmoid_input(e)
        if u is not None:
            inner = self._operand(u, origin, memo)
            return e if inner is u else _sigmoid_of(e, inner)
        if isinstance(e, Cond):
            # One stage, kept whole: a side runs only where the test chooses it (a stage of
            # its own would run it everywhere: math.log(x) where x < 0).
            return e
        kids = e.children()
        if not kids:
            return e
        # The compound sides of a division are its numerator and denominator, as in the notes.
        roles = ("num", "den") if isinstance(e, Bin) and e.op == "/" else (None,) * len(kids)
        new = tuple(self._operand(k, origin, memo, role) for k, role in zip(kids, roles))
        return e if new == kids else rebuild_array(e, new)

    def _operand(self, e: Expr, origin: Stage, memo: dict, role: str | None = None) -> Expr:
        if _is_operand(e) or (self.typed and not self._stageable(e)):
            return e
        if e in memo:
            return memo[e]
        gate = self._gate(e, origin, memo)
        described = _describe(gate)
        if role and (described in _OP_WORD.values() or len(described) > 4):
            described = role
        name = self.fresh(described)
        self.stages.append(
            dataclasses.replace(origin, target=name, user_name=name, expr=gate, comment="")
        )
        memo[e] = Var(name)
        if self.typed:
            self._retype(e, gate)
            self.types[name] = self.exprs[e]
            self.exprs[memo[e]] = self.exprs[e]
        return memo[e]


def _sigmoid_of(original: Expr, u: Expr) -> Expr:
    """The sigmoid expression ``original`` with its input replaced by ``u``."""
    den = original.right
    one, ex = (den.left, den.right) if isinstance(den.right, Call) else (den.right, den.left)
    new_exp = Call("exp", (Neg(u),))
    new_den = Bin("+", one, new_exp) if den.left is one else Bin("+", new_exp, one)
    return Bin("/", original.left, new_den)


def split_program(program: Program) -> Program:
    splitter = _Splitter(program)
    body = _split_body(program.body, splitter)
    count = itertools.count(1)
    stages = _renumbered(body, count)
    types = program.types
    if splitter.typed:
        types = {**splitter.types, "<expressions>": splitter.exprs}
    return dataclasses.replace(
        program,
        body=stages,
        # the dimension names stay free: the backward binds them (N, D = x.shape)
        user_names=program.user_names | (splitter.taken - set(dimension_names(program))),
        types=types,
    )


def _split_body(body: list, splitter: "_Splitter") -> list:
    """Each stage of a block tree replaced by its split stages, in the same block."""
    out = []
    for node in body:
        if isinstance(node, Stage):
            first = len(splitter.stages)
            splitter.stage(node)
            out += splitter.stages[first:]
        elif isinstance(node, Branch):
            then = _split_body(node.then, splitter)
            out.append(
                dataclasses.replace(node, then=then, orelse=_split_body(node.orelse, splitter))
            )
        elif isinstance(node, Loop):
            out.append(dataclasses.replace(node, body=_split_body(node.body, splitter)))
        else:
            out.append(node)
    return out


def _renumbered(body: list, count) -> list:
    """The tree with every forward line numbered again, in program order."""
    out = []
    for node in body:
        number = next(count)
        if isinstance(node, Branch):
            then = _renumbered(node.then, count)
            node = dataclasses.replace(
                node, number=number, then=then, orelse=_renumbered(node.orelse, count)
            )
        elif isinstance(node, Loop):
            node = dataclasses.replace(node, number=number, body=_renumbered(node.body, count))
        else:
            node = dataclasses.replace(node, number=number)
        out.append(node)
    return out
