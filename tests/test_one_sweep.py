"""What array code gained from the one reverse sweep (issue 13): the gate table's cached forms,
the same gradient text as number code, domain checks, and max/min ties.

- A sigmoid stage's gradient reads ``(1 - s) * s``, a tanh stage's ``1 - t**2`` and an exp
  stage's the output itself, for arrays as for numbers, and is right against central
  differences (stagegen.numeric).
- A scalar function and the same function over arrays of shape () and (N,) get the same
  gradient statements, apart from spellings (``np.arctan`` for ``math.atan``) and the copies
  lowering adds for arrays, for every function whose local gradient has no selection (abs,
  max and min are written as masks or signs for arrays); and the same values.
- Under ``np.errstate(all="raise")``, the backward raises FloatingPointError where the forward
  raises (the array rows of tests/test_domain.py's table), also from a stage whose value no
  gradient reads, and not where the forward is fine.
- An ``np.maximum``/``np.minimum`` tie sends the whole gradient to the first input, as
  ``max``/``min`` do for numbers, ``np.maximum(0, <expression>)`` included.
"""

import re

import pytest

np = pytest.importorskip("numpy")

import stagegen  # noqa: E402
from stagegen.api import load_backward_module  # noqa: E402
from stagegen.gates import FUNCTIONS, NUMPY_FUNCTIONS  # noqa: E402
from stagegen.layout import format_with_black  # noqa: E402
from stagegen.numeric import central_differences  # noqa: E402

RTOL = 1e-6  # the generated gradient against float64 central differences


def compile_pair(source: str, name: str = "f", wrt=None):
    """The forward as written, the generated backward, and the generated text."""
    namespace: dict = {"__name__": "forward"}
    exec(compile(source, "<forward>", "exec"), namespace)
    text = stagegen.generate(source, wrt=wrt)
    return namespace[name], load_backward_module(text)[f"{name}_backward"], text


def backprop_lines(text: str, stage: str) -> list[str]:
    """The gradient statements of the block ``# backprop <stage> = ...``."""
    lines = text.splitlines()
    start = next(
        k for k, line in enumerate(lines) if line.strip().startswith(f"# backprop {stage} =")
    )
    block = []
    for line in lines[start + 1 :]:
        if line.strip().startswith(("# backprop", "return")):
            break
        block.append(line)
    return block


def assert_matches_central_differences(forward, backward, args, upstream):
    grads = backward(*[a.copy() for a in args], upstream.copy())
    grads = grads if isinstance(grads, tuple) else (grads,)
    numeric = central_differences(forward, args, range(len(args)), upstream)
    for k, g in enumerate(grads):
        want = numeric[k]
        assert np.shape(g) == np.shape(want)
        assert np.allclose(g, want, rtol=RTOL, atol=RTOL * np.max(np.abs(want))), (k, g, want)


# ---------------------------------------------------------------------------- cached forms

SIGMOIDS = ["1 / (1 + np.exp(-z))", "1.0 / (1.0 + np.exp(-z))", "1 / (np.exp(-z) + 1)"]


@pytest.mark.parametrize("sigmoid", SIGMOIDS)
def test_a_sigmoid_stage_reads_its_cached_output(sigmoid):
    source = f"""
import numpy as np


def f(x: "N, D", w: "D, M"):
    z = x @ w
    s = {sigmoid}
    out = s * z
    return out
"""
    forward, backward, text = compile_pair(source)
    block = backprop_lines(text, "s")
    assert [line.strip() for line in block] == ["dz += (1 - s) * s * ds  # (2)"], text
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(3, 2)), rng.normal(size=(2, 4))
    assert_matches_central_differences(forward, backward, [x, w], rng.normal(size=(3, 4)))


def test_a_tanh_stage_reads_its_cached_output():
    source = """
import numpy as np


def f(x: "N, D", b: "D"):
    t = np.tanh(x * b + 0.5)
    out = t * x
    return out
"""
    forward, backward, text = compile_pair(source)
    block = "\n".join(backprop_lines(text, "t"))
    assert "(1 - t**2) * dt" in block and "np.tanh" not in block, text
    rng = np.random.default_rng(2)
    x, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    assert_matches_central_differences(forward, backward, [x, b], rng.normal(size=(4, 3)))


def test_an_exp_stage_reads_its_cached_output():
    source = """
import numpy as np


def f(x: "N, D"):
    e = np.exp(0.5 * x)
    out = e.sum(axis=1)
    return out
"""
    forward, backward, text = compile_pair(source)
    block = [line.strip() for line in backprop_lines(text, "e")]
    assert block == ["dx = 0.5 * e * de  # (1)"], text
    rng = np.random.default_rng(3)
    assert_matches_central_differences(
        forward, backward, [rng.normal(size=(3, 2))], rng.normal(size=3)
    )


