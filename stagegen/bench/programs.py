"""The functions the benchmark differentiates, each as Python source text and a point.

- the notes' staged example ``f(x, y) = (x + sigmoid(y)) / (sigmoid(x) + (x + y)**2)``;
- the notes' 2-D neuron (list parameters);
- logistic-map chains ``x = r * x * (1 - x)``, unrolled to n steps;
- random straight-line programs of n stages over the supported math operations
  (``random_program``): deterministic for a seed, every value kept within a bounded interval
  for every input in [-2, 2] (the range stagegen's proof samples), every stage used.
- array programs of n stages (``array_program``, for the generation part only): NumPy code
  whose parameters carry shape annotations, a chain of layers over an (N, D) value.

The source text is the user's forward function: it is run as it is for the forward timings,
handed to stagegen for the generated backward, and run again with ``math`` bound to another
library (autograd, PyTorch, JAX, SymPy, micrograd) for the competitors, so that every tool
differentiates literally the same function.
"""

from __future__ import annotations

import ast
import math
import random
import re
from dataclasses import dataclass, field

HEADER = "import math\n\n\n"


@dataclass
class BenchFunction:
    """One function of the suite: its source, its name, and the point of evaluation."""

    key: str  # short identifier used in tables and on the command line
    label: str  # what the table shows
    name: str  # the function's name in ``source``
    source: str  # a whole module: ``import math`` and one ``def``
    point: tuple  # the arguments: floats, or lists of floats for list parameters
    family: str  # "notes", "chain" or "random"
    stages: int = 0  # number of assignments in the forward
    hand: str | None = None  # name of the notes' hand-written backward in handwritten.py
    notes: list[str] = field(default_factory=list)

    @property
    def layout(self) -> list[int | None]:
        """For each parameter: None for a scalar, its length for a list."""
        return [len(a) if isinstance(a, list) else None for a in self.point]

    @property
    def flat_point(self) -> list[float]:
        return flatten(self.point)

    def math_functions(self) -> set[str]:
        """The ``math.`` functions the source calls (what a competitor must provide)."""
        found = set()
        for node in ast.walk(ast.parse(self.source)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "math"
            ):
                found.add(node.attr)
        return found

    def forward(self, math_module=math):
        """The forward function, with ``math`` bound to ``math_module`` (any object with the
        same function names: a shim over another library)."""
        namespace = {"__name__": f"stagegen_bench_{self.key}"}
        code = compile(self.source, f"<bench {self.key}>", "exec")
        exec(code, namespace)
        namespace["math"] = math_module  # rebind after `import math` ran
        return namespace[self.name]


def flatten(value) -> list[float]:
    """Nested tuples and lists of scalars -> one flat list, in order."""
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += flatten(v)
        return out
    return [value]


def unflatten(flat, layout):
    """The inverse of flatten over a parameter layout: scalars and lists, as Python lists."""
    args, i = [], 0
    for length in layout:
        if length is None:
            args.append(flat[i])
            i += 1
        else:
            args.append(list(flat[i : i + length]))
            i += length
    return args


# ---------------------------------------------------------------------------- the notes

STAGED_SOURCE = HEADER + '''def f(x, y):
    """The notes' staged example: (x + sigmoid(y)) / (sigmoid(x) + (x + y)**2)."""
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator
    num = x + sigy  # numerator
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr  # denominator
    invden = 1.0 / den
    f = num * invden  # done!
    return f
'''

NEURON_SOURCE = HEADER + '''def neuron(w, x):
    """The notes' 2-D neuron: a dot product squashed by a sigmoid."""
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1 + math.exp(-dot))  # sigmoid function
    return f
'''


def staged_example() -> BenchFunction:
    return BenchFunction(
        "staged", "notes' staged example", "f", STAGED_SOURCE, (3.0, -4.0), "notes", 8, "staged"
    )


def neuron() -> BenchFunction:
    return BenchFunction(
        "neuron",
        "notes' neuron",
        "neuron",
        NEURON_SOURCE,
        ([2.0, -3.0, -3.0], [-1.0, -2.0]),
        "notes",
        2,
        "neuron",
    )


# ---------------------------------------------------------------------------- logistic map


def logistic_chain(steps: int, r: float = 3.2, x: float = 0.3) -> BenchFunction:
    """``steps`` iterations of the logistic map, unrolled: x = r * x * (1 - x)."""
    body = "".join("    x = r * x * (1 - x)\n" for _ in range(steps))
    source = (
        HEADER
        + f"def logistic{steps}(r, x):\n"
        + f'    """{steps} steps of the logistic map."""\n'
        + body
        + "    return x\n"
    )
    return BenchFunction(
        f"chain{steps}",
        f"logistic map, {steps} steps",
        f"logistic{steps}",
        source,
        (r, x),
        "chain",
        steps,
    )


