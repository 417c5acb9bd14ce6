"""Conditional expressions ``a if c else b`` and the conditions they test (issue 14, the
expression side).

The generated backward is run at points on both sides of every condition and compared with
central differences of the forward as written (run by Python, so the side taken is Python's);
a few backwards are checked line by line for readability; the proof's local check must prove
each choice of sides; array code takes a number's test and refuses an array's, located.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import stagegen
from stagegen import gates
from stagegen.api import load_backward_module
from stagegen.errors import StagegenError, VerificationError
from stagegen.expr import And, Compare, Cond, Not, Or, to_source, walk
from stagegen.reader import read_programs

STEP = 1e-6
RTOL = 1e-6


def module(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def backward_of(source: str, name: str):
    text = stagegen.generate(source, name)
    return text, load_backward_module(text)[f"{name}_backward"]


def forward_of(source: str, name: str):
    namespace: dict = {}
    exec(compile(source, "<forward>", "exec"), namespace)
    return namespace[name]


def central_differences(f, args: list, upstream: float) -> list[float]:
    """d(upstream * f)/d(each number argument), by float central differences."""
    out = []
    for i in range(len(args)):
        up, down = list(args), list(args)
        h = STEP * max(1.0, abs(args[i]))
        up[i] += h
        down[i] -= h
        out.append(upstream * (f(*up) - f(*down)) / (2 * h))
    return out


NUMBER_CASES = {
    "leaky": (
        """
        def leaky(x):
            y = x if x > 0 else 0.1 * x
            return y
        """,
        [[0.7], [-0.7], [1.3], [-1.9]],
    ),
    "nested-in-a-product": (
        """
        def scaled(x, y):
            z = 2 * (x if x > 0 else 0.1 * x) * y + (y if 0 < y < 1 else y**2)
            return z
        """,
        [[0.7, 0.5], [-0.7, 0.5], [0.7, 1.5], [-0.7, -1.5], [1.2, -0.3]],
    ),
    "and-or-not": (
        """
        import math

        def picky(x, s):
            t = math.log(x) if s > 0 and not x < 1 or s < -1 else math.exp(x)
            return t * s
        """,
        [[1.5, 0.5], [0.5, 0.5], [1.5, -0.5], [2.5, -1.5], [-0.5, 0.3]],
    ),
    "test-reads-an-overwritten-value": (
        """
        def overwritten(x, y):
            u = x * y
            v = x if u > 0.5 else y * y
            u = v * v
            return u + y
        """,
        [[1.0, 1.0], [0.2, 0.3], [-1.0, 2.0], [1.5, -0.5]],
    ),
    "list-elements": (
        """
        def elements(w, x):
            z = w[0] * x if w[1] > x else w[2] - x
            return z * w[1]
        """,
        [[[0.5, 1.0, -0.3], 0.2], [[0.5, -1.0, -0.3], 0.2], [[-1.5, 0.4, 2.0], -0.8]],
    ),
    "a-gate-on-each-side": (
        """
        import math

        def gates_inside(x, y):
            z = max(x, y) if x + y > 1 else math.tanh(x * y)
            return z * x
        """,
        [[1.5, 0.2], [0.2, 1.5], [0.1, -0.4], [-1.2, 0.5]],
    ),
    "nested-conditionals": (
        """
        def steps(x, y):
            z = x * y if x > 1 else (x - y if x > -1 else -x * x)
            return z
        """,
        [[1.5, 0.5], [0.5, 0.5], [-1.5, 0.5], [0.0, -2.0]],
    ),
    "equality-and-inequality": (
        """
        def kink(x):
            y = x * x if x != 1 else 2 * x
            z = 3 * y if y == 4 else -y
            return z
        """,
        [[0.5], [-1.5], [1.7]],
    ),
    "cached-output": (
        """
        import math

        def soft(x):
            t = math.exp(x) if x < 0 else x + 1
            return t * t
        """,
        [[-0.5], [0.5], [-1.7], [1.2]],
    ),
    "parameter-in-test-only": (
        """
        def gated(x, s):
            y = x * x if s > 0 else -x
            return y
        """,
        [[0.6, 1.0], [0.6, -1.0], [-1.4, 0.1]],
    ),
}


def _points_with_floats(points):
    return [[list(a) if isinstance(a, list) else a for a in p] for p in points]


@pytest.mark.parametrize("case", sorted(NUMBER_CASES))
@pytest.mark.parametrize("upstream", [1.0, -2.5])
def test_gradient_matches_central_differences_on_both_sides(case, upstream):
    source, points = NUMBER_CASES[case]
    source = module(source)
    name = source.split("def ")[1].split("(")[0]
    text, backward = backward_of(source, name)
    forward = forward_of(source, name)
    for args in _points_with_floats(points):
        got = backward(*args, upstream)
        got = list(got) if isinstance(got, tuple) else [got]
        flat_args, got_flat = [], []
        for a, g in zip(args, got):
            if isinstance(a, list):
                flat_args += a
                got_flat += list(g)
            else:
                flat_args.append(a)
                got_flat.append(g)

        def f_flat(*values, args=args):
            rebuilt, k = [], 0
            for a in args:
                if isinstance(a, list):
                    rebuilt.append(list(values[k : k + len(a)]))
                    k += len(a)
                else:
                    rebuilt.append(values[k])
                    k += 1
            return forward(*rebuilt)

        want = central_differences(f_flat, flat_args, upstream)
        for k, (g, w) in enumerate(zip(got_flat, want)):
            assert isinstance(g, float), f"{case} at {args}: {g!r}"
            assert abs(g - w) <= RTOL * max(
                1.0, abs(w)
            ), f"{case} at {args}: component {k} is {g}, central differences give {w}\n{text}"


def test_the_points_reach_both_sides_of_every_test():
    """The points of each case above take each side of each of its tests at least once (else
    the comparison would check one side only)."""
    for case, (source, points) in NUMBER_CASES.items():
        programs = read_programs(module(source))
        (program,) = programs
        tests = [n.test for s in program.stages for n in walk(s.expr) if isinstance(n, Cond)]
        assert tests, case
        values_at = [_stage_values(program, args) for args in points]
        for test in tests:
            if isinstance(test, Compare) and test.op in ("==", "!="):
                continue  # equality holds at a boundary only: see test_at_a_boundary_...
            outcomes = {_decide(test, values) for values in values_at}
            assert outcomes == {True, False}, f"{case}: `{to_source(test)}` is always {outcomes}"


def _stage_values(program, args) -> dict:
    """Every parameter's and stage's value at ``args`` (the stages run as Python code)."""
    env: dict = {"math": math}
    for p, a in zip(program.params, args):
        env[p.name] = a
    for s in program.stages:
        env[s.target] = eval(to_source(s.expr), env)
    return env


def _decide(test, values) -> bool:
    return bool(eval(to_source(test), dict(values)))


@pytest.mark.parametrize(
    "source, x, want",
    [
        ("def f(x):\n    return x if x > 0 else 0.1 * x\n", 0.0, 0.1),  # 0 > 0 is false
        ("def f(x):\n    return x if x >= 0 else 0.1 * x\n", 0.0, 1.0),
        ("def f(x):\n    y = x * x\n    return 3 * y if y == 4 else -y\n", 2.0, 12.0),
        ("def f(x):\n    y = x * x\n    return 3 * y if y == 4 else -y\n", 2.5, -5.0),
    ],
)
def test_at_a_boundary_the_gradient_is_the_side_taken(source, x, want):
    """The README's rule: where a condition's test is on its boundary, the gradient is that of
    the side the forward took there (as for kinks of abs and max)."""
    _, backward = backward_of(source, "f")
    assert backward(x) == want


# ---------------------------------------------------------------------------- readability


READABLE = [
    (
        NUMBER_CASES["leaky"][0],
        ["    dx = dy if x > 0 else 0.1 * dy  # (1)"],
    ),
    (
        NUMBER_CASES["nested-in-a-product"][0],
        [
            "    dx = 2 * y * dz if x > 0 else 0.2 * y * dz  # (1)",
            "    dy = (2 * (x if x > 0 else 0.1 * x) + (1 if 0 < y < 1 else 2 * y)) * dz  # (1)",
        ],
    ),
    (
        """
        def absolute(x):
            return x if x > 0 else -x
        """,
        ["    dx = dout if x > 0 else -dout  # (1)"],
    ),
    (
        NUMBER_CASES["cached-output"][0],
        [
            "    t = math.exp(x) if x < 0 else x + 1  # (1)",
            "    dx = t * dt if x < 0 else dt  # (1)",
        ],
    ),
    (
        NUMBER_CASES["and-or-not"][0],
        ["    dx = (1 / x) * dt if s > 0 and not x < 1 or s < -1 else t * dt  # (1)"],
    ),
    (
        NUMBER_CASES["test-reads-an-overwritten-value"][0],
        [
            "    u = x * y  # (1)",
            "    # backprop v = x if u > 0.5 else y * y",
            "    dx = dv if u > 0.5 else 0.0  # (2)",
            "    dy += 0.0 if u > 0.5 else 2 * y * dv  # (2)",
        ],
    ),
    (
        NUMBER_CASES["parameter-in-test-only"][0],
        [
            "    dx = 2 * x * dy if s > 0 else -dy  # (1)",
            "    ds = 0.0  # s reaches the output only through a condition, which has no gradient",
        ],
    ),
]


@pytest.mark.parametrize("source, lines", READABLE)
def test_backward_reads_as_written_by_hand(source, lines):
    text = stagegen.generate(module(source))
    body = text.splitlines()
    for line in lines:
        assert line in body, f"missing:\n{line}\nin:\n{text}"


@pytest.mark.parametrize("case", sorted(NUMBER_CASES))
def test_no_noise(case):
    text = stagegen.generate(module(NUMBER_CASES[case][0]))
    for noise in ("1.0 *", "* 1.0", "+ 0.0", "0.0 +", "(1) *", "2.0 *"):
        assert noise not in text, f"{noise!r} in\n{text}"


def test_output_is_deterministic():
    sources = [module(s) for s, _ in NUMBER_CASES.values()]
    assert [stagegen.generate(s) for s in sources] == [stagegen.generate(s) for s in sources]


# ---------------------------------------------------------------------------- conditions


def test_condition_reads_comparisons_chains_and_or_not():
    source = module("""
        def f(x, y):
            z = x if 0 < x <= y and not (x == 1 or y != 2) else y
            return z
        """)
    (program,) = read_programs(source)
    test = program.stages[0].expr.test
    assert isinstance(test, And) and len(test.items) == 2
    chain = test.items[0]
    assert isinstance(chain, And) and [c.op for c in chain.items] == ["<", "<="]
    assert all(isinstance(c, Compare) for c in chain.items)
    negated = test.items[1]
    assert isinstance(negated, Not) and isinstance(negated.operand, Or)
    assert [c.op for c in negated.operand.items] == ["==", "!="]
    # printed back as the user wrote it (the chain as a chain)
    assert to_source(test) == "0 < x <= y and not (x == 1 or y != 2)"


@pytest.mark.parametrize(
    "condition",
    [
        "x > 0 and y > 0 or x < -1",
        "x > 0 and (y > 0 or x < -1)",
        "not x > 0",
        "not (x > 0 and y > 0)",
        "(x if x > 0 else y) > 1",
        "x + 1 < y * 2 <= 3",
        "-x >= y**2",
    ],
)
def test_condition_prints_back_with_the_same_meaning(condition):
    source = f"def f(x, y):\n    z = x if {condition} else y\n    return z\n"
    (program,) = read_programs(source)
    printed = to_source(program.stages[0].expr.test)
    for x in (-1.5, -0.5, 0.0, 0.5, 1.5):
        for y in (-1.5, 0.0, 0.5, 1.5):
            assert eval(printed, {"x": x, "y": y}) == eval(condition, {"x": x, "y": y}), printed


# ---------------------------------------------------------------------------- refusals


ARRAY_TEST = module("""
    import numpy as np

    def f(x: "N, D", s):
        y = x if x > s else -x
        return np.sum(y)
    """)


def test_a_test_on_an_array_is_refused_located():
    with pytest.raises(StagegenError) as info:
        stagegen.generate(ARRAY_TEST, filename="model.py")
    err = info.value
    assert (err.filename, err.line, err.col) == ("model.py", 4, 14)
    assert "compares an array of shape (N, D)" in err.message
    assert "np.where(c, a, b)" in err.hint
    first = str(err).splitlines()[0]
    assert first.startswith("model.py:4:14: error: the condition `x > s` compares an array")


def test_the_cli_refuses_an_array_test_with_exit_2(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(ARRAY_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "stagegen", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{path}:4:14: error: the condition `x > s`")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model_backward.py").exists()


@pytest.mark.parametrize(
    "body, line, col, says",
    [
        # the second comparison of an `and` is the one on an array
        ("y = x if s > 0 and x.sum(axis=0) > 0 else -x", 4, 24, "compares an array of shape (D,)"),
        ("y = x if s > 0 else 0.0\n    return np.sum(y)", 4, 9, "different shapes ((N, D) and a number)"),  # fmt: skip
        ("y = x if s else -x", 4, 14, "`s` is a number, not a condition"),
    ],
)
def test_array_refusals(body, line, col, says):
    if "return" not in body:
        body += "\n    return np.sum(y)"
    source = f'import numpy as np\n\ndef f(x: "N, D", s):\n    {body}\n'
    with pytest.raises(StagegenError) as info:
        stagegen.generate(source)
    assert (info.value.line, info.value.col) == (line, col), str(info.value)
    assert says in info.value.message


# ---------------------------------------------------------------------------- array code


ARRAY_CASES = module("""
    import numpy as np

    def sign_flip(x: "N, D", s):
        y = x if s > 0 else -x
        return np.sum(y * y * x)

    def by_mean(x: "N, D", b: "D"):
        m = np.mean(x)
        y = (x + b if m > 0 else 2.0 * x) * b
        return np.sum(np.tanh(y))

    def branchy(x: "N, D", s, t):
        m = x.max()
        y = np.exp(x) * t if -1 < s <= m and not t < -1 or s < -1 else x * s
        return np.sum(y) if s != 0.5 else np.sum(x)
    """)


def test_array_code_with_a_number_test_matches_central_differences():
    build = stagegen.generate(ARRAY_CASES)
    namespace = load_backward_module(build)
    forwards = {n: forward_of(ARRAY_CASES, n) for n in ("sign_flip", "by_mean")}
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3))
    b = rng.normal(size=3)
    sides = set()
    for s in (0.7, -0.7):
        got_x, got_s = namespace["sign_flip_backward"](x, s)
        assert isinstance(got_s, float) and got_s == 0.0  # the test's input gets no gradient
        want = _array_differences(lambda x: forwards["sign_flip"](x, s), x)
        np.testing.assert_allclose(got_x, want, rtol=1e-6, atol=1e-8)
    for shift in (2.0, -2.0):  # the mean of x on both sides of 0
        xs = x + shift
        sides.add(np.mean(xs) > 0)
        got_x, got_b = namespace["by_mean_backward"](xs, b)
        np.testing.assert_allclose(
            got_x, _array_differences(lambda x: forwards["by_mean"](x, b), xs), rtol=1e-6, atol=1e-8
        )
        np.testing.assert_allclose(
            got_b, _array_differences(lambda b: forwards["by_mean"](xs, b), b), rtol=1e-6, atol=1e-8
        )
    assert sides == {True, False}
    assert "    dx += np.where(s > 0, dy, -dy)  # (1)" in build.splitlines()


def _array_differences(f, a):
    out = np.zeros_like(a)
    for index in np.ndindex(*a.shape):
        up, down = a.copy(), a.copy()
        up[index] += STEP
        down[index] -= STEP
        out[index] = (f(up) - f(down)) / (2 * STEP)
    return out


def test_array_code_with_a_number_test_is_proven():
    report = stagegen.verify(ARRAY_CASES)
    assert [f.name for f in report.functions] == ["sign_flip", "by_mean", "branchy"]


# ---------------------------------------------------------------------------- the proof


def test_local_check_proves_each_side_symbolically():
    sources = [module(NUMBER_CASES[c][0]) for c in ("leaky", "and-or-not", "nested-conditionals")]
    for source in sources:
        report = stagegen.verify(source)
        for function in report.functions:
            assert function.local_checks, source
            assert {c.method for c in function.local_checks} == {"symbolic"}, str(report)
            assert len(function.points) >= 5  # and more to reach every side


def test_end_to_end_proof_passes_on_every_case():
    for case, (source, _) in NUMBER_CASES.items():
        report = stagegen.verify(module(source))
        assert report.max_rel_error <= 1e-7, f"{case}: {report}"


def test_a_wrong_side_is_caught(monkeypatch):
    """Sabotage: a conditional gate that sends the gradient to the wrong side must fail the
    proof (the local check, before the end-to-end one)."""
    from stagegen.expr import select

    right = gates.conditional

    def swapped(test):
        gate = right(test)
        return gates.Gate(
            gate.arity,
            lambda out, a, b: (
                select(test, gates.ZERO_F, gates.ONE),
                select(test, gates.ONE, gates.ZERO_F),
            ),
            gate.behaviour,
            gate.name,
        )

    monkeypatch.setattr(gates, "conditional", swapped)
    with pytest.raises(VerificationError) as info:
        stagegen.verify(module(NUMBER_CASES["leaky"][0]))
    assert "local gradient of stage (1)" in info.value.message


def test_split_keeps_a_conditional_expression_whole():
    """--split must not hoist a side into a stage of its own: it would run everywhere (a log
    of a negative number where the forward never takes that side)."""
    source = module("""
        import math

        def f(x, y):
            z = 2 * (math.log(x) if x > 0 else 0.1 * x * y) + y
            return z
        """)
    text = stagegen.generate(source, split=True)
    assert "chosen = math.log(x) if x > 0 else 0.1 * x * y" in text
    report = stagegen.verify(source, split=True)
    assert report.max_rel_error <= 1e-7
    backward = load_backward_module(text)["f_backward"]
    dx, dy = backward(-0.5, 2.0)
    assert (dx, dy) == pytest.approx((0.2 * 2.0, 0.2 * -0.5 + 1.0))


def test_decorator_attaches_the_backward(tmp_path):
    import importlib.util

    path = tmp_path / "leaky_model.py"
    path.write_text(
        "from stagegen import staged\n\n\n@staged\ndef leaky(x):\n"
        "    return x if x > 0 else 0.1 * x\n"
    )
    spec = importlib.util.spec_from_file_location("leaky_model", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert loaded.leaky.backward(2.0) == 1.0
    assert loaded.leaky.backward(-2.0) == pytest.approx(0.1)


def test_explain_names_each_side_value():
    source = module(NUMBER_CASES["nested-in-a-product"][0])
    for at, dx in (({"x": 2.0, "y": 0.5}, "1"), ({"x": -2.0, "y": 0.5}, "0.1")):
        text = stagegen.explain(source, "scaled", at=at).text()
        assert f"dx = {dx}" in text.split("gradient on each input")[1], text


# ---------------------------------------------------------------------------- sizes


def test_a_product_of_conditional_expressions_stays_linear():
    """Each selection is written side by side only while few are involved: a product of k
    conditional expressions would otherwise give 2**k sides (a megabyte of code at k = 10)."""
    sizes = {}
    for k in (6, 12):
        product = " * ".join(f"(x if x > {i / 4} else y)" for i in range(k))
        source = f"def f(x, y):\n    return {product}\n"
        text, backward = backward_of(source, "f")
        sizes[k] = len(text)
        forward = forward_of(source, "f")
        for point in ([1.3, 0.7], [-0.4, 1.1]):
            got = backward(*point)
            want = central_differences(forward, point, 1.0)
            assert got == pytest.approx(want, rel=1e-6)
    assert sizes[12] < 4 * sizes[6], sizes


def test_conditional_expressions_nested_too_deeply_are_refused():
    chain = " else ".join(f"{i} * x if x > {i}" for i in range(101)) + " else x"
    with pytest.raises(StagegenError) as info:
        stagegen.generate(f"def f(x):\n    return {chain}\n")
    assert "more than 100 conditional expressions nested" in info.value.message
    assert info.value.line == 2 and info.value.col > 1
