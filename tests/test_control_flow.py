"""Branches and loops (issue 14): what the reader builds, what it refuses (located), and the
generated backward of each construct against central differences of the forward as written, at
points on both sides of every branch."""

import math
import random
import textwrap

import numpy as np
import pytest

import stagegen
from stagegen.errors import StagegenError
from stagegen.expr import Var
from stagegen.program import Branch, Exit, Loop, Stage
from stagegen.reader import read_programs


def program_of(source: str):
    return read_programs(textwrap.dedent(source), "forward.py")[0]


def compiled(source: str, name: str, **options):
    source = textwrap.dedent(source)
    namespace: dict = {}
    exec(compile(source, "forward.py", "exec"), namespace)
    backward: dict = {}
    exec(stagegen.generate(source, name, filename="forward.py", **options), backward)
    return namespace[name], backward[f"{name}_backward"]


def numeric_gradient(f, args: list, k: int, j: int | None = None, h: float = 1e-6) -> float:
    def moved(step):
        copy = [list(a) if isinstance(a, list) else a for a in args]
        if j is None:
            copy[k] += step
        else:
            copy[k][j] += step
        return f(*copy)

    return (moved(h) - moved(-h)) / (2 * h)


def check_gradients(f, fb, args: list, integer: set[int] = frozenset()) -> None:
    got = fb(*args)
    differentiated = [k for k in range(len(args)) if k not in integer]
    if len(differentiated) == 1:
        got = (got,)
    for g, k in zip(got, differentiated):
        if isinstance(args[k], list):
            for j in range(len(args[k])):
                want = numeric_gradient(f, args, k, j)
                assert g[j] == pytest.approx(want, rel=1e-5, abs=1e-6), (k, j, args)
        else:
            want = numeric_gradient(f, args, k)
            assert g == pytest.approx(want, rel=1e-5, abs=1e-6), (k, args)


# ---------------------------------------------------------------------------- the block tree


def test_if_elif_else_with_early_returns_is_one_tree():
    p = program_of("""
        def clamp(x, lo, hi):
            if x < lo:
                return lo
            elif x > hi:
                return hi
            return x
        """)
    [branch] = p.body
    assert isinstance(branch, Branch) and isinstance(branch.orelse[0], Branch)
    # every return binds the one output
    assert {s.target for s in p.stages} == {"out"} and p.output.name == "out"


def test_statements_after_an_if_that_breaks_go_into_its_other_arm():
    p = program_of("""
        def f(w, limit):
            s = 0.0
            for wi in w:
                if s > limit:
                    break
                s = s + wi
            return s
        """)
    loop = p.body[1]
    assert isinstance(loop, Loop) and loop.steps  # a loop that may break counts its steps
    # the test reads `s`, which the other arm binds: the decision is kept as a value first
    decision, branch = loop.body
    assert isinstance(decision, Stage) and branch.test == Var(decision.target)
    assert isinstance(branch.then[0], Exit) and isinstance(branch.orelse[0], Stage)


def test_a_loop_carries_its_names():
    p = program_of("""
        def f(xs, h):
            for x in xs:
                h = h * x
            return h
        """)
    assert [s.target for s in p.stages][0] == "h"  # the parameter, bound again in the loop


# ---------------------------------------------------------------------------- refusals


REFUSED = [
    (
        "def f(x, n):\n    for k in range(n):\n        return x\n    return x\n",
        (3, 9),
        "`return` inside a loop is not supported",
    ),
    ("def f(x):\n    if x:\n        x = 1.0\n    return x\n", (2, 8), "is a number, not a condition"),
    (
        "def f(x):\n    if x > 0:\n        y = x\n    return y\n",
        (4, 12),
        "`y` is assigned on only some paths",
    ),
    (
        "def f(w):\n    s = 0.0\n    for k in {1: 2}:\n        s = s + k\n    return s\n",
        (3, 14),
        "this loop's iterable is not supported",
    ),
    (
        "def f(w):\n    s = 0.0\n    for v in (a * 2 for a in w):\n        s = s + v\n    return s\n",
        (3, 14),
        "this loop's iterable is not supported",
    ),
    (
        "def f(x, y):\n    while x < y:\n        x = x * 2\n    else:\n        x = y\n    return x\n",
        (5, 9),
        "a loop's `else` block is not supported",
    ),
    (
        "def f(x, y):\n    for k in range(y):\n        x = x * 2\n    return x\n"
        "\n\ndef g(x):\n    return f(x, 3)\n",
        None,
        "",
    ),
    (
        "def f(x):\n    if x > 0:\n        return x\n",
        (1, 1),
        "some paths through `f` end without a `return`",
    ),
    (
        "def f(w):\n    for k in range(len(w)):\n        if w[k] > 0:\n            z = w[k]\n"
        "        else:\n            z = -w[k]\n        w2 = z * z\n    return w2\n",
        None,
        "",
    ),
]


