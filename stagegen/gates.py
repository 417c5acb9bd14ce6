"""The gate table: every operation stagegen differentiates, with its local gradients.

One entry per gate, read the way the notes' gate table reads. Each rule receives the gate's
output ``out`` and its inputs, and returns the partial derivative with respect to each input,
built with the simplifying constructors of ``expr``. Rules prefer the cached output where it
is cheaper and numerically better (exp -> out, tanh -> 1 - out**2, sigmoid -> (1 - out) * out).

Compound right-hand sides are differentiated by chaining these rules through the expression
(``local_gradients``), so a stage like ``sigy = 1.0 / (1 + math.exp(-y))`` stays one gate.
"""

from __future__ import annotations

from collections import ChainMap
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping

from .expr import (
    And,
    Bin,
    Call,
    Compare,
    Cond,
    Const,
    Elem,
    Expr,
    Neg,
    Num,
    Var,
    add,
    div,
    mul,
    neg,
    num,
    number_value,
    power,
    select,
    sub,
)

Rule = Callable[..., tuple[Expr, ...]]  # (out, *inputs) -> one partial per input

ONE_F, ZERO_F = Num(1.0), Num(0.0)


@dataclass(frozen=True)
class Gate:
    arity: tuple[int, int | None]  # fewest and most inputs (None: any number)
    rule: Rule
    behaviour: str  # how the gate treats the gradient, in the notes' words
    name: str = ""  # what explanations call it: "add", "mul", "tanh" (the key, for functions)
    numpy: str | None = None  # its NumPy spelling, np.<numpy>, where NumPy has the function
    # Where it is defined, when not everywhere: the backward replays a stage that calls it, so
    # that it raises (NumPy: warns) where the forward does (see domain.py).
    domain: str | None = None
    # What it means for the SymPy proof: (sympy, *inputs) -> a SymPy expression; sympy is
    # passed in, so the table loads without it.
    sympy: Callable[..., object] | None = None


def _call(fn: str, *args: Expr) -> Expr:
    return Call(fn, args)


def _over_sqrt_one_minus_square(a: Expr) -> Expr:
    return div(Num(1), _call("sqrt", sub(Num(1), power(a, Num(2)))))  # |a| <= 1: no overflow


def _square(a: Expr) -> Expr:
    """``a * a``, not ``a**2``: a float product that overflows is inf, while ``**`` raises
    OverflowError, and 1 / (1 + inf) is the right 0.0 where atan(1e200) is fine."""
    return Bin("*", a, a)


def _divide_rule(out: Expr, a: Expr, b: Expr) -> tuple[Expr, Expr]:
    # -out / b rather than -a / b**2: b**2 overflows (and raises) for |b| > 1.3e154, and is
    # subnormal, so inexact, near |b| = 1e-160, where a / b itself is fine.
    return div(ONE, b), neg(div(out, b))


def _decrement(exponent: int | float) -> int | float:
    """``exponent - 1`` as the literal reads: 0.7 gives -0.3 (the decimal 7/10 - 1), not the
    float difference -0.30000000000000004, which would print, and be proven, as a different
    number than the one the user wrote minus one."""
    if isinstance(exponent, int) or not math.isfinite(exponent):
        return exponent - 1
    return float(Fraction(repr(exponent)) - 1)


def _pow_rule(out: Expr, a: Expr, b: Expr) -> tuple[Expr, Expr]:
    if isinstance(b, Num) or (isinstance(b, Neg) and isinstance(b.operand, Num)):
        exponent = b.value if isinstance(b, Num) else -b.operand.value
        return mul(b, power(a, num(_decrement(exponent)))), Num(0)
    d_base = mul(b, power(a, sub(b, Num(1))))
    if a == Const("e"):
        return d_base, out  # d(e**b)/db is the output itself
    if isinstance(a, Num) and a.value > 0:
        return d_base, mul(out, _call("log", a))
    # out * log(a), except where the output is 0: at a = 0 with b > 0 the power is 0 for every
    # b near, so d/db is 0 while log(0) raises. Elsewhere log(a) raises where a < 0, as the
    # derivative in b does not exist there (a negative base has a real power at integer b only).
    return d_base, Cond(
        Compare(">", Call("abs", (out,)), Num(0)), mul(out, _call("log", a)), ZERO_F
    )


