"""The loops part of the benchmark (issue 14): time and memory against the number of steps.

A backward through a loop replays the forward and saves, at every step, the values the step
overwrites and its backward reads (``h_saved.append(h)``), then runs the steps last first and
pops them back. So its time and its memory should both grow linearly with the number of steps
T, and the forward's memory should not grow at all. This part measures that, for

* ``rnn``: a scalar recurrent net, ``h = tanh(wx * x + wh * h + b)`` over a list ``xs``;
* ``dot``: a dot product over ``zip(w, x)`` (its backward saves nothing);
* ``newton``: T steps of Newton's square root in a ``while`` loop (with respect to ``a``);
* ``numpy_rnn``: the NumPy RNN of ``examples/control/numpy_rnn.py`` over T time steps
  (``h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b)``, N=4 sequences, D=8 inputs, H=16 units).

Each backward is generated once with ``stagegen.generate`` and proven (``stagegen.verify``; a
failed proof is reported, not fatal); then, at every T, before anything is timed, the generated gradient is compared with a hand-written backward of the same function
(written here, the way one writes backpropagation through time by hand) and, at the smallest T,
with central differences of the forward. Then the forward, the generated backward and the
hand-written one are timed (``timing.interleaved``: rounds of calibrated batches, medians; fewer
rounds, at least 3, where one round would take more than ``ROUND_BUDGET_S`` / rounds), and each
is called once more under ``tracemalloc`` for its peak memory.
"""

from __future__ import annotations

import ast
import math
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .timing import Contender, interleaved

STEPS = [10, 100, 1_000, 10_000, 100_000]
QUICK_STEPS = [10, 100, 1_000, 10_000]
AGREEMENT = 1e-9  # generated against hand-written, relative to the largest entry
FREE_LIST_DRAIN = 1_000  # floats made before a memory measurement (CPython keeps up to 100)
NUMERIC_AGREEMENT = 1e-6  # generated against central differences, at the smallest T
ROUND_BUDGET_S = 10.0  # the timing of one T takes about this long at most (at least 3 rounds)
RNN_N, RNN_D, RNN_H = 4, 8, 16  # the NumPy RNN: sequences, inputs, hidden units

# The forward functions, one module: what the user writes.
SOURCE = """\
import math

import numpy as np


def rnn(xs, wx, wh, b):
    h = 0.0
    for x in xs:
        h = math.tanh(wx * x + wh * h + b)
    return h * h


def dot(w, x):
    s = 0.0
    for wi, xi in zip(w, x):
        s += wi * xi
    return s


def newton(a, n):
    g = a
    k = 0
    while k < n:
        g = 0.5 * (g + a / g)
        k += 1
    return g


def rnn_loss(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    h = h0
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b)
    loss = np.sum(h * h)
    return loss
"""


# ---------------------------------------------------------------------------- hand-written


def rnn_hand(xs, wx, wh, b):
    """Backpropagation through time as written by hand: keep every hidden state, then walk
    back over them."""
    hs = [0.0]
    h = 0.0
    for x in xs:
        h = math.tanh(wx * x + wh * h + b)
        hs.append(h)
    dh = 2.0 * h
    dxs = [0.0] * len(xs)
    dwx = dwh = db = 0.0
    for t in range(len(xs) - 1, -1, -1):
        dz = (1.0 - hs[t + 1] ** 2) * dh  # through the tanh
        dxs[t] = wx * dz
        dwx += xs[t] * dz
        dwh += hs[t] * dz
        db += dz
        dh = wh * dz
    return dxs, dwx, dwh, db


def dot_hand(w, x):
    """The gradient of a dot product: each side's gradient is the other side."""
    n = min(len(w), len(x))
    return list(x[:n]) + [0.0] * (len(w) - n), list(w[:n]) + [0.0] * (len(x) - n)


def newton_hand(a, n):
    """n Newton steps g <- (g + a / g) / 2 from g = a, and their backward over the saved g."""
    gs = []
    g = a
    for _ in range(int(n)):
        gs.append(g)
        g = 0.5 * (g + a / g)
    da, dg = 0.0, 1.0
    for g in reversed(gs):
        da += 0.5 / g * dg
        dg *= 0.5 - 0.5 * a / (g * g)
    return da + dg