@pytest.mark.parametrize("source, where, says", [r for r in REFUSED if r[1]])
def test_refused_with_location(source, where, says):
    with pytest.raises(StagegenError) as info:
        stagegen.generate(source, filename="forward.py")
    err = info.value
    assert (err.line, err.col) == where and says in err.message and err.hint


def test_a_float_trip_count_is_refused_by_python_not_guessed():
    """`range(n)` marks n an integer: it is not differentiated, and not turned into a float."""
    f, fb = compiled(
        """
        def power(x, n):
            p = 1.0
            for k in range(n):
                p = p * x
            return p
        """,
        "power",
    )
    assert fb(1.5, 3) == pytest.approx(3 * 1.5**2)  # one gradient: x's
    with pytest.raises(TypeError):
        fb(1.5, 3.0)


# ---------------------------------------------------------------------------- gradients

PROGRAMS = {
    "huber": """
        def huber(r, delta):
            if abs(r) <= delta:
                loss = 0.5 * r**2
            else:
                loss = delta * (abs(r) - 0.5 * delta)
            return loss
        """,
    "clamp": """
        def clamp(x, lo, hi):
            if x < lo:
                return lo
            elif x > hi:
                return hi
            return x
        """,
    "rebind_in_branch": """
        def f(x, y):
            z = x * y
            if x > y:
                z = z * z + x
            elif x < -y:
                z = math.sin(z)
            w = z * x
            return w
        """,
    "and_or_not": """
        def f(x, y):
            if x > 0 and not y > 1 or x < -1:
                out = x * y
            else:
                out = x + y * y
            return out
        """,
}
LIST_PROGRAMS = {
    "dot": """
        def dot(w, x, b):
            s = b
            for wi, xi in zip(w, x):
                s += wi * xi
            return s
        """,
    "rnn": """
        def rnn(xs, h0, wh, wx, b):
            h = h0
            for x in xs:
                h = math.tanh(wh * h + wx * x + b)
            return (h - 0.5) ** 2
        """,
    "break": """
        def f(w, x, limit):
            s = 0.0
            for i in range(len(w)):
                s = s + w[i] * x[i]
                if s > limit:
                    break
            return s * s
        """,
    "continue": """
        def f(w, x):
            s = 0.0
            for i, wi in enumerate(w):
                if wi * x[i] < 0:
                    continue
                s += math.sin(wi * x[i])
            return s
        """,
    "nested": """
        def f(w, x):
            s = 0.0
            for i in range(len(w)):
                for j in range(len(x)):
                    s = s + w[i] * math.cos(x[j] * s)
            return s
        """,
    "branch_in_loop": """
        def f(w, x):
            total = 0.0
            for r in w:
                if abs(r) <= x[0]:
                    l = 0.5 * r * r
                else:
                    l = x[0] * (abs(r) - 0.5 * x[0])
                total += l
            return total
        """,
    "reversed_and_neighbours": """
        def f(w, x):
            s = 0.0
            for i in reversed(range(1, len(w))):
                s = s * x[0] + w[i] * w[i - 1]
            return s
        """,
    "local_read_later_in_step": """
        def f(w, x):
            h = x[0]
            for wi in w:
                z = wi * h
                z = z * z
                h = math.tanh(z) + h * wi
            return h
        """,
}


def _points(rng, names, lists: bool):
    for _ in range(12):
        n = rng.randint(1, 4)
        yield [
            [rng.uniform(-2, 2) for _ in range(n)] if lists and k < 2 else rng.uniform(-2, 2)
            for k in range(len(names))
        ]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_branches_match_central_differences_on_both_sides(name):
    source = "import math\n" + textwrap.dedent(PROGRAMS[name])
    fname = source.split("def ")[1].split("(")[0]
    f, fb = compiled(source, fname)
    rng = random.Random(name)
    params = source.split("(")[1].split(")")[0].split(", ")
    outcomes = set()
    for args in _points(rng, params, lists=False):
        check_gradients(f, fb, args)
        outcomes.add(tuple(a > 0 for a in args))
    assert len(outcomes) > 3  # points on several sides of the tests