def _route(pick: Callable[[Expr, Expr], str], strict: Callable[[Expr, Expr], str]):
    """max/min: the gradient goes to the winning input; a tie goes to the first of them."""

    def rule(out: Expr, *args: Expr) -> tuple[Expr, ...]:
        partials = []
        for i, a in enumerate(args):
            others = args[:i] + args[i + 1 :]
            if (
                i == len(args) - 1
                and isinstance(out, Var)
                and not isinstance(a, (Var, Elem))
                and all(number_value(b) is not None for b in others)
            ):
                # max(0, <expression>): the last input wins exactly where the cached output
                # beats the numbers, so the mask reads out > 0 instead of recomputing the input.
                tests = [Compare(strict, out, b) for b in others]
            else:
                tests = [Compare(strict, a, b) for b in args[:i]] + [
                    Compare(pick, a, b) for b in args[i + 1 :]
                ]
            test = tests[0] if len(tests) == 1 else And(tuple(tests))
            partials.append(Cond(test, ONE_F, ZERO_F))
        return tuple(partials)

    return rule


def _mask(op: str, a: Expr, b: Expr) -> Expr:
    return Cond(Compare(op, a, b), ONE_F, ZERO_F)


def _sign(a: Expr) -> Expr:
    return Cond(Compare(">", a, Num(0)), ONE_F, Cond(Compare("<", a, Num(0)), Num(-1.0), ZERO_F))


def _log_rule(out: Expr, a: Expr, base: Expr | None = None) -> tuple[Expr, ...]:
    if base is None:
        return (div(Num(1), a),)
    log_base = _call("log", base)
    return div(Num(1), mul(a, log_base)), neg(div(out, mul(base, log_base)))


def _atan2_rule(out: Expr, y: Expr, x: Expr) -> tuple[Expr, Expr]:
    # x / r / r with r = hypot(x, y), not x / (x**2 + y**2): the squares overflow (raising)
    # beyond 1.3e154 and underflow to 0.0 below 1e-162, where atan2 and its gradient are fine.
    r = _call("hypot", x, y)
    return div(div(x, r), r), neg(div(div(y, r), r))


def _sympy_atan2(sp, y, x):
    return sp.Integer(0) if y == 0 and x == 0 else sp.atan2(y, x)  # atan2(0, 0) is 0, not nan


# The tables below are kept one line per gate, like the notes' gate table (black leaves them be).
# fmt: off
ONE, TWO = Num(1), Num(2)

OPERATORS: dict[str, Gate] = {
    "+":   Gate((2, 2), lambda out, a, b: (ONE, ONE),                          "the add gate distributes the gradient to both inputs", "add"),
    "-":   Gate((2, 2), lambda out, a, b: (ONE, neg(ONE)),                     "the subtract gate passes the gradient on, negated for the second input", "subtract"),
    "*":   Gate((2, 2), lambda out, a, b: (b, a),                              "the mul gate swaps its inputs", "mul"),
    "/":   Gate((2, 2), _divide_rule,                                          "the divide gate: 1/b for the numerator, -out/b for the denominator", "divide"),
    "**":  Gate((2, 2), _pow_rule,                                             "the power gate: b * a**(b - 1) for the base, out * log(a) for the exponent", "power"),
    "neg": Gate((1, 1), lambda out, a: (neg(ONE),),                            "the negate gate flips the sign of the gradient", "negate"),
}

