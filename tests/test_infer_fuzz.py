"""Random programs over the constructs of issue 16 (part 1): the generated backward, straight from
``stagegen.generate()``, against float64 central differences of the program as written.

A seeded generator writes modules of four families:

* ``shapes``: unannotated functions whose shapes come from the code (``N, D = x.shape``) or from
  the course's docstrings (``- x: Input data, of shape (N, D)``, ``of shape (D, M)``,
  ``(M,)``), a number from its default (``eps=0.1``); elementwise stages, reductions with and
  without an axis, ``x.dot(w)``, ``/ N``. Half of them have a parameter of *any shape* instead
  (no shape said, ``of any shape``, or ``(N, d_1, ..., d_k)`` / ``N = x.shape[0]`` with a
  reshape ``x.reshape(N, -1)``) and the forms exact at every rank (``np.where``, ``np.clip``,
  ``ravel``, ``reshape(-1)``, ``copy``, ``astype``, ``np.zeros_like``, ``np.std``), whose backward
  reads the rest at run time: those are checked at ranks 0 to 3, with axes of size 1, and at
  rank 0 with a Python number as well as a 0-d array.
* ``gates``: an LSTM-like step, ``N, H = h.shape``, ``a = x.dot(Wx) + h.dot(Wh) + b`` with
  ``Wx`` of shape ``(D, 4H)`` or ``(D, 3 * H)`` (the products spelled ``4H``, ``4*H``,
  ``4 * H``), the gates sliced ``a[:, k * H : (k + 1) * H]`` (``:H`` and ``k * H :`` too),
  each through a different elementwise function, some slices read twice, a gate left unread,
  slices of the parameters themselves (``Wx[:, H : 2 * H]``, ``b[:H]``); a quarter of them
  annotated (``Wx: "D, 4*H"``) instead of documented.
* ``sequences``: ``N, T, D = x.shape``; ``x.reshape(N * T, D).dot(w)``; a softmax loss whose
  labels are reshaped (``y_flat = y.reshape(N * T)``) and gathered with ``np.arange(N * T)``;
  word embeddings ``W[x]`` with labels of shape (N, T); boolean masks (a docstring's
  ``Boolean array of shape (N, T)``, drawn as real booleans) multiplied in, flat or not;
  images ``N, C, P, Q = x.shape`` into ``x.reshape(N * C, P * Q).dot(w)`` with ``w`` of shape
  ``(P*Q, M)``, and per-channel statistics of ``x.reshape(N, C, P * Q)``.
* ``calls``: an unannotated caller calling callees of the same module whose parameter has any
  shape (``relu_forward(h)``; the course's ``return out, cache`` too, a callee calling another,
  one with a number default), on a matrix, a slice, a full reduction; or a caller of any shape
  itself, checked at ranks 0 to 3.

Every program goes through ``stagegen.generate``; its backward runs at several draws of the
sizes (distinct sizes first, then sizes from 1 to 3, a batch of one among them; for a rest, one
draw per rank) on random inputs, with the default upstream and a random one (and a number for
an array output). The reference is the program text executed by NumPy and differenced in
float64 (stagegen.numeric's arithmetic; an element that disagrees is retried with other steps,
a point on a kink is skipped). Gradients must have their parameter's shape exactly, be finite and
agree within ``RTOL``; the backward must leave its inputs and its upstream as they were and raise
no floating-point error where the forward raised none. A refusal of a generated program is a
failure (the generator writes only what the issue says is read); so is any exception.
Failures are collected and reported with the seed and the program, except those that
``KNOWN_BUGS`` recognises, each pinned below by a strict xfail.

Besides the fuzz test: forms that need the rank of a parameter of any shape are refused at
their location (``test_what_needs_the_rank_...``); on demand, ``stagegen.verify`` must agree with
the numerical check on a few programs (its proofs of 3-d programs can take minutes); the
regressions at the end reproduce what this fuzzer found.

Size: ``DEFAULT_EXAMPLES`` programs per run (seeds 0, 1, ...). On demand:

    STAGEGEN_FUZZ_EXAMPLES=1000 pytest -p no:cacheprovider tests/test_infer_fuzz.py -s

(``STAGEGEN_INFER_FUZZ_EXAMPLES`` overrides it for this file alone; ``STAGEGEN_INFER_FUZZ_SEED``
sets the first seed, random on demand otherwise.) To replay program ``S``:

    STAGEGEN_INFER_FUZZ_SEED=S STAGEGEN_INFER_FUZZ_EXAMPLES=1 \\
        pytest -p no:cacheprovider tests/test_infer_fuzz.py -s -k random
"""

from __future__ import annotations

import ast
import os
import random
import re
import signal
import textwrap
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

import pytest

np = pytest.importorskip("numpy")

import stagegen  # noqa: E402
from stagegen.api import load_backward_module  # noqa: E402
from stagegen.arrays.infer import uses_arrays  # noqa: E402
from stagegen.numeric import central_difference, indices  # noqa: E402
from test_array_fuzz import (  # noqa: E402  (its checker's parts; tests/ is on the path)
    Failure,
    ProofTooSlow,
    Skip,
    copies,
    element_is_fine,
    load_forward,
)


def fuzz_settings(name: str, default: int) -> tuple[bool, int, int]:
    """(on demand, programs, first seed) of a fuzzer: ``STAGEGEN_<NAME>_FUZZ_EXAMPLES`` or
    ``STAGEGEN_FUZZ_EXAMPLES`` ask for a run on demand (``default`` programs otherwise), and
    ``STAGEGEN_<NAME>_FUZZ_SEED`` sets its first seed (0 by default, random on demand)."""
    asked = os.environ.get(f"STAGEGEN_{name}_FUZZ_EXAMPLES") or os.environ.get(
        "STAGEGEN_FUZZ_EXAMPLES"
    )
    seed = os.environ.get(f"STAGEGEN_{name}_FUZZ_SEED")
    first = int(seed) if seed else (random.SystemRandom().randrange(10**9) if asked else 0)
    return bool(asked), int(asked) if asked else default, first


DEFAULT_EXAMPLES = 120
ON_DEMAND, EXAMPLES, SEED = fuzz_settings("INFER", DEFAULT_EXAMPLES)
PROGRESS_EVERY = 100


def every_construct(build, constructs: set) -> None:
    """Every construct of ``constructs`` is written by some program of the first 400 seeds (and
    nothing unlisted), and every program compiles."""
    seen: set = set()
    for seed in range(400):
        prog = build(seed)
        seen |= prog.features
        compile(prog.source, "<fuzz>", "exec")
    assert constructs <= seen, f"never generated: {sorted(constructs - seen)}"
    assert seen <= constructs, f"not listed: {sorted(seen - constructs)}"


H = 1e-5  # the central-difference step (relative above 1)
RETRY_STEPS = (1e-3, 1e-4, 1e-6, 1e-7)
KINK_STEPS = (1e-6, 1e-7)
RTOL = 1e-5
ATOL = 1e-9  # times (1 + sum |out * upstream|)
KINK_RTOL = 1e-3
TAME = 4.0  # a value whose bound exceeds this goes through np.tanh before it is reused

REST = "..."  # a parameter's dimensions that the code does not fix (drawn at ranks 0 to 3)
FAMILIES = ("shapes", "gates", "sequences", "calls")

# form -> (text, "same" shape or "flat"): exact at every number of dimensions
ANY_RANK = {
    "where": ("np.where({0} > 0, {0}, 0.5 * {0})", "same"),
    "clip": ("np.clip({0}, -0.5, 0.5)", "same"),
    "maximum-number": ("np.maximum({0}, 0.1)", "same"),
    "copy": ("{0}.copy()", "same"),
    "astype": ("{0}.astype(float)", "same"),
    "zeros_like": ("np.zeros_like({0}) + {0}", "same"),
    "std": ("{0} * np.std({0})", "same"),
    "ravel": ("{0}.ravel()", "flat"),
    "flatten": ("{0}.flatten()", "flat"),
    "reshape:-1": ("{0}.reshape(-1)", "flat"),
}


