"""The proof on float literals with long spellings: SymPy's exact powers never finished.

SymPy raises an exact number to a rational power exactly: it factors the base and raises its
primes to the exponent's numerator. A literal of sixteen digits is a rational with a
denominator of 10**16 (the local checks read its ``repr``) or 2**52 (the path values read its
exact binary value), so ``(a * x) ** c``, ``math.pow(a, c)`` or their derivatives, with two
such literals, never finished: ``stagegen model.py`` hung in its proof. Such numbers are now
65-digit Floats in the proof's SymPy expressions (stagegen.oracle.sympy_number), raised
numerically; short literals (0.5, 2.5, 1e-3) stay exact.

The programs below hung before the change (each stack is in the commit message): the check
runs them in a process of its own with a generous limit, so that a relapse fails instead of
stalling the suite, and asserts which routes the proof took and what it found.
"""

import json
import subprocess
import sys

import pytest
import sympy as sp

from stagegen.oracle import DIGITS, GUARD_DIGITS, sympy_number
from stagegen.proof import meaning

A, C = "0.8927490402631673", "1.3897349477489307"
HUNG = {
    # both literals in math.pow: the path values raised one exact rational to the other
    "pow-of-constants": f"import math\n\n\ndef f(x, y):\n    z = x * math.pow({A}, {C})\n"
    "    return z * y\n",
    # (a * x) ** c: SymPy takes a ** c out of the power (path values)
    "power-of-scaled": f"def f(x, y):\n    z = ({A} * x) ** {C}\n    return z * y\n",
    # the same with decimal rationals (the local checks)
    "power-of-scaled-2": "def f(x, y):\n    z = (4.7235658724308 * x) ** 1.2819436477019277\n"
    "    return z * y\n",
    # array code: SymPy element by element
    "array": 'import numpy as np\n\n\ndef f(x: "N"):\n'
    "    return np.sum((4.7235658724308 * x) ** 1.2819436477019277)\n",
}

_VERIFY_ALL = """
import json, sys
import stagegen
out = {}
for name, source in json.loads(sys.argv[1]).items():
    fr = stagegen.verify(source, "f").functions[0]
    out[name] = {
        "summary": fr.summary(),
        "reference": fr.reference,
        "methods": [c.method for c in fr.local_checks],
        "points": len(fr.points),
        "error": fr.max_rel_error,
    }
json.dump(out, sys.stdout)
"""


def test_short_literals_stay_exact_long_ones_become_floats():
    for text, exact in [("0.5", sp.Rational(1, 2)), ("2.5", sp.Rational(5, 2)), ("1e-3", None)]:
        number = meaning.number(sp, float(text))
        assert number.is_Rational and number == (exact or sp.Rational(1, 1000)), text
    assert meaning.number(sp, 3.0) == 3 and meaning.number(sp, 7) == 7
    long = meaning.number(sp, float(C))
    assert long.is_Float and abs(sp.Rational(long) - sp.Rational(C)) < sp.Rational(1, 10**60)
    # a float's exact binary value (the path values' reading) is held exactly at 65 digits
    for value in (0.1, float(A), -1.3713545695817002, 1e-300):
        held = sympy_number(sp, sp.Rational(value))
        assert held.is_Float and sp.Rational(held) == sp.Rational(value), value
        assert held._prec >= sp.Float(1, DIGITS + GUARD_DIGITS)._prec
    assert sympy_number(sp, sp.Rational(0.25)) == sp.Rational(1, 4)


def test_proof_of_powers_of_long_literals_finishes():
    try:
        result = subprocess.run(
            [sys.executable, "-c", _VERIFY_ALL, json.dumps(HUNG)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the proof of the programs did not finish in 300 s (a few seconds expected)")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == set(HUNG)
    for name, fr in found.items():
        assert fr["error"] <= 1e-7, fr["summary"]  # proved, every reference agreeing
        assert fr["points"] >= 3, fr["summary"]
        if name == "array":
            assert "SymPy element by element" in fr["reference"], fr["summary"]
        else:
            assert "SymPy's derivative of it (at" in fr["reference"], fr["summary"]
            assert fr["methods"] and set(fr["methods"]) <= {"symbolic", "sampled"}
    # the local gradient of z = x * math.pow(a, c) is the constant itself: shown equal by SymPy
    assert set(found["pow-of-constants"]["methods"]) == {"symbolic"}


def test_constant_exponent_with_inexact_decrement_is_proved():
    import stagegen

    for exponent, printed in [("0.7", "x**-0.3"), ("1.3", "x**0.3"), ("2.5", "x**1.5")]:
        source = f"def f(x):\n    return x ** {exponent}\n"
        report = stagegen.verify(source, "f")
        assert report.max_rel_error <= 1e-7
        assert printed in stagegen.generate(source)
