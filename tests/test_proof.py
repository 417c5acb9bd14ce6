"""The proof itself: its references, points near overflow, and that it catches errors.

The end-to-end references run the forward from its own source text (see stagegen.oracle);
the SymPy reference of stagegen's stages (proof.reference, element by element, a number being
one element) is what the explain view uses.
"""

import math

import pytest

import stagegen
from stagegen import gates
from stagegen.expr import Num, div


def logistic_chain(steps: int) -> str:
    body = "\n".join("    x = r * x * (1 - x)" for _ in range(steps))
    return f"def chain(x, r):\n{body}\n    return x\n"


def test_small_function_uses_central_differences_and_sympys_derivative_of_the_source():
    report = stagegen.verify(
        "import math\ndef f(x, y):\n    q = math.sin(x) * y\n    return q + x\n"
    )
    f = report["f"]
    assert f.reference.startswith("50-digit central differences of the forward as written")
    assert "and SymPy's derivative of it (at 5 points)" in f.reference
    assert len(f.points) == 5 and all(c.method == "symbolic" for c in f.local_checks)


@pytest.mark.parametrize("steps", [12, 40])
def test_deep_chain_uses_both_references_and_skips_overflow(steps):
    """Random points where the map diverges overflow floats: they are skipped, not failures.
    The composed expression would swell (2**steps leaves): SymPy differentiates it in pieces
    (stagegen.path_oracle), composed by the chain rule in 50 digits, so it is still used."""
    f = stagegen.verify(logistic_chain(steps))["chain"]
    assert f.reference.startswith("50-digit central differences of the forward as written")
    assert "SymPy's derivative of it (at 5 points)" in f.reference
    assert len(f.points) == 5
    assert f.max_rel_error < 1e-9


def mixed_chain(stages: int) -> str:
    """A long chain over several gates, forking on r at every stage."""
    steps = [
        "x = r * x * (1 - x)",
        "x = math.sin(x) + 0.5 * x",
        "x = math.tanh(x * r) + 0.1",
        "x = math.sqrt(x * x + 1) - math.log(r + 1)",
    ]
    body = "\n".join("    " + steps[i % len(steps)] for i in range(stages))
    return f"import math\n\n\ndef chain(x, r):\n{body}\n    return x\n"


@pytest.mark.slow
def test_a_thousand_stage_chain_is_proven():
    f = stagegen.verify(mixed_chain(1000))["chain"]
    assert f.stages >= 1000 and len(f.local_checks) >= 1750
    assert all(c.method == "symbolic" for c in f.local_checks)
    assert f.reference.startswith("50-digit central differences of the forward as written")
    assert len(f.points) == 5 and f.max_rel_error < 1e-9


def test_both_stage_model_references_agree(monkeypatch):
    """For numbers, the element-by-element reference (the explain view's, and the array
    proof's) gives the same gradient by both routes, SymPy's whole-function derivative and
    the chain rule stage by stage, to 40 digits."""
    import mpmath

    from stagegen.api import build
    from stagegen.proof import reference as proof

    backward = build(mixed_chain(4), None).backwards[0]
    values = {"x": 0.3, "r": 0.7}
    whole = proof.Reference(backward.program, backward, {}, {})
    monkeypatch.setattr(proof, "WHOLE_NODE_LIMIT", 0)
    staged = proof.Reference(backward.program, backward, {}, {})
    assert whole.method == "SymPy element by element"
    assert staged.method.startswith("the chain rule element by element")
    (_, a), (_, b) = whole.at(values, 1.0), staged.at(values, 1.0)
    with mpmath.workdps(50):
        for name in backward.wrt:
            assert abs(a[name][()] - b[name][()]) < 1e-40 * (1 + abs(a[name][()]))


def test_stage_by_stage_reference_refuses_points_outside_the_domain(monkeypatch):
    from stagegen.api import build
    from stagegen.proof import reference as proof

    backward = build(
        "import math\ndef f(x):\n    y = math.log(x)\n    return y * y\n", None
    ).backwards[0]
    monkeypatch.setattr(proof, "WHOLE_NODE_LIMIT", 0)
    with pytest.raises(ValueError):
        proof.reference_gradient(backward.program, backward, {"x": -1.0})
    gradient = proof.reference_gradient(backward.program, backward, {"x": 2.0})
    assert abs(float(gradient["x"]) - 2 * math.log(2) / 2) < 1e-15