@pytest.mark.parametrize("name", sorted(LIST_PROGRAMS))
def test_loops_match_central_differences(name):
    source = "import math\n" + textwrap.dedent(LIST_PROGRAMS[name])
    fname = source.split("def ")[1].split("(")[0]
    f, fb = compiled(source, fname)
    rng = random.Random(name)
    params = source.split("(")[1].split(")")[0].split(", ")
    for args in _points(rng, params, lists=True):
        if any(isinstance(a, list) for a in args):
            n = min(len(a) for a in args if isinstance(a, list))
            args = [a[:n] if isinstance(a, list) else a for a in args]
        if name == "rnn":  # xs is the only list
            args[1] = args[1][0]
        check_gradients(f, fb, args)


def test_split_keeps_the_gradient_of_a_loop():
    source = "import math\n" + textwrap.dedent(LIST_PROGRAMS["rnn"])
    f, plain = compiled(source, "rnn")
    _, split = compiled(source, "rnn", split=True)
    args = [[0.3, -1.2, 0.8], 0.1, 0.7, -0.4, 0.2]
    assert np.allclose(
        np.hstack([np.ravel(g) for g in plain(*args)[1:]]),
        np.hstack([np.ravel(g) for g in split(*args)[1:]]),
    )
    assert np.allclose(plain(*args)[0], split(*args)[0])
    check_gradients(f, split, args)


def test_values_the_backward_does_not_read_are_not_saved():
    dot = stagegen.generate(textwrap.dedent(LIST_PROGRAMS["dot"]), filename="forward.py")
    assert "_saved" not in dot and "for i in reversed(range(min(len(w), len(x)))):" in dot
    rnn = stagegen.generate("import math\n" + textwrap.dedent(LIST_PROGRAMS["rnn"]))
    assert rnn.count(".append(") == 1  # h, once per step: nothing else is saved


def test_array_loop_reads_a_slot_and_adds_its_gradient_back():
    source = textwrap.dedent("""
        import numpy as np

        def rnn_loss(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
            h = h0
            for t in range(x.shape[1]):
                h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b)
            return np.sum(h * h)
        """)
    namespace: dict = {}
    exec(source, namespace)
    backward: dict = {}
    exec(stagegen.generate(source, filename="forward.py"), backward)
    f, fb = namespace["rnn_loss"], backward["rnn_loss_backward"]
    rng = np.random.default_rng(0)
    for N, T in [(1, 1), (2, 3), (3, 5)]:
        args = [rng.normal(size=s) for s in [(N, T, 4), (N, 5), (4, 5), (5, 5), (5,)]]
        grads = fb(*args)
        for k, a in enumerate(args):
            for index in [(0,) * a.ndim, tuple(d - 1 for d in a.shape)]:
                up, down = [x.copy() for x in args], [x.copy() for x in args]
                up[k][index] += 1e-6
                down[k][index] -= 1e-6
                want = (f(*up) - f(*down)) / 2e-6
                assert grads[k][index] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_explain_refuses_loops_for_now():
    with pytest.raises(StagegenError) as info:
        stagegen.explain(textwrap.dedent(LIST_PROGRAMS["dot"]), "dot")
    assert "loops and branches" in info.value.message and info.value.line == 4


def test_the_decorator_takes_a_loop():
    source = textwrap.dedent("""
        from stagegen import staged

        @staged
        def total(w, x):
            s = 0.0
            for wi, xi in zip(w, x):
                if wi > xi:
                    s += wi * xi
            return s
        """)
    path = __import__("pathlib").Path(__file__).parent / "_loop_decorated_tmp.py"
    namespace: dict = {"__name__": "loop_decorated"}
    try:
        path.write_text(source)
        exec(compile(source, str(path), "exec"), namespace)
    finally:
        path.unlink()
    dw, dx = namespace["total"].backward([1.0, -2.0, 3.0], [0.5, 1.0, -1.0])
    assert dw == [0.5, 0.0, -1.0] and dx == [1.0, 0.0, 3.0]
    assert math.isfinite(namespace["total"].verification.max_rel_error)