# The functions: math.<name>, or the builtins abs, max, min.
FUNCTIONS: dict[str, Gate] = {
    "exp":   Gate((1, 1), lambda out, a: (out,),                               "exp: the local gradient is the output itself", "exp", "exp", sympy=lambda sp, a: sp.exp(a)),
    "expm1": Gate((1, 1), lambda out, a: (add(out, ONE),),                     "expm1: out + 1", "expm1", "expm1", sympy=lambda sp, a: sp.exp(a) - 1),
    "log":   Gate((1, 2), _log_rule,                                           "log: 1/x", "log", "log", domain="x > 0", sympy=lambda sp, a, base=None: sp.log(a) if base is None else sp.log(a) / sp.log(base)),
    "log2":  Gate((1, 1), lambda out, a: (div(ONE, mul(a, _call("log", TWO))),),    "log2: 1 / (x ln 2)", "log2", "log2", domain="x > 0", sympy=lambda sp, a: sp.log(a) / sp.log(2)),
    "log10": Gate((1, 1), lambda out, a: (div(ONE, mul(a, _call("log", Num(10)))),), "log10: 1 / (x ln 10)", "log10", "log10", domain="x > 0", sympy=lambda sp, a: sp.log(a) / sp.log(10)),
    "log1p": Gate((1, 1), lambda out, a: (div(ONE, add(ONE, a)),),             "log1p: 1 / (1 + x)", "log1p", "log1p", domain="x > -1", sympy=lambda sp, a: sp.log(1 + a)),
    "sqrt":  Gate((1, 1), lambda out, a: (div(Num(0.5), out),),                "sqrt: 0.5 / out", "sqrt", "sqrt", domain="x >= 0", sympy=lambda sp, a: sp.sqrt(a)),
    "sin":   Gate((1, 1), lambda out, a: (_call("cos", a),),                   "sin: cos x", "sin", "sin", sympy=lambda sp, a: sp.sin(a)),
    "cos":   Gate((1, 1), lambda out, a: (neg(_call("sin", a)),),              "cos: -sin x", "cos", "cos", sympy=lambda sp, a: sp.cos(a)),
    "tan":   Gate((1, 1), lambda out, a: (add(ONE, power(out, TWO)),),         "tan: 1 + out**2", "tan", "tan", sympy=lambda sp, a: sp.tan(a)),
    "asin":  Gate((1, 1), lambda out, a: (_over_sqrt_one_minus_square(a),),    "asin: 1 / sqrt(1 - x**2)", "asin", "arcsin", domain="-1 <= x <= 1", sympy=lambda sp, a: sp.asin(a)),
    "acos":  Gate((1, 1), lambda out, a: (neg(_over_sqrt_one_minus_square(a)),), "acos: -1 / sqrt(1 - x**2)", "acos", "arccos", domain="-1 <= x <= 1", sympy=lambda sp, a: sp.acos(a)),
    "atan":  Gate((1, 1), lambda out, a: (div(ONE, add(ONE, _square(a))),),  "atan: 1 / (1 + x * x)", "atan", "arctan", sympy=lambda sp, a: sp.atan(a)),
    "atan2": Gate((2, 2), _atan2_rule,                                         "atan2(y, x): x / r / r for y, -y / r / r for x, with r = hypot(x, y)", "atan2", "arctan2", sympy=_sympy_atan2),
    "sinh":  Gate((1, 1), lambda out, a: (_call("cosh", a),),                  "sinh: cosh x", "sinh", "sinh", sympy=lambda sp, a: sp.sinh(a)),
    "cosh":  Gate((1, 1), lambda out, a: (_call("sinh", a),),                  "cosh: sinh x", "cosh", "cosh", sympy=lambda sp, a: sp.cosh(a)),
    "tanh":  Gate((1, 1), lambda out, a: (sub(ONE, power(out, TWO)),),         "tanh: 1 - out**2", "tanh", "tanh", sympy=lambda sp, a: sp.tanh(a)),
    "erf":   Gate((1, 1), lambda out, a: (mul(div(TWO, _call("sqrt", Const("pi"))), _call("exp", neg(_square(a)))),), "erf: 2/sqrt(pi) * exp(-x * x)", "erf", sympy=lambda sp, a: sp.erf(a)),
    "hypot": Gate((1, None), lambda out, *args: tuple(div(a, out) for a in args), "hypot: each input over the output", "hypot", "hypot", sympy=lambda sp, *args: sp.sqrt(sum(a**2 for a in args))),
    "pow":   Gate((2, 2), _pow_rule,                                           "pow: like **", "pow", "power", domain="a > 0, or b an integer", sympy=lambda sp, a, b: a**b),
    "abs":   Gate((1, 1), lambda out, a: (_sign(a),),                          "abs: the gradient passes with the input's sign (0 at 0)", "abs", "abs", sympy=lambda sp, a: sp.Abs(a)),
    "max":   Gate((2, None), _route(">=", ">"),                                "the max gate routes the gradient to the larger input (a tie goes to the first)", "max", "maximum", sympy=lambda sp, *args: sp.Max(*args)),
    "min":   Gate((2, None), _route("<=", "<"),                                "the min gate routes the gradient to the smaller input (a tie goes to the first)", "min", "minimum", sympy=lambda sp, *args: sp.Min(*args)),
}

