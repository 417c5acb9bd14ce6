"""Random array programs: the generated backward against float64 central differences.

A seeded generator (below) writes well-shaped NumPy forward functions over the array language of
the README: parameters ``x: "N, D"`` (always), ``w: "D, M"``, ``v: "D"``, ``r: "1, D"``,
``c: "N, 1"``, ``b: "M"``, ``u: "N"``, a plain number ``s`` and integer labels ``y: "N"``;
elementwise ``+ - * / **`` with broadcasting among all those shapes and numbers; every
one-argument function of ``gates.NUMPY_FUNCTIONS`` (``np.exp``, ``np.log2``, ``np.arccos``, ...)
and every two-argument one of ``gates.NUMPY_BINARY`` (``np.maximum``/``np.minimum`` with arrays
and numbers, ``np.maximum(0, <expression>)`` too, ``np.arctan2``, ``np.hypot``, ``np.power``
with a number exponent), each kept inside its domain; the sigmoid spelled
``1 / (1 + np.exp(-z))``; stages that are one ``np.tanh``, ``np.exp``, sigmoid or ReLU (whose
gradients read the cached output) read back by later stages; ``sum``/``mean``/``max`` with
``axis`` (None, an int, a negative int, a tuple; by keyword or by position) and ``keepdims``, as
methods and as ``np.`` functions; products ``@``, ``.dot``, ``np.dot`` (matrix and vector,
chains, a parenthesised sub-product on the right, products inside elementwise expressions and
under a reduction); ``.T``, ``np.transpose``, ``.reshape``/``np.reshape``; gathers
``x[np.arange(n), y]`` and ``v[y]``; masks ``(h > 0) * g``; ``a[:, None]``, ``a[None, :]`` and
third axes (``a[:, None, :]``, reduced and transposed); shape reads ``x.shape[k]``; the course's
vocabulary of issue 16: NumPy's own elementwise functions (``np.square``, ``np.reciprocal``,
``np.sign``, ``np.logaddexp``, ...), the reductions ``min``/``var``/``std``/``prod`` and
``np.linalg.norm`` (one axis or all, keepdims, a ddof), ``np.clip`` (number bounds, one of them None too,
and ``.clip``), ``np.where(h > k, a, b)``, ``np.outer``, ``np.expand_dims``, ``np.newaxis``,
``squeeze``, ``transpose`` with axes, ``swapaxes``, ``ravel``/``flatten``, ``copy``,
``astype(float)``, ``np.zeros``/``ones``/``full`` and their ``_like`` forms as constants, and
``np.stack``/``concatenate``/``hstack``/``vstack`` of a value with another of its shape; forks,
re-assigned names, ``+=``/``-=`` on a fresh intermediate (a NumPy scalar too), gradients that
are identically zero (``0.0 * a``, ``a - a``, ``a ** 0``, ``t -= t``); the output a number or
an array. Operands are kept in their domains (``/`` and ``np.log`` of positive values such as
``(1.0 + a * a)``) and magnitudes are tracked, so that a value that may have grown is passed
through ``np.tanh`` before it is reused.

Each program goes through ``stagegen.generate`` (the module as written, not only what the proof
accepts), and its backward runs at two size draws (N, D, M distinct first, then any sizes from 1
to 4, so size-1 dimensions occur) on random inputs, with the default upstream, a random one and
(for an array output) a number. The reference shares no code with stagegen's pipeline (only
the central-difference arithmetic of stagegen.numeric, itself tested against analytic
derivatives in test_numeric.py): the program text itself is executed with real NumPy and
differenced in float64 (the gradient of ``sum(out * upstream)``, step 1e-5; an element that disagrees is retried with other steps, and a
point where the one-sided differences disagree, a kink, is skipped). Shapes must be equal
exactly; values within ``RTOL`` of the larger of the parameter's gradient and a thousandth of the
largest gradient, plus a round-off floor. The backward must modify neither its inputs nor its
upstream, and each gradient it returns must be the caller's own writable array (no view, no
memory shared with another gradient, an input or the upstream); where the forward raised no
floating-point error, the backward must raise none (divide, overflow, invalid: under
``np.errstate(..="raise")``, a "float-error"). On a subset of short programs,
``stagegen.verify`` must agree with that verdict (a proof over ``PROOF_BUDGET`` seconds is
abandoned and printed).

Some constructs may be refused with a ``StagegenError`` (``+=`` on an alias or a view of an
array, ``+=`` on a parameter, re-assignment of a parameter); a ``+=`` that would have to grow its
target (which NumPy refuses) must be refused. Anything else refused, any other exception, from
``generate``, the generated module or its backward, is a failure. All failures are collected and
reported with the seed, the sizes and the program, except those that ``KNOWN_BUGS``
recognises (each pinned by a strict xfail), which are counted. ``test_array_fuzz_is_not_vacuous``
checks that most programs were accepted and checked, and that every construct was accepted at
least once; ``test_the_checker_catches_a_gradient_off_by_a_ten_thousandth`` that the checker
can fail.

Size: ``DEFAULT_EXAMPLES`` programs in every run (seeds 0, 1, 2, ...: deterministic). On demand:

    STAGEGEN_FUZZ_EXAMPLES=5000 pytest -p no:cacheprovider tests/test_array_fuzz.py -s

(``STAGEGEN_ARRAY_FUZZ_EXAMPLES`` overrides it for this file alone.) The on-demand run starts at a
random seed unless ``STAGEGEN_ARRAY_FUZZ_SEED`` is set, prints it and its progress (with ``-s``),
and verifies one program in twenty. Program k of a run has seed ``SEED + k``; to replay one:

    STAGEGEN_ARRAY_FUZZ_SEED=1234 STAGEGEN_ARRAY_FUZZ_EXAMPLES=1 \
        pytest -p no:cacheprovider tests/test_array_fuzz.py -s -k random_array
"""

from __future__ import annotations

import ast
import math
import os
import random
import re
import signal
import textwrap
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest

np = pytest.importorskip("numpy")

import stagegen  # noqa: E402
from stagegen.api import load_backward_module  # noqa: E402
from stagegen.gates import NUMPY_BINARY, NUMPY_FUNCTIONS  # noqa: E402
from stagegen.numeric import central_difference, indices  # noqa: E402