def numpy_rnn_hand(x, h0, Wx, Wh, b):
    """Backpropagation through time in NumPy, as a course's assignment has it: the forward
    keeps every hidden state, the backward walks back over them."""
    T = x.shape[1]
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(x[:, t, :] @ Wx + hs[-1] @ Wh + b))
    dh = 2.0 * hs[-1]
    dx = np.zeros_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    for t in range(T - 1, -1, -1):
        dz = (1.0 - hs[t + 1] ** 2) * dh  # through the tanh
        dx[:, t, :] = dz @ Wx.T
        dWx += x[:, t, :].T @ dz
        dWh += hs[t].T @ dz
        db += dz.sum(axis=0)
        dh = dz @ Wh.T
    return dx, dh, dWx, dWh, db


# ---------------------------------------------------------------------------- the functions


def _rnn_arguments(steps: int, rng: random.Random) -> tuple:
    return ([rng.uniform(-1.0, 1.0) for _ in range(steps)], 0.7, 0.6, 0.1)


def _dot_arguments(steps: int, rng: random.Random) -> tuple:
    return tuple([rng.uniform(-1.0, 1.0) for _ in range(steps)] for _ in range(2))


def _newton_arguments(steps: int, rng: random.Random) -> tuple:
    return (2.0, steps)


def _numpy_rnn_arguments(steps: int, rng: random.Random) -> tuple:
    g = np.random.default_rng(rng.randrange(2**32))
    n, d, h = RNN_N, RNN_D, RNN_H
    return (
        g.uniform(-1.0, 1.0, (n, steps, d)),
        g.uniform(-0.5, 0.5, (n, h)),
        g.uniform(-0.3, 0.3, (d, h)),
        g.uniform(-0.2, 0.2, (h, h)),  # small enough that h does not saturate the tanh
        g.uniform(-0.1, 0.1, h),
    )


@dataclass
class LoopFunction:
    key: str
    label: str
    name: str  # the forward's name in SOURCE
    wrt: list[str] | None  # None: every parameter
    hand: Callable  # the hand-written backward (same arguments as the forward)
    make_arguments: Callable[[int, random.Random], tuple]  # (T, rng) -> the arguments
    value: str = "float"  # what one saved value is

    def arguments(self, steps: int, seed: int = 0) -> tuple:
        return self.make_arguments(steps, random.Random(seed))


FUNCTIONS = {
    "rnn": LoopFunction(
        "rnn", "scalar RNN, h = tanh(wx*x + wh*h + b)", "rnn", None, rnn_hand, _rnn_arguments
    ),
    "dot": LoopFunction("dot", "dot product over zip(w, x)", "dot", None, dot_hand, _dot_arguments),
    "newton": LoopFunction(
        "newton",
        "Newton's sqrt, T steps of a while loop",
        "newton",
        ["a"],
        newton_hand,
        _newton_arguments,
    ),
    "numpy_rnn": LoopFunction(
        "numpy_rnn",
        f"NumPy RNN, h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b), N={RNN_N}, D={RNN_D}, H={RNN_H}",
        "rnn_loss",
        None,
        numpy_rnn_hand,
        _numpy_rnn_arguments,
        value=f"({RNN_N}, {RNN_H}) float64 array",
    ),
}


def by_key(key: str) -> LoopFunction:
    if key not in FUNCTIONS:
        raise ValueError(f"unknown loop function {key!r}: choose from {', '.join(FUNCTIONS)}")
    return FUNCTIONS[key]


def forward(lf: LoopFunction):
    namespace: dict = {"__name__": "stagegen_bench_loops"}
    exec(compile(SOURCE, "<bench loops>", "exec"), namespace)
    return namespace[lf.name]


def generated(lf: LoopFunction) -> tuple[str, object]:
    """(the generated module's text, its backward function), from ``stagegen.generate``."""
    import stagegen
    from stagegen.api import load_backward_module

    text = stagegen.generate(SOURCE, lf.name, wrt=lf.wrt)
    return text, load_backward_module(text)[f"{lf.name}_backward"]