# The elementwise functions NumPy has and math does not: array code only (the scalar reader
# accepts the keys of FUNCTIONS alone). Each reads as a course's solution writes it.
NUMPY_ONLY: dict[str, Gate] = {
    "square":     Gate((1, 1), lambda out, a: (mul(TWO, a),),                   "square: 2 * x", "square", "square", sympy=lambda sp, a: a**2),
    "reciprocal": Gate((1, 1), lambda out, a: (neg(div(out, a)),),              "reciprocal: -out / x", "reciprocal", "reciprocal", sympy=lambda sp, a: 1 / a),
    "negative":   Gate((1, 1), lambda out, a: (neg(ONE),),                      "negative: the gradient flips its sign", "negative", "negative", sympy=lambda sp, a: -a),
    "exp2":       Gate((1, 1), lambda out, a: (mul(out, _call("log", TWO)),),   "exp2: out * ln 2", "exp2", "exp2", sympy=lambda sp, a: 2**a),
    "sign":       Gate((1, 1), lambda out, a: (ZERO_F,),                        "sign: flat on either side of 0, so no gradient passes", "sign", "sign", sympy=lambda sp, a: sp.Piecewise((1, a > 0), (-1, a < 0), (0, True))),
    "arcsinh":    Gate((1, 1), lambda out, a: (div(ONE, _call("hypot", ONE, a)),), "arcsinh: 1 / sqrt(1 + x**2)", "arcsinh", "arcsinh", sympy=lambda sp, a: sp.asinh(a)),
    "arccosh":    Gate((1, 1), lambda out, a: (div(ONE, _call("sqrt", mul(sub(a, ONE), add(a, ONE)))),), "arccosh: 1 / sqrt(x**2 - 1)", "arccosh", "arccosh", domain="x >= 1", sympy=lambda sp, a: sp.acosh(a)),
    "arctanh":    Gate((1, 1), lambda out, a: (div(ONE, mul(sub(ONE, a), add(ONE, a))),), "arctanh: 1 / (1 - x**2)", "arctanh", "arctanh", domain="-1 < x < 1", sympy=lambda sp, a: sp.atanh(a)),
    # np.clip(x, lo, hi) with numbers lo < hi: min(max(x, lo), hi), whose ties go to x (the
    # first input, as max and min give them): the gradient passes where lo <= x <= hi.
    "clip":       Gate((3, 3), lambda out, x, lo, hi: (mul(_mask(">=", x, lo), _mask("<=", x, hi)), ZERO_F, ZERO_F), "clip: the gradient passes where lo <= x <= hi, and is 0 where x was clipped", "clip", "clip", sympy=lambda sp, x, lo, hi: sp.Piecewise((lo, x < lo), (hi, x > hi), (x, True))),
    "rad2deg":    Gate((1, 1), lambda out, a: (div(Num(180), Const("pi")),),    "rad2deg: 180 / pi", "rad2deg", "rad2deg", sympy=lambda sp, a: a * 180 / sp.pi),
    "deg2rad":    Gate((1, 1), lambda out, a: (div(Const("pi"), Num(180)),),    "deg2rad: pi / 180", "deg2rad", "deg2rad", sympy=lambda sp, a: a * sp.pi / 180),
    # logaddexp2(a, b) = log2(2**a + 2**b): each input's share is 2**(input - out)
    "logaddexp2": Gate((2, 2), lambda out, a, b: (_call("exp2", sub(a, out)), _call("exp2", sub(b, out))), "logaddexp2: 2**(a - out) for a, 2**(b - out) for b", "logaddexp2", "logaddexp2", sympy=lambda sp, a, b: sp.log(2**a + 2**b) / sp.log(2)),
    # logaddexp(a, b) = log(exp(a) + exp(b)): each input's share, exp(input - out), is in (0, 1]
    "logaddexp":  Gate((2, 2), lambda out, a, b: (_call("exp", sub(a, out)), _call("exp", sub(b, out))), "logaddexp: exp(a - out) for a, exp(b - out) for b (a softmax of the two)", "logaddexp", "logaddexp", sympy=lambda sp, a, b: sp.log(sp.exp(a) + sp.exp(b))),
}
# fmt: on