# ---------------------------------------------------------------------------- random programs

INPUT_RANGE = (-2.0, 2.0)  # every value stays bounded for every input in this box
LIMIT = 20.0  # largest magnitude a value may reach (by interval analysis)


class _Interval:
    __slots__ = ("hi", "lo")

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))


def _mono(fn, a: _Interval) -> _Interval:
    return _Interval(fn(a.lo), fn(a.hi))


def _products(a: _Interval, b: _Interval) -> _Interval:
    p = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return _Interval(min(p), max(p))


def _square(a: _Interval) -> _Interval:
    lo = 0.0 if a.lo <= 0.0 <= a.hi else min(a.lo**2, a.hi**2)
    return _Interval(lo, max(a.lo**2, a.hi**2))


def _away_from_zero(a: _Interval, margin: float = 0.25) -> bool:
    return a.lo >= margin or a.hi <= -margin


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# Each operation: (weight, arity, template, interval of the result or None when not allowed).
# Templates use {a} and {b} for operands and {c} for a literal constant.
_UNIT = _Interval(-1.0, 1.0)
OPERATIONS = [
    (6, 2, "{a} + {b}", lambda a, b, c: _Interval(a.lo + b.lo, a.hi + b.hi)),
    (4, 2, "{a} - {b}", lambda a, b, c: _Interval(a.lo - b.hi, a.hi - b.lo)),
    (6, 2, "{a} * {b}", lambda a, b, c: _products(a, b)),
    (
        2,
        2,
        "{a} / {b}",
        lambda a, b, c: (
            _products(a, _Interval(min(1 / b.lo, 1 / b.hi), max(1 / b.lo, 1 / b.hi)))
            if _away_from_zero(b)
            else None
        ),
    ),
    (3, 1, "{c} * {a}", lambda a, b, c: _products(a, _Interval(c, c))),
    (2, 1, "{a} + {c}", lambda a, b, c: _Interval(a.lo + c, a.hi + c)),
    (3, 1, "{a}**2", lambda a, b, c: _square(a)),
    (2, 1, "math.exp({a})", lambda a, b, c: _mono(math.exp, a) if a.hi <= 2.5 else None),
    (2, 1, "math.log({a})", lambda a, b, c: _mono(math.log, a) if a.lo >= 0.1 else None),
    (2, 1, "math.sqrt({a})", lambda a, b, c: _mono(math.sqrt, a) if a.lo >= 0.1 else None),
    (3, 1, "math.sin({a})", lambda a, b, c: _UNIT),
    (2, 1, "math.cos({a})", lambda a, b, c: _UNIT),
    (3, 1, "math.tanh({a})", lambda a, b, c: _mono(math.tanh, a)),
    (1, 1, "math.atan({a})", lambda a, b, c: _mono(math.atan, a)),
    (2, 1, "1.0 / (1 + math.exp(-{a}))", lambda a, b, c: _mono(_sigmoid, a)),
    (1, 2, "math.tanh({a} * {b} + {c})", lambda a, b, c: _UNIT),
    (1, 2, "{a} / (1.5 + math.cos({b}))", lambda a, b, c: _products(a, _Interval(0.4, 2.0))),
]
_SQUASH = "math.tanh({a} + {b})"  # joins two values whatever their size
CONSTANTS = (0.5, 0.75, 1.5, 2.0, -0.5, -1.25, 0.1, 3.0)


