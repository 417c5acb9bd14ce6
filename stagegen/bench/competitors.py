"""The contenders: how each tool computes the gradient of a benchmark function.

Every tool differentiates the same source text (``BenchFunction.source``): stagegen generates
its backward from it; the competitors run it with ``math`` bound to their own functions
(autograd.numpy, torch, jax.numpy, SymPy, micrograd's Value methods). Each ``prepare_*``
returns a ``Prepared``: the callable to time with its arguments, a way to read the gradient as
a flat list of floats (to check it against the generated one *before* timing it), and the
one-off cost of getting there (generation, SymPy's build, JAX's compilation).

Choices that favour the competitors, so that a ratio we claim is not inflated:
- PyTorch: the leaf tensors (float64, requires_grad) are made once; a call is the forward on
  them and ``torch.autograd.grad``.
- JAX: ``jit(grad(f))`` compiled once, inputs already on the device; a call is the compiled
  function and ``block_until_ready``.
- micrograd: the leaf Values are made once; a call zeroes their gradients, runs the forward
  and ``backward()``, as micrograd's own training loop does.
- autograd: ``grad(f)`` made once; a call is autograd's forward trace and backward pass.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import time
import types
from dataclasses import dataclass

from .handwritten import HAND_WRITTEN
from .programs import BenchFunction, flatten, unflatten


class Skip(Exception):
    """This tool does not run on this function (with the reason, shown in the table)."""


@dataclass
class Prepared:
    fn: object
    args: tuple
    gradient: object  # () -> the gradient as a flat list of floats (untimed)
    setup_s: float | None = None  # one-off cost: generation, build, compilation
    detail: str = ""


# Which tools exist, in table order: (key, column label, the package that provides it).
TOOLS = [
    ("forward", "forward", None),
    ("generated", "generated", None),
    ("hand", "hand-written", None),
    ("sympy", "SymPy cse", "sympy"),
    ("autograd", "autograd", "autograd"),
    ("micrograd", "micrograd", "micrograd"),
    ("torch", "PyTorch", "torch"),
    ("jax", "JAX jit", "jax"),
]
LABELS = {key: label for key, label, _ in TOOLS}
GRADIENT_TOOLS = [key for key, _, _ in TOOLS if key != "forward"]
COMPETITORS = ["sympy", "autograd", "micrograd", "torch", "jax"]


def installed(package: str | None) -> str | None:
    """The installed version of ``package`` (without importing it), or None."""
    if package is None:
        return "builtin"
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def available_tools() -> dict[str, str | None]:
    return {key: installed(package) for key, _, package in TOOLS}


def to_floats(value) -> list[float]:
    """A tool's gradient (tuples, lists, arrays, tensors) -> a flat list of floats."""
    out = []
    for v in flatten(value if isinstance(value, (list, tuple)) else [value]):
        if v is None:  # PyTorch: an input the output does not depend on
            out.append(0.0)
        elif hasattr(v, "item"):
            out.append(float(v.item()))
        else:
            out.append(float(v))
    return out


def max_rel_diff(got: list[float], want: list[float]) -> float:
    """Largest difference, relative to the largest component of ``want`` (inf if malformed)."""
    if len(got) != len(want) or not all(math.isfinite(g) for g in got):
        return math.inf
    scale = max([abs(w) for w in want] + [1e-300])
    return max([abs(g - w) / scale for g, w in zip(got, want)] + [0.0])