# Every elementwise gate, by key: the functions of numbers and NumPy's own (a view of both
# tables, so that a change to one, as a test's sabotage, is seen here).
ELEMENTWISE: Mapping[str, Gate] = ChainMap(FUNCTIONS, NUMPY_ONLY)

# The elementwise functions array code can call: NumPy spelling -> the gate's key (np.arctan ->
# "atan", np.maximum -> "max"). Array expressions name a function by its key, as scalar ones do;
# the printer spells it back (numpy_spelling). These tables are the only lists of them.
NUMPY_FUNCTIONS: dict[str, str] = {  # one argument (np.log has no base)
    g.numpy: k
    for k, g in (*FUNCTIONS.items(), *NUMPY_ONLY.items())
    if g.numpy and g.arity[0] == 1 and g.arity[1]
}
# Other names NumPy gives the same functions (printed back under the table's spelling).
NUMPY_FUNCTIONS.update(absolute="abs", fabs="abs", degrees="rad2deg", radians="deg2rad")
NUMPY_BINARY: dict[str, str] = {  # two (np.maximum and np.hypot take exactly two)
    g.numpy: k
    for k, g in (*FUNCTIONS.items(), *NUMPY_ONLY.items())
    if g.numpy and (g.arity[0] == 2 or not g.arity[1])
}


def numpy_spelling(fn: str) -> str:
    """How NumPy spells the function a ``Call`` names (``atan`` -> ``arctan``); a name that is
    no gate's key (``sign``) is NumPy's own already."""
    gate = ELEMENTWISE.get(fn)
    return gate.numpy if gate is not None and gate.numpy else fn


MATH_CONSTANTS = {"pi", "e", "tau"}

# Functions that raise a math domain error outside their domain (log(-2), sqrt(-1), ...).
# The backward replays every stage on a path to the output that calls one, even when no
# gradient reads its value: d/dx log(x) = 1/x would otherwise give a number at x = -2,
# where the forward raises. Other gates raise in the backward by themselves (a division's
# local gradient divides by the same value; exp's reads the overflowing output).
DOMAIN_CHECKED = {key for key, gate in ELEMENTWISE.items() if gate.domain}

SIGMOID = Gate(
    (1, 1),
    lambda out, a: (mul(sub(Num(1), out), out),),
    "the sigmoid gate: (1 - out) * out, from the cached output",
    "sigmoid",
)