# ---------------------------------------------------------------------------- numbers and arrays

# Stage bodies over x and y, written with math.<function> (the scalar spelling of the gate table)
BODIES = {
    "the notes' staged example": [
        "sigy = 1.0 / (1 + math.exp(-y))",
        "num = x + sigy",
        "sigx = 1.0 / (1 + math.exp(-x))",
        "xpy = x + y",
        "xpysqr = xpy**2",
        "den = sigx + xpysqr",
        "invden = 1.0 / den",
        "out = num * invden",
    ],
    "a tanh layer": ["h = math.tanh(x * y + 0.5)", "e = math.exp(h)", "out = e * h - x / y"],
    "powers": ["p = (x * x + 1.0) ** 1.5", "q = math.pow(p, 0.5)", "out = q * y**3 - 2.0 / p"],
    "two arguments": ["r = math.hypot(x, y)", "a = math.atan2(y, x * x + 1.0)", "out = r * a"],
}
# every one-argument function whose local gradient has no selection, at a point of its domain
ARGUMENTS = {"log": "x * x + 0.5", "log2": "x * x + 0.5", "log10": "x * x + 0.5"}
ARGUMENTS.update({"log1p": "x * x", "sqrt": "x * x + 0.5", "asin": "0.5 * math.tanh(x)"})
ARGUMENTS["acos"] = "0.5 * math.tanh(x)"
for _key in sorted(k for k in FUNCTIONS if FUNCTIONS[k].numpy in NUMPY_FUNCTIONS and k != "abs"):
    BODIES[_key] = [f"t = math.{_key}({ARGUMENTS.get(_key, '0.5 * x')})", "out = t * y + t"]


def scalar_source(body: list[str]) -> str:
    lines = "".join(f"    {line}\n" for line in body)
    return f"import math\n\n\ndef f(x, y):\n{lines}    return out\n"


MATH_CALL = re.compile(r"math\.(\w+)\(")


def array_source(body: list[str], shape: str) -> str:
    """The same function over arrays: np.<spelling> for math.<function>."""

    def spell(match):
        return f"np.{FUNCTIONS[match.group(1)].numpy}("

    lines = "".join(f"    {re.sub(MATH_CALL, spell, line)}\n" for line in body)
    return f'import numpy as np\n\n\ndef f(x: "{shape}", y: "{shape}"):\n{lines}    return out\n'


SHARED_PART = re.compile(r"\s*(?!d)(\w+) = (np\.\w+\(.*\))  # \(\d+\)\n")


def without_shared_parts(text: str) -> str:
    """The module as it reads without the calls lowering computes once for array code
    (stagegen/shared.py): each such local's call written back where the local is read, and the
    module formatted by black again (so the lines it shortened are wrapped as before)."""
    head, opening, body = text.partition("    # backprop")
    found: dict[str, str] = {}
    kept = []
    for line in body.splitlines(keepends=True):
        match = SHARED_PART.fullmatch(line)
        if match:
            found[match[1]] = match[2]
        else:
            kept.append(line)
    body = "".join(kept)
    for name, value in reversed(found.items()):  # a later part may read an earlier one
        body = re.sub(rf"\b{name}\b", value, body)
    return format_with_black(head + opening + body) if found else text


def gradient_statements(text: str) -> list[str]:
    """The backprop comments and gradient statements, in math.<function> spelling; what
    lowering adds for arrays (the upstream broadcast to the output's shape, ``.copy()``,
    ``float(...)`` for a 0-d array's gradient) taken off, a division's gradient in the array
    spelling (``-g / b`` for ``(-1 / b) * g``) and the notes after the ``# (n)`` left out
    (array output has none yet)."""
    numpy_names = {g.numpy: k for k, g in FUNCTIONS.items() if g.numpy}
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("# backprop") or re.match(r"d\w+ \+?= ", line)):
            continue
        if "= np.broadcast_to(" in line:  # lowering: the upstream given as a number
            continue
        line = re.sub(r"\bnp\.(\w+)\(", lambda m: f"math.{numpy_names.get(m[1], m[1])}(", line)
        line = re.sub(r"= float\((\w+)\)", r"= \1", line.replace(".copy()", ""))
        line = re.sub(r"\((-?)1 / (\w+)\) \* (\w+)", r"\1\3 / \2", line)  # g / b for arrays
        line = re.sub(r"# \((\d+)\) .*", r"# (\1)", line)  # the notes after the (n)
        out.append(line)
    return out