def _shim(functions: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(**functions)


def _require(bf: BenchFunction, provided: set, tool: str) -> None:
    missing = sorted(bf.math_functions() - provided)
    if missing:
        raise Skip(f"cannot express math.{', math.'.join(missing)}")


# ---------------------------------------------------------------------------- stagegen & co.


def prepare_forward(bf: BenchFunction, **_) -> Prepared:
    fn = bf.forward()
    return Prepared(fn, tuple(bf.point), lambda: [fn(*bf.point)])


def prepare_generated(bf: BenchFunction, **_) -> Prepared:
    from stagegen.api import build, load_backward_module

    start = time.perf_counter()
    result = build(bf.source, bf.name, filename=f"{bf.key}.py")
    namespace = load_backward_module(result.text, f"{bf.key}.py")
    setup = time.perf_counter() - start
    fn = namespace[f"{bf.name}_backward"]
    return Prepared(fn, tuple(bf.point), lambda: to_floats(fn(*bf.point)), setup)


def prepare_hand(bf: BenchFunction, **_) -> Prepared:
    if bf.hand is None:
        raise Skip("none in the notes")
    fn = HAND_WRITTEN[bf.hand]
    return Prepared(fn, tuple(bf.point), lambda: to_floats(fn(*bf.point)))


def prepare_sympy(bf: BenchFunction, *, sympy_budget: float = 60.0, quick=False, **_) -> Prepared:
    from . import sympygrad

    if quick and bf.family == "random":
        raise Skip("not tried in --quick (its build exceeds the budget)")
    result = sympygrad.build(bf, sympy_budget)
    if "skipped" in result:
        raise Skip(result["skipped"])
    fn = sympygrad.compile_gradient(result["code"])
    flat = tuple(bf.flat_point)
    return Prepared(
        fn,
        flat,
        lambda: to_floats(fn(*flat)),
        result["build_s"],
        f"{result['lines']} lines of lambdify code",
    )


# ---------------------------------------------------------------------------- interpreted AD


def prepare_autograd(bf: BenchFunction, **_) -> Prepared:
    import autograd
    import autograd.numpy as anp

    table = {
        "exp": anp.exp,
        "log": anp.log,
        "sqrt": anp.sqrt,
        "sin": anp.sin,
        "cos": anp.cos,
        "tan": anp.tan,
        "tanh": anp.tanh,
        "atan": anp.arctan,
        "log1p": anp.log1p,
        "expm1": anp.expm1,
    }
    _require(bf, set(table), "autograd")
    f = bf.forward(_shim(table))
    grad = autograd.grad(lambda args: f(*args))  # one container argument: all inputs at once
    point = (tuple(bf.point),)
    return Prepared(grad, point, lambda: to_floats(grad(*point)))


def prepare_micrograd(bf: BenchFunction, **_) -> Prepared:
    from micrograd.engine import Value

    names = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "atan", "log1p", "expm1")
    table = {n: (lambda v, _n=n: getattr(v, _n)()) for n in names if hasattr(Value, n)}
    _require(bf, set(table), "micrograd")
    f = bf.forward(_shim(table))
    leaves = [Value(v) for v in bf.flat_point]
    args = unflatten(leaves, bf.layout)

    def grad(f=f, args=args, leaves=leaves):
        for leaf in leaves:
            leaf.grad = 0
        f(*args).backward()
        return [leaf.grad for leaf in leaves]

    return Prepared(grad, (), lambda: to_floats(grad()))


def prepare_torch(bf: BenchFunction, **_) -> Prepared:
    import torch

    table = {
        n: getattr(torch, n)
        for n in ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "atan", "log1p", "expm1")
    }
    _require(bf, set(table), "PyTorch")
    f = bf.forward(_shim(table))
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in bf.flat_point]
    args = unflatten(leaves, bf.layout)

    def grad(f=f, args=args, leaves=leaves, autograd_grad=torch.autograd.grad):
        return autograd_grad(f(*args), leaves, allow_unused=True)

    return Prepared(grad, (), lambda: to_floats(grad()))


def prepare_jax(bf: BenchFunction, *, jax_stage_limit: int = 1000, **_) -> Prepared:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64, like Python's floats
    import jax.numpy as jnp

    if bf.stages > jax_stage_limit:
        raise Skip(f"compilation of > {jax_stage_limit} stages not tried")
    table = {
        "exp": jnp.exp,
        "log": jnp.log,
        "sqrt": jnp.sqrt,
        "sin": jnp.sin,
        "cos": jnp.cos,
        "tan": jnp.tan,
        "tanh": jnp.tanh,
        "atan": jnp.arctan,
        "log1p": jnp.log1p,
        "expm1": jnp.expm1,
    }
    _require(bf, set(table), "JAX")
    f = bf.forward(_shim(table))
    layout = bf.layout

    def flat_f(*values):
        return f(*unflatten(list(values), layout))

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(flat_f, argnums=tuple(range(len(bf.flat_point)))))
    inputs = [jnp.asarray(v, dtype=jnp.float64) for v in bf.flat_point]
    jax.block_until_ready(compiled(*inputs))
    setup = time.perf_counter() - start

    def grad(compiled=compiled, inputs=inputs, ready=jax.block_until_ready):
        return ready(compiled(*inputs))

    return Prepared(grad, (), lambda: to_floats(grad()), setup, "includes jit compilation")


PREPARE = {
    "forward": prepare_forward,
    "generated": prepare_generated,
    "hand": prepare_hand,
    "sympy": prepare_sympy,
    "autograd": prepare_autograd,
    "micrograd": prepare_micrograd,
    "torch": prepare_torch,
    "jax": prepare_jax,
}


def prepare(tool: str, bf: BenchFunction, **options) -> Prepared:
    """The tool's contender for ``bf``; raises Skip when it cannot run it."""
    if installed({k: p for k, _, p in TOOLS}[tool]) is None:
        raise Skip("not installed")
    if tool in ("forward", "generated"):  # the reference: a failure here is a real error
        return PREPARE[tool](bf, **options)
    try:
        return PREPARE[tool](bf, **options)
    except Skip:
        raise
    except RecursionError:
        raise Skip("recursion limit (graph too deep)") from None
    except Exception as exc:  # a competitor failing on a function is a result, not a crash
        raise Skip(f"failed: {type(exc).__name__}: {str(exc)[:80]}") from None
