"""One table of operations (issue 13): array code's elementwise functions come from the gate
table (stagegen.gates) that numbers use, one-argument and two-argument ones alike.

For every function of the table with a NumPy spelling: an array program calling it has a
generated backward that matches float64 central differences of the source, and the proof
(stagegen.verify: the array proof and the independent 50-digit oracle) accepts it. The table is
the only list: the array reader accepts exactly the table's spellings, and the printer spells
every one of them NumPy's way (np.arctan, never np.atan).
"""

import textwrap
import zlib

import numpy as np
import pytest

import stagegen
from stagegen.api import load_backward_module
from stagegen.arrays import parse as array_parse
from stagegen.arrays.ir import ArrayPrinter
from stagegen.errors import StagegenError
from stagegen.expr import Call, Var
from stagegen.gates import ELEMENTWISE, FUNCTIONS, NUMPY_BINARY, NUMPY_FUNCTIONS
from stagegen.numeric import central_differences

EVERY_SPELLED = {  # (np.clip, of three arguments, has tests of its own: test_vocabulary.py)
    key: gate.numpy for key, gate in ELEMENTWISE.items() if gate.numpy and gate.arity[0] <= 2
}
ALIASES = {"absolute": "abs", "fabs": "abs", "degrees": "rad2deg", "radians": "deg2rad"}
SPELLED = {key: spelled for key, spelled in EVERY_SPELLED.items() if spelled in NUMPY_FUNCTIONS}
BINARY = {key: spelled for key, spelled in EVERY_SPELLED.items() if spelled in NUMPY_BINARY}

# Each function's argument, mapped into its domain for any real x (and off the kinks and poles
# at the points the test and the proof draw): keyed by the table's key, so a new table entry
# fails test_every_spelled_function_has_a_domain_here until it is given one.
INSIDE = "x / (1.0 + x * x)"  # in [-0.5, 0.5]
POSITIVE = "x * x + 0.5"
DOMAIN = {
    "exp": "x", "expm1": "x", "sin": "x", "cos": "x", "sinh": "x", "cosh": "x", "tanh": "x",
    "atan": "x", "abs": "x", "log": POSITIVE, "log2": POSITIVE, "log10": POSITIVE,
    "sqrt": POSITIVE, "log1p": "x * x - 0.5", "tan": INSIDE, "asin": INSIDE, "acos": INSIDE,
    # NumPy's own (gates.NUMPY_ONLY)
    "square": "x", "reciprocal": POSITIVE, "negative": "x", "exp2": "x", "sign": "x",
    "arcsinh": "x", "arccosh": "x * x + 1.5", "arctanh": INSIDE, "rad2deg": "x", "deg2rad": "x",
}  # fmt: skip

# The two-argument ones, both arguments arrays (a power's base kept positive). x and y are drawn
# apart, so max and min have no ties.
BINARY_ARGUMENTS = {
    "max": ("x", "y"), "min": ("x", "y"), "atan2": ("x", "y"), "hypot": ("x", "y"),
    "pow": (POSITIVE, "y"), "logaddexp": ("x", "y"), "logaddexp2": ("x", "y"),
}  # fmt: skip


def source_for(key: str) -> str:
    return textwrap.dedent(f"""\
        import numpy as np


        def f(x: "N, D"):
            return np.{SPELLED[key]}({DOMAIN[key]}) * 2.0
        """)


def pair_and_point(source: str, text: str, key: str):
    """The forward as written and the generated backward, a point x of shape (3, 4) away from
    0 (the table's kinks and poles), and the random generator that drew it."""
    namespace: dict = {}
    exec(compile(source, "case.py", "exec"), namespace)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    x = rng.choice([-1.0, 1.0], size=(3, 4)) * rng.uniform(0.1, 1.5, size=(3, 4))
    return namespace["f"], load_backward_module(text)["f_backward"], x, rng


def test_every_spelled_function_has_a_domain_here():
    assert set(DOMAIN) == set(SPELLED)
    assert set(BINARY_ARGUMENTS) == set(BINARY)
    assert set(SPELLED) | set(BINARY) == set(EVERY_SPELLED)  # every NumPy function: one or two


def test_the_table_spells_the_functions_numpy_has_and_no_others():
    for key, spelled in EVERY_SPELLED.items():
        assert callable(getattr(np, spelled)), key
    assert "erf" in FUNCTIONS and FUNCTIONS["erf"].numpy is None  # NumPy has no erf
    assert SPELLED["atan"] == "arctan" and SPELLED["asin"] == "arcsin"
    assert SPELLED["acos"] == "arccos"
    assert NUMPY_FUNCTIONS == {spelled: key for key, spelled in SPELLED.items()} | ALIASES
    assert NUMPY_BINARY == {spelled: key for key, spelled in BINARY.items()}
    assert BINARY["max"] == "maximum" and BINARY["pow"] == "power"