@pytest.mark.parametrize("shape", ["", "N"], ids=["shape ()", "shape (N,)"])
@pytest.mark.parametrize("name", list(BODIES))
def test_numbers_and_arrays_get_the_same_gradient(name, shape):
    _, scalar_b, scalar_text = compile_pair(scalar_source(BODIES[name]))
    _, array_b, array_text = compile_pair(array_source(BODIES[name], shape))
    array_statements = gradient_statements(without_shared_parts(array_text))
    assert array_statements == gradient_statements(scalar_text)
    assert "math." not in array_text and "np." not in scalar_text
    points, ups = [(0.3, 0.8), (-0.7, 1.3), (1.1, -0.4)], [1.0, -0.5, 2.0]
    if shape:  # the three points as one array of shape (3,)
        x, y = (np.array(v) for v in zip(*points))
        dx, dy = array_b(x, y, np.array(ups))
    else:  # each point a 0-d array
        grads = [
            array_b(np.array(px), np.array(py), np.array(up)) for (px, py), up in zip(points, ups)
        ]
        dx, dy = (np.array([g[k] for g in grads]) for k in range(2))
    for k, ((px, py), up) in enumerate(zip(points, ups)):
        want_x, want_y = scalar_b(px, py, up)
        assert dx[k] == pytest.approx(want_x, rel=1e-12, abs=1e-14)
        assert dy[k] == pytest.approx(want_y, rel=1e-12, abs=1e-14)


# ---------------------------------------------------------------------------- domain checks

# tests/test_domain.py's rows for arrays: (label, body over x (and y), a point with one element
# outside the domain). Under np.errstate(all="raise") NumPy raises FloatingPointError.
RAISES_IN_BOTH = [
    ("log below 0", "t = np.log(x); out = t * x", [0.5, -2.0]),
    ("log at 0", "out = np.log(x)", [0.5, 0.0]),
    ("log in a stage no gradient reads", "out = np.log(x) + 3 * x", [-1.0, 2.0]),
    (
        "log read by no gradient, in an earlier stage",
        "t = np.log(x) + x; out = 2.0 * t",
        [-1.0, 2.0],
    ),
    ("log2", "out = np.log2(x) * 2", [1.0, -1.0]),
    ("log10", "out = np.log10(x) * x", [-1.0, 1.0]),
    ("log1p below -1", "out = np.log1p(x)", [0.0, -3.0]),
    ("sqrt below 0", "out = np.sqrt(x) + x", [-1.0, 4.0]),
    ("arcsin above 1", "out = np.arcsin(x)", [0.5, 2.0]),
    ("arccos below -1", "out = np.arccos(x) * x", [-2.0, 0.0]),
    ("np.power of a negative", "out = np.power(x, 0.5)", [-1.0, 1.0]),
    ("division by zero", "out = 1.5 / x", [0.0, 1.0]),
    ("negative power at 0", "out = x**-1", [2.0, 0.0]),
    ("exp overflow", "out = np.exp(x)", [1000.0, 0.0]),
    ("cosh overflow", "out = np.cosh(x) * 2", [1.0, 1000.0]),
]


def domain_source(body: str) -> str:
    lines = "".join(f"    {line}\n" for line in body.split("; "))
    return f'import numpy as np\n\n\ndef f(x: "N"):\n{lines}    return out\n'


@pytest.mark.parametrize("label,body,point", RAISES_IN_BOTH, ids=[r[0] for r in RAISES_IN_BOTH])
def test_the_backward_raises_where_the_forward_raises(label, body, point):
    forward, backward, text = compile_pair(domain_source(body))
    x = np.array(point)
    with np.errstate(all="raise"):
        with pytest.raises(FloatingPointError):
            forward(x.copy())
        with pytest.raises(FloatingPointError):
            backward(x.copy())
        inside = np.array([0.5, 0.25])  # ... and neither raises inside the domain
        forward(inside.copy())
        grad = backward(inside.copy())
    assert_matches_central_differences(forward, backward, [inside], np.ones(2))
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------- ties


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_a_tie_goes_to_the_first_input_as_for_numbers(fn):
    array_source_ = f'import numpy as np\n\n\ndef f(x: "N", w: "N"):\n    out = np.{fn}(x, w) * 3.0\n    return out\n'
    scalar_source_ = f"def f(x, w):\n    out = {fn[:3]}(x, w) * 3.0\n    return out\n"
    _, array_b, _ = compile_pair(array_source_)
    _, scalar_b, _ = compile_pair(scalar_source_)
    x = np.array([0.5, -1.0, 2.0, 0.0])
    w = np.array([0.5, 1.0, -2.0, 0.0])  # tied at 0 and 3
    dx, dw = array_b(x, w)
    for k in range(len(x)):
        assert (dx[k], dw[k]) == scalar_b(float(x[k]), float(w[k]))
    assert dx[0] == 3.0 and dw[0] == 0.0 and dx[3] == 3.0 and dw[3] == 0.0


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_a_tie_of_a_number_and_an_expression_goes_to_the_number(fn):
    """np.maximum(0, <expression>): the mask reads the cached output (h > 0); at a tie the
    gradient goes to the first input, the number, so none reaches x, as max(0, ...) does."""
    source = f'import numpy as np\n\n\ndef f(x: "N"):\n    h = np.{fn}(0, x * 2.0 - 1.0)\n    out = h * x\n    return out\n'
    scalar = f"def f(x):\n    h = {fn[:3]}(0, x * 2.0 - 1.0)\n    out = h * x\n    return out\n"
    _, array_b, text = compile_pair(source)
    _, scalar_b, _ = compile_pair(scalar)
    assert f"(h {'>' if fn == 'maximum' else '<'} 0)" in "\n".join(backprop_lines(text, "h")), text
    x = np.array([0.5, 0.25, 1.5, -0.5])  # tied at 0.5
    dx = array_b(x)
    assert [float(d) for d in dx] == [scalar_b(float(v)) for v in x]