_EXAMPLES_ENV = os.environ.get("STAGEGEN_ARRAY_FUZZ_EXAMPLES") or os.environ.get(
    "STAGEGEN_FUZZ_EXAMPLES"
)
FUZZ_EXAMPLES = int(_EXAMPLES_ENV or 0)
ON_DEMAND = FUZZ_EXAMPLES > 0
DEFAULT_EXAMPLES = 400
EXAMPLES = FUZZ_EXAMPLES if ON_DEMAND else DEFAULT_EXAMPLES
_SEED_ENV = os.environ.get("STAGEGEN_ARRAY_FUZZ_SEED")
SEED = int(_SEED_ENV) if _SEED_ENV else (random.SystemRandom().randrange(10**9) if ON_DEMAND else 0)
VERIFY_EXAMPLES = max(10, EXAMPLES // 20) if ON_DEMAND else 12
VERIFY_SEED_OFFSET = 10**9  # the verified programs are other programs than the fuzzed ones
PROGRESS_EVERY = 250

H = 1e-5  # the central-difference step (relative above 1: stagegen.numeric), as RTOL was set for
RETRY_STEPS = (1e-3, 1e-4, 1e-6, 1e-7)  # an element that disagrees is tried with these too
KINK_STEPS = (1e-6, 1e-7)  # one-sided differences at these steps tell a kink
RTOL = 1e-5
ATOL = 1e-9  # times (1 + sum |out * upstream|)
KINK_RTOL = 1e-3
TAME = 8.0  # a value whose bound exceeds this goes through np.tanh before it is reused
MAX_SIZE = 4

# Python's precedence levels, as far as the generator needs them
CMP, ADD, MUL, UNARY, POW, ATOM = 1, 2, 3, 4, 5, 6

PARAMS = {  # name -> shape (dimension names or 1); () for a plain number
    "x": ("N", "D"),
    "w": ("D", "M"),
    "v": ("D",),
    "r": (1, "D"),
    "c": ("N", 1),
    "b": ("M",),
    "u": ("N",),
    "s": (),
}
LABELS = "y"  # y: "N", integers in range(D)

# gradient names, dimension names, the upstream's name, stagegen's names for re-assigned values
CLASH_NAMES = ("dx", "dt1", "N", "D", "M", "out", "dout", "t1_1", "x_1", "t1_in", "dout_in", "ds")

# How often the unary maker picks each function of gates.NUMPY_FUNCTIONS it knows how to keep
# inside its domain (Builder.function_of); one it does not know is never generated, which
# test_generator_writes_every_construct reports.
UNARY_WEIGHTS = {"exp": 4, "tanh": 4, "abs": 4, "log": 4, "sqrt": 4}
UNARY_WEIGHTS.update(
    (fn, 1) for fn in ("expm1", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos")
)
UNARY_WEIGHTS.update((fn, 1) for fn in ("arctan", "sinh", "cosh"))
UNARY_WEIGHTS.update(  # NumPy's own (gates.NUMPY_ONLY)
    (fn, 1)
    for fn in (
        *("square", "reciprocal", "negative", "exp2", "sign", "arcsinh", "arccosh", "arctanh"),
        *("rad2deg", "deg2rad", "absolute", "fabs", "degrees", "radians"),
    )
)

CACHED = ("tanh", "exp", "sigmoid")  # the gates whose local gradient reads the stage's output

MAY_REFUSE = {"alias-augmented", "view-augmented", "param-augmented", "reassign-parameter"}
MUST_REFUSE = "grow-augmented"

CONSTRUCTS = {
    *(f"ew:{op}" for op in "+-*/"),
    *(f"pow:{e}" for e in ("2", "3", "0.5", "-1", "1.5", "-0.5", "param")),
    *NUMPY_FUNCTIONS,  # every one-argument function of the table (np.exp, np.arccos, ...)
    *NUMPY_BINARY,  # np.maximum, np.minimum, np.arctan2, np.hypot, np.power
    *("neg", "unary-plus", "max/min-constant", "maximum(number, expression)", "relu-stage"),
    *("power:integer", "power:fraction", "sigmoid", "sigmoid:swapped-sum"),
    *(f"cached:{fn}" for fn in CACHED),  # a stage that is the function: its output is cached
    *(f"read-back:{fn}" for fn in CACHED),  # ... and a later stage reads it
    *("broadcast", "scalar-literal", "scalar-param", "tamed", "redundant-parens"),
    *(f"reduce:{fn}" for fn in ("sum", "mean", "max")),
    *("reduce:method", "reduce:np", "axis:None", "axis:0", "axis:1", "axis:-1", "axis:tuple"),
    *("axis:2", "axis:-2"),
    *("axis:positional", "keepdims:True", "keepdims:False"),
    *("matmul:@", "matmul:.dot", "matmul:np.dot", "matmul:chain", "matmul:parenthesised-right"),
    *("matmul:mat-mat", "matmul:mat-vec", "matmul:vec-mat", "matmul:vec-vec"),
    *("product-in-elementwise", "reduce-of-product"),
    *(".T", "np.transpose", "reshape:-1", "reshape:flatten", "reshape:column", "reshape:row"),
    *("np.reshape", "gather:arange-n", "gather:arange-shape", "gather:vector", "mask"),
    *("gather:rows", "gather:columns", "augmented:*=", "augmented:/="),
    *(
        "newaxis:column",
        "newaxis:row",
        "newaxis:3d",
        "reduce:3d",
        "transpose:3d",
        "fork",
        "fork-in-expression",
        "reassign",
    ),
    *("augmented:+=", "augmented:-=", "zero:0.0*", "zero:a-a", "zero:**0", "zero:t-=t"),
    *("return:name", "return:scalar-expression", "return:array-expression", "return:parameter"),
    *("output:scalar", "output:array", "wrt", "labels", "shape-read", "clash-name"),
    "default-value",
    # the course's vocabulary (issue 16)
    *(f"reduce:{fn}" for fn in ("min", "var", "std", "prod", "norm")),
    "ddof",
    *("clip", "clip:method", "clip:one-sided", "where", "outer"),
    *("expand_dims", "np.newaxis", "squeeze", "np.squeeze", "transpose:axes", "swapaxes"),
    *("ravel", "np.ravel", "flatten", "copy", "np.copy", "astype"),
    *("zeros_like", "ones_like", "full_like", "ones(shape)", "zeros(shape)", "full(shape)"),
    *("stack", "concatenate", "hstack", "vstack"),
    *MAY_REFUSE,
    MUST_REFUSE,
}


# ---------------------------------------------------------------------------- the generator


@dataclass(frozen=True)
class Val:
    """An expression: its text, symbolic shape, a bound on its magnitude, a lower bound when it
    is known to be positive, its precedence, and what kind of operation it is at the top."""

    text: str
    shape: tuple
    bound: float
    lo: float = 0.0  # > 0: the value is at least this
    prec: int = ATOM
    kind: str = "name"
    name: str | None = None  # a plain name

    def at(self, level: int) -> str:
        """The text as an operand that needs precedence ``level`` or higher."""
        return self.text if self.prec >= level else f"({self.text})"


def broadcast(a: tuple, b: tuple):
    """The broadcast of two symbolic shapes, or None when NumPy would not broadcast them for
    every size of the dimensions."""
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for p, q in zip(a, b):
        if p == q or q == 1:
            out.append(p)
        elif p == 1:
            out.append(q)
        else:
            return None
    return tuple(out)


@dataclass
class Program:
    seed: int
    source: str
    params: list[str]
    wrt: list[str] | None
    statements: int
    features: set[str] = field(default_factory=set)
    refusable: set[int] | None = None  # lines where a refusal is fine (None: any line)

    @property
    def must_refuse(self) -> bool:
        return MUST_REFUSE in self.features

    @property
    def may_refuse(self) -> bool:
        return bool(self.features & MAY_REFUSE)


class Builder:
    """Writes one forward function ``f`` from a seeded random.Random."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.features: set[str] = set()
        others = [p for p in PARAMS if p != "x" and rng.random() < 0.45]
        self.params = ["x"] + others
        if rng.random() < 0.3:  # dropped again if no gather reads it (then it is no label)
            self.params.append(LABELS)
        rng.shuffle(self.params)
        self.env: dict[str, Val] = {
            p: Val(p, PARAMS[p], 1.5, name=p) for p in self.params if p != LABELS
        }
        self.fresh: set[str] = set()  # stage names holding an array no other name sees
        self.cached: dict[str, str] = {}  # stage name -> the gate of CACHED its value is
        self.stages: list[str] = []
        self.lines: list[str] = []
        self.header: list[str] = []
        self.uses: Counter = Counter()
        self.stmt_uses: Counter = Counter()
        self.counter = 0
        self.statements = 0
        self.refusable: list[int] = []  # indices in lines of the statements that may be refused

    # -- helpers --------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def feature(self, *names: str) -> None:
        self.features.update(names)

    def leaf(self, want=None) -> Val:
        """A name from the environment (recent stages more often), tamed when it may be large."""
        names = [n for n, v in self.env.items() if want is None or want(v)]
        if not names:
            return None
        weights = [3.0 if n in self.stages[-3:] else 1.0 for n in names]
        name = self.rng.choices(names, weights)[0]
        self.uses[name] += 1
        self.stmt_uses[name] += 1
        if self.uses[name] > 1:
            self.feature("fork")
        if self.stmt_uses[name] > 1:
            self.feature("fork-in-expression")
        val = self.env[name]
        if name == "s":
            self.feature("scalar-param")
        if name in self.cached:
            self.feature(f"read-back:{self.cached[name]}")
        return self.tame(val)

    def tame(self, val: Val) -> Val:
        if val.bound <= TAME:
            return val
        self.feature("tamed")
        return Val(f"np.tanh({val.text})", val.shape, 1.0, kind="tanh")

    def number(self) -> Val:
        if self.chance(0.1):
            self.feature("shape-read")
            k = self.rng.choice(["0", "1", "-1"])
            return Val(f"x.shape[{k}]", (), MAX_SIZE, lo=1.0)
        self.feature("scalar-literal")
        text = self.rng.choice(["0.5", "2.0", "1.5", "0.25", "3", "2"])
        return Val(text, (), float(text), lo=float(text))

    def maybe_parens(self, val: Val) -> Val:
        if val.prec < ATOM and self.chance(0.06):
            self.feature("redundant-parens")
            return replace(val, text=f"({val.text})", prec=ATOM)
        return val

    # -- expressions ----------------------------------------------------------------------

    def expr(self, depth: int) -> Val:
        if depth <= 0 or self.chance(0.15):
            return self.leaf()
        kinds = {
            self.elementwise: 30,
            self.unary: 12,
            self.positive_use: 12,
            self.max_min: 6,
            self.binary_function: 6,
            self.reduce: 10,
            self.matmul: 12,
            self.transpose: 4,
            self.reshape: 3,
            self.newaxis: 3,
            self.gather: 5 if LABELS in self.params else 0,
            self.mask: 5,
            self.zero: 2,
            self.clip_where: 5,
            self.outer: 2,
            self.move: 6,
            self.constant: 2,
            self.join: 3,
        }
        makers = list(kinds)
        for _ in range(6):
            make = self.rng.choices(makers, [kinds[m] for m in makers])[0]
            val = make(depth)
            if val is not None:
                val = self.tame(val) if val.bound > 1e3 else val
                return self.maybe_parens(val)
        return self.leaf()

    def operand_like(self, shape: tuple, depth: int, exact: bool = False) -> Val:
        """An operand that broadcasts with ``shape`` (to ``shape`` itself when ``exact``)."""

        def fits(s):
            out = broadcast(shape, s)
            return out is not None and (not exact or out == tuple(shape))

        if self.chance(0.15):
            return self.number()
        for _ in range(4):
            val = self.expr(depth)
            if fits(val.shape):
                return val
        val = self.leaf(lambda v: fits(v.shape))
        return val if val is not None else self.number()

    def elementwise(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        op = self.rng.choice("+-*/")
        if op == "/":
            b = self.positive(self.operand_like(a.shape, depth - 1))
        else:
            b = self.operand_like(a.shape, depth - 1)
        if self.chance(0.5) and op in "+*":
            a, b = b, a
        shape = broadcast(a.shape, b.shape)
        if a.shape != b.shape:
            self.feature("broadcast")
        if b.kind == "matmul" and op == "*":
            self.feature("product-in-elementwise")
        self.feature(f"ew:{op}")
        level = ADD if op in "+-" else MUL
        text = f"{a.at(level)} {op} {b.at(level + 1)}"
        if op == "+":
            bound, lo = a.bound + b.bound, a.lo + b.lo if a.lo and b.lo else 0.0
        elif op == "-":
            bound, lo = a.bound + b.bound, 0.0
        elif op == "*":
            bound, lo = a.bound * b.bound, a.lo * b.lo
        else:
            bound, lo = a.bound / b.lo, (a.lo / b.bound if a.lo else 0.0)
        return Val(text, shape, bound, lo, level, kind="elementwise")

    def positive(self, a: Val) -> Val:
        """A positive value made from ``a`` (``a`` itself when it is known to be positive)."""
        if a.lo >= 0.05:
            return a
        a = self.tame(a) if a.bound > 3 else a
        forms = [
            (f"1.0 + {a.at(MUL)} * {a.at(MUL + 1)}", 1 + a.bound**2, 1.0, ADD),
            (f"np.abs({a.text}) + 0.5", a.bound + 0.5, 0.5, ADD),
            (f"np.exp({a.text})", math.exp(a.bound), math.exp(-a.bound), ATOM),
            (f"{a.at(MUL)} * {a.at(MUL + 1)} + 0.1", a.bound**2 + 0.1, 0.1, ADD),
            (f"np.sqrt({a.at(MUL)} * {a.at(MUL + 1)} + 1.0)", math.sqrt(a.bound**2 + 1), 1.0, ATOM),
        ]
        text, bound, lo, prec = self.rng.choice(forms)
        if a.name:
            self.uses[a.name] += 1
            self.stmt_uses[a.name] += 1
            self.feature("fork-in-expression" if "*" in text else "fork")
        if "np.exp" in text:
            self.feature("exp")
        if "np.abs" in text:
            self.feature("abs")
        if "np.sqrt" in text:
            self.feature("sqrt")
        return Val(text, a.shape, bound, lo, prec, kind="positive")

    def unary(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        known = [fn for fn in NUMPY_FUNCTIONS if fn in UNARY_WEIGHTS]
        fn = self.rng.choices(
            known + ["neg", "unary-plus", "sigmoid"],
            [UNARY_WEIGHTS[fn] for fn in known] + [4, 1, 2],
        )[0]
        self.feature(fn)
        if fn == "unary-plus":
            return Val(f"+{a.at(UNARY)}", a.shape, a.bound, a.lo, prec=UNARY, kind="neg")
        if fn == "neg":
            return Val(f"-{a.at(UNARY)}", a.shape, a.bound, prec=UNARY, kind="neg")
        if fn == "sigmoid":
            return self.sigmoid(a)
        return self.function_of(fn, a)

    def function_of(self, fn: str, a: Val) -> Val:
        """``np.<fn>(a)``, with ``a`` kept inside the function's domain, and its bounds."""
        if fn in ("sin", "cos", "arctan"):  # bounded everywhere
            return Val(f"np.{fn}({a.text})", a.shape, 1.6, kind=fn)
        if fn == "tanh":
            return Val(f"np.tanh({a.text})", a.shape, 1.0, kind="tanh")
        if fn in ("abs", "absolute", "fabs"):
            return Val(f"np.{fn}({a.text})", a.shape, a.bound, kind="abs")
        if fn in ("rad2deg", "degrees"):
            return Val(f"np.{fn}({a.text})", a.shape, a.bound * 57.3, kind=fn)
        if fn in ("deg2rad", "radians"):
            return Val(f"np.{fn}({a.text})", a.shape, a.bound / 57.2, kind=fn)
        if fn in ("exp", "expm1", "sinh", "cosh"):
            a = self.tame(a) if a.bound > 3 else a
            bound = {"exp": math.exp, "expm1": math.expm1, "sinh": math.sinh, "cosh": math.cosh}
            lo = {"exp": math.exp(-a.bound), "cosh": 1.0}.get(fn, 0.0)
            return Val(f"np.{fn}({a.text})", a.shape, bound[fn](a.bound), lo, kind=fn)
        if fn == "tan":  # its argument kept inside (-1.2, 1.2), away from the poles
            if a.bound > 1.2:
                a = Val(f"np.tanh({a.text})", a.shape, 1.0, kind="tanh")
            return Val(f"np.tan({a.text})", a.shape, math.tan(a.bound), kind=fn)
        if fn in ("arcsin", "arccos", "arctanh"):  # its argument kept inside (-0.9, 0.9)
            text = a.text if a.bound <= 0.9 else f"0.9 * np.tanh({a.text})"
            return Val(f"np.{fn}({text})", a.shape, 3.2, kind=fn)
        if fn == "square":
            a = self.tame(a) if a.bound > 4 else a
            return Val(f"np.square({a.text})", a.shape, a.bound**2, a.lo**2, kind="pow")
        if fn == "negative":
            return Val(f"np.negative({a.text})", a.shape, a.bound, kind="neg")
        if fn == "sign":  # no gradient; a jump at 0 (a kink for the checker)
            return Val(f"np.sign({a.text})", a.shape, 1.0, kind="sign")
        if fn == "exp2":
            a = self.tame(a) if a.bound > 3 else a
            return Val(f"np.exp2({a.text})", a.shape, 2**a.bound, 2**-a.bound, kind=fn)
        if fn == "arcsinh":
            return Val(f"np.arcsinh({a.text})", a.shape, math.asinh(a.bound), kind=fn)
        p = self.positive(a)
        if fn in ("log", "log2", "log10"):
            base = {"log": 1.0, "log2": math.log(2), "log10": math.log(10)}[fn]
            bound = (max(abs(math.log(p.lo)), math.log(p.bound)) + 0.1) / base
            return Val(f"np.{fn}({p.text})", a.shape, bound, kind="log")
        if fn == "log1p":
            return Val(f"np.log1p({p.text})", a.shape, math.log1p(p.bound) + 0.1, kind="log")
        if fn == "reciprocal":
            return Val(f"np.reciprocal({p.text})", a.shape, 1 / p.lo, 1 / p.bound, kind=fn)
        if fn == "arccosh":  # its argument at least 1.05: away from the pole of its gradient
            bound = math.acosh(1 + p.bound) + 0.1
            return Val(f"np.arccosh({p.at(ADD)} + 1.0)", a.shape, bound, kind=fn)
        assert fn == "sqrt", fn
        return Val(f"np.sqrt({p.text})", a.shape, math.sqrt(p.bound), math.sqrt(p.lo))

    def sigmoid(self, z: Val) -> Val:
        """The notes' sigmoid gate, spelled as they spell it: ``1 / (1 + np.exp(-z))``."""
        z = self.tame(z) if z.bound > 30 else z
        one = self.rng.choice(["1", "1.0"])
        exp = f"np.exp(-{z.at(UNARY)})"
        den = f"{one} + {exp}"
        if self.chance(0.3):
            self.feature("sigmoid:swapped-sum")
            den = f"{exp} + {one}"
        lo = 1.0 / (1.0 + math.exp(z.bound))
        return Val(f"{one} / ({den})", z.shape, 1.0, lo, prec=MUL, kind="sigmoid")

    def positive_use(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        e = self.rng.choice(["2", "3", "0.5", "-1", "1.5", "param", "2", "-0.5"])
        if e == "param" and ("s" not in self.env or self.env["s"].shape):
            e = "2"
        if e == "3" and a.bound > 4:
            a = self.tame(a)
        if e in ("2", "3"):
            self.feature(f"pow:{e}")
            text = self.rng.choice([e, e + ".0"])
            return Val(f"{a.at(ATOM)} ** {text}", a.shape, a.bound ** int(e), prec=POW, kind="pow")
        p = self.positive(a)
        self.feature(f"pow:{e}")
        if e == "param":
            self.uses["s"] += 1
            self.stmt_uses["s"] += 1
            self.feature("scalar-param")
            bound = max(p.bound**1.5, p.lo**-1.5)
            return Val(f"{p.at(ATOM)} ** s", a.shape, bound, p.lo if p.lo > 1 else 0.0, POW, "pow")
        k = float(e)
        bound = max(p.bound**k, p.lo**k)
        return Val(f"{p.at(ATOM)} ** {e}", a.shape, bound, min(p.bound**k, p.lo**k), POW, "pow")

    def max_min(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        fn = self.rng.choice(["maximum", "minimum"])
        self.feature(fn)
        if self.chance(0.35):
            self.feature("max/min-constant")
            k = self.rng.choice(["0", "0.5", "-0.3", "0.0"])
            b = Val(k, (), abs(float(k)))
            if self.chance(0.5):  # np.maximum(0, <expression>): the ReLU of the notes
                if a.name is None:
                    self.feature("maximum(number, expression)")
                a, b = b, a
        else:
            b = self.operand_like(a.shape, depth - 1)
            if self.chance(0.5):
                a, b = b, a
        lo = max(a.lo, b.lo) if fn == "maximum" else min(a.lo, b.lo)
        shape = broadcast(a.shape, b.shape)
        return Val(f"np.{fn}({a.text}, {b.text})", shape, max(a.bound, b.bound), lo, kind=fn)

    def binary_function(self, depth: int) -> Val:
        """np.arctan2, np.hypot (one input kept positive, away from their kink at the origin and
        arctan2's branch cut) and np.power with a number exponent."""
        fn = self.rng.choice(["arctan2", "hypot", "power", "power", "logaddexp", "logaddexp2"])
        a = self.expr(depth - 1)
        self.feature(fn)
        if fn in ("logaddexp", "logaddexp2"):
            a = self.tame(a) if a.bound > 30 else a
            b = self.operand_like(a.shape, depth - 1)
            b = self.tame(b) if b.bound > 30 else b
            if self.chance(0.5):
                a, b = b, a
            shape = broadcast(a.shape, b.shape)
            bound = max(a.bound, b.bound) + 0.7
            return Val(f"np.{fn}({a.text}, {b.text})", shape, bound, kind=fn)
        if fn == "power":
            e = self.rng.choice(["2", "3", "2.0", "-1", "0.5", "1.5", "-0.5", "-2"])
            if e in ("2", "3", "2.0"):  # any base
                self.feature("power:integer")
                a = self.tame(a) if a.bound > 4 else a
                return Val(f"np.power({a.text}, {e})", a.shape, a.bound ** float(e), kind="pow")
            self.feature("power:fraction")
            p = self.positive(a)
            k = float(e)
            bound, lo = max(p.bound**k, p.lo**k), min(p.bound**k, p.lo**k)
            return Val(f"np.power({p.text}, {e})", a.shape, bound, lo, kind="pow")
        b = self.positive(self.operand_like(a.shape, depth - 1))
        if fn == "hypot" and self.chance(0.5):
            a, b = b, a
        shape = broadcast(a.shape, b.shape)
        if fn == "arctan2":  # arctan2(y, x) with x > 0: inside (-pi/2, pi/2)
            return Val(f"np.arctan2({a.text}, {b.text})", shape, 1.6, kind=fn)
        return Val(f"np.hypot({a.text}, {b.text})", shape, a.bound + b.bound, b.lo, kind=fn)

    def reduce(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        if len(a.shape) == 2 and self.chance(0.2):  # a third axis, to be reduced
            a = self.newaxis_of(a)
        if len(a.shape) not in (1, 2, 3):
            return None
        fn = self.rng.choice(["sum", "mean", "max"] * 2 + ["min", "var", "std", "prod", "norm"])
        rank = len(a.shape)
        axes = [None, 0, -1] + ([1, (0, 1), (0, -1)] if rank >= 2 else [])
        if rank == 3:
            axes = [2, -2, (1, 2), (0, 2), (0, 1, 2), (-2, -1), 2, -2] + axes
        axis = self.rng.choice(axes)
        if fn in ("prod", "norm") and isinstance(axis, tuple):
            axis = axis[0]  # one axis (or all): over several, np.linalg.norm is a matrix norm
        if fn == "prod" and a.bound > 1.2:
            a = self.tame(a)
        if fn == "norm":
            return self.norm(a, axis)
        keep = self.rng.choice([None, True, False])
        method = self.chance(0.5)
        self.feature(f"reduce:{fn}", "reduce:method" if method else "reduce:np")
        self.feature("axis:tuple" if isinstance(axis, tuple) else f"axis:{axis}")
        if keep is not None:
            self.feature(f"keepdims:{keep}")
        if a.kind == "matmul" and method:
            self.feature("reduce-of-product")
        if rank == 3:
            self.feature("reduce:3d")
        args = []
        if axis is not None:
            if self.chance(0.3):
                self.feature("axis:positional")
                args.append(repr(axis))
            else:
                args.append(f"axis={axis!r}")
        if keep is not None:
            args.append(f"keepdims={keep}")
        if fn in ("var", "std") and self.chance(0.2):  # (a size-1 axis: 0 / 0, a skipped point)
            self.feature("ddof")
            args.append("ddof=1")
        if method:
            text = f"{a.at(ATOM)}.{fn}({', '.join(args)})"
        else:
            text = f"np.{fn}({', '.join([a.text] + args)})"
        if axis is None:
            reduced = set(range(rank))
        elif isinstance(axis, tuple):
            reduced = {k % rank for k in axis}
        else:
            reduced = {axis % rank}
        shape = tuple(
            1 if k in reduced else d for k, d in enumerate(a.shape) if keep or k not in reduced
        )
        bound = a.bound * (MAX_SIZE ** len(reduced) if fn == "sum" else 1)
        if fn == "var":
            bound = a.bound**2
        lo = a.lo if fn in ("sum", "mean", "max", "min", "prod") else 0.0
        if fn == "prod":
            lo = a.lo ** (MAX_SIZE ** len(reduced)) if a.lo else 0.0
        return Val(text, shape, bound, lo, kind="reduce")

    def norm(self, a: Val, axis) -> Val:
        """``np.linalg.norm(a)`` or over one axis, with or without keepdims."""
        rank = len(a.shape)
        keep = self.rng.choice([None, True, False]) if axis is not None else None
        self.feature("reduce:norm", "reduce:np")
        self.feature(f"axis:{axis}")
        args = [a.text] + ([f"axis={axis}"] if axis is not None else [])
        if keep is not None:
            self.feature(f"keepdims:{keep}")
            args.append(f"keepdims={keep}")
        reduced = set(range(rank)) if axis is None else {axis % rank}
        shape = tuple(
            1 if k in reduced else d for k, d in enumerate(a.shape) if keep or k not in reduced
        )
        bound = a.bound * MAX_SIZE ** len(reduced)
        return Val(f"np.linalg.norm({', '.join(args)})", shape, bound, kind="reduce")

    # -- the course's vocabulary -----------------------------------------------------------

    def clip_where(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        if self.chance(0.5):  # np.clip with number bounds (one may be None)
            lo, hi = self.rng.choice(
                [("-0.5", "0.5"), ("-1.0", "0.3"), ("0", "None"), ("None", "0.2"), ("-0.25", "1")]
            )
            self.feature("clip")
            if "None" in (lo, hi):
                self.feature("clip:one-sided")
            if a.shape and self.chance(0.4):  # (a Python float has no methods)
                self.feature("clip:method")
                text = f"{a.at(ATOM)}.clip({lo}, {hi})"
            else:
                text = f"np.clip({a.text}, {lo}, {hi})"
            bound = max(abs(float(k)) for k in (lo, hi) if k != "None")
            if "None" in (lo, hi):
                bound = max(bound, a.bound)
            return Val(text, a.shape, bound, kind="clip")
        h = self.expr(depth - 1)
        b = self.operand_like(a.shape, depth - 1)
        shape = broadcast(a.shape, b.shape)
        if shape is None or broadcast(shape, h.shape) is None:
            return None
        shape = broadcast(shape, h.shape)
        op = self.rng.choice([">", "<", ">=", "<="])
        k = self.rng.choice(["0", "0.5", "-0.5"])
        self.feature("where")
        text = f"np.where({h.at(ADD)} {op} {k}, {a.text}, {b.text})"
        return Val(text, shape, max(a.bound, b.bound), min(a.lo, b.lo), kind="where")

    def outer(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        if len(a.shape) != 1:
            a = self.leaf(lambda v: len(v.shape) == 1)
        b = self.leaf(lambda v: len(v.shape) == 1)
        if a is None or b is None:
            return None
        self.feature("outer")
        shape = (a.shape[0], b.shape[0])
        return Val(f"np.outer({a.text}, {b.text})", shape, a.bound * b.bound, kind="outer")

    def move(self, depth: int) -> Val:
        """expand_dims, np.newaxis, squeeze, transpose with axes, swapaxes, ravel, flatten,
        copy, astype(float): operations that move elements (or copy them)."""
        a = self.expr(depth - 1)
        rank = len(a.shape)
        form = self.rng.choice(
            ["expand_dims", "np.newaxis", "squeeze", "transpose:axes", "swapaxes", "ravel",
             "flatten", "copy", "astype"]
        )  # fmt: skip
        if 1 in a.shape and self.chance(0.3):
            form = "squeeze"
        if form == "expand_dims" and rank in (1, 2):
            k = self.rng.randrange(rank + 1)
            shape = a.shape[:k] + (1,) + a.shape[k:]
            self.feature("expand_dims")
            return Val(f"np.expand_dims({a.text}, {k})", shape, a.bound, a.lo, kind="view")
        if form == "np.newaxis" and rank == 1:
            self.feature("np.newaxis")
            text = f"{a.at(ATOM)}[:, np.newaxis]"
            return Val(text, (a.shape[0], 1), a.bound, a.lo, kind="view")
        if form == "squeeze" and 1 in a.shape:
            k = a.shape.index(1)
            shape = a.shape[:k] + a.shape[k + 1 :]
            if self.chance(0.5):
                self.feature("np.squeeze")
                text = f"np.squeeze({a.text}, axis={k})"
            else:
                self.feature("squeeze")
                text = f"{a.at(ATOM)}.squeeze({k})"
            return Val(text, shape, a.bound, a.lo, kind="view")
        if form == "transpose:axes" and rank in (2, 3):
            perm = list(range(rank))
            self.rng.shuffle(perm)
            shape = tuple(a.shape[k] for k in perm)
            self.feature("transpose:axes")
            if self.chance(0.5):
                text = f"{a.at(ATOM)}.transpose({', '.join(map(str, perm))})"
            else:
                text = f"np.transpose({a.text}, {tuple(perm)})"
            return Val(text, shape, a.bound, a.lo, kind="transpose")
        if form == "swapaxes" and rank in (2, 3):
            i, j = self.rng.sample(range(rank), 2)
            shape = list(a.shape)
            shape[i], shape[j] = shape[j], shape[i]
            self.feature("swapaxes")
            text = self.rng.choice(
                [f"{a.at(ATOM)}.swapaxes({i}, {j})", f"np.swapaxes({a.text}, {i}, {j})"]
            )
            return Val(text, tuple(shape), a.bound, a.lo, kind="transpose")
        if form in ("ravel", "flatten") and rank == 2:
            dims = [d for d in a.shape if d != 1]
            shape = (("*".join(map(str, dims)) if len(dims) > 1 else dims[0]) if dims else 1,)
            if form == "ravel" and self.chance(0.4):
                self.feature("np.ravel")
                return Val(f"np.ravel({a.text})", shape, a.bound, a.lo, kind="view")
            self.feature(form)
            kind = "view" if form == "ravel" else "copy"
            return Val(f"{a.at(ATOM)}.{form}()", shape, a.bound, a.lo, kind=kind)
        if form == "copy" and rank:
            if self.chance(0.5):
                self.feature("np.copy")
                return Val(f"np.copy({a.text})", a.shape, a.bound, a.lo, kind="copy")
            self.feature("copy")
            return Val(f"{a.at(ATOM)}.copy()", a.shape, a.bound, a.lo, kind="copy")
        if form == "astype" and rank:
            self.feature("astype")
            return Val(f"{a.at(ATOM)}.astype(float)", a.shape, a.bound, a.lo, kind="copy")
        return None

    def constant(self, depth: int) -> Val:
        """np.zeros/ones/full and their _like forms, combined with a value."""
        a = self.expr(depth - 1)
        if not a.shape:
            return None
        form = self.rng.choice(["zeros_like", "ones_like", "full_like"])
        if a.shape == PARAMS["x"] and "x" in self.env and self.chance(0.6):
            fn = self.rng.choice(["ones", "zeros", "full"])
            self.feature(f"{fn}(shape)")
            if fn == "full":
                return Val(f"np.full(x.shape, 0.5) * {a.at(MUL + 1)}", a.shape, a.bound, prec=MUL)
            op = "*" if fn == "ones" else "+"
            level = MUL if op == "*" else ADD
            return Val(f"np.{fn}(x.shape) {op} {a.at(level + 1)}", a.shape, a.bound, prec=level)
        self.feature(form)
        if form == "zeros_like":
            return Val(f"{a.at(ADD)} + np.zeros_like({a.text})", a.shape, a.bound, prec=ADD)
        if form == "ones_like":
            return Val(f"np.ones_like({a.text}) * {a.at(MUL + 1)}", a.shape, a.bound, prec=MUL)
        return Val(f"np.full_like({a.text}, 2.0) * {a.at(MUL + 1)}", a.shape, 2 * a.bound, prec=MUL)

    def join(self, depth: int) -> Val:
        """np.stack, np.concatenate, np.hstack, np.vstack of a value and another of its shape."""
        a = self.expr(depth - 1)
        rank = len(a.shape)
        if rank not in (1, 2):
            return None
        b = self.leaf(lambda v: v.shape == a.shape and v.text != a.text)
        if b is None or self.chance(0.3):
            b = Val(f"np.tanh({a.text})", a.shape, 1.0, kind="tanh")
        parts = f"[{a.text}, {b.text}]" if self.chance(0.7) else f"({a.text}, {b.text})"
        bound = max(a.bound, b.bound)
        fn = self.rng.choice(["stack", "concatenate", "hstack", "vstack"])
        self.feature(fn)
        if fn == "stack" or (fn == "vstack" and rank == 1):
            k = self.rng.randrange(rank + 1) if fn == "stack" else 0
            shape = a.shape[:k] + (2,) + a.shape[k:]
            axis = f", axis={k}" if fn == "stack" and (k or self.chance(0.5)) else ""
            return Val(f"np.{fn}({parts}{axis})", shape, bound, kind="join")
        k = {"hstack": rank - 1, "vstack": 0}.get(fn, self.rng.randrange(rank))
        d = a.shape[k]
        joined = 2 * d if isinstance(d, int) else f"2*{d}"
        shape = a.shape[:k] + (joined,) + a.shape[k + 1 :]
        axis = f", axis={k}" if fn == "concatenate" and (k or self.chance(0.5)) else ""
        return Val(f"np.{fn}({parts}{axis})", shape, bound, kind="join")

    def product_operands(self, left: Val):
        """Operands b with b.shape[0] == left.shape[-1]: names and their transposes."""
        k = left.shape[-1]
        out = []
        for n, v in self.env.items():
            if len(v.shape) in (1, 2) and v.shape[0] == k:
                out.append(v)
            if len(v.shape) == 2 and v.shape[1] == k:
                out.append(Val(f"{n}.T", v.shape[::-1], v.bound, kind="transpose", name=n))
        return out

    def product(self, a: Val, b: Val) -> Val:
        if len(a.shape) == 2 and len(b.shape) == 2:
            shape, what = (a.shape[0], b.shape[1]), "mat-mat"
        elif len(a.shape) == 2:
            shape, what = (a.shape[0],), "mat-vec"
        elif len(b.shape) == 2:
            shape, what = (b.shape[1],), "vec-mat"
        else:
            shape, what = (), "vec-vec"
        spelling = self.rng.choice(["@", "@", ".dot", "np.dot"])
        self.feature(f"matmul:{spelling}", f"matmul:{what}")
        bound = a.bound * b.bound * MAX_SIZE
        if spelling == "@":
            if b.kind == "matmul" and b.prec == MUL:
                self.feature("matmul:parenthesised-right")
            return Val(f"{a.at(MUL)} @ {b.at(MUL + 1)}", shape, bound, prec=MUL, kind="matmul")
        if spelling == ".dot":
            return Val(f"{a.at(ATOM)}.dot({b.text})", shape, bound, kind="matmul")
        return Val(f"np.dot({a.text}, {b.text})", shape, bound, kind="matmul")

    def pick_operand(self, left: Val):
        choices = self.product_operands(left)
        if not choices:
            return None
        b = self.rng.choice(choices)
        if b.name:
            self.uses[b.name] += 1
            self.stmt_uses[b.name] += 1
            if self.uses[b.name] > 1:
                self.feature("fork")
        if b.kind == "transpose":
            self.feature(".T")
        return self.tame(b)

    def matmul(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        if len(a.shape) not in (1, 2):
            a = self.leaf(lambda v: len(v.shape) in (1, 2))
        b = self.pick_operand(a)
        if b is None:
            return None
        if len(b.shape) == 2 and self.chance(0.3):  # a sub-product on the right: a @ (b @ c)
            c = self.pick_operand(b)
            if c is not None:
                b = self.product(b, c)
        val = self.product(a, b)
        if len(val.shape) in (1, 2) and self.chance(0.25):  # a chain: a @ b @ c
            c = self.pick_operand(val)
            if c is not None:
                self.feature("matmul:chain")
                val = self.product(self.tame(val) if val.bound > 1e3 else val, c)
        return val

    def transpose(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        if len(a.shape) == 2 and self.chance(0.2):  # a third axis, to be transposed
            a = self.newaxis_of(a)
        if len(a.shape) not in (2, 3) and not (len(a.shape) == 1 and self.chance(0.2)):
            return None
        if len(a.shape) == 3:
            self.feature("transpose:3d")
        if self.chance(0.5):
            self.feature(".T")
            text = f"{a.at(ATOM)}.T"
        else:
            self.feature("np.transpose")
            text = f"np.transpose({a.text})"
        return Val(text, a.shape[::-1], a.bound, a.lo, kind="transpose", name=None)

    def reshape(self, depth: int) -> Val:
        a = self.expr(depth - 1)
        rank = len(a.shape)
        if rank == 1:
            if self.chance(0.5):
                self.feature("reshape:column")
                return Val(
                    f"{a.at(ATOM)}.reshape(-1, 1)", (a.shape[0], 1), a.bound, a.lo, kind="view"
                )
            self.feature("reshape:row")
            return Val(f"{a.at(ATOM)}.reshape(1, -1)", (1, a.shape[0]), a.bound, a.lo, kind="view")
        if rank != 2:
            return None
        if a.name and self.chance(0.3):
            self.feature("np.reshape")
            text = f"np.reshape({a.text}, ({a.text}.shape[0], -1))"
            return Val(text, a.shape, a.bound, a.lo, kind="view")
        dims = [d for d in a.shape if d != 1]
        if len(dims) <= 1:
            self.feature("reshape:-1")
            shape = (dims[0] if dims else 1,)
        else:
            self.feature("reshape:flatten")
            shape = ("*".join(map(str, a.shape)),)
        return Val(f"{a.at(ATOM)}.reshape(-1)", shape, a.bound, a.lo, kind="view")

    def newaxis(self, depth: int) -> Val:
        return self.newaxis_of(self.expr(depth - 1))

    def newaxis_of(self, a: Val) -> Val:
        if len(a.shape) == 2:  # a third axis: (A, 1, B), (A, B, 1) or (1, A, B)
            self.feature("newaxis:3d")
            index, shape = self.rng.choice(
                [
                    ("[:, None, :]", (a.shape[0], 1, a.shape[1])),
                    ("[:, :, None]", (*a.shape, 1)),
                    ("[None, :, :]", (1, *a.shape)),
                    ("[None]", (1, *a.shape)),
                ]
            )
            return Val(f"{a.at(ATOM)}{index}", shape, a.bound, a.lo, kind="view")
        if len(a.shape) != 1:
            return None
        if self.chance(0.6):
            self.feature("newaxis:column")
            return Val(f"{a.at(ATOM)}[:, None]", (a.shape[0], 1), a.bound, a.lo, kind="view")
        self.feature("newaxis:row")
        return Val(f"{a.at(ATOM)}[None, :]", (1, a.shape[0]), a.bound, a.lo, kind="view")

    def gather(self, depth: int) -> Val:
        roll = self.rng.random()
        if roll < 0.2:  # rows of a (D, M) value: an embedding lookup
            a = self.leaf(lambda v: v.shape == ("D", "M") and v.bound <= TAME)
            if a is not None:
                self.feature("gather:rows", "labels")
                index = self.rng.choice([f"[{LABELS}]", f"[{LABELS}, :]"])
                return Val(f"{a.text}{index}", ("N", "M"), a.bound, a.lo, kind="gather")
        if roll < 0.35:  # columns of an (A, D) value
            a = self.leaf(lambda v: len(v.shape) == 2 and v.shape[1] == "D" and v.bound <= TAME)
            if a is not None:
                self.feature("gather:columns", "labels")
                shape = (a.shape[0], "N")
                return Val(f"{a.text}[:, {LABELS}]", shape, a.bound, a.lo, kind="gather")
        if roll < 0.55:
            a = self.leaf(lambda v: v.shape == ("D",) and v.bound <= TAME)
            if a is not None:
                self.feature("gather:vector", "labels")
                return Val(f"{a.text}[{LABELS}]", ("N",), a.bound, a.lo, kind="gather")
        a = self.leaf(lambda v: v.shape == ("N", "D") and v.bound <= TAME)
        if a is None:
            return None
        if self.chance(0.5):
            if "n = x.shape[0]" not in self.header:
                self.header.append("n = x.shape[0]")
            self.feature("gather:arange-n")
            rows = "np.arange(n)"
        else:
            self.feature("gather:arange-shape")
            rows = "np.arange(x.shape[0])"
        self.feature("labels")
        return Val(f"{a.text}[{rows}, {LABELS}]", ("N",), a.bound, a.lo, kind="gather")

    def mask(self, depth: int) -> Val:
        h = self.expr(depth - 1)
        op = self.rng.choice([">", ">=", "<", "<="] * 3 + ["==", "!="])
        k = self.number() if self.chance(0.3) else None
        rhs = k.text if k is not None else self.rng.choice(["0", "0.5", "-0.5"])
        cond = f"({h.at(ADD)} {op} {rhs})"
        g = self.operand_like(h.shape, depth - 1)
        if g.text.isdigit() or g.text.startswith("x.shape"):
            g = Val("1.5", (), 1.5, lo=1.5)  # bool * int is an int array: `t -= 0.5` would fail
        shape = broadcast(h.shape, g.shape)
        self.feature("mask")
        text = f"{cond} * {g.at(MUL + 1)}" if self.chance(0.5) else f"{g.at(MUL)} * {cond}"
        return Val(text, shape, g.bound, prec=MUL, kind="mask")

    def zero(self, depth: int) -> Val:
        a = self.leaf()
        form = self.rng.choice(["0.0*", "a-a", "**0"])
        self.feature(f"zero:{form}")
        if form == "0.0*":
            return Val(f"0.0 * {a.at(MUL + 1)}", a.shape, 0.0, prec=MUL, kind="elementwise")
        if form == "a-a":
            if a.name:
                self.uses[a.name] += 1
                self.stmt_uses[a.name] += 1
                self.feature("fork-in-expression")
            return Val(f"{a.at(ADD)} - {a.at(ADD + 1)}", a.shape, 0.0, prec=ADD, kind="elementwise")
        return Val(f"{a.at(ATOM)} ** 0", a.shape, 1.0, 1.0, prec=POW, kind="pow")

    # -- statements -----------------------------------------------------------------------

    def new_name(self) -> str:
        """t1, t2, ...; now and then a name that stagegen's own names could clash with."""
        clashes = [n for n in CLASH_NAMES if n not in self.env]
        if clashes and self.chance(0.04):
            self.feature("clash-name")
            return self.rng.choice(clashes)
        self.counter += 1
        return f"t{self.counter}"

    def emit(self, line: str) -> None:
        updated = re.match(r"(\w+) [-+*/]= ", line)
        if updated:  # t += e: t no longer holds a cached gate's output
            self.cached.pop(updated.group(1), None)
        self.lines.append(line)
        self.statements += 1
        self.stmt_uses = Counter()

    def assign(self, name: str, val: Val) -> None:
        self.emit(f"{name} = {val.text}")
        self.cached.pop(name, None)
        for n in list(self.fresh):  # a view or alias of a stage: neither may be updated in place
            if val.name == n or (val.kind in ("view", "transpose") and n in val.text):
                self.fresh.discard(n)
        self.fresh.discard(name)
        if val.kind not in ("name", "view", "transpose"):  # (a NumPy scalar too)
            self.fresh.add(name)
        self.env[name] = Val(name, val.shape, val.bound, val.lo, name=name)
        if name not in self.stages and name not in self.params:
            self.stages.append(name)

    def augmented(self) -> bool:
        targets = [n for n in self.fresh if n in self.env]
        if not targets:
            return False
        t = self.rng.choice(sorted(targets))
        target = self.env[t]
        if self.chance(0.15):
            self.feature("zero:t-=t")
            self.emit(f"{t} -= {t}")
            self.env[t] = replace(target, bound=0.0, lo=0.0)
            return True
        op = self.rng.choice(["+=", "-=", "+=", "-=", "*=", "/="])
        e = self.operand_like(target.shape, self.rng.randint(0, 2), exact=True)
        if op == "/=":
            e = self.positive(e)
        if op == "*=" and e.bound > TAME:
            e = self.tame(e)
        self.feature(f"augmented:{op}")
        self.emit(f"{t} {op} {e.text}")
        bound = {"*=": target.bound * e.bound, "/=": target.bound / max(e.lo, 1e-3)}
        self.env[t] = replace(target, bound=bound.get(op, target.bound + e.bound), lo=0.0)
        return True

    def alias_augmented(self) -> bool:
        """``a = t; a += e``: NumPy updates t too (an array), or not (a NumPy scalar)."""
        targets = sorted(n for n in self.fresh if n in self.env)
        if not targets:
            return False
        t = self.rng.choice(targets)
        alias = self.new_name()
        self.assign(alias, self.env[t])
        self.fresh.discard(t)
        self.cached.pop(t, None)  # `alias += e` updates t too
        e = self.operand_like(self.env[t].shape, 1, exact=True)
        self.emit(f"{alias} += {e.text}")
        bound = self.env[t].bound + e.bound
        self.env[t] = replace(self.env[t], bound=bound, lo=0.0)
        self.env[alias] = replace(self.env[alias], bound=bound, lo=0.0)
        self.feature("alias-augmented")
        self.refusable.append(len(self.lines) - 1)
        return True

    def view_augmented(self) -> bool:
        """``a = t.T`` (or another view), then ``t += e``: NumPy updates a too."""
        targets = sorted(
            n for n in self.fresh if n in self.env and len(self.env[n].shape) in (1, 2)
        )
        if not targets:
            return False
        t = self.rng.choice(targets)
        val = self.env[t]
        views = [(f"{t}.reshape(-1, 1)", (val.shape[0], 1))] if len(val.shape) == 1 else []
        views += [(f"{t}[:, None]", (val.shape[0], 1))] if len(val.shape) == 1 else []
        views += [(f"{t}.T", val.shape[::-1]), (f"np.transpose({t})", val.shape[::-1])]
        text, shape = self.rng.choice(views)
        alias = self.new_name()
        self.assign(alias, Val(text, shape, val.bound, kind="view"))
        e = self.operand_like(val.shape, 1, exact=True)
        self.emit(f"{t} {self.rng.choice(['+=', '-='])} {e.text}")
        bound = val.bound + e.bound
        self.env[t] = replace(self.env[t], bound=bound, lo=0.0)
        self.env[alias] = replace(self.env[alias], bound=bound, lo=0.0)
        self.fresh.discard(t)
        self.feature("view-augmented")
        self.refusable.append(len(self.lines) - 1)
        return True

    def param_augmented(self) -> bool:
        p = self.rng.choice([n for n in self.params if n in self.env])
        e = self.operand_like(self.env[p].shape, 1, exact=True)
        self.emit(f"{p} += {e.text}")
        self.env[p] = replace(self.env[p], bound=self.env[p].bound + e.bound, lo=0.0)
        self.feature("param-augmented")
        self.refusable.append(len(self.lines) - 1)
        return True

    def grow_augmented(self) -> bool:
        """``t += e`` where e has more (or longer) dimensions than t: NumPy refuses it."""
        pairs = [
            (n, m)
            for n in sorted(self.fresh)
            for m in self.env
            if n in self.env
            and self.env[n].shape  # a NumPy scalar is not updated: `t += e` makes a new array
            and broadcast(self.env[n].shape, self.env[m].shape) not in (None, self.env[n].shape)
        ]
        if not pairs:
            return False
        t, m = self.rng.choice(pairs)
        self.emit(f"{t} += {m}")
        self.feature(MUST_REFUSE)
        self.refusable.append(len(self.lines) - 1)
        return True

    def statement(self) -> None:
        roll = self.rng.random()
        if roll < 0.10:
            if self.augmented():
                return
        elif roll < 0.112:
            if self.alias_augmented():
                return
        elif roll < 0.12:
            if self.view_augmented():
                return
        elif roll < 0.124:
            if self.param_augmented():
                return
        if self.chance(0.12):
            val = self.cached_stage()
        else:
            val = self.expr(self.rng.choice([1, 1, 2, 2, 2, 3]))
        stages = [n for n in self.stages if n in self.env]
        same = [p for p in self.params if p in self.env and self.env[p].shape == val.shape]
        if stages and self.chance(0.15):
            name = self.rng.choice(stages)
            self.feature("reassign")
        elif same and self.chance(0.02):
            name = self.rng.choice(same)
            self.feature("reassign-parameter")
            self.refusable.append(len(self.lines))
        else:
            name = self.new_name()
        self.assign(name, val)
        if val.kind in CACHED:  # its gate reads the output: (1 - t**2), (1 - s) * s, exp
            self.feature(f"cached:{val.kind}")
            self.cached[name] = val.kind

    def cached_stage(self) -> Val:
        """A stage that is one gate whose local gradient the backward reads from the stage's own
        output (np.tanh, np.exp, the sigmoid), or the ReLU ``np.maximum(0, <expression>)``,
        whose mask reads the output; later stages read it back (recent names are likelier)."""
        a = self.expr(self.rng.choice([1, 1, 2]))
        fn = self.rng.choice(["tanh", "exp", "sigmoid", "relu"])
        if fn == "sigmoid":
            self.feature("sigmoid")
            return self.sigmoid(a)
        if fn == "relu":
            if a.name is not None:
                a = Val(f"{a.text} * 2.0", a.shape, a.bound * 2, prec=MUL, kind="elementwise")
            self.feature("relu-stage", "maximum", "max/min-constant", "maximum(number, expression)")
            k = self.rng.choice(["0", "0.0"])
            return Val(f"np.maximum({k}, {a.text})", a.shape, a.bound, kind="maximum")
        self.feature(fn)
        return self.function_of(fn, a)

    def ret(self) -> None:
        roll = self.rng.random()
        if roll < 0.55 and self.stages:
            name = self.stages[-1]
            self.feature("return:name")
            self.lines.append(f"return {name}")
            return self.env[name].shape
        if roll < 0.75:
            a = self.leaf(lambda v: len(v.shape) > 0) or self.leaf()
            fn = self.rng.choice(["np.sum({} * {})", "{}.mean()", "np.max({})", "np.sum({})"])
            text = fn.format(a.at(ATOM), a.at(MUL + 1)) if "*" in fn else fn.format(a.at(ATOM))
            self.feature("return:scalar-expression")
            self.lines.append(f"return {text}")
            return ()
        if roll < 0.95:
            val = self.expr(2)
            self.feature("return:array-expression" if val.shape else "return:scalar-expression")
            self.lines.append(f"return {val.text}")
            return val.shape
        p = self.rng.choice([n for n in self.params if n in self.env])
        self.feature("return:parameter")
        self.lines.append(f"return {p}")
        return self.env[p].shape


def build_program(seed: int) -> Program:
    rng = random.Random(seed)
    b = Builder(rng)
    count = rng.choice([1, 2, 3, 4, 5, 6, 8]) if rng.random() < 0.85 else rng.randint(9, 25)
    grow_at = rng.randrange(count) if rng.random() < 0.03 else None
    for k in range(count):
        if k == grow_at and b.grow_augmented():
            continue
        b.statement()
    shape = b.ret()
    if LABELS in b.params and not any(re.search(rf"\b{LABELS}\b", line) for line in b.lines):
        b.params.remove(LABELS)
        b.features.discard("labels")
    b.feature("output:array" if shape else "output:scalar")
    signature = ", ".join(
        p if p == "s" else f'{p}: "{", ".join(map(str, PARAMS.get(p, ("N",))))}"' for p in b.params
    )
    if b.params[-1] == "s" and rng.random() < 0.3:
        signature += "=0.75"  # (the checker passes every argument)
        b.feature("default-value")
    body = "".join(f"    {line}\n" for line in b.header + b.lines)
    source = f"import numpy as np\n\n\ndef f({signature}):\n{body}"
    differentiable = [p for p in b.params if p != LABELS]
    wrt = None
    if len(differentiable) > 1 and rng.random() < 0.1:
        wrt = sorted(
            rng.sample(differentiable, rng.randint(1, len(differentiable) - 1)), key=b.params.index
        )
        b.feature("wrt")
    first = 5 + len(b.header)  # the line of the first statement (the def is on line 4)
    refusable = {first + k for k in b.refusable}
    return Program(seed, source, b.params, wrt, b.statements, b.features, refusable)


# ---------------------------------------------------------------------------- the checker


def draw_sizes(rng: np.random.Generator, k: int) -> dict:
    if k == 0:  # distinct sizes: a transposed product cannot hide
        return dict(zip("NDM", (int(v) for v in rng.permutation([2, 3, 4]))))
    return {d: int(rng.integers(1, MAX_SIZE + 1)) for d in "NDM"}


def make_args(prog: Program, sizes: dict, rng: np.random.Generator) -> list:
    args = []
    for p in prog.params:
        if p == LABELS:
            args.append(rng.integers(0, sizes["D"], size=sizes["N"]))
        elif p == "s":
            args.append(float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.5)))
        else:
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in PARAMS[p])
            args.append(np.clip(rng.normal(scale=0.8, size=shape), -1.5, 1.5))
    return args


def copies(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


class Skip(Exception):
    """The point is not usable (the forward overflows there, or sits on a kink)."""


class Failure(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def evaluate(forward, args):
    # (NumPy's "Degrees of freedom <= 0" warning for a var with ddof=1 over one element comes
    # before the division by 0 that raises here: the point is skipped, the warning not shown)
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Degrees of freedom", RuntimeWarning)
        try:
            out = np.array(forward(*copies(args)), dtype=np.float64)
        except FloatingPointError:
            raise Skip("floating-point error in the forward") from None
    if not np.all(np.isfinite(out)) or (out.size and np.max(np.abs(out)) > 1e8):
        raise Skip("the forward is too large here")
    return out


def difference(forward, args, k, idx, h):
    """The forward at args[k][idx] moved by -h and +h (stagegen.numeric; h relative above 1)."""
    return central_difference(lambda *a: evaluate(forward, list(a)), args, k, idx, step=h)


def numerical(forward, args, k, upstreams, h=H):
    """Central differences of sum(out * U) in args[k], for each U of ``upstreams``."""
    grads = [np.zeros(np.shape(args[k])) for _ in upstreams]
    for idx in indices(args[k]):
        d = difference(forward, args, k, idx, h)
        for g, up in zip(grads, upstreams):
            g[idx] = d.slope(up)
    return grads


def element_is_fine(forward, args, k, idx, up, analytic, tol):
    """A disagreeing element: true if another step agrees; Skip if the point is a kink."""
    for h in RETRY_STEPS:
        if abs(difference(forward, args, k, idx, h).slope(up) - analytic) <= tol:
            return True
    center = evaluate(forward, args)
    kinks = 0
    for h in KINK_STEPS:
        d = difference(forward, args, k, idx, h)
        right = np.sum((d.plus - center) * up) / (d.width / 2)
        left = np.sum((center - d.minus) * up) / (d.width / 2)
        kinks += abs(right - left) > KINK_RTOL * max(abs(right), abs(left), tol / RTOL)
    if kinks == len(KINK_STEPS):
        raise Skip("a kink")
    return False


def load_forward(source: str):
    namespace: dict = {"__name__": "fuzz_forward"}
    exec(compile(source, "<fuzz forward>", "exec"), namespace)
    return namespace["f"]


def check_point(prog, forward, backward, sizes, rng, stats) -> None:
    args = make_args(prog, sizes, rng)
    out = evaluate(forward, args)
    random_up = rng.normal(size=out.shape) if out.shape else float(rng.normal())
    wrt = prog.wrt or [p for p in prog.params if p != LABELS]
    names = prog.params
    gradients = []
    for up in (None, random_up):
        given = copies(args)
        up_given = up.copy() if isinstance(up, np.ndarray) else up
        try:
            # The forward raised nothing here (evaluate), so neither may the backward: a
            # division by zero, an overflow or an invalid value (log of a negative number) is
            # a gradient computed outside its domain, or a branch np.where evaluates in vain.
            with np.errstate(divide="raise", over="raise", invalid="raise"):
                grads = backward(*given) if up is None else backward(*given, up_given)
        except FloatingPointError:
            raise Failure("float-error", traceback.format_exc(limit=-3)) from None
        except Exception:
            raise Failure("backward-crash", traceback.format_exc(limit=-3)) from None
        for name, a, a0 in zip(names, given, args):
            if isinstance(a0, np.ndarray) and not np.array_equal(a, a0):
                raise Failure("modifies-input", f"the backward modified its input {name}")
        if isinstance(up, np.ndarray) and not np.array_equal(up, up_given):
            raise Failure("modifies-upstream", "the backward modified dout")
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(wrt):
            raise Failure("gradient-count", f"{len(grads)} gradients for {wrt}")
        gradients.append(grads)
        # Each returned gradient is the caller's own writable array: not a (read-only) view,
        # sharing no memory with another gradient, an input or the upstream.
        arrays = [(n, g) for n, g in zip(wrt, grads) if isinstance(g, np.ndarray) and g.size]
        others = [a for a in [*given, up_given] if isinstance(a, np.ndarray)]
        for name, g in arrays:
            if not g.flags.writeable:
                raise Failure("gradient-aliasing", f"d{name} is read-only")
            if any(np.shares_memory(g, h) for n, h in arrays if n != name):
                raise Failure("gradient-aliasing", f"d{name} shares memory with another gradient")
            if any(np.shares_memory(g, a) for a in others):
                raise Failure("gradient-aliasing", f"d{name} shares memory with an input or dout")
        stats["gradients"] += len(arrays)
    if out.shape:  # an array output with a number as its upstream: that number times the default
        with np.errstate(all="ignore"):
            try:
                grads = backward(*copies(args), 0.7)
            except Exception:
                raise Failure("backward-crash", traceback.format_exc(limit=-3)) from None
        grads = grads if isinstance(grads, tuple) else (grads,)
        for p, g, g1 in zip(wrt, grads, gradients[0]):
            g, g1 = np.asarray(g, dtype=float), np.asarray(g1, dtype=float)
            if g.shape != g1.shape or not np.allclose(
                g, 0.7 * g1, rtol=1e-12, atol=1e-12 * (1 + np.max(np.abs(g1), initial=0))
            ):
                raise Failure(
                    "number-upstream", f"d{p} with dout=0.7:\n{g}\n0.7 * d{p}:\n{0.7 * g1}"
                )
    ups = [np.ones(out.shape), np.asarray(random_up)]
    numeric = {p: numerical(forward, args, names.index(p), ups) for p in wrt}
    for j, label in enumerate(("default upstream", "random upstream")):
        largest = max(
            max(float(np.max(np.abs(numeric[p][j]), initial=0.0)) for p in wrt),
            max(
                float(np.max(np.abs(np.asarray(g, dtype=float)), initial=0.0)) for g in gradients[j]
            ),
        )
        for p, g in zip(wrt, gradients[j]):
            k = names.index(p)
            want = numeric[p][j]
            got = np.asarray(g, dtype=np.float64)
            if np.shape(got) != np.shape(args[k]):
                raise Failure(
                    "shape",
                    f"d{p} ({label}) has shape {np.shape(got)}, {p} has {np.shape(args[k])}",
                )
            if not np.all(np.isfinite(got)):
                raise Failure("not-finite", f"d{p} ({label}) = {got}")
            scale = max(
                float(np.max(np.abs(want), initial=0)), float(np.max(np.abs(got), initial=0))
            )
            # float64 round-off of the differences is about 1e-11 * sum(|out * U|): a floor
            noise = ATOL * (1.0 + float(np.sum(np.abs(out * ups[j]))))
            tol = RTOL * max(scale, 1e-3 * largest) + noise
            bad = [idx for idx in np.ndindex(*np.shape(got)) if abs(got[idx] - want[idx]) > tol]
            for idx in bad:
                if not element_is_fine(forward, args, k, idx, ups[j], float(got[idx]), tol):
                    raise Failure(
                        "wrong-gradient",
                        f"d{p} ({label}) at {idx}: generated {float(got[idx])!r}, "
                        f"numerical {float(want[idx])!r} (tolerance {tol:.1e})\n"
                        f"generated d{p}:\n{got}\nnumerical d{p}:\n{want}",
                    )
    stats["elements"] += sum(int(np.size(args[names.index(p)])) for p in wrt)


def run_program(prog: Program, stats: Counter, sabotage=None) -> str:
    """Checks one program. Returns its verdict: "refused", "checked", "skipped" (no usable
    point); raises Failure for a bug."""
    try:
        text = stagegen.generate(prog.source, wrt=prog.wrt, filename="fuzz.py")
    except stagegen.StagegenError as error:
        at = prog.refusable is None or error.line in prog.refusable
        if (prog.must_refuse or prog.may_refuse) and at:
            stats["refused-as-required"] += prog.must_refuse
            reason = re.sub(r"\([^)]*\)", "(...)", re.sub(r"`[^`]*`", "`_`", error.message))
            stats["refused:" + reason[:60]] += 1
            return "refused"
        raise Failure("refused", str(error)) from None
    except Exception:
        raise Failure("generate-crash", traceback.format_exc(limit=-4)) from None
    if prog.must_refuse:
        raise Failure("accepted-invalid", f"a `+=` that NumPy refuses was accepted\n{text}")
    try:
        backward = load_backward_module(text)["f_backward"]
        if sabotage is not None:
            backward = sabotage(backward)
    except Exception:
        raise Failure("module-crash", traceback.format_exc(limit=-3) + text) from None
    forward = load_forward(prog.source)
    rng = np.random.default_rng(prog.seed)
    checked = 0
    for k in range(2):
        sizes = draw_sizes(rng, k)
        for _ in range(3):  # a few tries to find a usable point
            try:
                check_point(prog, forward, backward, sizes, rng, stats)
            except Skip as why:
                stats[f"skipped:{why}"] += 1
                continue
            except Failure as failure:
                failure.detail += f"\nsizes {sizes}\n--- generated ---\n{text}"
                raise
            except Exception:
                raise Failure("forward-crash", f"sizes {sizes}\n" + traceback.format_exc(limit=-3))
            checked += 1
            stats["points"] += 1
            if 1 in sizes.values():
                stats["points-with-size-1"] += 1
            break
    return "checked" if checked else "skipped"


def describe(prog: Program, failure: Failure) -> str:
    return (
        f"[{failure.kind}] seed {prog.seed} (STAGEGEN_ARRAY_FUZZ_SEED={prog.seed} "
        f"STAGEGEN_ARRAY_FUZZ_EXAMPLES=1), wrt={prog.wrt}\n{prog.source}\n{failure.detail}"
    )


# ---------------------------------------------------------------------------- the tests

# Bugs reported and pinned by a strict xfail below, not fixed yet: a failure that a predicate
# recognises (from the program and the failure) is counted as known instead of failing the run.
# Remove an entry when its xfail starts to pass.
KNOWN_BUGS = {}
KNOWN_BUG_CONSTRUCTS: set = set()  # constructs never accepted while their bug is open


def known_bug(prog: Program, failure: Failure):
    return next((name for name, test in KNOWN_BUGS.items() if test(prog, failure)), None)


STATS: Counter = Counter()
ACCEPTED_FEATURES: Counter = Counter()


def test_generator_writes_every_construct():
    """Every construct of CONSTRUCTS is generated by some program of the first 600 seeds (a
    construct added to the generator must be added there, and vice versa)."""
    seen: set = set()
    statements = []
    for seed in range(600):
        prog = build_program(seed)
        seen |= prog.features
        statements.append(prog.statements)
        compile(prog.source, "<fuzz>", "exec")
    assert CONSTRUCTS <= seen, f"never generated: {sorted(CONSTRUCTS - seen)}"
    assert seen <= CONSTRUCTS, f"not listed in CONSTRUCTS: {sorted(seen - CONSTRUCTS)}"
    assert min(statements) == 1 and max(statements) >= 20


def scaled(backward):
    def wrong(*args):
        grads = backward(*args)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(g * 1.0001 + 1e-4 for g in grads)

    return wrong


def test_the_checker_catches_a_gradient_off_by_a_ten_thousandth():
    """Guards the checker itself: every backward whose gradients are changed by a ten-thousandth
    (relative, plus 1e-4) is caught, unless the program was refused or had no usable point."""
    caught = 0
    for seed in range(40):
        prog = build_program(seed)
        try:
            verdict = run_program(prog, Counter(), sabotage=scaled)
        except Failure as failure:
            if known_bug(prog, failure):
                continue
            assert failure.kind in ("wrong-gradient", "number-upstream"), describe(prog, failure)
            caught += 1
            continue
        assert verdict in ("refused", "skipped"), prog.source
    assert caught >= 30


def logs_a_negative_number(backward):
    def warns(*args):
        np.log(np.array(-1.0))
        return backward(*args)

    return warns


def test_the_checker_catches_a_floating_point_error_in_the_backward():
    """Guards the float-error check: a backward that takes the log of a negative number (a
    RuntimeWarning otherwise, and right gradients) fails every program it checks."""
    verdicts = []
    for seed in range(10):
        try:
            verdicts.append(run_program(build_program(seed), Counter(), logs_a_negative_number))
        except Failure as failure:
            verdicts.append(failure.kind)
    assert "checked" not in verdicts and verdicts.count("float-error") >= 7, verdicts


def test_random_array_programs_match_central_differences():
    failures: list[str] = []
    kinds: Counter = Counter()
    start = time.monotonic()
    if ON_DEMAND:
        print(f"\narray fuzz: {EXAMPLES} programs from seed {SEED}", flush=True)
    for k in range(EXAMPLES):
        prog = build_program(SEED + k)
        STATS["programs"] += 1
        STATS["statements"] += prog.statements
        try:
            verdict = run_program(prog, STATS)
        except Failure as failure:
            known = known_bug(prog, failure)
            if known:
                STATS[f"known:{known}"] += 1
                continue
            kinds[failure.kind] += 1
            STATS["failed"] += 1
            if len(failures) < 20:
                failures.append(describe(prog, failure))
            continue
        STATS[verdict] += 1
        if verdict != "refused":
            STATS["accepted"] += 1
            ACCEPTED_FEATURES.update(prog.features)
        if ON_DEMAND and (k + 1) % PROGRESS_EVERY == 0:
            print(
                f"  {k + 1} programs, {time.monotonic() - start:.0f} s: {dict(STATS)}", flush=True
            )
    STATS["seconds"] = round(time.monotonic() - start)
    print(f"\narray fuzz from seed {SEED}: {dict(STATS)}; failures {dict(kinds)}")
    assert not failures, (
        f"{STATS['failed']} of {STATS['programs']} programs failed ({dict(kinds)}); "
        f"the first {len(failures)}:\n\n" + "\n\n".join(failures)
    )


def test_array_fuzz_is_not_vacuous():
    """Guards the fuzz test against passing vacuously."""
    if STATS["programs"] < 50:
        pytest.skip("the array fuzz test did not run in this session")
    assert STATS["accepted"] >= 0.8 * STATS["programs"], STATS
    assert STATS["checked"] >= 0.85 * STATS["accepted"], STATS
    assert STATS["points-with-size-1"] >= 0.2 * STATS["points"], STATS
    if STATS["failed"] == 0:  # (with failures, the fuzz test itself reports them)
        never = (
            CONSTRUCTS - MAY_REFUSE - {MUST_REFUSE} - KNOWN_BUG_CONSTRUCTS - set(ACCEPTED_FEATURES)
        )
        assert not never, f"never accepted and checked: {sorted(never)}"
        assert STATS["refused-as-required"] >= 1, STATS


PROOF_BUDGET = 60  # seconds: a longer proof is abandoned, counted and printed (not failed)
WRONG = {
    "wrong-gradient",
    "shape",
    "backward-crash",
    "not-finite",
    "gradient-count",
    "module-crash",
}


class ProofTooSlow(Exception):
    pass


def verify_within_budget(prog: Program):
    """stagegen.verify on ``prog``, abandoned after PROOF_BUDGET seconds (SIGALRM)."""

    def give_up(signum, frame):
        raise ProofTooSlow

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(PROOF_BUDGET)
    try:
        return stagegen.verify(prog.source, wrt=prog.wrt, filename="fuzz.py")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def short_programs(first_seed: int, most_statements: int = 6):
    seed = first_seed
    while True:
        prog = build_program(seed)
        seed += 1
        if prog.statements <= most_statements:
            yield prog


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="the proof budget needs SIGALRM")
def test_verify_agrees_with_the_numerical_check():
    """A program whose backward is wrong must not be proven; a correct one must be; a refused
    one must be refused by verify as well."""
    disagreements, slow = [], []
    counts: Counter = Counter()
    programs = short_programs(SEED + VERIFY_SEED_OFFSET)
    for _ in range(VERIFY_EXAMPLES):
        prog = next(programs)
        try:
            verdict = run_program(prog, Counter())
        except Failure as failure:
            if known_bug(prog, failure):  # (generate and verify share it: nothing to compare)
                counts[f"known:{known_bug(prog, failure)}"] += 1
                continue
            verdict = failure
        start = time.monotonic()
        try:
            verify_within_budget(prog)
            proof = "proven"
        except ProofTooSlow:
            slow.append(prog.seed)
            continue
        except stagegen.VerificationError as error:
            proof, why = "disproven", str(error)
        except stagegen.StagegenError as error:
            proof, why = "refused", str(error)
        except Exception:
            proof, why = "crashed", traceback.format_exc(limit=-3)
        counts[proof] += 1
        counts["seconds"] += round(time.monotonic() - start, 1)
        if isinstance(verdict, Failure) and verdict.kind == "float-error":
            continue  # the proof checks values, not NumPy's floating-point errors
        if isinstance(verdict, Failure):
            expected = {"disproven"} if verdict.kind in WRONG else {"disproven", "refused"}
            mine = f"{verdict.kind}: {verdict.detail[:600]}"
        elif verdict == "checked":
            expected, mine = {"proven"}, "the numerical check passed"
        elif verdict == "refused":
            expected, mine = {"refused"}, "generate refused it"
        else:
            continue
        if proof not in expected:
            detail = why[:1500] if proof != "proven" else ""
            disagreements.append(
                f"seed {prog.seed}: verify says {proof}, the numerical check: {mine}\n"
                f"{prog.source}\n{detail}"
            )
    print(
        f"\nverify on {VERIFY_EXAMPLES} programs from seed {SEED + VERIFY_SEED_OFFSET}: "
        f"{dict(counts)}; abandoned after {PROOF_BUDGET} s: {slow}"
    )
    assert not disagreements, "\n\n".join(disagreements[:5])
    assert counts["proven"] + counts["disproven"] >= VERIFY_EXAMPLES // 2, counts


# ---------------------------------------------------------------------------- regressions
# Minimal reproductions of what the fuzz test found, each checked like a fuzzed program.


def check_text(source: str, *, wrt=None, seed: int = 0, features=()) -> str:
    """The verdict of run_program on a hand-written program over the fuzz parameters (those
    ``features`` allow a refusal, or require one)."""
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    params = [a.arg for a in tree.body[-1].args.args]
    return run_program(Program(seed, source, params, wrt, 0, set(features)), Counter())


def function(signature: str, body: str) -> str:
    lines = "".join(f"    {line}\n" for line in body.split("; "))
    return f"import numpy as np\n\n\ndef f({signature}):\n{lines}    return out\n"


REGRESSIONS = {
    # fixed on main (8e933e5): `@` printed as if it bound tightest
    "product on the right": "out = x @ (w @ w.T)",
    "product times": "out = v * (x.T @ x)",
    "reduced product": "out = (x @ w).sum(axis=0)",
    "product squared": "out = np.tanh((x @ w) ** 2)",
    "method on a product": "out = np.dot((x @ v).dot(x), v)",
    "transposed product": "out = x @ (x.T @ x)",
    # fixed on main (8e933e5): an identically zero gradient written as the number 0
    "zero: 0.0 * b": "out = 0.0 * b",
    "zero: b - b": "out = np.abs(b - b)",
    "zero: x ** 0": "out = x ** 0",
    "zero: t -= t": "t = x * 2.0; t -= t; out = t * x",
}


@pytest.mark.parametrize("body", list(REGRESSIONS.values()), ids=list(REGRESSIONS))
def test_regression(body):
    assert check_text(function('x: "N, D", w: "D, M", v: "D", b: "M"', body)) == "checked"


# fixed on main (8e933e5): `+=` on an array that another name holds, or that it would have to
# grow: NumPy updates (or refuses) what stagegen modelled as a new value. Refused now.
IN_PLACE = {
    "alias": "t = x * 2.0; u = t; u += x; out = t * u",
    "view": "t = x * 2.0; u = t.T; t += x; out = u",
    "view of a parameter": "t1 = v.reshape(-1, 1); v += v; out = t1",
    "parameter alias": "t1 = x; x += t1 / np.exp(t1); out = t1",
    "grow": "t = c * 2.0; t += x; out = t",
}


@pytest.mark.parametrize("name", list(IN_PLACE))
def test_in_place_update_of_a_shared_array_is_refused_or_right(name):
    source = function('x: "N, D", v: "D", c: "N, 1"', IN_PLACE[name])
    features = {MUST_REFUSE} if name == "grow" else MAY_REFUSE
    try:
        verdict = check_text(source, features=features)
    except Failure as failure:
        pytest.fail(describe(Program(0, source, [], None, 0), failure))
    assert verdict == "refused" if name == "grow" else verdict in ("refused", "checked")


def test_scalar_in_place_update_makes_a_new_value():
    """``t = np.sum(x); u = t; u += x`` is legal NumPy (t, a NumPy scalar, is not updated, and
    u becomes an array): accepted, and right."""
    assert check_text("""
        import numpy as np


        def f(x: "N, D"):
            t = np.sum(x)
            u = t
            u += x
            out = u * t
            return out
    """) == "checked"


# Found by this fuzzer, fixed on main (3f36421).


def test_fan_out_of_a_scalar_output():
    """A scalar output's upstream that fans out was copied with `dout.copy()`, and the default
    upstream 1.0 (a float) has no .copy(): AttributeError in the generated backward."""
    assert check_text(function('x: "N, D"', "t = np.sum(x); u = t * 2.0; out = u + t")) == "checked"


def test_unary_plus():
    """Unary plus in array code (`+x`, `x * +v`) was an internal error (AssertionError:
    unexpected expression ..., CLI exit 3)."""
    assert check_text(function('x: "N, D", v: "D"', "out = +x * v + x * +v")) == "checked"


def test_returned_gradients_share_no_memory():
    """dc was the array of which dx was a broadcast view: a caller's in-place update of dc
    (`dc *= 0.5`) changed dx too."""
    source = function(
        'x: "N, D", c: "N, 1"', "t1 = np.sum(x, -1, keepdims=True); out = (t1 < 0.0) * (c + t1)"
    )
    backward = load_backward_module(stagegen.generate(source))["f_backward"]
    dx, dc = backward(-np.ones((3, 2)), -np.ones((3, 1)), np.ones((3, 1)))
    assert not np.shares_memory(dx, dc) and dx.flags.writeable and dc.flags.writeable


@pytest.mark.parametrize(
    "body",
    ["t1 = x * 2.0; t2 = +t1; t2 *= x; out = t1 * t2", "t1 = +x; t1 += 0.25; out = t1 * x"],
    ids=["stage", "parameter"],
)
def test_unary_plus_makes_a_new_array(body):
    """`t2 = +t1` makes a new array in NumPy (np.positive); a later `t2 *= ...` was refused as
    if it 'also changed t1' (fixed on main)."""
    assert check_text(function('x: "N, D"', body)) == "checked"


def test_a_negated_mask_is_multiplied_by_minus_one():
    """Seed 3509: a selection's side held a negated mask, `-((d @ d) ** 2 >= 0.5)`, which NumPy
    refuses (TypeError); it prints as a product with -1.0."""
    import numpy as np

    import stagegen

    source = (
        "import numpy as np\n\n\n"
        'def f(b: "M"):\n'
        "    t = 1.0 / (1.0 + np.exp(-b))\n"
        "    m = -np.minimum(b, b) * ((t @ t) ** 2 >= 0.5)\n"
        "    return np.minimum(-0.3, m ** 2)\n"
    )
    namespace: dict = {}
    exec(stagegen.generate(source, filename="fuzz.py"), namespace)
    b = np.array([2.0, -1.5, 3.0])
    got = namespace["f_backward"](b)
    namespace = {}
    exec(source, namespace)
    f = namespace["f"]
    for k in range(3):
        up, down = b.copy(), b.copy()
        up[k] += 1e-6
        down[k] -= 1e-6
        assert got[k] == pytest.approx(np.sum(f(up) - f(down)) / 2e-6, abs=1e-6)