CONSTRUCTS = {
    *(f"family:{f}" for f in FAMILIES),
    *("shape:unpacked", "shape:docstring", "shape:any", "shape:any-docstring"),
    *("shape:leading-docstring", "shape:leading-code", "reshape:rest", "number-default"),
    *("reduce:axis", "reduce:full", "reduce:keepdims", "dot", "divide-by-size", "normalize"),
    *("gates:3", "gates:4", "gates:Wh", "gates:bias", "gate-unread", "slice-read-twice"),
    *("product:4H", "product:4*H", "product:4 * H", "slice:open-start", "slice:open-stop"),
    *(f"any-rank:{form}" for form in ANY_RANK),
    *("gates:annotated", "slice:parameter", "spatial:flatten", "spatial:statistics"),
    *("flatten:reshape", "unflatten:reshape", "gather:arange", "labels:reshaped", "embedding"),
    *("mask:flat", "mask:2d", "mask:unreduced"),
    *("call:matrix", "call:slice", "call:reduction", "call:cache", "call:nested", "call:default"),
    *("call:any-shape-caller", "call:twice", "call:labels"),
    *("output:array", "output:number"),
}


# ---------------------------------------------------------------------------- the generator


@dataclass(frozen=True)
class Param:
    """A parameter: ``kind`` is "float" (an array), "number", "labels" (integers below the size
    of dimension ``high``) or "mask" (booleans); ``shape`` holds dimension names, ints, and
    REST for what is drawn at run time."""

    name: str
    kind: str
    shape: tuple = ()
    high: str | None = None
    default: float | None = None
    annotation: str | None = None  # written as `name: "annotation"` (else unannotated)

    @property
    def differentiable(self) -> bool:
        return self.kind in ("float", "number")


@dataclass(frozen=True)
class Val:
    text: str
    shape: tuple
    bound: float
    atom: bool = True  # a name, a call or a subscript: no parentheses needed as an operand

    def op(self) -> str:
        return self.text if self.atom else f"({self.text})"


@dataclass
class Program:
    seed: int
    family: str
    source: str
    params: list[Param]
    rests: bool  # some parameter has a rest: drawn at every rank
    features: set[str] = field(default_factory=set)

    @property
    def wrt(self) -> list[Param]:
        return [p for p in self.params if p.differentiable]


def broadcast(a: tuple, b: tuple):
    """The broadcast of two symbolic shapes, None when it does not hold for every size (a rest
    broadcasts with a number and with its own shape only)."""
    if REST in a or REST in b:
        return a if a == b or not b else b if not a else None
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


# name -> (text with {} for the operand, the bound of the result from the operand's bound)
UNARY = {
    "tanh": ("np.tanh({})", lambda b: 1.0),
    "sin": ("np.sin({})", lambda b: 1.0),
    "cos": ("np.cos({})", lambda b: 1.0),
    "exp": ("np.exp({})", lambda b: float(np.exp(b))),
    "sigmoid": ("1.0 / (1.0 + np.exp(-{}))", lambda b: 1.0),
    "relu": ("np.maximum(0, {})", lambda b: b),
    "square": ("{0} * {0}", lambda b: b * b),
    "log1p2": ("np.log(1 + {} ** 2)", lambda b: float(np.log(1 + b * b))),
    "sqrt1p": ("np.sqrt(1 + {0} * {0})", lambda b: float(np.sqrt(1 + b * b))),
    "abs": ("np.abs({})", lambda b: b),
    "cube": ("{} ** 3", lambda b: b**3),
}
ATOMIC_RESULT = {"tanh", "sin", "cos", "exp", "relu", "log1p2", "sqrt1p", "abs"}