# ---------------------------------------------------------------------------- found, not fixed


def test_a_power_at_zero_with_a_parameter_exponent_is_fine_where_the_forward_is():
    source = 'import numpy as np\n\n\ndef f(x: "N", s):\n    out = np.power(x, s)\n    return out\n'
    forward, backward, _ = compile_pair(source)
    _, scalar_b, _ = compile_pair("def f(x, s):\n    out = x**s\n    return out\n")
    x = np.array([0.0, 2.0])
    with np.errstate(all="raise"):
        forward(x.copy(), 1.5)  # fine: 0 ** 1.5 is 0
        dx, ds = backward(x.copy(), 1.5)
    assert ds == pytest.approx(sum(scalar_b(float(v), 1.5)[1] for v in x), rel=1e-12)


def test_an_array_exponent_and_a_number_base_are_differentiated_as_for_numbers():
    # 2.0 ** x and (x * x + 1) ** y: the exponent's gradient out * log(base), summed where the
    # exponent was broadcast, as numbers have it
    source = (
        "import numpy as np\n\n\n"
        'def f(x: "N, D", y: "D"):\n'
        "    a = 2.0**x\n"
        "    c = (x * x + 1.0) ** (y * 0.5)\n"
        "    return np.sum(a * c)\n"
    )
    forward, backward, text = compile_pair(source)
    assert "np.log(2.0)" in text
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(3, 4)), rng.normal(size=4)
    dx, dy = backward(x.copy(), y.copy())
    numeric = central_differences(forward, [x.copy(), y.copy()], [0, 1])
    np.testing.assert_allclose(dx, numeric[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dy, numeric[1], rtol=1e-6, atol=1e-9)
    assert stagegen.verify(source, filename="case.py").functions


def test_a_selection_whose_gradient_divides_by_a_log_of_a_number_stays_finite_when_not_taken():
    # np.log10's gradient divides by np.log(10): a guard that took that log of 1.0 where
    # np.maximum's mask fails divided by zero there (found by the 2,000-program array fuzz)
    source = (
        "import numpy as np\n\n\n"
        'def f(r: "1, D"):\n'
        "    t = np.log10(np.maximum(r, -0.3) * np.maximum(r, -0.3) + 0.1)\n"
        "    return np.sum(t)\n"
    )
    forward, backward, text = compile_pair(source)
    r = np.array([[-0.9, 0.4, -0.1]])
    with np.errstate(all="raise"):
        forward(r.copy())
        dr = backward(r.copy())
    numeric = central_differences(forward, [r.copy()], [0])[0]
    np.testing.assert_allclose(dr, numeric, rtol=1e-6, atol=1e-9)


def test_a_max_reduction_at_a_stages_root_reads_its_cached_output():
    # m = np.max(x, axis=1, keepdims=True): the mask compares x with m, as the array sweep did
    # before the one sweep, not with a recomputed np.max (and is computed once: shared.py)
    source = (
        "import numpy as np\n\n\n"
        'def f(x: "N, D"):\n'
        "    m = np.max(x, axis=1, keepdims=True)\n"
        "    return np.sum(m * m)\n"
    )
    forward, backward, text = compile_pair(source)
    assert "x_is_m = x == m  # (1)" in text
    assert text.count("np.max(") == 2  # the replay and the # backprop line
    x = np.random.default_rng(3).normal(size=(3, 4))
    numeric = central_differences(forward, [x.copy()], [0])[0]
    np.testing.assert_allclose(backward(x.copy()), numeric, rtol=1e-6, atol=1e-9)
