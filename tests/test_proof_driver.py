"""The one proof for numbers and arrays: its driver, its one measure, and that no module of it
asks whether a program is "array code"."""

import ast
import math
from pathlib import Path

import pytest

import stagegen
from stagegen.api import build
from stagegen.proof import arrays, numbers
from stagegen.proof.check import route_of
from stagegen.proof.common import Outcome, agree

PROOF_DIR = Path(stagegen.__file__).parent / "proof"


def test_no_module_of_the_proof_asks_whether_a_program_is_array_code():
    asked = []
    for path in sorted(PROOF_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "numpy":
                asked.append(f"{path.name}:{node.lineno}")
    assert not asked, "the proof asks program.numpy at " + ", ".join(asked)


@pytest.mark.parametrize(
    "source, route",
    [
        ("import math\ndef f(x, w: list):\n    return math.exp(x) * w[0]\n", numbers),
        ('import numpy as np\ndef f(x: "N"):\n    return np.exp(x).sum()\n', arrays),
        # NumPy code whose every value is 0-d is proven element by element: one element each
        ('import numpy as np\ndef f(x: ""):\n    return np.exp(x) * 2.0\n', arrays),
    ],
    ids=["numbers and a list", "an array", "0-d NumPy"],
)
def test_the_driver_runs_the_checks_of_the_functions_kind(source, route):
    built = build(source, None)
    assert route_of(built.backwards[0].program) is route
    [f] = stagegen.verify(source).functions
    assert bool(f.local_checks) == (route is numbers)
    assert all(("check" in p) == (route is arrays) for p in f.points) and f.points
    assert f.reference and f.max_rel_error < 1e-7


def test_the_measure_is_relative_with_a_floor_and_names_the_first_element_off():
    outcome = Outcome("test")
    agree(outcome, [1.0, 2.0 + 1e-12, 1e-11], [1.0, 2.0, 0.0], 1e-3, lambda k: AssertionError(k))
    assert outcome.max_abs == pytest.approx(1e-11) and outcome.max_rel == pytest.approx(1e-8)
    failures = []

    def failure(k):
        failures.append(k)
        return ValueError(k)

    with pytest.raises(ValueError):  # 1e-6 off a reference of 1e-4: the floor (1e-3) decides
        agree(Outcome("t"), [1.0, 1e-4 + 1e-6, 5.0], [1.0, 1e-4, 6.0], 1e-3, failure)
    assert failures == [1]
    with pytest.raises(ValueError):
        agree(Outcome("t"), [1.0, math.nan], [1.0, 1.0], 1e-3, failure)
    assert failures == [1, 1]


def test_one_measure_serves_both_kinds(monkeypatch):
    """A negative RTOL in proof.common makes both the check of numbers and the 50-digit check
    of arrays fail: neither keeps a measure of its own."""
    import stagegen.proof.common

    monkeypatch.setattr(stagegen.proof.common, "RTOL", -1.0)
    with pytest.raises(stagegen.VerificationError, match="50-digit central difference"):
        stagegen.verify("import math\ndef f(x):\n    return math.sin(x) * math.exp(x)\n")
    with pytest.raises(stagegen.VerificationError, match="50-digit central difference"):
        stagegen.verify('import numpy as np\ndef f(x: "N"):\n    return np.sin(x).sum()\n')
