"""No silently wrong gradient: the array bugs a careful user found, each pinned.

Every generated backward here comes straight from ``stagegen.generate`` (no proof in between)
and is compared with float64 central differences of the user's own source, executed by real
NumPy (so in-place updates and aliasing behave as they do for the user).
"""

import textwrap

import numpy as np
import pytest

import stagegen
from stagegen.api import load_backward_module
from stagegen.numeric import central_differences


def _forward(source: str, name: str):
    namespace = {"np": np}
    exec(compile(textwrap.dedent(source), "<forward>", "exec"), namespace)
    return namespace[name]


def _numerical(forward, args, upstream, wrt_index):
    """d sum(forward(args) * upstream) / d args[wrt_index], element by element (stagegen.numeric)."""
    return central_differences(forward, args, [wrt_index], upstream)[wrt_index]


def check_against_source(source: str, name: str, shapes: dict, seed: int = 0):
    """The generated backward equals the numerical gradient of the source, shape for shape."""
    rng = np.random.default_rng(seed)
    args = [rng.uniform(0.5, 1.5, shape) for shape in shapes.values()]
    forward = _forward(source, name)
    out = forward(*[a.copy() for a in args])
    upstream = rng.uniform(-1.0, 1.0, np.shape(out))  # a 0-d array for a scalar output
    rng_copy = np.copy(upstream)
    text = stagegen.generate(textwrap.dedent(source), function=name)
    backward = load_backward_module(text)[f"{name}_backward"]
    passed = [a.copy() for a in args]
    got = backward(*passed, upstream)
    got = got if isinstance(got, tuple) else (got,)
    # The backward reads its arguments and the upstream gradient; it writes into none of them.
    assert all(np.array_equal(a, b) for a, b in zip(passed, args)), "an input was written into"
    assert np.array_equal(upstream, rng_copy), "the upstream gradient was written into"
    for k, (param, g) in enumerate(zip(shapes, got)):
        want = _numerical(forward, args, upstream, k)
        assert (
            np.shape(g) == want.shape
        ), f"d{param}: shape {np.shape(g)}, want {want.shape}\n{text}"
        assert np.allclose(g, want, rtol=1e-6, atol=1e-7), f"d{param}: {g} != {want}\n{text}"
    return text


# -------------------------------------------------------------------------- `@` binds like `*`

MATMUL_NESTED = [
    ("x @ (a @ b)", "out = x @ (a @ b)\n    return out"),
    ("a * (b @ c)", "t = a * (b @ c)\n    u = np.exp(t)\n    return u * t"),
    ("(a @ b).sum(axis=0)", "s = (a @ b).sum(axis=0)\n    return s * s"),
    ("-(a @ b)", "v = -(a @ b)\n    w = (v @ a).T\n    return w * w"),
    ("(a @ b).T @ c", "out = (a @ b).T @ c\n    return out"),
    ("a / (b @ c)", "out = a / (1.0 + (b @ c) ** 2)\n    return out"),
]


@pytest.mark.parametrize("title,body", MATMUL_NESTED, ids=[t for t, _ in MATMUL_NESTED])
def test_matmul_inside_expressions_is_parenthesised(title, body):
    # Square shapes: a misplaced @ still runs, and silently gives another number.
    params = ["x", "a", "b"] if "x @" in body else ["a", "b", "c"]
    signature = ", ".join(f'{p}: "N, N"' for p in params)
    source = f"import numpy as np\n\ndef f({signature}):\n    {body}\n"
    check_against_source(source, "f", {p: (3, 3) for p in params})


def test_matmul_is_printed_with_its_parentheses():
    text = stagegen.generate(
        'import numpy as np\n\ndef f(x: "N, N", a: "N, N", b: "N, N"):\n    return x @ (a @ b)\n'
    )
    assert "(a @ b).T" in text


# -------------------------------------------------------------------------- zero gradients

ZERO = [
    ("0.0 * x", "t = 0.0 * x\n    return (t + w).sum()"),
    ("x - x", "t = x - x\n    return t * 3.0 + w"),
    ("x ** 0", "t = x**0\n    u = t * w\n    return u"),
    ("t -= t", "t = x * w\n    t -= t\n    return t.sum() + w.sum()"),
    ("x * 0.0 inside a sum", "return (x * 0.0).sum() + (w * w).sum()"),
]


