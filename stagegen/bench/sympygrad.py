"""SymPy's full gradient, the way a user would get it: compose, ``diff``, ``lambdify(cse=True)``.

Built in a child process (``python -m stagegen.bench.sympygrad``, a JSON request on stdin),
because SymPy has no time limit of its own and swells on deep functions: the parent kills the
child past a budget and reports the function as skipped. The child times the build (composing
the expression, differentiating it with respect to every input, and lambdify with common
subexpression elimination) and sends back the source text lambdify generated; the parent
compiles that text and times it beside the other tools, in one process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import types

from .programs import BenchFunction, unflatten

FUNCTIONS = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "atan", "log1p", "expm1")


def _shim():
    import sympy as sp

    table = {name: getattr(sp, name, None) for name in FUNCTIONS}
    table["log1p"] = lambda v: sp.log(1 + v)
    table["expm1"] = lambda v: sp.exp(v) - 1
    return types.SimpleNamespace(**table)


def build_here(source: str, name: str, layout: list) -> dict:
    """Build the gradient in this process: {'build_s', 'code', 'lines'}."""
    import inspect

    import sympy as sp

    from .programs import BenchFunction

    start = time.perf_counter()
    count = sum(1 if n is None else n for n in layout)
    symbols = sp.symbols(f"a0:{count}", real=True)
    bf = BenchFunction("sympy", "", name, source, (), "")
    forward = bf.forward(_shim())
    expression = forward(*unflatten(list(symbols), layout))
    gradient = [sp.diff(expression, s) for s in symbols]
    fn = sp.lambdify(symbols, gradient, modules="math", cse=True)
    elapsed = time.perf_counter() - start
    code = inspect.getsource(fn)
    return {"build_s": elapsed, "code": code, "lines": code.count("\n")}


def build(bf: BenchFunction, budget: float) -> dict:
    """Build in a child process. Returns {'build_s', 'code', 'lines'} or {'skipped': reason}."""
    request = json.dumps({"source": bf.source, "name": bf.name, "layout": bf.layout})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "stagegen.bench.sympygrad"],
            input=request,
            capture_output=True,
            text=True,
            timeout=budget + 5,  # the budget is for the build; the rest is SymPy's import
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"build > {budget:g} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"build failed: {last[:80]}"}
    result = json.loads(done.stdout)
    if result["build_s"] > budget:
        return {"skipped": f"build > {budget:g} s ({result['build_s']:.0f} s)"}
    return result


def compile_gradient(code: str):
    """The lambdified gradient function from its source text."""
    namespace = {"math": math, **{k: v for k, v in vars(math).items() if not k.startswith("_")}}
    before = set(namespace)
    exec(compile(code, "<sympy lambdify>", "exec"), namespace)
    (name,) = [k for k in namespace if k not in before and not k.startswith("__")]
    return namespace[name]


def main() -> None:
    request = json.loads(sys.stdin.read())
    json.dump(build_here(request["source"], request["name"], request["layout"]), sys.stdout)


if __name__ == "__main__":
    main()