def prove(lf: LoopFunction) -> str:
    """stagegen's own proof of the backward (``stagegen.verify``), in a few words: what the
    report says when it holds, the first line of the error when it does not."""
    import stagegen
    from stagegen.errors import StagegenError

    try:
        stagegen.verify(SOURCE, lf.name, wrt=lf.wrt)
    except StagegenError as exc:
        return f"proof failed: {str(exc).splitlines()[0][:200]}"
    return "proven (stagegen.verify)"


# ---------------------------------------------------------------------------- what is saved


def saved_per_step(text: str, name: str) -> list[str]:
    """What the generated backward saves at each step of its loops, read from its code: the
    argument of every ``X.append(...)`` inside a loop of ``name``'s backward, each once, in
    the order of the code (one float each, per step of the innermost loop that holds it)."""
    found = {}
    for fn in ast.walk(ast.parse(text)):
        if not (isinstance(fn, ast.FunctionDef) and fn.name == f"{name}_backward"):
            continue
        for loop in ast.walk(fn):
            if not isinstance(loop, (ast.For, ast.While)):
                continue
            for stmt in loop.body:
                for node in ast.walk(stmt):
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "append"
                    ):
                        found[(node.lineno, node.col_offset)] = node
    return [ast.unparse(n.args[0]) if n.args else "?" for _, n in sorted(found.items())]


def appends_during(fn, args: tuple) -> int:
    """How many times ``list.append`` is called during fn(*args) (a profile hook on the calls
    of built-in functions): the run-time count of the values saved, to hold the count read
    from the code to."""
    count = 0

    def hook(frame, event, arg):
        nonlocal count
        if event == "c_call" and getattr(arg, "__name__", "") == "append":
            if isinstance(getattr(arg, "__self__", None), list):
                count += 1

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        fn(*args)
    finally:
        sys.setprofile(previous)
    return count


# ---------------------------------------------------------------------------- correctness


def flat(value) -> np.ndarray:
    """Numbers, lists, tuples and arrays, nested: one flat float64 array, in order."""
    if isinstance(value, tuple) or (isinstance(value, list) and value and _nested(value)):
        parts = [flat(v) for v in value]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(value, dtype=float).ravel()


def _nested(values: list) -> bool:
    return any(isinstance(v, (list, tuple, np.ndarray)) for v in values)