@pytest.mark.parametrize("title,body", ZERO, ids=[t for t, _ in ZERO])
def test_identically_zero_gradient_is_an_array_of_zeros(title, body):
    source = f'import numpy as np\n\ndef f(x: "N, D", w: "N, D"):\n    {body}\n'
    text = check_against_source(source, "f", {"x": (2, 3), "w": (2, 3)})
    assert "dx = 0\n" not in text and "dx += 0" not in text


def test_zero_gradient_computes_nothing_it_does_not_return():
    text = stagegen.generate(
        'import numpy as np\n\ndef f(x: "N, D"):\n    t = x - x\n    return t * 3.0\n'
    )
    assert "dt" not in text  # the gradient of t leads nowhere: not computed
    assert "dx = np.zeros((N, D))" in text


# -------------------------------------------------------------------------- in-place updates


def test_in_place_update_that_keeps_its_array_is_exact():
    source = """
    import numpy as np

    def f(x: "N, D", b: "D"):
        t = x * 2.0
        t += b
        t *= x
        u = t
        t = t + 1.0
        u += x
        s = x.sum()
        s += 1.0
        return (u * t).sum() * s
    """
    check_against_source(source, "f", {"x": (3, 2), "b": (2,)})


REFUSED_IN_PLACE = [
    (
        "an alias",
        "t = x * 2.0\n    u = t\n    u += x\n    return t * u",
        "`u += ...` also changes `t`",
    ),
    (
        "a view",
        "t = x * 2.0\n    u = t.T\n    u += 1.0\n    return t",
        "`u += ...` also changes `t`",
    ),
    (
        "a view of an expression's name",
        "t = x * 2.0\n    u = t[:, None]\n    u -= 1.0\n    return t",
        "`u -= ...` also changes `t`",
    ),
    ("a parameter", "x += 1.0\n    return x * x", "writes into the caller's array `x`"),
    (
        "an alias of a parameter",
        "y = x\n    y *= 2.0\n    return y",
        "writes into the caller's array `x`",
    ),
    (
        "a result that needs a larger array",
        "t = s * 1.0\n    t += x\n    return t",
        "NumPy cannot write a result of shape (N, D) into `t` of shape (N, 1)",
    ),
]


@pytest.mark.parametrize(
    "title,body,message", REFUSED_IN_PLACE, ids=[t for t, _, _ in REFUSED_IN_PLACE]
)
def test_in_place_update_seen_elsewhere_is_refused(title, body, message):
    source = f'import numpy as np\n\ndef f(x: "N, D", s: "N, 1"):\n    {body}\n'
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.generate(source)
    text = str(info.value)
    assert message in text
    assert "which makes a new array" in text  # says what to write instead
    assert info.value.line is not None and info.value.line > 3


# -------------------------------------------------------------------------- code for numbers


NUMBERS = [
    ("def f(x, y):\n    return x * y\n", "f", lambda: (np.ones((3, 4)), np.ones((1, 4)))),
    ("def f(x):\n    t = 2.0 * x\n    return t\n", "f", lambda: (np.ones(5),)),
    ("def f(x, y):\n    return x + y\n", "f", lambda: (np.ones((2, 2)), 1.0)),
    (
        "def f(w, x):\n    return w[0] * x[0] + w[1]\n",
        "f",
        lambda: ([np.ones(3)] * 2, [np.ones(3)]),
    ),
]


@pytest.mark.parametrize("source,name,arrays", NUMBERS)
def test_backward_for_numbers_called_with_arrays_raises(source, name, arrays):
    # Gradients of the wrong shape would be silently wrong; the first line refuses arrays.
    backward = load_backward_module(stagegen.generate(source))[f"{name}_backward"]
    with pytest.raises(TypeError):
        backward(*arrays())


def test_backward_for_numbers_takes_numbers_of_every_kind():
    backward = load_backward_module(stagegen.generate("def f(x, y):\n    return x * y\n"))[
        "f_backward"
    ]
    assert backward(3, np.float64(2.0)) == (2.0, 3.0)
    assert backward(True, 2.5, dout=2) == (5.0, 2.0)


def test_a_parameter_named_float_keeps_its_meaning():
    text = stagegen.generate("def f(x, float):\n    return x * float\n")
    assert "float(" not in text
    assert load_backward_module(text)["f_backward"](2.0, 3.0) == (3.0, 2.0)


# -------------------------------------------------------------------------- array code unannotated

