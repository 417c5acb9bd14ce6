"""The proof itself: both reference methods, points near overflow, and that it catches errors."""

import pytest

import stagegen
from stagegen import gates
from stagegen.expr import Num, div


def logistic_chain(steps: int) -> str:
    body = "\n".join("    x = r * x * (1 - x)" for _ in range(steps))
    return f"def chain(x, r):\n{body}\n    return x\n"


def test_small_function_uses_the_symbolic_whole_derivative():
    report = stagegen.verify(
        "import math\ndef f(x, y):\n    q = math.sin(x) * y\n    return q + x\n"
    )
    f = report["f"]
    assert f.reference.startswith("SymPy's symbolic derivative")
    assert len(f.points) == 5 and all(c.method == "symbolic" for c in f.local_checks)


@pytest.mark.parametrize("steps", [12, 40])
def test_deep_chain_uses_the_stage_by_stage_reference_and_skips_overflow(steps):
    """Random points where the map diverges overflow floats: they are skipped, not failures."""
    f = stagegen.verify(logistic_chain(steps))["chain"]
    assert f.reference.startswith("the chain rule stage by stage")
    assert len(f.points) == 5
    assert f.max_rel_error < 1e-9


def test_branching_gates_are_sampled_and_say_so():
    f = stagegen.verify("def f(x, y):\n    m = max(x, y)\n    return m * x\n")["f"]
    methods = {c.stage: c.method for c in f.local_checks}
    assert methods[1] == "sampled" and methods[2] == "symbolic"


def test_a_last_bit_error_in_a_local_gradient_is_caught(monkeypatch):
    """The local check is exact: a rounded 1/3 where 1/3 belongs is a failure, not a tolerance."""

    def rounded_division(out, a, b):
        return (Num(0.3333333333333333) if b == Num(3) else div(Num(1), b), div(out, b))

    monkeypatch.setitem(gates.OPERATORS, "/", gates.Gate((2, 2), rounded_division, "rounded"))
    with pytest.raises(stagegen.VerificationError, match="local gradient of stage"):
        stagegen.verify("def f(x):\n    y = x / 3\n    return y * y\n")


def test_a_wrong_end_to_end_gradient_is_caught(monkeypatch):
    """Break the reverse sweep (drop every += contribution): the end-to-end check fails."""
    from stagegen import reverse

    original = reverse.differentiate

    def drop_accumulations(program, wrt=None):
        backward = original(program, wrt)
        for block in backward.blocks:
            block.statements = [s for s in block.statements if not s.accumulate]
        return backward

    monkeypatch.setattr("stagegen.api.differentiate", drop_accumulations)
    with pytest.raises(stagegen.VerificationError, match="but SymPy's derivative is"):
        stagegen.verify("def f(x):\n    a = x * x\n    b = a + x\n    return b\n")


def test_report_text_names_methods_and_error():
    text = str(stagegen.verify("def f(x):\n    return x**3\n"))
    assert "local gradients" in text and "5 points" in text and "max rel. error" in text