def max_rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference, relative to the largest entry of ``want``; inf when the two
    differ in length."""
    if got.shape != want.shape:
        return math.inf
    if not want.size:
        return 0.0
    scale = max(float(np.max(np.abs(want))), 1e-300)
    return float(np.max(np.abs(got - want))) / scale


def numeric_gradient(lf: LoopFunction, args: tuple) -> list[float]:
    """Central differences of the forward (stagegen.numeric), over the parameters differentiated."""
    from stagegen.numeric import central_differences

    import inspect

    f = forward(lf)
    names = list(inspect.signature(f).parameters)
    positions = [i for i, n in enumerate(names) if lf.wrt is None or n in lf.wrt]
    grads = central_differences(f, list(args), positions)
    return flat([grads[i] for i in positions])


# ---------------------------------------------------------------------------- measuring


def peak_memory(fn, args: tuple) -> int:
    """Bytes: the peak of memory allocated during one call of fn(*args), over what was
    allocated before it (the arguments are not counted; the returned value is).

    CPython keeps up to 100 freed floats for reuse; a float taken from that free list is not
    an allocation tracemalloc sees. So the list is emptied first (floats made and held until
    the call is over): every float the call makes is then counted, at T=10 as at T=100,000."""
    drain = [i + 0.5 for i in range(FREE_LIST_DRAIN)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
        del drain
    return peak - before


def measure(
    lf: LoopFunction, steps: list[int], rounds: int, batch: float, log=lambda message: None
) -> dict:
    """The part's figures for one function: a row per T, and what the backward saves."""
    from stagegen.errors import StagegenError

    out = {"key": lf.key, "label": lf.label, "value": lf.value, "rows": []}
    try:
        text, backward = generated(lf)
    except StagegenError as exc:  # a finding to report, not a crash
        out["error"] = f"not generated: {str(exc).splitlines()[0][:200]}"
        return out
    out["proof"] = prove(lf)
    f = forward(lf)
    saved = saved_per_step(text, lf.name)
    out.update(saved_per_step=len(saved), saved=saved)
    for number, t in enumerate(steps):
        args = lf.arguments(t)
        started = time.perf_counter()
        want = flat(backward(*args))
        f(*args)
        got = flat(lf.hand(*args))
        one_round = time.perf_counter() - started  # about one call of each contender
        row = {"steps": t, "tools": {}}
        diff = max_rel_diff(got, want)
        hand_ok = diff <= AGREEMENT
        row["hand_max_rel_diff"] = diff
        if number == 0:
            out["appends_at"] = {"steps": t, "appends": appends_during(backward, args)}
            row["numeric_max_rel_diff"] = max_rel_diff(numeric_gradient(lf, args), want)
            if not row["numeric_max_rel_diff"] <= NUMERIC_AGREEMENT:
                out["error"] = (
                    f"the generated gradient differs from central differences by "
                    f"{row['numeric_max_rel_diff']:.1e} at T={t}: not timed"
                )
                out["rows"].append(row)
                return out
        contenders = {"forward": f, "generated": backward}
        if hand_ok:
            contenders["hand"] = lf.hand
        else:
            row["tools"]["hand"] = {
                "status": "wrong",
                "reason": f"gradient differs by {diff:.1e} (relative)",
            }
        row["rounds"] = rounds_within(rounds, one_round)
        log(f"[loops] {lf.key}, T={t:,}: timing {', '.join(contenders)} ({row['rounds']} rounds)")
        timings = interleaved(
            [Contender(name, fn, args) for name, fn in contenders.items()], row["rounds"], batch
        )
        for name, fn in contenders.items():
            row["tools"][name] = {
                "status": "ok",
                "time_s": timings.median(name),
                "cpu_s": timings.cpu_median(name),
                "peak_bytes": peak_memory(fn, args),
            }
        row["b_over_f"] = timings.ratio("generated", "forward")
        if hand_ok:
            row["hand_over_generated"] = timings.ratio("hand", "generated")
        out["rows"].append(row)
    out["growth"] = growth(out["rows"])
    return out


def rounds_within(rounds: int, one_round_s: float) -> int:
    """``rounds``, or fewer where they would take more than ROUND_BUDGET_S: odd (a median is
    then a measured figure) and at least 3."""
    fit = int(ROUND_BUDGET_S / max(one_round_s, 1e-9))
    fit -= 1 - fit % 2  # odd
    return max(3, min(rounds, fit))


def growth(rows: list[dict]) -> list[dict]:
    """Against the previous row, for each row after the first: the steps' factor, and the
    factors of the generated backward's time and peak memory (linear: the same as the steps')."""
    out = []
    for prev, row in zip(rows, rows[1:]):
        a, b = prev["tools"]["generated"], row["tools"]["generated"]
        out.append(
            {
                "from": prev["steps"],
                "to": row["steps"],
                "steps": row["steps"] / prev["steps"],
                "time": b["time_s"] / a["time_s"],
                "memory": b["peak_bytes"] / a["peak_bytes"] if a["peak_bytes"] else None,
            }
        )
    return out


SPAN_FROM = 1_000  # below this, the call's fixed costs weigh on the figures per step


def span(part: dict, what: str) -> dict | None:
    """Per step, the largest T against the smallest T of at least 1,000: ``what`` is
    ``time_s``, ``cpu_s`` or ``peak_bytes`` of the generated backward. Linear growth gives 1. None when
    fewer than two such T were measured (at small T, the call's fixed costs dominate)."""
    by_steps = {
        r["steps"]: r["tools"]["generated"][what]
        for r in part.get("rows", [])
        if what in r["tools"].get("generated", {}) and r["steps"] >= SPAN_FROM
    }
    if len(by_steps) < 2 or not by_steps[min(by_steps)]:
        return None
    start, largest = min(by_steps), max(by_steps)
    per_step = (by_steps[largest] / largest) / (by_steps[start] / start)
    return {"from": start, "to": largest, "per_step_ratio": per_step}


def run(
    keys: list[str] | None, steps: list[int], rounds: int, batch: float, log=lambda m: None
) -> list[dict]:
    return [measure(by_key(k), steps, rounds, batch, log) for k in keys or list(FUNCTIONS)]