def sigmoid_input(e: Expr) -> Expr | None:
    """The u of 1 / (1 + exp(-u)) (either order of the sum), or None: the notes' sigmoid gate."""
    if not (isinstance(e, Bin) and e.op == "/" and isinstance(e.left, Num) and e.left.value == 1):
        return None
    den = e.right
    if not (isinstance(den, Bin) and den.op == "+"):
        return None
    for one, ex in ((den.left, den.right), (den.right, den.left)):
        if (
            isinstance(one, Num)
            and one.value == 1
            and isinstance(ex, Call)
            and ex.fn == "exp"
            and isinstance(ex.args[0], Neg)
        ):
            return ex.args[0].operand
    return None


def conditional(test: Expr) -> Gate:
    """``a if test else b``: the gradient goes to the side the test chose. The test is part of
    the gate, not an input: a condition has no gradient (it is constant near every point off
    its boundary, and at the boundary the forward took one side, whose gradient this is)."""
    return Gate(
        (2, 2),
        lambda out, a, b: (select(test, ONE, ZERO_F), select(test, ZERO_F, ONE)),
        "the conditional expression passes the gradient to the side the test chose; "
        "the test gets none",
        "conditional",
    )


def gate_of(e: Expr) -> tuple[Gate, tuple[Expr, ...]] | None:
    """The gate an expression node applies, and its inputs (None for leaves). A conditional
    expression's inputs are its two sides."""
    if isinstance(e, Cond):
        return conditional(e.test), (e.body, e.orelse)
    u = sigmoid_input(e)
    if u is not None:
        return SIGMOID, (u,)
    if isinstance(e, Bin):
        return OPERATORS[e.op], (e.left, e.right)
    if isinstance(e, Neg):
        return OPERATORS["neg"], (e.operand,)
    if isinstance(e, Call):
        return ELEMENTWISE[e.fn], e.args
    return None


def local_gradients(
    e: Expr, out: Expr | None = None, stop: Callable[[Expr], bool] | None = None
) -> dict[Expr, Expr]:
    """The partial derivative of ``e`` with respect to every variable it reads.

    One reverse pass through the expression tree: each node's adjoint is its parent's adjoint
    times the gate's partial; a variable read twice sums its paths. When ``out`` is given
    (the stage's own output variable), the root's value is read from it instead of being
    recomputed, which is how exp, tanh and sigmoid reuse the cached forward value. Nodes that
    ``stop`` accepts are kept whole, like variables (the structural operations of array code,
    and values of another shape, whose gradients the sweep sums back first).
    """
    grads: dict[Expr, Expr] = {}
    stack: list[tuple[Expr, Expr]] = [(e, Num(1))]
    # The nodes whose value is the stage's output: the root, and where the root is a
    # conditional expression, each side (in its branch, the side is the output), so that
    # ``t = math.exp(x) if x < 0 else x`` reads ``t * dt if x < 0 else dt``.
    is_output: set[int] = set()
    if out is not None:
        sides = [e]
        while sides:
            node = sides.pop()
            is_output.add(id(node))
            if isinstance(node, Cond):
                sides += [node.body, node.orelse]
    while stack:
        node, adjoint = stack.pop()
        if isinstance(node, (Var, Elem)) or (stop is not None and node is not e and stop(node)):
            grads[node] = add(grads[node], adjoint) if node in grads else adjoint
            continue
        found = gate_of(node)
        if found is None:  # a number or a constant: no gradient to pass on
            continue
        gate, inputs = found
        node_value = out if id(node) in is_output else node
        partials = gate.rule(node_value, *inputs)
        # Push in reverse so inputs are visited left to right (the order readers expect).
        for child, partial in reversed(list(zip(inputs, partials))):
            stack.append((child, mul(adjoint, partial)))
    # Visit order is depth-first from the left; keep the first-appearance order for output.
    return grads
