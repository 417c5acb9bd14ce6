"""One table of operations, first stage (issue 13): array code's elementwise functions come from
the gate table (stagegen.gates) that numbers use.

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
from stagegen.gates import FUNCTIONS, NUMPY_FUNCTIONS
from stagegen.numeric import central_differences

SPELLED = {key: gate.numpy for key, gate in FUNCTIONS.items() if gate.numpy}

# Each function's argument, mapped into its domain for any real x (and off the kinks and poles
# at the points the test and the proof draw): keyed by the table's key, so a new table entry
# fails test_every_spelled_function_has_a_domain_here until it is given one.
INSIDE = "x / (1.0 + x * x)"  # in [-0.5, 0.5]
POSITIVE = "x * x + 0.5"
DOMAIN = {
    "exp": "x", "expm1": "x", "sin": "x", "cos": "x", "sinh": "x", "cosh": "x", "tanh": "x",
    "atan": "x", "abs": "x", "log": POSITIVE, "log2": POSITIVE, "log10": POSITIVE,
    "sqrt": POSITIVE, "log1p": "x * x - 0.5", "tan": INSIDE, "asin": INSIDE, "acos": INSIDE,
}  # fmt: skip


def source_for(key: str) -> str:
    return textwrap.dedent(f"""\
        import numpy as np


        def f(x: "N, D"):
            return np.{SPELLED[key]}({DOMAIN[key]}) * 2.0
        """)


def test_every_spelled_function_has_a_domain_here():
    assert set(DOMAIN) == set(SPELLED)


def test_the_table_spells_the_functions_numpy_has_and_no_others():
    for key, spelled in SPELLED.items():
        assert callable(getattr(np, spelled)), key
    assert "erf" in FUNCTIONS and FUNCTIONS["erf"].numpy is None  # NumPy has no erf
    assert SPELLED["atan"] == "arctan" and SPELLED["asin"] == "arcsin"
    assert SPELLED["acos"] == "arccos"
    assert NUMPY_FUNCTIONS == {spelled: key for key, spelled in SPELLED.items()}


def test_the_array_reader_accepts_exactly_the_tables_functions():
    assert set(array_parse.UNARY) == set(SPELLED.values())
    for spelled in SPELLED.values():
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
    # The forward replay and the gradients call NumPy by its own names.
    assert f"np.{SPELLED[key]}(" in text
    for other, spelled in SPELLED.items():
        if other != spelled:
            assert f"np.{other}(" not in text, text
    namespace: dict = {}
    exec(compile(source, "case.py", "exec"), namespace)
    forward = namespace["f"]
    backward = load_backward_module(text)["f_backward"]
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    x = rng.choice([-1.0, 1.0], size=(3, 4)) * rng.uniform(0.1, 1.5, size=(3, 4))
    upstream = rng.normal(size=(3, 4))
    analytic = backward(x.copy(), upstream)
    numeric = central_differences(forward, [x.copy()], [0], upstream)[0]
    assert analytic.shape == x.shape
    scale = np.max(np.abs(analytic) + np.abs(numeric))
    assert np.max(np.abs(analytic - numeric)) / scale < 1e-7, (key, text)
    report = stagegen.verify(source, filename="case.py")
    assert report.functions and all(r.points for r in report.functions), report