class Builder:
    """Writes one module from a seeded random.Random: ``lines`` of the function ``f`` (and
    callees in ``header``), its parameters, features."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.features: set[str] = set()
        self.env: dict[str, Val] = {}
        self.lines: list[str] = []
        self.header: list[str] = []  # callees, before f
        self.doc: list[str] = []  # the docstring's entries
        self.params: list[Param] = []
        self.counter = 0
        self.recent: list[str] = []
        self.read: set[str] = set()  # names some stage reads

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def feature(self, *names: str) -> None:
        self.features.update(names)

    def fresh(self, stem: str = "t") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def param(self, p: Param, doc: str | None = None) -> None:
        self.params.append(p)
        if doc is not None:
            self.doc.append(f"- {p.name}: {doc}")
        if p.differentiable:
            bound = 1.5 if p.kind == "float" else 1.0
            self.env[p.name] = Val(p.name, p.shape if p.kind == "float" else (), bound)

    def bind(self, val: Val, stem: str = "t") -> Val:
        """A stage ``name = val``, its value tamed by np.tanh when it may be large."""
        if val.bound > TAME:
            val = Val(f"np.tanh({val.text})", val.shape, 1.0)
        name = self.fresh(stem)
        self.lines.append(f"{name} = {val.text}")
        self.env[name] = Val(name, val.shape, val.bound)
        self.recent.append(name)
        return self.env[name]

    def leaf(self, want=None) -> Val | None:
        names = [n for n, v in self.env.items() if want is None or want(v.shape)]
        if not names:
            return None
        weights = [3.0 if n in self.recent[-3:] else 1.0 for n in names]
        name = self.rng.choices(names, weights)[0]
        self.read.add(name)
        return self.env[name]

    # -- expressions ----------------------------------------------------------------------

    def unary(self, a: Val, avoid=()) -> Val:
        names = [n for n in UNARY if n not in avoid and (n != "exp" or a.bound <= TAME)]
        name = self.rng.choice(names)
        text, bound = UNARY[name]
        operand = a.text if re.fullmatch(r"np\.\w+\(\{\}\)", text) else a.op()
        return Val(text.format(operand), a.shape, bound(a.bound), atom=name in ATOMIC_RESULT)

    def binary(self, a: Val, b: Val) -> Val | None:
        shape = broadcast(a.shape, b.shape)
        if shape is None:
            return None
        op = self.rng.choice(["+", "-", "*", "*", "/"])
        if op == "/":
            return Val(f"{a.op()} / (1 + {b.op()} ** 2)", shape, a.bound, atom=False)
        bound = a.bound * b.bound if op == "*" else a.bound + b.bound
        return Val(f"{a.op()} {op} {b.op()}", shape, bound, atom=False)

    def elementwise(self, want=None) -> Val:
        a = self.leaf(want)
        if self.chance(0.5):
            b = self.leaf(lambda s: broadcast(a.shape, s) is not None)
            if b is not None:
                v = self.binary(a, b)
                if v is not None:
                    return v
        return self.unary(a)

    def full_reduction(self, a: Val) -> Val:
        fn = self.rng.choice(["np.sum({})", "{}.mean()", "np.max({})", "np.var({})", "{}.sum()"])
        fn = fn if a.bound < 3 else "{}.mean()"
        self.feature("reduce:full")
        size = 8.0 if "sum" in fn else 1.0
        return Val(fn.format(a.op()), (), a.bound * size, atom="(" in fn.split("{}")[0])

    def statement(self, extra=(), often: float = 0.45) -> None:
        """One stage: elementwise, a full reduction mixed back, or one of ``extra`` (makers
        returning a Val, or None when they do not apply)."""
        roll = self.rng.random()
        makers = list(extra)
        if makers and roll < often:
            val = self.rng.choice(makers)()
            if val is not None:
                self.bind(val)
                return
        if roll < max(0.6, often + 0.1):
            a = self.leaf(lambda s: len(s) > 0)
            if a is not None:
                r = self.full_reduction(a)
                b = self.leaf(lambda s: len(s) > 0) or a
                self.bind(Val(f"{b.op()} * {r.op()}", b.shape, b.bound * r.bound, atom=False))
                return
        self.bind(self.elementwise())

    def ret(self, last: Val) -> tuple:
        """Returns ``last``, or a number from it, plus the full sums of up to two stages that
        nothing reads (so that few stages are dead)."""
        self.read.add(last.text)
        unread = [n for n in self.recent if n not in self.read and n != last.text][-2:]
        tail = "".join(f" + np.sum({n})" if self.env[n].shape else f" + {n}" for n in unread)
        if self.chance(0.5):
            self.feature("output:array")
            self.lines.append(f"return {last.op() if tail else last.text}{tail}")
            return last.shape
        self.feature("output:number")
        if not last.shape:
            self.lines.append(f"return {last.text}{tail}")
            return ()
        other = self.leaf(lambda s: s == last.shape)
        if other is not None and other.text != last.text and self.chance(0.5):
            self.lines.append(f"return np.sum({last.op()} * {other.op()}){tail}")
        else:
            self.lines.append(f"return np.sum({last.text}){tail}")
        return ()

    def module(self, name: str = "f") -> str:
        self.params.sort(key=lambda p: p.default is not None)  # (a stable sort)
        signature = ", ".join(
            (p.name if p.annotation is None else f'{p.name}: "{p.annotation}"')
            + ("" if p.default is None else f"={p.default}")
            for p in self.params
        )
        doc = ""
        if self.doc:
            entries = "".join(f"    {d}\n" for d in self.doc)
            doc = f'    """\n    Inputs:\n{entries}    """\n'
        body = "".join(f"    {line}\n" for line in self.lines)
        header = "".join(f"{h}\n\n\n" for h in self.header)
        return f"import numpy as np\n\n\n{header}def {name}({signature}):\n{doc}{body}"


# -- family 1: shapes from the code and the docstring, any-shape parameters


def shapes_known(b: Builder) -> None:
    """x of shape (N, D) from ``N, D = x.shape`` or the docstring; w (D, M), v (D,), c (M,),
    a number eps; stages over matrices and vectors."""
    unpacked = b.chance(0.5)
    b.param(Param("x", "float", ("N", "D")), None if unpacked else "Input data, of shape (N, D)")
    b.feature("shape:unpacked" if unpacked else "shape:docstring")
    if unpacked:
        b.lines.append("N, D = x.shape")
    if b.chance(0.6):
        b.param(Param("w", "float", ("D", "M")), "Weights, of shape (D, M)")
        if b.chance(0.5):
            b.param(Param("c", "float", ("M",)), "Biases, of shape (M,)")
    if b.chance(0.5):
        b.param(Param("v", "float", ("D",)), "Scale, of shape (D,)")
    if b.chance(0.4):
        b.param(Param("eps", "number", default=0.1))
        b.feature("number-default")
    b.rng.shuffle(b.params)

    def dot():
        a = b.leaf(lambda s: s == ("N", "D"))
        if "w" not in b.env or a is None:
            return None
        b.feature("dot")
        bias = " + c" if "c" in b.env and b.chance(0.6) else ""
        return Val(f"{a.op()}.dot(w){bias}", ("N", "M"), a.bound * 3 + 1.5, atom=not bias)

    def reduce_axis():
        a = b.leaf(lambda s: len(s) == 2)
        if a is None:
            return None
        axis = b.rng.choice([0, 1, -1])
        keep = b.chance(0.4)
        fn = b.rng.choice(["np.sum", "np.mean", "np.max", "np.var", "np.min"])
        shape = list(a.shape)
        if keep:
            shape[axis] = 1
            b.feature("reduce:keepdims")
        else:
            del shape[axis]
        b.feature("reduce:axis")
        k = ", keepdims=True" if keep else ""
        size = 4.0 if fn == "np.sum" else 1.0
        return Val(f"{fn}({a.text}, axis={axis}{k})", tuple(shape), a.bound * size)

    def by_size():
        a = b.leaf(lambda s: len(s) > 0)
        if a is None:
            return None
        b.feature("divide-by-size")
        n = "N" if unpacked else "x.shape[0]"
        return Val(f"np.sum({a.text}) / {n}", (), a.bound * 4)

    def normalize():
        a = b.leaf(lambda s: len(s) == 2 and s[0] == "N")
        if a is None:
            return None
        b.feature("normalize")
        eps = "eps" if "eps" in b.env else "0.1"
        mu, var = b.fresh("mu"), b.fresh("var")
        b.lines.append(f"{mu} = np.mean({a.text}, axis=0)")
        b.lines.append(f"{var} = np.var({a.text}, axis=0)")
        return Val(f"({a.text} - {mu}) / np.sqrt({var} + {eps})", a.shape, 4.0, atom=False)

    count = b.rng.randint(2, 6)
    for _ in range(count):
        b.statement([dot, reduce_axis, by_size, normalize])
    b.ret(b.env[b.recent[-1]])


def shapes_any(b: Builder) -> None:
    """x of any shape (nothing said, ``of any shape``) or (N, ...) (``(N, d_1, ..., d_k)``,
    ``N = x.shape[0]``), a number c; elementwise stages with numbers and full reductions, and
    for (N, ...) a reshape ``x.reshape(N, -1)`` into a product with w."""
    how = b.rng.choice(["none", "docstring", "leading-docstring", "leading-code"])
    b.feature({"none": "shape:any", "docstring": "shape:any-docstring"}.get(how, f"shape:{how}"))
    if how in ("none", "docstring"):
        doc = "Inputs, of any shape" if how == "docstring" else None
        b.param(Param("x", "float", (REST,)), doc)
    else:
        doc = "Input data, of shape (N, d_1, ..., d_k)" if how == "leading-docstring" else None
        b.param(Param("x", "float", ("N", REST)), doc)
        if how == "leading-code":
            b.lines.append("N = x.shape[0]")
    if b.chance(0.5):
        b.param(Param("c", "number", default=0.5))
        b.feature("number-default")

    def exact():  # what is exact at every rank besides arithmetic and full reductions
        a = b.leaf(lambda s: REST in s)
        form = b.rng.choice(list(ANY_RANK))
        b.feature(f"any-rank:{form}")
        text, shape = ANY_RANK[form]
        flat = ("#",) if a.shape == (REST,) else ("N", "#")
        if shape == "flat" and flat == ("N", "#"):
            return None  # (a leading dimension is kept by reshape(N, -1) below)
        return Val(text.format(a.op()), flat if shape == "flat" else a.shape, a.bound + 1.0)

    for _ in range(b.rng.randint(1, 4)):
        b.statement([exact], often=0.6)
    if how in ("leading-docstring", "leading-code") and b.chance(0.6):
        b.param(Param("w", "float", ("D", "M")), "Weights, of shape (D, M)")
        b.feature("reshape:rest", "dot")
        a = b.leaf(lambda s: s == ("N", REST))
        n = "N" if how == "leading-code" else "x.shape[0]"
        b.bind(Val(f"{a.op()}.reshape({n}, -1).dot(w)", ("N", "M"), a.bound * 6, atom=True))
        for _ in range(b.rng.randint(0, 2)):
            b.statement()
    b.ret(b.env[b.recent[-1]])


# -- family 2: gate slices


GATE_FUNCTIONS = ["tanh", "sigmoid", "exp", "relu", "square", "sin", "log1p2", "cube"]


def gates(b: Builder) -> None:
    g = b.rng.choice([3, 4])
    b.feature(f"gates:{g}")
    spelling = b.rng.choice([f"{g}H", f"{g}*H", f"{g} * H"])
    b.feature("product:" + spelling.replace(str(g), "4"))
    annotated = b.chance(0.25)  # `Wx: "D, 4*H"` instead of the docstring
    if annotated:
        b.feature("gates:annotated")

    def gate_param(name: str, shape: tuple, words: str) -> None:
        shown = ", ".join(spelling if d == f"{g}H" else d for d in shape)
        if annotated:  # (one dimension: "4 * H," — see test_a_one_dimensional_product_annotation)
            shown += "," * (len(shape) == 1 and " " in shown)
            b.param(Param(name, "float", shape, annotation=shown))
        else:
            b.param(
                Param(name, "float", shape), f"{words}, of shape ({shown}{',' * (len(shape) == 1)})"
            )

    gate_param("x", ("N", "D"), "Input data")
    gate_param("h", ("N", "H"), "Previous hidden state")
    gate_param("Wx", ("D", f"{g}H"), "Input-to-hidden weights")
    a_terms = ["x.dot(Wx)"]
    if b.chance(0.5):
        gate_param("Wh", ("H", f"{g}H"), "Hidden weights")
        a_terms.append("h.dot(Wh)")
        b.feature("gates:Wh")
    if b.chance(0.5):
        gate_param("b", (f"{g}H",), "Biases")
        a_terms.append("b")
        b.feature("gates:bias")
    b.lines.append("N, H = h.shape")
    b.lines.append(f"a = {' + '.join(a_terms)}")
    a_bound = 3.0 * len(a_terms)

    def piece(k: int) -> str:
        start = "" if k == 0 and b.chance(0.6) else "H" if k == 1 else f"{k} * H" if k else "0"
        stop = "" if k == g - 1 and b.chance(0.6) else "H" if k == 0 else f"{k + 1} * H"
        if start == "":
            b.feature("slice:open-start")
        if stop == "":
            b.feature("slice:open-stop")
        inside = f"{start}:{stop}" if start in ("", "0", "H") and stop in ("", "H") else None
        return f"a[:, {inside or f'{start} : {stop}'}]"

    functions = b.rng.sample(GATE_FUNCTIONS, g)
    gate_vals = []
    unread = b.rng.randrange(g) if b.chance(0.2) else None
    for k in range(g):
        s = piece(k)
        fn = functions[k] if functions[k] != "exp" else "tanh_of_exp"
        if k == unread:
            b.feature("gate-unread")
            continue
        if fn == "tanh_of_exp":
            text = f"np.exp(np.tanh({s}))"
        else:
            tame = Val(s, ("N", "H"), a_bound)
            text = b.unary(tame, avoid=[n for n in UNARY if n != fn]).text
        if b.chance(0.3):  # the slice read twice in one stage
            b.feature("slice-read-twice")
            text = f"({text}) * {s}" if b.chance(0.5) else f"{text} + 0.5 * {s}"
            bound = 30.0
        else:
            bound = 30.0 if fn in ("square", "cube", "relu", "log1p2") else 3.0
        name = f"g{k}"
        if bound > TAME:
            text = f"np.tanh({text})"
        b.lines.append(f"{name} = {text}")
        b.env[name] = Val(name, ("N", "H"), 1.0 if bound > TAME else 3.0)
        gate_vals.append(name)
    if b.chance(0.3):  # slices of the parameters themselves
        b.feature("slice:parameter")
        k = b.rng.randrange(g)
        cols = piece(k)[len("a[:, ") : -1]
        bias = f" + b[{cols}]" if "b" in b.env else ""
        gate_vals.append(b.bind(Val(f"np.tanh(x.dot(Wx[:, {cols}]){bias})", ("N", "H"), 1.0)).text)
    if b.chance(0.3) and gate_vals:  # a slice read again in a later stage
        b.feature("slice-read-twice")
        k = b.rng.randrange(g)
        gate_vals.append(b.bind(Val(f"np.tanh({piece(k)}) * {gate_vals[0]}", ("N", "H"), 3.0)).text)
    b.recent.extend(gate_vals)
    # like next_c = f * prev_c + i * g; next_h = o * np.tanh(next_c), in a random order
    b.rng.shuffle(gate_vals)
    while len(gate_vals) >= 2:
        p, q = gate_vals.pop(), gate_vals.pop()
        b.read |= {p, q}
        other = b.rng.choice(["h", *gate_vals]) if gate_vals or b.chance(0.5) else None
        if other is not None:
            b.read.add(other)
        text = f"{p} * {q}" + (f" + {other}" if other and b.chance(0.5) else "")
        if other and " + " not in text:
            text = f"{p} * np.tanh({q} + {other})"
        gate_vals.append(b.bind(Val(text, ("N", "H"), 4.0, atom=False)).text)
    for _ in range(b.rng.randint(0, 2)):
        b.statement()
    b.ret(b.env[b.recent[-1]])


# -- family 3: sequences


def sequences(b: Builder) -> None:
    kind = b.rng.choice(["affine", "softmax", "embedding", "spatial"])
    if kind == "spatial":  # sizes that are products: (N, C, P, Q) into (N * C, P * Q)
        b.param(Param("x", "float", ("N", "C", "P", "Q")), "Images, of shape (N, C, P, Q)")
        b.lines.append("N, C, P, Q = x.shape")
        if b.chance(0.6):
            b.feature("spatial:flatten", "dot")
            spelled = b.rng.choice(["P*Q", "P * Q"])
            b.param(Param("w", "float", ("PQ", "M")), f"Weights, of shape ({spelled}, M)")
            b.bind(Val("x.reshape(N * C, P * Q).dot(w)", ("NC", "M"), 6.0), "s")
            s = b.env[b.recent[-1]]
            b.bind(Val(f"{s.op()}.reshape(N, C, -1)", ("N", "C", "M"), s.bound))
        if b.chance(0.6):
            b.feature("spatial:statistics")
            fn = b.rng.choice(["mean", "var", "max", "sum"])
            keep = b.rng.choice(["", ", keepdims=True"])
            shape = ("N", "C", 1) if keep else ("N", "C")
            b.bind(Val(f"x.reshape(N, C, P * Q).{fn}(axis=2{keep})", shape, 6.0))
        for _ in range(b.rng.randint(1, 3)):
            b.statement()
        b.ret(b.env[b.recent[-1]])
        return
    if kind == "embedding":
        b.feature("embedding")
        b.param(Param("x", "labels", ("N", "T"), high="V"), "Integer array of shape (N, T)")
        b.param(Param("W", "float", ("V", "D")), "Weight matrix of shape (V, D)")
        b.lines.append("e = W[x]")
        b.env["e"] = Val("e", ("N", "T", "D"), 1.5)
        b.recent.append("e")
        for _ in range(b.rng.randint(0, 2)):
            b.statement()
        last = b.leaf(lambda s: s == ("N", "T", "D"))
        if b.chance(0.5):
            b.param(Param("mask", "mask", ("N", "T")), "Boolean array of shape (N, T)")
            b.feature("mask:2d")
            b.bind(Val(f"np.sum({last.op()}, axis=2) * mask", ("N", "T"), last.bound * 4, False))
        b.ret(b.env[b.recent[-1]])
        return
    b.feature("flatten:reshape")
    b.param(Param("x", "float", ("N", "T", "D")), "Input data of shape (N, T, D)")
    b.param(Param("w", "float", ("D", "V")), "Weights of shape (D, V)")
    b.lines.append("N, T, D = x.shape")
    b.lines.append("x_flat = x.reshape(N * T, D)")
    b.env["x_flat"] = Val("x_flat", ("NT", "D"), 1.5)
    b.recent.append("x_flat")
    if b.chance(0.5):
        b.statement()
    src = b.leaf(lambda s: s == ("NT", "D"))
    b.bind(Val(f"{src.op()}.dot(w)", ("NT", "V"), src.bound * 4), "s")
    b.feature("dot")
    if kind == "affine":
        if b.chance(0.6):
            b.feature("unflatten:reshape")
            s = b.env[b.recent[-1]]
            b.param(Param("c", "float", ("V",)), "Biases of shape (V,)")
            b.bind(Val(f"{s.op()}.reshape(N, T, -1) + c", ("N", "T", "V"), s.bound + 1.5, False))
        for _ in range(b.rng.randint(0, 2)):
            b.statement()
        last = b.leaf(lambda s: s in (("N", "T", "V"), ("NT", "V")))
        if b.chance(0.5):
            b.param(Param("mask", "mask", ("N", "T")), "Boolean array of shape (N, T)")
            if last.shape == ("N", "T", "V"):
                b.feature("mask:2d")
                b.bind(Val(f"np.sum({last.op()}, axis=-1) * mask", ("N", "T"), 30.0, False))
            else:
                b.feature("mask:flat", "mask:unreduced")
                b.lines.append("mask_flat = mask.reshape(N * T)")
                b.bind(Val(f"{last.op()} * mask_flat[:, None]", last.shape, last.bound, False))
        b.ret(b.env[b.recent[-1]])
        return
    # the temporal softmax loss
    s = b.env[b.recent[-1]]
    b.param(Param("y", "labels", ("N", "T"), high="V"), "Ground-truth indices, of shape (N, T)")
    b.feature("gather:arange", "labels:reshaped", "output:number")
    b.lines.append("y_flat = y.reshape(N * T)")
    b.lines.append(f"z = {s.text} - np.max({s.text}, axis=1, keepdims=True)")
    b.lines.append("probs = np.exp(z)")
    b.lines.append("probs /= np.sum(probs, axis=1, keepdims=True)")
    picked = "np.log(probs[np.arange(N * T), y_flat])"
    if b.chance(0.6):
        b.param(Param("mask", "mask", ("N", "T")), "Boolean array of shape (N, T)")
        b.feature("mask:flat")
        b.lines.append("mask_flat = mask.reshape(N * T)")
        picked = f"mask_flat * {picked}"
    b.lines.append(f"return -np.sum({picked}) / N")


# -- family 4: calls to any-shape callees


CALLEES = [
    ("act", "np.maximum(0, {z})", "relu"),
    ("squash", "np.tanh({z}) * {z}", "tanh"),
    ("soft", "np.log(1 + np.exp(-np.abs({z}))) + np.maximum(0, {z})", "softplus"),
    ("bump", "np.exp(-{z} * {z}) + np.sin({z})", "bump"),
]


SOFTMAX_LOSS = '''def softmax_loss(s, y):
    """
    - s: Scores, of shape (N, C)
    - y: Labels, of shape (N,), each in range(C)
    """
    N = s.shape[0]
    shifted = s - np.max(s, axis=1, keepdims=True)
    logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.sum(logp[np.arange(N), y]) / N'''


def calls(b: Builder) -> None:
    chosen = b.rng.sample(CALLEES, b.rng.randint(1, 3))
    callees = {}
    for k, (name, body, _) in enumerate(chosen):
        param = "z"
        default = b.chance(0.3)
        cache = b.chance(0.3)
        sig = "z, alpha=0.5" if default else "z"
        doc = '    """\n    - z: Inputs, of any shape\n    """\n' if b.chance(0.5) else ""
        expr = body.format(z=param)
        if default:
            expr = f"alpha * ({expr})"
        lines = [f"def {name}({sig}):", doc.rstrip("\n")] if doc else [f"def {name}({sig}):"]
        if k and b.chance(0.4):  # calls an earlier callee
            inner = chosen[0][0]
            b.feature("call:nested")
            inner_call = f"{inner}({param})"
            if callees[inner]["cache"]:
                lines.append(f"    inner, _ = {inner_call}")
            else:
                lines.append(f"    inner = {inner_call}")
            expr = f"{expr} + 0.5 * inner"
        if cache:
            b.feature("call:cache")
            lines += [f"    out = {expr}", f"    cache = {param}", "    return out, cache"]
        else:
            lines.append(f"    return {expr}")
        b.header.append("\n".join(lines))
        callees[name] = {"cache": cache, "default": default}

    def call(name: str, arg: Val) -> Val:
        info = callees[name]
        extra = ""
        if info["default"] and b.chance(0.5):
            extra = ", 0.25"
            b.feature("call:default")
        text = f"{name}({arg.text}{extra})"
        out = b.fresh("t")  # a call is a stage of its own (not inside an expression)
        if info["cache"]:
            b.lines.append(f"{out}, _ = {text}")
        else:
            b.lines.append(f"{out} = {text}")
        b.env[out] = Val(out, arg.shape, 4.0)
        b.recent.append(out)
        return b.env[out]

    if b.chance(0.3):  # the caller has any shape too
        b.feature("call:any-shape-caller")
        b.param(Param("x", "float", (REST,)))
        if b.chance(0.5):
            b.param(Param("c", "number", default=0.5))
        # (a caller that calls NumPy itself: one that does not is number code, see
        # test_a_caller_whose_only_array_code_is_a_callee)
        b.bind(Val(f"np.{b.rng.choice(['tanh', 'sin'])}(x)", (REST,), 1.0))
        for _ in range(b.rng.randint(1, 3)):
            name = b.rng.choice(list(callees))
            a = b.leaf(lambda s: s == (REST,))
            if b.chance(0.3):
                b.feature("call:reduction")
                call(name, Val(f"np.sum({a.text})", (), a.bound * 8))
                b.statement()
            else:
                call(name, a)
                if b.chance(0.5):
                    b.statement()
        b.ret(b.env[b.recent[-1]])
        return
    b.param(Param("x", "float", ("N", "D")), "Input data, of shape (N, D)")
    b.param(Param("u", "float", ("N", "H")), "Hidden state, of shape (N, H)")
    b.param(
        Param("w", "float", ("D", "2H")), f"Weights, of shape (D, {b.rng.choice(['2H', '2 * H'])})"
    )
    b.lines.append("N, H = u.shape")
    first = b.bind(Val("x.dot(w)", ("N", "2H"), 4.0), "h")
    uses = Counter()
    for _ in range(b.rng.randint(1, 4)):
        name = b.rng.choice(list(callees))
        uses[name] += 1
        roll = b.rng.random()
        if roll < 0.2:
            b.feature("call:slice")
            a = b.leaf(lambda s: s == ("N", "2H")) or first
            piece = b.rng.choice([":H", "H:", "H : 2 * H", "0:H"])
            call(name, Val(f"{a.op()}[:, {piece}]", ("N", "H"), a.bound))
        elif roll < 0.35:
            b.feature("call:reduction")
            a = b.leaf(lambda s: len(s) == 2)
            call(name, Val(f"np.sum({a.text})", (), a.bound * 8))
        else:
            b.feature("call:matrix")
            call(name, b.leaf(lambda s: len(s) == 2))
        if b.chance(0.4):
            b.statement()
    if max(uses.values()) > 1:
        b.feature("call:twice")
    scores = b.leaf(lambda s: s == ("N", "2H"))
    if scores is not None and b.chance(0.3):  # labels passed on to a callee
        b.feature("call:labels")
        b.header.append(SOFTMAX_LOSS)
        b.param(Param("y", "labels", ("N",), high="2H"), "Labels, of shape (N,)")
        b.lines.append(f"loss = softmax_loss({scores.text}, y)")
        b.env["loss"] = Val("loss", (), 4.0)
        b.recent.append("loss")
    b.ret(b.env[b.recent[-1]])


def shapes(b: Builder) -> None:
    (shapes_any if b.chance(0.5) else shapes_known)(b)


MAKERS = {"shapes": shapes, "gates": gates, "sequences": sequences, "calls": calls}


def build_program(seed: int) -> Program:
    rng = random.Random(seed)
    b = Builder(rng)
    family = FAMILIES[seed % len(FAMILIES)]
    b.feature(f"family:{family}")
    MAKERS[family](b)
    source = b.module()
    if not uses_arrays(ast.parse(source).body[-1], {"np"}):
        # number code, whatever the docstring says (test_a_docstring_shape_makes_array_code)
        return build_program(seed + 10**9)
    rests = any(REST in p.shape for p in b.params)
    return Program(seed, family, source, b.params, rests, b.features)


# ---------------------------------------------------------------------------- the checker


def draws(prog: Program, rng: np.random.Generator) -> list[dict]:
    """Sizes for each check: {dimension: size} and, for a program with a rest, ``REST``: the
    rest's shape. Distinct sizes first, then sizes from 1 to 3 with a batch of one; a program
    with a rest is drawn once at each rank from 0 to 3 (axes of size 1 among them)."""
    out = []
    ranks = [0, 1, 2, 3] if prog.rests else [None, None]
    for k, rank in enumerate(ranks):
        if k == 0:
            sizes = dict(zip("NDMHTV", (int(v) for v in rng.permutation([2, 3, 4, 5, 6, 7]))))
            sizes = {d: min(v, 4) if d in "DM" else v for d, v in sizes.items()}
            sizes.update(zip("CPQ", (int(v) for v in rng.permutation([1, 2, 3]) + 1)))
        else:
            sizes = {d: int(rng.integers(1, 4)) for d in "NDMHTVCPQ"}
            if k == 1:
                sizes["N"] = 1  # a batch of one
        if rank is not None:
            leading = any(p.shape[:1] == ("N",) and REST in p.shape for p in prog.params)
            rank = min(rank, 2) if leading else rank
            rest = tuple(int(rng.integers(1, 4)) for _ in range(rank))
            if rank and k % 2:  # an axis of size 1
                rest = rest[:-1] + (1,)
            sizes[REST] = rest
            if "reshape:rest" in prog.features:
                sizes["D"] = int(np.prod(rest))  # w's D is the rest's size
        out.append(sizes)
    return out


def dimension(d, sizes: dict):
    if isinstance(d, int):
        return (d,)
    if d == REST:
        return sizes[REST]
    m = re.fullmatch(r"(\d+)(\w+)", d)
    if m:
        return (int(m.group(1)) * sizes[m.group(2)],)
    if d == "PQ":
        return (sizes["P"] * sizes["Q"],)
    return (sizes[d],)


def make_args(prog: Program, sizes: dict, rng: np.random.Generator) -> list:
    args = []
    for p in prog.params:
        shape = tuple(n for d in p.shape for n in dimension(d, sizes))
        if p.kind == "number":
            args.append(float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.2)))
        elif p.kind == "labels":
            args.append(rng.integers(0, dimension(p.high, sizes)[0], size=shape))
        elif p.kind == "mask":
            args.append(rng.random(size=shape) < 0.6)
        else:
            value = np.clip(rng.normal(scale=0.8, size=shape), -1.5, 1.5)
            if REST in p.shape and not shape and rng.random() < 0.5:
                value = float(value)  # a Python number for a parameter of any shape
            args.append(value)
    return args


def evaluate(forward, args):
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            out = np.array(forward(*copies(args)), dtype=np.float64)
        except FloatingPointError:
            raise Skip("floating-point error in the forward") from None
    if not np.all(np.isfinite(out)) or (out.size and np.max(np.abs(out)) > 1e8):
        raise Skip("the forward is too large here")
    return out


def difference(forward, args, k, idx, h):
    return central_difference(lambda *a: evaluate(forward, list(a)), args, k, idx, step=h)


def call_backward(backward, args, up):
    given = copies(args)
    up_given = up.copy() if isinstance(up, np.ndarray) else up
    try:
        with np.errstate(divide="raise", over="raise", invalid="raise"):
            grads = backward(*given) if up is None else backward(*given, up_given)
    except FloatingPointError:
        raise Failure("float-error", traceback.format_exc(limit=-3)) from None
    except Exception:
        raise Failure("backward-crash", traceback.format_exc(limit=-3)) from None
    for a, a0 in zip(given, args):
        if isinstance(a0, np.ndarray) and not np.array_equal(a, a0):
            raise Failure("modifies-input", "the backward modified an input")
    if isinstance(up, np.ndarray) and not np.array_equal(up, up_given):
        raise Failure("modifies-upstream", "the backward modified its upstream")
    grads = grads if isinstance(grads, tuple) else (grads,)
    # each gradient is the caller's own writable array: no view of an input, the upstream or
    # another gradient
    arrays = [g for g in grads if isinstance(g, np.ndarray) and g.size]
    others = [a for a in [*given, up_given] if isinstance(a, np.ndarray)]
    for k, g in enumerate(arrays):
        if not g.flags.writeable:
            raise Failure("gradient-aliasing", f"gradient {k} is read-only")
        if any(np.shares_memory(g, h) for h in arrays[:k] + others):
            raise Failure("gradient-aliasing", f"gradient {k} shares memory with another array")
    return grads


def check_point(prog: Program, forward, backward, sizes: dict, rng, stats: Counter) -> None:
    args = make_args(prog, sizes, rng)
    try:
        out = evaluate(forward, args)
    except (AttributeError, TypeError):
        if not any(isinstance(a, float) and REST in p.shape for a, p in zip(args, prog.params)):
            raise
        # the forward itself takes no Python number there (`x.mean()`): a 0-d array instead
        args = [np.array(a) if REST in p.shape else a for a, p in zip(args, prog.params)]
        out = evaluate(forward, args)
    random_up = rng.normal(size=out.shape) if out.shape else float(rng.normal())
    names = [p.name for p in prog.params]
    wrt = [p.name for p in prog.wrt]
    gradients = []
    for up in (None, random_up):
        grads = call_backward(backward, args, up)
        if len(grads) != len(wrt):
            raise Failure("gradient-count", f"{len(grads)} gradients for {wrt}")
        gradients.append(grads)
    if out.shape:  # an array output with a number as its upstream
        with np.errstate(all="ignore"):
            grads = call_backward(backward, args, 0.7)
        for p, g, g1 in zip(wrt, grads, gradients[0]):
            g, g1 = np.asarray(g, dtype=float), np.asarray(g1, dtype=float)
            if g.shape != g1.shape or not np.allclose(g, 0.7 * g1, rtol=1e-12, atol=1e-12):
                raise Failure("number-upstream", f"d{p} with dout=0.7:\n{g}\n0.7 * d{p}:\n{g1}")
    ups = [np.ones(out.shape), np.asarray(random_up)]
    for j, label in enumerate(("default upstream", "random upstream")):
        numeric = {}
        for p in wrt:
            k = names.index(p)
            numeric[p] = np.zeros(np.shape(args[k]))
            for idx in indices(args[k]):
                numeric[p][idx] = difference(forward, args, k, idx, H).slope(ups[j])
        largest = max(
            [float(np.max(np.abs(v), initial=0.0)) for v in numeric.values()]
            + [float(np.max(np.abs(np.asarray(g, dtype=float)), initial=0.0)) for g in gradients[j]]
        )
        for p, g in zip(wrt, gradients[j]):
            k = names.index(p)
            want, got = numeric[p], np.asarray(g, dtype=np.float64)
            if np.shape(got) != np.shape(args[k]):
                raise Failure(
                    "shape", f"d{p} ({label}) has shape {np.shape(got)}, {p} {np.shape(args[k])}"
                )
            if not np.all(np.isfinite(got)):
                raise Failure("not-finite", f"d{p} ({label}) = {got}")
            scale = max(
                float(np.max(np.abs(want), initial=0)), float(np.max(np.abs(got), initial=0))
            )
            noise = ATOL * (1.0 + float(np.sum(np.abs(out * ups[j]))))
            tol = RTOL * max(scale, 1e-3 * largest) + noise
            for idx in np.ndindex(*np.shape(got)):
                if abs(got[idx] - want[idx]) <= tol:
                    continue
                if not element_is_fine(forward, args, k, idx, ups[j], float(got[idx]), tol):
                    raise Failure(
                        "wrong-gradient",
                        f"d{p} ({label}) at {idx}: generated {float(got[idx])!r}, numerical "
                        f"{float(want[idx])!r} (tolerance {tol:.1e})\ngenerated d{p}:\n{got}\n"
                        f"numerical d{p}:\n{want}",
                    )
    stats["elements"] += sum(int(np.size(args[names.index(p)])) for p in wrt)


def run_program(prog: Program, stats: Counter, sabotage=None) -> str:
    """Checks one program: "checked" or "skipped" (no usable point); raises Failure."""

    def count(sizes: dict) -> None:
        if REST in sizes:
            stats[f"points-at-rank-{len(sizes[REST])}"] += 1
        if 1 in sizes.values() or 1 in sizes.get(REST, ()):
            stats["points-with-size-1"] += 1

    return run_checks(prog, stats, draws, count, sabotage)


def run_checks(prog, stats: Counter, draws_of, count, sabotage=None, edit=None) -> str:
    """The check this fuzzer and test_writes_fuzz share: the program through
    ``stagegen.generate`` (its text changed by ``edit``, its backward wrapped by ``sabotage``,
    to test the checker), then ``check_point`` at each draw of sizes (``draws_of``), a few
    tries each; ``count(sizes)`` counts a checked point. "checked" or "skipped" (no usable
    point); raises Failure."""
    try:
        text = stagegen.generate(prog.source, function="f", filename="fuzz.py")
        text = edit(text) if edit is not None else text
    except stagegen.StagegenError as error:
        raise Failure("refused", str(error)) from None
    except Exception:
        raise Failure("generate-crash", traceback.format_exc(limit=-4)) from None
    try:
        backward = load_backward_module(text)["f_backward"]
    except Exception:
        raise Failure("module-crash", traceback.format_exc(limit=-3) + text) from None
    if sabotage is not None:
        backward = sabotage(backward)
    forward = load_forward(prog.source)
    rng = np.random.default_rng(prog.seed)
    checked = 0
    for sizes in draws_of(prog, rng):
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
            count(sizes)
            break
    return "checked" if checked else "skipped"


def describe(prog: Program, failure: Failure) -> str:
    return (
        f"[{failure.kind}] seed {prog.seed} ({prog.family}; STAGEGEN_INFER_FUZZ_SEED={prog.seed} "
        f"STAGEGEN_INFER_FUZZ_EXAMPLES=1)\n{prog.source}\n{failure.detail}"
    )


# ---------------------------------------------------------------------------- the tests


# Bugs reported and pinned by a strict xfail below: a failure that a predicate recognises is
# counted as known instead of failing the run. Remove an entry when its xfail starts to pass.
KNOWN_BUGS: dict = {}
KNOWN_BUG_CONSTRUCTS: set = set()  # never accepted while open


def known_bug(prog: Program, failure: Failure):
    return next((name for name, test in KNOWN_BUGS.items() if test(prog, failure)), None)


STATS: Counter = Counter()
ACCEPTED: Counter = Counter()


def test_generator_writes_every_construct():
    every_construct(build_program, CONSTRUCTS)


def drive(label, build, run, known, describe, stats, accepted, seed, examples, on_demand, every):
    """The fuzz loop this fuzzer and test_writes_fuzz share: build each program from its seed,
    run and check it (``run`` raises Failure), count verdicts and features in ``stats`` and
    ``accepted``, set known bugs aside, and fail with the first failures in full."""
    failures: list[str] = []
    kinds: Counter = Counter()
    start = time.monotonic()
    if on_demand:
        print(f"\n{label} fuzz: {examples} programs from seed {seed}", flush=True)
    for k in range(examples):
        prog = build(seed + k)
        stats["programs"] += 1
        stats[f"programs:{prog.family}"] += 1
        try:
            verdict = run(prog, stats)
        except Failure as failure:
            bug = known(prog, failure)
            if bug:
                stats[f"known:{bug}"] += 1
                continue
            kinds[failure.kind] += 1
            stats["failed"] += 1
            if len(failures) < 20:
                failures.append(describe(prog, failure))
            continue
        stats[verdict] += 1
        if verdict == "checked":
            accepted.update(prog.features)
        if on_demand and (k + 1) % every == 0:
            print(
                f"  {k + 1} programs, {time.monotonic() - start:.0f} s: {dict(stats)}", flush=True
            )
    stats["seconds"] = round(time.monotonic() - start)
    print(f"\n{label} fuzz from seed {seed}: {dict(stats)}; failures {dict(kinds)}")
    assert not failures, (
        f"{stats['failed']} of {stats['programs']} programs failed ({dict(kinds)}); "
        f"the first {len(failures)}:\n\n" + "\n\n".join(failures)
    )


def test_random_programs_match_central_differences():
    drive(
        "infer", build_program, run_program, known_bug, describe, STATS, ACCEPTED, SEED,
        EXAMPLES, ON_DEMAND, PROGRESS_EVERY,
    )  # fmt: skip


def test_fuzz_is_not_vacuous():
    """Guards the fuzz test against passing vacuously: most programs checked, points at every
    rank of a rest and with axes of size 1, every construct accepted and checked."""
    if STATS["programs"] < 40:
        pytest.skip("the fuzz test did not run in this session")
    known = sum(v for k, v in STATS.items() if k.startswith("known:"))
    assert STATS["checked"] >= 0.7 * (STATS["programs"] - known), STATS
    assert all(STATS[f"points-at-rank-{r}"] >= 3 for r in range(4)), STATS
    assert STATS["points-with-size-1"] >= 0.3 * STATS["points"], STATS
    if STATS["failed"] == 0:
        never = CONSTRUCTS - KNOWN_BUG_CONSTRUCTS - set(ACCEPTED)
        assert not never, f"never accepted and checked: {sorted(never)}"


def off_by_a_ten_thousandth(backward):
    def wrong(*args):
        grads = backward(*args)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(g * 1.0001 + 1e-4 for g in grads)

    return wrong


def test_the_checker_catches_a_gradient_off_by_a_ten_thousandth():
    caught = 0
    for seed in range(24):
        prog = build_program(seed)
        try:
            verdict = run_program(prog, Counter(), sabotage=off_by_a_ten_thousandth)
        except Failure as failure:
            if known_bug(prog, failure):
                continue
            assert failure.kind in ("wrong-gradient", "number-upstream"), describe(prog, failure)
            caught += 1
            continue
        assert verdict == "skipped", prog.source
    assert caught >= 15


# ---------------------------------------------------------------------------- regressions
# Minimal reproductions of what this fuzzer found, each checked as a fuzzed program is.


def check_text(source: str, params: list[Param], features=()) -> str:
    source = textwrap.dedent(source).lstrip()
    rests = any(REST in p.shape for p in params)
    prog = Program(0, "regression", source, params, rests, set(features))
    try:
        return run_program(prog, Counter())
    except Failure as failure:
        pytest.fail(describe(prog, failure))


ACT = """
    import numpy as np


    def act(z):
        \"\"\"
        - z: Inputs, of any shape
        \"\"\"
        return np.maximum(0, z) + np.tanh(z)


