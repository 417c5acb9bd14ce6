"""The proof's verdict comes from the user's own source, not from stagegen's model of it.

Bugs are planted in stagegen itself so that the generated backward is wrong *consistently*
with what stagegen believes the function is: in the printer (the generated code, replay
included, says something else than the stages), and in the reader (the stages say something
else than the source). The proof must reject both, for numbers and for arrays, because its
references run the ``def`` as written (stagegen.oracle). Also here: regressions for inputs
that crashed the proof.
"""

import dataclasses

import pytest

import stagegen
from stagegen import cli, expr, oracle, reader
from stagegen.api import build
from stagegen.errors import StagegenError, VerificationError
from stagegen.expr import Bin, Num

SCALAR = """\
import math


def f(x, y):
    a = x * 2.0
    b = a - y
    return math.sin(b) * a
"""

ARRAY = """\
import numpy as np


def g(x: "N, D", w: "D"):
    a = x * 2.0
    b = a - w
    return np.sum(np.tanh(b) * a)
"""

ALIASED = """\
import numpy as np


def f(x: "N, D"):
    t = x * 2.0
    u = t
    u += x
    return t * u
"""


@pytest.fixture
def printer_swaps_subtraction(monkeypatch):
    """The printer writes `a - b` as `b - a` (in the backward and in its forward replay)."""
    original = expr.Printer.text

    def swapped(self, e):
        if isinstance(e, Bin) and e.op == "-":
            e = Bin("-", e.right, e.left)
        return original(self, e)

    monkeypatch.setattr(expr.Printer, "text", swapped)


def _three_for_two(program):
    """Stage (1)'s literal 2.0 read as 3.0, with the array types of the nodes that change."""
    stage = program.stages[0]
    old = stage.expr
    assert isinstance(old, Bin) and old.right == Num(2.0), old
    new = Bin(old.op, old.left, Num(3.0))
    stage.expr = new
    types = program.types.get("<expressions>")
    if types is not None:
        types[Num(3.0)] = types[old.right]
        types[new] = types[old]
    return program


@pytest.fixture
def reader_misreads_a_literal(monkeypatch):
    """The reader's model of the function is wrong (2.0 read as 3.0), and everything generated
    from it agrees with that model: only the source itself can tell."""
    original = reader.read_programs

    def misread(*args, **kwargs):
        return [_three_for_two(p) for p in original(*args, **kwargs)]

    monkeypatch.setattr(reader, "read_programs", misread)


@pytest.mark.parametrize("source", [SCALAR, ARRAY], ids=["scalar", "array"])
def test_a_printer_bug_is_caught(printer_swaps_subtraction, source):
    assert "b = y - a" in build(source).text or "b = w - a" in build(source).text
    with pytest.raises(VerificationError, match="forward as written"):
        stagegen.verify(source)


@pytest.mark.parametrize("source", [SCALAR, ARRAY], ids=["scalar", "array"])
def test_a_misread_stage_is_caught(reader_misreads_a_literal, source):
    assert "x * 3.0" in build(source).text  # the planted bug is in the generated code
    with pytest.raises(VerificationError, match="forward as written"):
        stagegen.verify(source)


def test_a_misread_stage_is_caught_through_the_decorator_path(reader_misreads_a_literal):
    """verify(func) and @staged(verify=True) read the function's file as Python loaded it."""
    namespace: dict = {}
    code = compile(SCALAR, __file__ + "::SCALAR", "exec")
    import linecache

    linecache.cache[__file__ + "::SCALAR"] = (len(SCALAR), None, SCALAR.splitlines(True), "x")
    try:
        exec(code, namespace)
        with pytest.raises(VerificationError, match="forward as written"):
            stagegen.verify(namespace["f"])
    finally:
        linecache.cache.pop(__file__ + "::SCALAR", None)


def test_the_unplanted_functions_are_proven():
    """The same functions, without a planted bug, pass (so the tests above test the bugs)."""
    for source in (SCALAR, ARRAY):
        [f] = stagegen.verify(source).functions
        assert f.points and f.reference.startswith("50-digit central differences")


def test_an_aliased_in_place_update_is_refused_or_caught():
    """`u = t; u += x` updates t too in NumPy: the true gradient of sum(t * u) is 18x. Read
    as two independent values it is 12x; the proof must not accept that."""
    with pytest.raises(StagegenError):
        stagegen.verify(ALIASED)


def test_the_cli_exits_1_and_writes_nothing(tmp_path, reader_misreads_a_literal, capsys):
    model = tmp_path / "model.py"
    model.write_text(SCALAR)
    assert cli.main([str(model)]) == 1
    assert not (tmp_path / "model_backward.py").exists()
    err = capsys.readouterr().err
    assert "verification failed" in err and "forward as written" in err


# ---------------------------------------------------------------------------- crashes


@pytest.mark.parametrize(
    "body", ["abs(math.log(x) ** 2)", "abs(math.acos(x / 3) - y)", "abs(math.asin(x / 3)) * y"]
)
def test_local_derivatives_with_arg_re_im_are_proven(body):
    """SymPy's derivatives of these have arg(), re() or im() in them, which its mpmath
    printer lacked (the proof crashed)."""
    [f] = stagegen.verify(f"import math\ndef f(x, y):\n    return {body}\n").functions
    assert len(f.points) == 5 and f.max_rel_error < 1e-7
    assert any(c.method == "sampled" for c in f.local_checks)