def random_program(stages: int, seed: int = 0, inputs: int | None = None) -> BenchFunction:
    """A straight-line program of exactly ``stages`` assignments, deterministic for ``seed``.

    Operands favour the latest value (depth) and values not used yet (every stage reaches the
    output: no dead code for the backward to prune); an interval analysis over inputs in
    [-2, 2] rejects operations that could overflow, leave a domain (log, sqrt, division), or
    let a value grow past ``LIMIT``."""
    if inputs is None:
        inputs = max(2, min(8, stages // 50 + 2))
    if stages < inputs - 1:
        raise ValueError(f"{stages} stages cannot use {inputs} inputs")
    rng = random.Random(f"stagegen-bench:{stages}:{seed}:{inputs}")
    names = [f"x{i}" for i in range(inputs)]
    bounds = {n: _Interval(*INPUT_RANGE) for n in names}
    unused = list(names)  # values nothing reads yet, oldest first
    lines = []
    latest = names[-1]
    weights = [op[0] for op in OPERATIONS]
    for i in range(1, stages + 1):
        remaining = stages - i  # stages after this one
        target = f"v{i}"
        forced = len(unused) - 1 > remaining  # must join two unused values now
        for _ in range(100):
            if forced:
                a, b = unused[0], unused[1]
                candidates = [op for op in OPERATIONS if op[1] == 2 and "{c}" not in op[2]]
                template, interval = None, None
                for _w, _arity, tmpl, fn in rng.sample(candidates, len(candidates)):
                    iv = fn(bounds[a], bounds[b], 0.0)
                    if iv is not None and iv.mag <= LIMIT:
                        template, interval = tmpl, iv
                        break
                if template is None:
                    template = _SQUASH
                    interval = _mono(
                        math.tanh,
                        _Interval(bounds[a].lo + bounds[b].lo, bounds[a].hi + bounds[b].hi),
                    )
                c = 0.0
            else:
                _w, arity, template, fn = rng.choices(OPERATIONS, weights)[0]
                if rng.random() < 0.55 or not unused:
                    a = latest
                else:
                    a = rng.choice(unused)
                pool = [u for u in unused if u != a]
                if pool and (rng.random() < 0.6 or len(unused) > remaining // 2):
                    b = rng.choice(pool)
                else:
                    b = rng.choice(names + [f"v{j}" for j in range(1, i)])
                if arity == 2 and a == b:
                    continue
                c = rng.choice(CONSTANTS)
                interval = fn(bounds[a], bounds[b], c)
                if interval is None or interval.mag > LIMIT:
                    continue
                if arity == 1:
                    b = None
            break
        else:  # nothing fitted: squash the latest value
            a, b, c = latest, None, 0.0
            template = "math.tanh({a})"
            interval = _mono(math.tanh, bounds[a])
        expr = template.format(a=a, b=b, c=c)
        lines.append(f"    {target} = {expr}\n")
        for used in (a, b):
            if used in unused:
                unused.remove(used)
        unused.append(target)
        bounds[target] = interval
        latest = target
    assert unused == [latest], unused
    point = tuple(
        round(random.Random(seed * 7919 + k).uniform(-1.5, 1.5), 6) for k in range(inputs)
    )
    name = f"random{stages}"
    source = (
        HEADER
        + f"def {name}({', '.join(names)}):\n"
        + f'    """A random straight-line program of {stages} stages (seed {seed})."""\n'
        + "".join(lines)
        + f"    return {latest}\n"
    )
    return BenchFunction(
        f"random{stages}", f"random program, {stages} stages", name, source, point, "random", stages
    )


# ---------------------------------------------------------------------------- array programs

ARRAY_PARAMS = {"x": '"N, D"', "w": '"D, D"', "b": '"D"', "c": '"N, 1"'}
ARRAY_INPUT = 2.0  # largest magnitude of an input element the proof samples
ARRAY_WIDTH = 8  # largest D the proof draws, for the bound of a product with w
ARRAY_LIMIT = 6.0  # largest magnitude a value may reach; beyond it the stage squashes


def _within(limit: float, value: float) -> float | None:
    return value if value <= limit else None


# Each operation: (weight, template, bound of the result's magnitude from the bounds of ``{a}``
# and ``{k}``, or None when the operands are too large for it). ``{a}`` is the latest value (the
# chain), ``{k}`` an earlier one (a skip connection: its gradient is a sum). Every value has the
# shape (N, D); the parameters broadcast into it (``b`` along rows, ``c`` along columns), and
# ``w`` multiplies it (``w.T`` too). The bounds keep tanh, the sigmoid and exp(-a**2) out of
# saturation, so that the gradient reaching the parameters is not lost in round-off (the proof's
# float64 central differences could not tell it from zero).
_R = ARRAY_INPUT
_DOT = 0.1 * ARRAY_WIDTH * ARRAY_INPUT  # bound of 0.1 * a.dot(w) per unit of a's bound
ARRAY_OPERATIONS = [
    (6, "np.tanh(0.1 * {a}.dot(w) + b)", lambda a, k: _within(4.0, _DOT * a + _R) and 1.0),
    (5, "{a} * x + b", lambda a, k: a * _R + _R),
    (5, "1.0 / (1.0 + np.exp(-{a}))", lambda a, k: _within(4.0, a) and 1.0),
    (5, "np.maximum(0, {a} - b)", lambda a, k: a + _R),
    (2, "np.sin({a}) * c", lambda a, k: _R),
    (3, "{a} + 0.5 * {k}", lambda a, k: a + 0.5 * k),
    (2, "{a} * {k}", lambda a, k: a * k),
    (2, "np.exp(-{a} * {a})", lambda a, k: _within(2.0, a) and 1.0),
    (2, "{a} - {a}.mean(axis=1, keepdims=True)", lambda a, k: 2 * a),
    (1, "np.log(1.0 + {a} * {a})", lambda a, k: math.log1p(a * a)),
    (1, "np.sqrt({a} * {a} + 1.0) * 0.5", lambda a, k: 0.5 * math.sqrt(a * a + 1.0)),
    (2, "np.tanh({a} + 0.1 * {k}.dot(w.T))", lambda a, k: _within(4.0, a + _DOT * k) and 1.0),
    (1, "{a} / (1.0 + {k} * {k})", lambda a, k: a),
    (1, "np.cos({a}) + np.arctan({k}) * c", lambda a, k: 1.0 + math.pi / 2 * _R),
]
_ARRAY_SQUASH = "np.tanh({a})"
# The last stages read every parameter close to the output.
_ARRAY_ENDING = ["np.sin({a}) * c", "np.tanh(0.1 * {a}.dot(w) + b)", "{a} * x + b"]


def array_program(stages: int, seed: int = 1) -> BenchFunction:
    """NumPy code of exactly ``stages`` assignments, deterministic for ``seed``.

    The first stage is a layer of ``x``; each next one reads the latest value (so every stage
    reaches the output, ``.sum()`` of the last) and sometimes an earlier one as well; the last
    three read ``c``, ``w``, ``b`` and ``x``. A bound on every value's magnitude over inputs in
    [-2, 2] turns a stage whose result could pass ``ARRAY_LIMIT`` (or saturate) into a
    ``np.tanh``. For the generation part: it has no point of evaluation (``point`` is empty),
    and the competitors do not run it."""
    if stages < 1:
        raise ValueError("an array program needs at least one stage")
    rng = random.Random(f"stagegen-bench-arrays:{stages}:{seed}")
    weights = [op[0] for op in ARRAY_OPERATIONS]
    by_template = {op[1]: op[2] for op in ARRAY_OPERATIONS}
    lines = ["    h1 = np.tanh(0.1 * x.dot(w) + b)\n"]
    bounds = {"x": _R, "h1": 1.0}
    for i in range(2, stages + 1):
        a = f"h{i - 1}"
        k = f"h{rng.randrange(1, i - 1)}" if i > 2 else "x"
        ending = i - (stages - len(_ARRAY_ENDING) + 1)
        if ending >= 0:
            template = _ARRAY_ENDING[ending]
        else:
            template = rng.choices(ARRAY_OPERATIONS, weights)[0][1]
        size = by_template[template](bounds[a], bounds[k])
        if size is None or size > ARRAY_LIMIT:
            template, size = _ARRAY_SQUASH, 1.0
        lines.append(f"    h{i} = {template.format(a=a, k=k)}\n")
        bounds[f"h{i}"] = size
    body = "".join(lines)
    used = [p for p in ARRAY_PARAMS if re.search(rf"\b{p}\b", body)]
    signature = ", ".join(f"{p}: {ARRAY_PARAMS[p]}" for p in used)
    name = f"layers{stages}"
    source = (
        "import numpy as np\n\n\n"
        + f"def {name}({signature}):\n"
        + f'    """A chain of {stages} array stages (seed {seed})."""\n'
        + body
        + f"    return h{stages}.sum()\n"
    )
    return BenchFunction(
        f"arrays{stages}", f"array program, {stages} stages", name, source, (), "arrays", stages
    )


# ---------------------------------------------------------------------------- the suite

FULL_CHAINS = (5, 10, 12, 20, 50)
FULL_RANDOM = (100, 1000)
QUICK_CHAINS = (5, 10, 12)
QUICK_RANDOM = (100,)


def suite(quick: bool = False) -> list[BenchFunction]:
    """The functions of the gradient-runtime part, in table order."""
    chains = QUICK_CHAINS if quick else FULL_CHAINS
    randoms = QUICK_RANDOM if quick else FULL_RANDOM
    return (
        [staged_example(), neuron()]
        + [logistic_chain(n) for n in chains]
        + [random_program(n) for n in randoms]
    )


def by_key(key: str) -> BenchFunction:
    """A function of the suite by its key: staged, neuron, chainN, randomN."""
    if key == "staged":
        return staged_example()
    if key == "neuron":
        return neuron()
    if key.startswith("chain") and key[5:].isdigit():
        return logistic_chain(int(key[5:]))
    if key.startswith("random") and key[6:].isdigit():
        return random_program(int(key[6:]))
    raise ValueError(f"unknown benchmark function {key!r}: use staged, neuron, chainN or randomN")