# Array code without annotations: the shapes come from the code (arrays/infer.py); what needs a
# number of dimensions that neither the code nor the docstring fixes is refused, located.
UNFIXED = [
    ("pred = X @ w", "`X @ w`", "`X`", "X"),
    ("t = x.T", "`x.T`", "`x`", "x"),
    ("t = x.sum(axis=0)", "`x.sum(axis=0)`", "`x`", "x"),
    ("t = x.shape[1] * x", "`x.shape[1]`", "`x`", "x"),
    # x * w broadcasts at run time (any shapes), and .T of that needs its number of dimensions
    ("t = (np.exp(x) * w).T", "`(np.exp(x) * w).T`", "the broadcast of `w` and `x`", "w"),
]


@pytest.mark.parametrize("line,what,whose,param", UNFIXED, ids=[w for _, w, _, _ in UNFIXED])
def test_array_code_needing_a_rank_the_code_does_not_fix_is_refused(line, what, whose, param):
    name = line.split(" = ")[0]
    source = f"import numpy as np\n\ndef f(X, x, w):\n    {line}\n    return {name}\n"
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.generate(source)
    message = str(info.value)
    assert f"{what} needs to know how many dimensions {whose} has" in message
    assert f"`N, D = {param}.shape`" in message


def test_array_division_gradient_stays_finite_where_the_forward_is():
    # b**2 overflows past 1.3e154 although a / b is an ordinary number there.
    source = 'import numpy as np\n\ndef f(a: "N", b: "N"):\n    return a / b\n'
    backward = load_backward_module(stagegen.generate(source))["f_backward"]
    a, b = np.array([1.0, 2.0]), np.array([1e155, 4e155])
    with np.errstate(over="raise", invalid="raise"):
        da, db = backward(a, b)
    assert np.allclose(da, 1.0 / b) and np.allclose(db, -a / b / b)
    assert np.all(db != 0.0)


# -------------------------------------------------------------------------- found by the array fuzzer


def test_fan_out_of_a_scalar_output_upstream():
    # The default upstream 1.0 is a float: it has no .copy(), and needs none.
    source = """
    import numpy as np

    def f(x: "N, D"):
        t = np.sum(x)
        u = t * 2.0
        return u + t
    """
    check_against_source(source, "f", {"x": (2, 3)})


def test_unary_plus_in_array_code():
    source = 'import numpy as np\n\ndef f(x: "N, D", v: "D"):\n    out = +x * v + x * +v\n    return out\n'
    check_against_source(source, "f", {"x": (2, 3), "v": (3,)})


SHARING = [
    ('x: "N, D", c: "N, 1"', "t1 = np.sum(x, -1, keepdims=True)\n    out = (t1 < 0.0) * (c + t1)"),
    ('x: "N, D", v: "D"', "out = x + v"),
    ('x: "N, D", v: "N, D"', "out = x - v"),
]


@pytest.mark.parametrize("signature,body", SHARING)
def test_returned_gradients_are_the_callers_own_arrays(signature, body):
    # No view of the upstream or of another gradient: a caller's `dx *= 0.5` changes nothing else.
    source = f"import numpy as np\n\ndef f({signature}):\n    {body}\n    return out\n"
    backward = load_backward_module(stagegen.generate(source))["f_backward"]
    shapes = [(3, 2), (3, 1) if "N, 1" in signature else ((2,) if '"D"' in signature else (3, 2))]
    args = [-np.ones(s) for s in shapes]
    upstream = np.ones((3, 2) if "N, 1" not in signature else (3, 1))
    grads = backward(*args, upstream)
    for g in grads:
        assert g.flags.writeable
        assert not np.shares_memory(g, upstream)
    assert not np.shares_memory(grads[0], grads[1])


def test_unary_plus_makes_a_new_array_that_may_be_updated_in_place():
    source = """
    import numpy as np

    def f(x: "N, D"):
        t1 = x * 2.0
        t2 = +t1
        t2 *= x
        return t1 + t2
    """
    check_against_source(source, "f", {"x": (2, 3)})


def test_a_dimension_named_float_does_not_shadow_the_builtin():
    source = """
    import numpy as np

    def f(x: "float, D"):
        t = np.sum(x)
        u = t * 2.0
        return u + t
    """
    text = check_against_source(source, "f", {"x": (2, 3)})
    assert "float = " not in text