def test_the_reference_reads_lists_constants_and_the_math_only_numbers_have():
    """A list's elements, math.pi, math.erf, a log's base and max of three, element by
    element: the gradient against the closed form."""
    from stagegen.api import build
    from stagegen.proof import reference_gradient

    source = (
        "import math\ndef f(w: list, x):\n"
        "    s = w[0] * x + w[1] * math.erf(x) + max(w[0], w[1], x)\n"
        "    return math.log(s, 2) * math.pi\n"
    )
    backward = build(source, None).backwards[0]
    w0, w1, x = 1.5, 0.25, 0.5
    got = reference_gradient(backward.program, backward, {"w[0]": w0, "w[1]": w1, "x": x})
    s = w0 * x + w1 * math.erf(x) + w0
    scale = math.pi / (s * math.log(2))
    erf_prime = 2 / math.sqrt(math.pi) * math.exp(-x * x)
    want = {
        "w[0]": scale * (x + 1),
        "w[1]": scale * math.erf(x),
        "x": scale * (w0 + w1 * erf_prime),
    }
    assert set(got) == set(want)
    for name in want:
        assert abs(float(got[name]) - want[name]) < 1e-12 * abs(want[name]), name


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


@pytest.fixture
def sweep_without_accumulation(monkeypatch):
    """Break the reverse sweep on purpose: every += contribution is dropped."""
    from stagegen import reverse

    original = reverse.differentiate

    def drop_accumulations(program, wrt=None):
        backward = original(program, wrt)
        for block in backward.blocks:
            block.statements = [s for s in block.statements if not s.accumulate]
        return backward

    monkeypatch.setattr("stagegen.reverse.differentiate", drop_accumulations)


@pytest.mark.parametrize(
    "source",
    ["def f(x):\n    a = x * x\n    b = a + x\n    return b\n", mixed_chain(200)],
    ids=["short, SymPy's derivative too", "200-stage chain, central differences alone"],
)
def test_a_wrong_end_to_end_gradient_is_caught(sweep_without_accumulation, source):
    with pytest.raises(
        stagegen.VerificationError,
        match="but the 50-digit central difference of the forward as written is",
    ):
        stagegen.verify(source)


def test_report_text_names_methods_and_error():
    text = str(stagegen.verify("def f(x):\n    return x**3\n"))
    assert "local gradients" in text and "5 points" in text and "max rel. error" in text


def test_heaviside_in_a_local_gradient_is_printed_as_a_condition():
    """Found by stagegen.verify on the property generator's programs (seed 308): the local
    gradient of a max of three, compared at sample points, holds SymPy's Heaviside, which
    SymPy's mpmath printer rewrote as a Piecewise, solving its condition with solveset, which
    raised KeyError here (an internal error, exit 3). It is printed as a condition now."""
    source = (
        "import math\n\n\ndef f(b):\n"
        "    return max(b, b / (math.asin(0.9 * math.sin(b)) ** 2 + 1), 0.5)\n"
    )
    f = stagegen.verify(source)["f"]
    assert [c.method for c in f.local_checks] == ["sampled"]  # Max: SymPy does not simplify
    assert f.points and f.max_rel_error <= 1e-7
    assert "SymPy's derivative of it (at" in f.reference


def test_heaviside_prints_each_side_and_its_value_at_zero():
    import sympy as sp

    from stagegen.proof.common import MpmathCode

    x = sp.Symbol("x", real=True)
    code = MpmathCode()
    half = code.compile("t", [x], [], code.text(sp.Heaviside(x - 1)))
    nought = code.compile("t", [x], [], code.text(sp.Heaviside(x - 1, 0)))
    assert [half(v) for v in (2.0, 0.0, 1.0)] == [1, 0, 0.5]
    assert [nought(v) for v in (2.0, 0.0, 1.0)] == [1, 0, 0]
