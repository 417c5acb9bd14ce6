"""--split: break compound right-hand sides into elementary stages, the way the notes stage
``f(x, y)`` by hand: ``sigy``, ``xpy``, ``xpysqr``, ``invden``...

Each gate of the gate table becomes a stage of its own (the sigmoid stays one gate, as in the
notes). Names are built from the operands when they are short (``x + y`` -> ``xpy``,
``xpy ** 2`` -> ``xpysqr``, ``1 / den`` -> ``invden``), and from the gate otherwise (``sum``,
``prod``). A subexpression that occurs twice in one statement becomes one stage.
"""

from __future__ import annotations

import dataclasses

from .expr import Bin, Call, Const, Elem, Expr, Neg, Num, Var, rebuild
from .gates import sigmoid_input
from .names import usable
from .program import Program, Stage

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
    return "t"


class _Splitter:
    def __init__(self, program: Program):
        self.program = program
        self.taken = (
            set(program.user_names)
            | {s.target for s in program.stages}
            | {p.name for p in program.params}
        )
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
        memo: dict[Expr, Expr] = {}
        root = self._gate(original.expr, original, memo, is_root=True)
        self.stages.append(dataclasses.replace(original, expr=root))

    def _gate(self, e: Expr, origin: Stage, memo: dict, is_root: bool = False) -> Expr:
        """``e`` with every non-operand input replaced by the name of a new stage."""
        u = sigmoid_input(e)
        if u is not None:
            inner = self._operand(u, origin, memo)
            return e if inner is u else _sigmoid_of(e, inner)
        kids = e.children()
        if not kids:
            return e
        # The compound sides of a division are its numerator and denominator, as in the notes.
        roles = ("num", "den") if isinstance(e, Bin) and e.op == "/" else (None,) * len(kids)
        return rebuild(
            e, tuple(self._operand(k, origin, memo, role) for k, role in zip(kids, roles))
        )

    def _operand(self, e: Expr, origin: Stage, memo: dict, role: str | None = None) -> Expr:
        if _is_operand(e):
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
    for stage in program.stages:
        splitter.stage(stage)
    stages = [dataclasses.replace(s, number=i) for i, s in enumerate(splitter.stages, start=1)]
    return dataclasses.replace(
        program, stages=stages, user_names=program.user_names | splitter.taken
    )