"""

ANY_SHAPE_CALLERS = {
    # generate(): AssertionError: dimension . is not read from any parameter (exit 3)
    "number output": "def f(x):\n    t = act(x)\n    return np.sum(t)\n",
    "array output": "def f(x):\n    t = act(x)\n    return np.tanh(t)\n",
    # refused: "`t + np.tanh(x)` needs to know how many dimensions `x` has"
    "mixed with the argument": "def f(x):\n    t = act(x)\n    return t + np.tanh(x)\n",
}


@pytest.mark.parametrize("body", list(ANY_SHAPE_CALLERS.values()), ids=list(ANY_SHAPE_CALLERS))
def test_an_any_shape_argument_to_an_any_shape_callee(body):
    source = textwrap.dedent(ACT) + body
    assert check_text(source, [Param("x", "float", (REST,))]) == "checked"


def test_an_any_shape_callee_calling_another():
    source = textwrap.dedent(ACT) + textwrap.dedent("""
        def g(u):
            inner = act(u)
            return np.tanh(u) * inner


        def f(x):
            N, D = x.shape
            t = g(x)
            return np.sum(t)
        """)
    assert check_text(source, [Param("x", "float", ("N", "D"))]) == "checked"


def test_a_leading_dimension_and_a_rest_to_an_any_shape_callee():
    source = textwrap.dedent(ACT) + textwrap.dedent("""
        def f(x):
            \"\"\"
            - x: Input data, of shape (N, d_1, ..., d_k)
            \"\"\"
            t = act(x)
            return np.sum(t * np.tanh(x))
        """)
    assert check_text(source, [Param("x", "float", ("N", REST))]) == "checked"


@pytest.mark.xfail(
    strict=True,
    reason="reported: a function whose body calls no NumPy is number code (`x, w = float(x), "
    "float(w)`), though its docstring gives its parameters array shapes",
)
def test_a_docstring_shape_makes_array_code():
    source = '''
        def f(x, w):
            """
            - x: Input data, of shape (N, D)
            - w: Weights, of shape (D,)
            """
            return x * w
        '''
    params = [Param("x", "float", ("N", "D")), Param("w", "float", ("D",))]
    assert check_text(source, params) == "checked"


def test_a_caller_whose_only_array_code_is_a_callee():
    source = textwrap.dedent(ACT) + "def f(x):\n    t = act(x)\n    return t * 2.0\n"
    assert check_text(source, [Param("x", "float", (REST,))]) == "checked"


def test_a_one_dimensional_product_annotation():
    source = """
        import numpy as np


        def f(x: "N, H", b: "4 * H"):
            H = x.shape[1]
            return np.sum(np.tanh(x + b[H : 2 * H]))
        """
    params = [Param("x", "float", ("N", "H")), Param("b", "float", ("4H",))]
    assert check_text(source, params) == "checked"


@pytest.mark.parametrize("fn", ["np.var", "np.std"])
def test_the_variance_of_a_python_number(fn):
    source = f"import numpy as np\n\n\ndef f(x):\n    return {fn}(x) * x + np.tanh(x)\n"
    backward = load_backward_module(stagegen.generate(source))["f_backward"]
    forward = load_forward(source)
    dx = backward(0.7)
    assert dx == pytest.approx(difference(forward, [0.7], 0, (), H).slope(), rel=1e-6)


# What needs the number of dimensions of a parameter of any shape: refused, located at it.
RANK_DEPENDENT = [
    "np.sum(x, axis=0)",
    "x.sum(0)",
    "np.max(x, axis=-1)",
    "np.mean(x, axis=1, keepdims=True)",  # (said as "axis 1 is out of range for ... 1 dimension")
    "np.linalg.norm(x, axis=0)",
    "x.T",
    "np.transpose(x)",
    "x.dot(w)",
    "x @ w",
    "x + v",
    "x.shape[1] * x",
    "x[None]",
    "np.expand_dims(x, 0)",
    "np.outer(x, x)",
    "x[0]",
    "x[:, 0]",
    "x.squeeze()",
    "(np.tanh(x) * y)[0]",  # x and y of any shapes broadcast: the result's rank is open too
]


# The controls, exact at any rank: another parameter of any shape broadcasts at run time.
@pytest.mark.parametrize("expression", [*RANK_DEPENDENT, "np.tanh(x) * x", "np.tanh(x) * y"])
def test_what_needs_the_rank_of_an_any_shape_parameter_is_refused_where_it_is(expression):
    source = textwrap.dedent(f'''
        import numpy as np


        def f(x, w, v, y):
            """
            - w: Weights, of shape (D, M)
            - v: Scale, of shape (D,)
            """
            t = np.tanh(x)
            return np.sum({expression}) + np.sum(t) + np.sum(w) + np.sum(v)
        ''').lstrip()
    if expression not in RANK_DEPENDENT:  # the control: the same function, exact at any rank
        assert "def f_backward(x, w, v, y, dout=1.0):" in stagegen.generate(source)
        return
    with pytest.raises(stagegen.StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    line = source.splitlines().index(
        f"    return np.sum({expression}) + np.sum(t) + np.sum(w) + np.sum(v)"
    )
    start = len("    return np.sum(") + 1
    assert caught.value.line == line + 1, caught.value
    assert start <= caught.value.col <= start + len(expression), caught.value


# ---------------------------------------------------------------------------- the proof agrees

PROOF_BUDGET = 60  # seconds: a longer proof is abandoned, counted and printed (not failed)
VERIFY_EXAMPLES = min(10, max(4, EXAMPLES // 50)) if ON_DEMAND else 0


def verify_within_budget(source: str):
    def give_up(signum, frame):
        raise ProofTooSlow

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(PROOF_BUDGET)
    try:
        return stagegen.verify(source, filename="fuzz.py")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="the proof budget needs SIGALRM")
@pytest.mark.skipif(not ON_DEMAND, reason="proofs of 3-d programs take minutes: on demand only")
def test_verify_agrees_with_the_numerical_check():
    """A program the numerical check passes is proven; one it fails is not. Programs from
    seed SEED + 10**8, one in fifty of the run (4 to 10)."""
    disagreements, slow, counts = [], [], Counter()
    for k in range(VERIFY_EXAMPLES):
        prog = build_program(SEED + 10**8 + k)
        try:
            verdict = run_program(prog, Counter())
        except Failure as failure:
            if known_bug(prog, failure):
                counts["known"] += 1
                continue
            verdict = failure.kind
        start = time.monotonic()
        try:
            verify_within_budget(prog.source)
            proof = "proven"
        except ProofTooSlow:
            slow.append(prog.seed)
            continue
        except stagegen.VerificationError:
            proof = "disproven"
        except stagegen.StagegenError:
            proof = "refused"
        counts[proof] += 1
        counts["seconds"] += round(time.monotonic() - start)
        if verdict == "float-error":
            continue  # the proof checks values, not NumPy's floating-point errors
        if (verdict == "checked") != (proof == "proven") and verdict != "skipped":
            disagreements.append(f"seed {prog.seed}: {proof}, the check: {verdict}\n{prog.source}")
    print(f"\nverify: {dict(counts)}; abandoned after {PROOF_BUDGET} s: {slow}")
    assert not disagreements, "\n\n".join(disagreements[:5])