def test_the_array_reader_accepts_exactly_the_tables_functions():
    assert set(array_parse.UNARY) == set(SPELLED.values()) | set(ALIASES)
    assert set(array_parse.BINARY) == set(BINARY.values())
    for spelled in EVERY_SPELLED.values():
        assert f"np.{spelled}" in array_parse.SUPPORTED


def test_a_function_numpy_lacks_is_refused_with_the_tables_list():
    source = 'import numpy as np\n\n\ndef f(x: "N"):\n    return np.erf(x)\n'
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source)
    assert "np.erf" in str(caught.value) and "np.arctan" in str(caught.value)


@pytest.mark.parametrize("key", sorted(SPELLED))
def test_the_printer_spells_every_table_function_numpys_way(key):
    assert ArrayPrinter().text(Call(key, (Var("x"),))) == f"np.{SPELLED[key]}(x)"


@pytest.mark.parametrize("key", sorted(SPELLED))
def test_backward_matches_central_differences_and_is_proven(key):
    source = source_for(key)
    text = stagegen.generate(source, filename="case.py")
    # The forward replay and the gradients call NumPy by its own names (np.sign passes no
    # gradient: its backward is zeros, and nothing of it is replayed).
    assert f"np.{SPELLED[key]}(" in text or key == "sign"
    assert (key == "sign") == ("np.zeros(" in text)
    for other, spelled in SPELLED.items():
        if other != spelled:
            assert f"np.{other}(" not in text, text
    forward, backward, x, rng = pair_and_point(source, text, key)
    upstream = rng.normal(size=(3, 4))
    analytic = backward(x.copy(), upstream)
    numeric = central_differences(forward, [x.copy()], [0], upstream)[0]
    assert analytic.shape == x.shape
    scale = np.max(np.abs(analytic) + np.abs(numeric)) + 1e-300
    assert np.max(np.abs(analytic - numeric)) / scale < 1e-7, (key, text)
    report = stagegen.verify(source, filename="case.py")
    assert report.functions and all(r.points for r in report.functions), report


def binary_source(key: str) -> str:
    a, b = BINARY_ARGUMENTS[key]
    return textwrap.dedent(f"""\
        import numpy as np


        def f(x: "N, D", y: "N, D"):
            return np.{BINARY[key]}({a}, {b}) * 2.0
        """)


@pytest.mark.parametrize("key", sorted(BINARY))
def test_two_argument_functions_match_central_differences_and_are_proven(key):
    source = binary_source(key)
    text = stagegen.generate(source, filename="case.py")
    assert f"np.{BINARY[key]}(" in text
    forward, backward, x, rng = pair_and_point(source, text, key)
    y = x + rng.choice([-1.0, 1.0], size=(3, 4)) * rng.uniform(0.2, 1.0, size=(3, 4))
    upstream = rng.normal(size=(3, 4))
    dx, dy = backward(x.copy(), y.copy(), upstream)
    numeric = central_differences(forward, [x.copy(), y.copy()], [0, 1], upstream)
    numeric_x, numeric_y = numeric[0], numeric[1]
    for analytic, numeric in ((dx, numeric_x), (dy, numeric_y)):
        assert np.shape(analytic) == x.shape
        scale = np.max(np.abs(analytic) + np.abs(numeric)) + 1e-300
        assert np.max(np.abs(analytic - numeric)) / scale < 1e-7, (key, text)
    report = stagegen.verify(source, filename="case.py")
    assert report.functions and all(r.points for r in report.functions), report


@pytest.mark.parametrize("key", sorted(FUNCTIONS))
def test_every_gate_declares_its_sympy_meaning_and_it_is_pythons_function(key):
    # The table holds each operation's meaning for the proof beside its rule; a meaning that
    # is not the function Python runs (asin read as acos) would prove the rule against the
    # wrong derivative, so each is evaluated against math's own at a point inside every domain.
    import math

    import sympy

    gate = FUNCTIONS[key]
    assert gate.sympy is not None, key
    low, high = gate.arity
    args = [0.3, 0.7, 0.2][: low if high == low or high is None else low]
    if high is None:
        args = [0.3, 0.7]
    python = {"abs": abs, "max": max, "min": min}.get(key) or getattr(math, key)
    meaning = gate.sympy(sympy, *[sympy.Rational(repr(a)) for a in args])
    assert float(meaning) == pytest.approx(python(*args), rel=1e-12), key
