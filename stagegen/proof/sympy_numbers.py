"""SymPy's meaning of a function of numbers, as stagegen's stages read it.

``ToSymPy`` turns stagegen's expressions into SymPy's (literals as exact rationals). On it:
the local checks (stagegen.proof.local) and ``Reference``, SymPy's gradient of the whole
function at a point in 50 digits, which the explain view shows (``reference_gradient``). The
reference differentiates the whole function as one expression while that stays small
(``SYMBOLIC_TREE_LIMIT``), and otherwise applies the chain rule stage by stage, in forward mode,
with SymPy's local derivatives (``ChainRule``): linear in the program.
"""

from __future__ import annotations

from ..expr import And, Bin, Call, Compare, Cond, Const, Elem, Expr, Neg, Num, Var
from ..program import Program
from ..reverse import Backward
from . import meaning
from .common import MpmathCode
from .sampling import input_names

SYMBOLIC_TREE_LIMIT = 400  # composed-expression size past which the reference goes stage by stage


# ---------------------------------------------------------------------------- to SymPy


class ToSymPy:
    """Our expressions as SymPy expressions, with exact rationals for the literals."""

    def __init__(self):
        import sympy

        self.sp = sympy
        self.symbols: dict[str, object] = {}

    def symbol(self, leaf: Var | Elem):
        key = leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"
        if key not in self.symbols:
            self.symbols[key] = self.sp.Symbol(key, real=True)
        return self.symbols[key]

    def convert(self, e: Expr, values: dict) -> object:
        sp = self.sp
        c = lambda x: self.convert(x, values)  # noqa: E731
        if isinstance(e, Num):
            return meaning.number(sp, e.value)
        if isinstance(e, Const):
            return {"pi": sp.pi, "e": sp.E, "tau": 2 * sp.pi}[e.name]
        if isinstance(e, (Var, Elem)):
            key = e.name if isinstance(e, Var) else f"{e.name}[{e.index}]"
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
            return {">": sp.Gt, ">=": sp.Ge, "<": sp.Lt, "<=": sp.Le}[e.op](a, b)
        if isinstance(e, And):
            return sp.And(*[c(i) for i in e.items])
        if isinstance(e, Cond):
            return sp.Piecewise((c(e.body), c(e.test)), (c(e.orelse), True))
        raise TypeError(f"cannot convert {e!r}")

    def function(self, fn: str, args: list):
        return meaning.function(self.sp, fn, args)


def leaf_text(leaf) -> str:
    return leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"


def tree_size(program: Program) -> int:
    """Size of the whole function written as one expression, without building it."""
    sizes: dict[str, int] = {}
    total = 1
    for s in program.stages:
        total = 0
        stack = [s.expr]
        while stack:
            node = stack.pop()
            total += sizes.get(node.name, 1) if isinstance(node, Var) else 1
            stack.extend(node.children())
        sizes[s.target] = total
    return sizes.get(program.output.name, total)


class Reference:
    """The reference gradient of one program at a point, in 50-digit arithmetic."""

    def __init__(self, program: Program, backward: Backward, conv: ToSymPy):
        self.program, self.backward, self.conv = program, backward, conv
        sp = conv.sp
        self.wrt_inputs = [n for n in input_names(program) if n.split("[")[0] in backward.wrt]
        self.chain = self.whole = None
        if tree_size(program) <= SYMBOLIC_TREE_LIMIT:
            try:
                composed: dict = {}
                for s in program.stages:
                    composed[s.target] = conv.convert(s.expr, composed)
                output = composed[program.output.name]
                inputs = [
                    conv.symbols.get(n) or sp.Symbol(n, real=True) for n in input_names(program)
                ]
                gradient = [
                    sp.diff(output, inputs[input_names(program).index(n)]) for n in self.wrt_inputs
                ]
                self.whole = MpmathFunction(f"{program.name}", inputs, [output, *gradient])
                self.method = "SymPy's symbolic derivative of the whole function"
            except (ValueError, TypeError):
                # SymPy refuses some compositions (Max of a nan, from atan2(0, 0)); the stage
                # by stage route below never composes them.
                self.whole = None
        if self.whole is None:
            self.method = "the chain rule stage by stage with SymPy's local derivatives (50 digits)"
            self.chain = ChainRule(program, conv, self.wrt_inputs)

    def at(self, point: dict[str, float]):
        """The gradient at a point (50-digit numbers); ValueError outside the domain."""
        if self.chain is not None:
            self.output_value, gradient = self.chain.at(point)
            return gradient
        self.output_value, *gradient = self.whole.at(point)  # outside the domain raises
        return gradient


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


class ChainRule:
    """The chain rule applied stage by stage, in forward mode, with SymPy's local derivatives.

    SymPy differentiates each stage on its own (so the work is linear in the program), and
    every stage and local derivative becomes one straight-line mpmath function. Forward-mode
    tangents, one input at a time, are a different route from the reverse sweep being checked."""

    def __init__(self, program: Program, conv: ToSymPy, wrt_inputs: list[str]):
        sp = conv.sp
        code = MpmathCode()
        name_of = code.name_of
        inputs = [conv.symbols.get(n) or sp.Symbol(n, real=True) for n in input_names(program)]
        for symbol in inputs:
            name_of(symbol)
        body = []
        partials = []  # per stage: (target identifier, [(input identifier, partial identifier)])
        for number, stage in enumerate(program.stages):
            rhs = conv.convert(stage.expr, {})
            target = name_of(sp.Symbol(stage.target, real=True))
            body.append(f"{target} = real({code.text(rhs)})")
            terms = []
            for k, symbol in enumerate(sorted(rhs.free_symbols, key=str)):
                local = f"p{number}_{k}"
                body.append(f"{local} = real({code.text(sp.diff(rhs, symbol))})")
                terms.append((name_of(symbol), local))
            partials.append((target, terms))
        output = name_of(sp.Symbol(program.output.name, real=True))
        body.append("gradient = []")
        for name in wrt_inputs:
            seed = name_of(conv.symbols.get(name) or sp.Symbol(name, real=True))
            body.append(f"t = {{{seed!r}: one}}")
            for target, terms in partials:
                used = " + ".join(f"t.get({i!r}, zero) * {p}" for i, p in terms) or "zero"
                body.append(f"t[{target!r}] = {used}")
            body.append(f"gradient.append(t.get({output!r}, zero))")
        self.run = code.compile(
            f"reference chain rule for {program.name}", inputs, body, f"{output}, gradient"
        )

    def at(self, point: dict[str, float]):
        return self.run(*point.values())


def reference_gradient(program: Program, backward: Backward, point: dict[str, float]) -> dict:
    """SymPy's gradient at a point, in 50 digits: {input name (``w[0]`` for list elements): value}.
    Raises ValueError (or ZeroDivisionError) where the function is not defined."""
    reference = Reference(program, backward, ToSymPy())
    return dict(zip(reference.wrt_inputs, reference.at(point)))
