"""The generated module is exactly what black writes, though black formats only some lines."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagegen
from stagegen import emit, layout


def generate_both(source: str, **options) -> tuple[str, str]:
    """(the module as stagegen writes it, black's formatting of the same unformatted module)."""
    raw = {}
    original = emit.format_code

    def spy(text):
        raw["text"] = text
        return original(text)

    emit.format_code = spy
    try:
        ours = stagegen.generate(source, **options)
    finally:
        emit.format_code = original
    return ours, layout.format_with_black(raw["text"])


CASES = {
    "short lines only": "import math\ndef f(x, y):\n    q = math.sin(x) * y\n    return q + x\n",
    "a right-hand side far past 88 columns": (
        "import math\ndef f(alpha, beta, gamma):\n"
        "    q = math.sin(alpha * beta + gamma) * math.cos(beta * gamma - alpha) / "
        "(1 + math.exp(-alpha * beta * gamma)) + math.tanh(alpha - beta) * math.sqrt(gamma * gamma + 1)\n"
        "    return q * q\n"
    ),
    "a signature that must be split": (
        "def f(first_input, second_input, third_input, fourth_input, fifth_input, sixth_input):\n"
        "    return first_input * second_input + third_input * fourth_input - fifth_input * sixth_input\n"
    ),
    "numeric literals black rewrites": "def f(x):\n    y = 1E-3 * x + 0XFF * x\n    return y * 2.5E2\n",
    "non-ASCII names and comments": (
        "import math\ndef f(θ, λ):\n    r = math.sin(θ) * λ  # 角度 and width\n    return r * θ\n"
    ),
    "a long user comment": "def f(x):\n    y = x * x  # " + "words " * 20 + "\n    return y\n",
    "list parameters": "def f(w, x):\n    return w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] * x[3] + w[4] * x[4]\n",
}


@pytest.mark.parametrize("source", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("split", [False, True])
def test_the_module_equals_blacks_formatting(source, split):
    ours, blacks = generate_both(source, split=split)
    assert ours == blacks


def test_short_lines_never_load_black():
    """The point of it all: a module without long lines is written without black."""
    lines = CASES["short lines only"]
    ours, _ = generate_both(lines)
    assert not any(layout.needs_black(line) for line in ours.split("\n"))


@pytest.mark.parametrize(
    "line,needs",
    [
        ("    y = x * 2  # (1)", False),
        ("    y = x * 1E5", True),
        ("    y = x * 1e5", False),
        ("    y = x * 0xFF", True),
        ("    y = θ * 2", True),
        ("    y = x " + "+ x " * 30, True),
        ("    y = x   ", True),
        ("    # a comment that mentions 3E5 units", False),
    ],
)
def test_which_lines_go_through_black(line, needs):
    assert layout.needs_black(line) is needs


NAMES = ["x", "y", "alpha", "beta_2", "very_long_parameter_name"]
FUNCTIONS = ["math.sin", "math.exp", "math.tanh", "abs", "math.cos"]


@st.composite
def long_programs(draw):
    """Random straight-line programs whose expressions are often long enough to wrap."""
    params = NAMES[: draw(st.integers(2, len(NAMES)))]
    known = list(params)
    lines = []
    for k in range(draw(st.integers(1, 5))):
        terms = []
        for _ in range(draw(st.integers(1, 8))):
            a, b = draw(st.sampled_from(known)), draw(st.sampled_from(known))
            op = draw(st.sampled_from(["*", "+", "-"]))
            fn = draw(st.sampled_from(FUNCTIONS + [""]))
            constant = draw(st.sampled_from(["", "2.5 * ", "1E-3 * ", "0.5 * "]))
            term = f"{constant}{a} {op} {b}"
            terms.append(f"{fn}({term})" if fn else f"({term})")
        target = f"v{k}"
        lines.append(f"    {target} = " + " + ".join(terms))
        known.append(target)
    body = "\n".join(lines)
    return f"import math\ndef f({', '.join(params)}):\n{body}\n    return {known[-1]}\n"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(long_programs(), st.booleans())
def test_random_programs_equal_blacks_formatting(source, split):
    ours, blacks = generate_both(source, split=split)
    assert ours == blacks