def test_a_backward_that_fails_where_the_forward_is_defined_is_rejected():
    """abs(math.sin(x) ** y): with sin(x) < 0 the power is complex and abs() makes it real
    again; the forward is defined there, the backward compares a complex number and raises."""
    with pytest.raises(VerificationError, match="f_backward raises TypeError .* where the forward"):
        stagegen.verify("import math\ndef f(x, y):\n    return abs(math.sin(x) ** y)\n")


@pytest.mark.parametrize(
    "body", ["math.pow(0.0, y)", "0.0 ** y"], ids=["math.pow(0.0, y)", "0.0 ** y"]
)
def test_zero_to_a_power_is_a_located_verdict_not_a_crash(body, tmp_path, capsys):
    """d/dy 0**y is 0 for y > 0, but the backward computes log(0.0) there: a verification
    failure at the line (SymPy's derivative has a complex infinity, which crashed the proof)."""
    source = f"import math\n\n\ndef f(y):\n    return {body}\n"
    with pytest.raises(VerificationError) as caught:
        stagegen.verify(source)
    assert caught.value.line == 5
    model = tmp_path / "zero.py"
    model.write_text(source)
    assert cli.main([str(model)]) == 1
    assert "internal error" not in capsys.readouterr().err


def test_forty_dimensions_are_checked_on_a_feasible_subset():
    dims = ", ".join(f"A{i}" for i in range(1, 41))
    source = f'import numpy as np\n\n\ndef f(x: "{dims}"):\n    return np.sum(x * x)\n'
    [f] = stagegen.verify(source).functions
    assert f.points and f.max_rel_error < 1e-7
    note = next(n for n in f.notes if "checked at size 1 only" in n)
    assert "A40" in note and "A1," not in note


def test_the_50_digit_runs_do_not_see_each_others_in_place_updates():
    """A forward that updates its own parameter (x += 1.0) is run on fresh copies each time:
    d/dx sum((x + 1)**2) = 2 (x + 1), not a value drifting by one per run."""
    import numpy as np

    source = "import numpy as np\n\n\ndef h(x):\n    x += 1.0\n    return np.sum(x * x)\n"
    user = oracle.user_function(source, "h")
    x = np.array([0.5, -1.25, 2.0])
    [gradient] = oracle.ArrayOracle(user).mpmath_gradient([x], {0: (3,)}, 1.0).values()
    assert [float(g) for g in gradient] == pytest.approx(list(2 * (x + 1)), rel=1e-30)
    assert list(x) == [0.5, -1.25, 2.0]


def test_a_gap_in_the_50_digit_shims_is_a_located_verdict(monkeypatch):
    """An exception other than a domain error in the 50-digit run is not a point to skip."""
    original = oracle._MpmathNumpy.__init__

    def without_tanh(self):
        original(self)
        del self._own["tanh"]

    monkeypatch.setattr(oracle._MpmathNumpy, "__init__", without_tanh)
    source = 'import numpy as np\n\n\ndef f(x: "N"):\n    return np.sum(np.tanh(x))\n'
    with pytest.raises(VerificationError, match="could not run f as written") as caught:
        stagegen.verify(source)
    assert caught.value.line == 4


def test_imports_are_read_from_the_module_text():
    """import math as m, from math import exp, pi, from numpy import ...: each name bound."""
    source = (
        "import math as m\nfrom math import exp, pi\nimport numpy as np\n"
        "from numpy import tanh as th\n\n\n"
        "def f(x, y):\n    return m.sin(x) * exp(y) + pi * abs(x) + max(x, y)\n"
    )
    assert oracle.module_bindings(__import__("ast").parse(source)) == {
        "m": ("math", None),
        "exp": ("math", "exp"),
        "pi": ("math", "pi"),
        "np": ("numpy", None),
        "th": ("numpy", "tanh"),
    }
    [f] = stagegen.verify(source).functions
    assert len(f.points) == 5 and "SymPy's derivative of it" in f.reference


def test_the_source_is_needed():
    result = build(SCALAR)
    result = dataclasses.replace(result, source=None)
    from stagegen.proof import check_build

    with pytest.raises(VerificationError, match="cannot prove f"):
        check_build(result)


def test_sympy_is_not_called_on_a_swollen_expression():
    # cos(<a long composed sum>) made SymPy search for multiples of pi by polynomial arithmetic
    # for minutes (a 40-stage random program of the benchmark). The path's expression is now
    # cut into pieces (stagegen.path_oracle) before it swells: SymPy sees only small ones.
    lines = ["v1 = math.exp(x1)", "v2 = v1 + x0", "v3 = math.cos(v2)"]
    for k in range(4, 40):
        lines.append(f"v{k} = math.cos(v{k - 1} * v{k - 2} + v{k - 3})")
    body = "\n    ".join(lines)
    source = f"import math\n\n\ndef f(x0, x1):\n    {body}\n    return v39\n"
    report = stagegen.verify(source)
    assert "SymPy's derivative of it (at 5 points)" in report["f"].reference
