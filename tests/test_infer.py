"""Unannotated array functions: shapes from the code and the docstring (stagegen/arrays/infer.py).

What the code does not fix stays open (a rest, ``...x``): the backward reads those dimensions
from the argument at run time, so it must be exact at every number of dimensions. The
end-to-end tests and the fuzzer below check the generated backward, straight from
``generate()``, against central differences at several ranks, a batch of one included.
"""

from __future__ import annotations

import ast
import os
import textwrap

import numpy as np
import pytest

import stagegen
from stagegen.arrays.infer import docstring_shapes, infer
from stagegen.api import load_backward_module

FUZZ_EXAMPLES = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES", "40"))


def _fn(source: str) -> ast.FunctionDef:
    return ast.parse(textwrap.dedent(source)).body[0]


# ---------------------------------------------------------------------------- reading shapes


def test_the_course_docstring_gives_shapes():
    fn = _fn('''
        def affine_forward(x, w, b):
            """
            Computes the forward pass for an affine (fully-connected) layer.

            Inputs:
            - x: A numpy array containing input data, of shape (N, d_1, ..., d_k)
            - w: A numpy array of weights, of shape (D, M)
            - b: A numpy array of biases, of shape (M,)

            Returns a tuple of:
            - out: output, of shape (N, M)
            """
        ''')
    assert docstring_shapes(fn) == {"x": ("N", "...x"), "w": ("D", "M"), "b": ("M",)}


def test_a_docstring_entry_runs_on_to_its_next_line_and_any_shape_is_open():
    fn = _fn('''
        def f(x, gamma, p):
            """
            - x: Inputs,
              of any shape
            - gamma: Scale parameter
              of shape (D,)
            - p: Dropout parameter. We keep each neuron output with probability p.
            """
        ''')
    assert docstring_shapes(fn) == {"x": ("...x",), "gamma": ("D",)}


def test_prose_that_is_not_a_shape_is_not_read():
    fn = _fn('''
        def f(x, y):
            """
            - x: scores; see the shape (of the batch) in the notes
            - y: labels, of shape (N-1, what)
            """
        ''')
    assert docstring_shapes(fn) == {}


@pytest.mark.parametrize(
    "body,expected",
    [
        ("N, D = x.shape\n    return x", ("N", "D")),
        ("N, _ = x.shape\n    return x", ("N", "x_1")),
        ("N = x.shape[0]\n    return x", ("N", "...x")),
        ("return x.reshape(x.shape[0], -1)", ("x_0", "...x")),
        ("return x", ("...x",)),
    ],
)
def test_the_code_fixes_shapes(body, expected):
    fn = _fn(f"def f(x):\n    {body}\n")
    assert infer(fn, ["x"])["x"].shape == expected


def test_the_code_comes_before_the_docstring_and_numbers_are_numbers():
    fn = _fn('''
        def f(x, eps=1e-5, a=None):
            """- x: of shape (A, B, C)"""
            N, D = x.shape
            if a > 0:
                return x + eps
            return x
        ''')
    found = infer(fn, ["x", "eps", "a"])
    assert found["x"].shape == ("N", "D") and found["x"].source == "the code"
    assert found["eps"].shape is None and found["a"].shape is None


# ---------------------------------------------------------------------------- end to end


def numeric_gradient(f, args, i, upstream, eps=1e-6):
    """Central differences of sum(f(*args) * upstream) in args[i]."""
    args = [np.array(a, dtype=float) if not isinstance(a, (int, float)) else a for a in args]
    x = np.array(args[i], dtype=float)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        for sign in (1, -1):
            moved = x.copy()
            moved[index] += sign * eps
            value = f(*args[:i], moved, *args[i + 1 :])
            value = value[0] if isinstance(value, tuple) else value
            grad[index] += sign * np.sum(np.asarray(value) * upstream) / (2 * eps)
    return grad


def generated(source: str) -> dict:
    source = textwrap.dedent(source)
    namespace: dict = {}
    exec(compile(source, "<forward>", "exec"), namespace)
    return namespace, load_backward_module(stagegen.generate(source))


AFFINE = '''
import numpy as np


def affine_forward(x, w, b):
    """
    Inputs:
    - x: A numpy array containing input data, of shape (N, d_1, ..., d_k)
    - w: A numpy array of weights, of shape (D, M)
    - b: A numpy array of biases, of shape (M,)
    """
    out = None
    N = x.shape[0]
    x_row = x.reshape(N, -1)
    out = x_row.dot(w) + b
    cache = (x, w, b)
    return out, cache
'''


@pytest.mark.parametrize("x_shape", [(1, 6), (3, 6), (2, 2, 3), (1, 3, 1, 2), (2, 6, 1)])
def test_affine_with_any_number_of_input_dimensions(x_shape):
    forward, backward = generated(AFFINE)
    rng = np.random.default_rng(sum(x_shape))
    x, w, b = rng.normal(size=x_shape), rng.normal(size=(6, 4)), rng.normal(size=4)
    dout = rng.normal(size=(x_shape[0], 4))
    grads = backward["affine_backward"](x, w, b, dout)
    for i, g in enumerate(grads):
        expected = numeric_gradient(forward["affine_forward"], [x, w, b], i, dout)
        assert g.shape == expected.shape
        assert np.allclose(g, expected, atol=1e-6)


def test_the_affine_backward_reads_the_rest_from_the_input():
    text = stagegen.generate(textwrap.dedent(AFFINE))
    assert "dx = dx_row.reshape(np.shape(x))" in text
    assert "db = dout.sum(axis=0)" in text


ANY_SHAPE = """
import numpy as np


def f(x, eps=0.1):
    y = np.maximum(0, x) + np.tanh(x) * eps
    z = np.var(y) + y.std() * np.linalg.norm(x) + np.mean(x ** 2) + x.max() - np.sum(y * x)
    return z + 0 * x
"""


@pytest.mark.parametrize("shape", [(), (1,), (4,), (2, 3), (1, 2, 3)])
def test_code_for_any_shape_is_exact_at_every_rank(shape):
    forward, backward = generated(ANY_SHAPE)
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape)
    dout = rng.normal(size=shape)
    got, _ = backward["f_backward"](x, dout=dout)  # (dx, deps)
    assert np.shape(got) == shape
    assert np.allclose(got, numeric_gradient(forward["f"], [x], 0, dout), atol=1e-5)


def test_a_python_number_in_for_an_any_shape_parameter():
    forward, backward = generated(
        "import numpy as np\n\ndef f(x):\n    return np.tanh(x) * np.sum(x ** 2)\n"
    )
    got = backward["f_backward"](0.7)
    assert np.shape(got) == ()
    assert np.allclose(got, numeric_gradient(forward["f"], [np.array(0.7)], 0, 1.0), atol=1e-6)


# ---------------------------------------------------------------------------- fuzz

UNARY = ["np.exp({})", "np.tanh({})", "np.sin({})", "np.log(1 + {} ** 2)", "np.maximum(0, {})"]
BINARY = ["{} + {}", "{} * {}", "{} - {}", "{} / (1 + {} ** 2)"]
REDUCE = ["np.sum({})", "{}.mean()", "np.max({})", "np.var({})", "{}.std()", "np.linalg.norm({})"]


def random_program(rng) -> str:
    """An unannotated function of one any-shape array x and a number c: elementwise stages,
    full reductions mixed back in, returning an array or a number."""
    names = ["x"]
    lines = []
    for k in range(int(rng.integers(2, 6))):
        pick = lambda: names[int(rng.integers(len(names)))]  # noqa: E731
        kind = rng.random() if k else 0.0  # a NumPy call first: number code takes numbers only
        if kind < 0.4:
            value = UNARY[int(rng.integers(len(UNARY)))].format(pick())
        elif kind < 0.8:
            value = BINARY[int(rng.integers(len(BINARY)))].format(pick(), pick())
        else:  # a number from a full reduction, broadcast back against an array
            value = f"{pick()} * {REDUCE[int(rng.integers(len(REDUCE)))].format(pick())}"
        if rng.random() < 0.3:
            value = f"c * ({value})"
        lines.append(f"s{k} = {value}")
        names.append(f"s{k}")
    last = names[-1]
    result = REDUCE[int(rng.integers(len(REDUCE)))].format(last) if rng.random() < 0.5 else last
    body = "\n    ".join(lines + [f"return {result}"])
    return f"import numpy as np\n\n\ndef f(x, c=0.5):\n    {body}\n"


def test_random_any_shape_programs_against_central_differences():
    rng = np.random.default_rng(int(os.environ.get("STAGEGEN_INFER_FUZZ_SEED", "2026")))
    checked = 0
    for _ in range(FUZZ_EXAMPLES):
        source = random_program(rng)
        forward, backward = generated(source)
        for shape in [(), (3,), (2, 3), (1, 2, 2)]:
            x = rng.uniform(-1.5, 1.5, size=shape)
            x[np.abs(x) < 0.05] += 0.2  # away from maximum's kink
            value = np.asarray(forward["f"](x))
            if not np.all(np.isfinite(value)):
                continue
            dout = rng.normal(size=value.shape)
            got, _ = backward["f_backward"](x, 0.5, dout)  # (dx, dc)
            expected = numeric_gradient(forward["f"], [x], 0, dout)
            if not np.all(np.isfinite(expected)) or np.max(np.abs(expected)) > 1e6:
                continue
            assert np.shape(got) == shape, source
            assert np.allclose(got, expected, rtol=1e-4, atol=1e-4), (source, shape)
            checked += 1
    assert checked >= FUZZ_EXAMPLES  # most draws are checked at several ranks


def random_joint_program(rng) -> str:
    """An unannotated function of three arrays of any shape that it broadcasts together
    (``x * w + b``): NumPy's broadcast of their shapes is known only at run time, so each
    gradient is summed back to its parameter's shape there (``unbroadcast``)."""
    names = ["x", "w", "b"]
    lines = []
    for k in range(int(rng.integers(2, 6))):
        pick = lambda: names[int(rng.integers(len(names)))]  # noqa: E731
        kind = rng.random() if k else 0.0  # a NumPy call first: number code takes numbers only
        if kind < 0.3:
            value = UNARY[int(rng.integers(len(UNARY)))].format(pick())
        elif kind < 0.85:
            value = BINARY[int(rng.integers(len(BINARY)))].format(pick(), pick())
        else:
            value = f"{pick()} * {REDUCE[int(rng.integers(len(REDUCE)))].format(pick())}"
        lines.append(f"s{k} = {value}")
        names.append(f"s{k}")
    used = "np.sum(np.tanh(x * w) + b)"  # each one reaches the output, broadcast together
    last = names[-1]
    result = REDUCE[int(rng.integers(len(REDUCE)))].format(last) if rng.random() < 0.5 else last
    body = "\n    ".join(lines + [f"return {result} + 0.1 * ({used})"])
    return f"import numpy as np\n\n\ndef f(x, w, b):\n    {body}\n"


def broadcastable_shapes(rng, count: int) -> list[tuple]:
    """Shapes NumPy broadcasts together: one common shape (rank 0 to 3), each with leading
    axes dropped and axes of size 1 at random."""
    common = tuple(int(n) for n in rng.integers(1, 4, size=int(rng.integers(0, 4))))
    out = []
    for _ in range(count):
        shape = common[int(rng.integers(0, len(common) + 1)) :]
        out.append(tuple(1 if rng.random() < 0.3 else n for n in shape))
    return out


def test_random_programs_broadcasting_arrays_of_any_shape_against_central_differences():
    rng = np.random.default_rng(int(os.environ.get("STAGEGEN_INFER_FUZZ_SEED", "2027")))
    checked = 0
    for _ in range(FUZZ_EXAMPLES):
        source = random_joint_program(rng)
        forward, backward = generated(source)
        assert "def unbroadcast(gradient, shape):" in load_text(source), source
        for _ in range(4):
            args = []
            for shape in broadcastable_shapes(rng, 3):
                a = rng.uniform(-1.5, 1.5, size=shape)
                a[np.abs(a) < 0.05] += 0.2  # away from maximum's kink
                args.append(float(a) if not shape and rng.random() < 0.5 else a)
            try:
                with np.errstate(all="raise"):
                    value = np.asarray(forward["f"](*args))
            except (FloatingPointError, AttributeError):
                continue  # outside the domain, or a method a Python number has not
            dout = rng.normal(size=value.shape)
            got = backward["f_backward"](*args, dout)
            for k in range(3):
                expected = numeric_gradient(forward["f"], args, k, dout)
                if not np.all(np.isfinite(expected)) or np.max(np.abs(expected), initial=0) > 1e6:
                    break
                assert np.shape(got[k]) == np.shape(args[k]), (source, [np.shape(a) for a in args])
                assert np.allclose(got[k], expected, rtol=1e-4, atol=1e-4), (source, k, args)
            else:
                checked += 1
    assert checked >= FUZZ_EXAMPLES  # most draws are checked


def load_text(source: str) -> str:
    return stagegen.generate(textwrap.dedent(source))


# ---------------------------------------------------------------------------- @staged: the first call

FIRST_CALL = """
import numpy as np
from stagegen import staged


@staged
def centred(x, w):
    m = x.mean(axis=0)
    return np.sum(np.tanh((x - m) * w))
"""


def test_staged_specialises_to_each_calls_pattern_of_shapes(tmp_path, monkeypatch):
    """`x.mean(axis=0)` needs x's number of dimensions: the CLI refuses it (located), and
    @staged generates, proves and keeps one backward per pattern of shapes."""
    import importlib.util

    def load_module(path, name):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    monkeypatch.setenv("STAGEGEN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.generate(FIRST_CALL.replace("@staged\n", ""))
    assert "`x.mean(axis=0)` needs to know how many dimensions `x` has" in str(info.value)
    path = tmp_path / "first_call.py"
    path.write_text(FIRST_CALL)
    module = load_module(path, "first_call")
    f = module.centred
    assert f.backward_source is None  # nothing is known until a call
    rng = np.random.default_rng(5)
    for x_shape, w_shape in [((4, 3), (3,)), ((1, 3), (3,)), ((4, 3), (4, 1)), ((2, 3, 2), ())]:
        x, w = rng.normal(size=x_shape), rng.normal(size=w_shape)
        dx, dw = f.backward(x, w)
        assert np.allclose(dx, numeric_gradient(f, [x, w], 0, 1.0), atol=1e-6)
        assert np.allclose(dw, numeric_gradient(f, [x, w], 1, 1.0), atol=1e-6)
        assert f.verification.checks > 0 and "centred" in str(f.verification)
    assert len(f.backward.by_pattern) == 4
    f.backward(rng.normal(size=(7, 5)), rng.normal(size=5))  # (4, 3) and (3,) again: no new one
    assert len(f.backward.by_pattern) == 4


# ---------------------------------------------------------------------------- found in review


def gradient_check(source: str, name: str, args: list, atol=1e-6):
    """Every gradient the backward returns equals central differences; returns them."""
    forward, backward = generated(source)
    grads = backward[f"{name}_backward"](*args)
    grads = grads if isinstance(grads, tuple) else (grads,)
    floats = [k for k, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]
    assert len(grads) == len(floats)
    for k, g in zip(floats, grads):
        expected = numeric_gradient(forward[name], args, k, 1.0)
        assert np.shape(g) == np.shape(expected) and np.allclose(g, expected, atol=atol), k
    return grads


def test_an_any_shape_argument_to_an_any_shape_callee_keeps_its_axes_open():
    source = (
        "import numpy as np\n\ndef g(z):\n    return np.tanh(z)\n\n"
        "def f(y):\n    v = g(y)\n    return np.sum(np.max(v, axis=-1))\n"
    )
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.generate(source)
    assert "`np.max(v, axis=-1)` needs to know how many dimensions `y` has" in str(info.value)
    rng = np.random.default_rng(2)
    rest = source.replace("np.sum(np.max(v, axis=-1))", "np.max(v) + np.sum(v)")
    gradient_check(rest, "f", [rng.normal(size=(2, 2, 3))])


def test_prose_about_booleans_does_not_make_a_mask():
    source = (
        'import numpy as np\n\ndef f(x, w):\n    """\n    - x: of shape (N, D). Not a bool array.\n'
        '    - w: of shape (D,)\n      no boolean arrays are used\n    """\n    return np.sum(x * w)\n'
    )
    rng = np.random.default_rng(3)
    gradient_check(source, "f", [rng.normal(size=(3, 2)), rng.normal(size=2)])


def test_a_name_bound_again_is_not_the_parameters_labels():
    source = (
        'import numpy as np\n\ndef f(x, y):\n    """\n    - x: of shape (N, D)\n'
        '    - y: of shape (N, D)\n    """\n    N, D = x.shape\n    out = np.sum(x * y)\n'
        "    y = np.arange(N)\n    return out + np.sum(x[y])\n"
    )
    rng = np.random.default_rng(4)
    gradient_check(source, "f", [rng.normal(size=(3, 2)), rng.normal(size=(3, 2))])


def test_a_number_parameter_of_array_code_refuses_an_array():
    source = (
        'import numpy as np\n\ndef f(x, w=0.5):\n    """\n    - x: of shape (N, D)\n'
        '    - w: of shape (D,)\n    """\n    return np.sum(x * w)\n'
    )
    text = stagegen.generate(source)
    assert "w = float(w)  # numbers: an array here raises" in text
    backward = load_backward_module(text)["f_backward"]
    x = np.ones((3, 2))
    dx, dw = backward(x, 0.5)
    assert np.allclose(dx, 0.5) and np.shape(dw) == () and dw == 6.0
    with pytest.raises(TypeError):
        backward(x, np.ones(2))  # summing dw to one number would be silently wrong


def test_a_proof_that_finds_no_point_in_the_domain_refuses():
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.verify(
            'import numpy as np\n\ndef f(x: "N"):\n    return np.sum(np.sqrt(x - 5.0))\n'
        )
    assert "found no point where `f` is defined" in str(info.value)


# ---------------------------------------------------------------------------- seeded draws (dropout)

DROPOUT = '''
import numpy as np


def dropout_loss(x, w, p, seed):
    """
    - x: of shape (N, D)
    - w: of shape (D,)
    - p: keep probability
    - seed: the seed
    """
    np.random.seed(seed)
    mask = (np.random.rand(*x.shape) < p) / p
    return np.sum(np.tanh(x * mask) * w)
'''


def test_a_seeded_draw_is_drawn_again_without_touching_numpys_global_state():
    text = stagegen.generate(DROPOUT)
    assert "mask = (np.random.RandomState(seed).rand(*x.shape) < p) / p" in text
    forward, backward = generated(DROPOUT)
    rng = np.random.default_rng(9)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=4)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    dx, dw, dp = backward["dropout_loss_backward"](x, w, 0.6, 5)
    assert np.array_equal(np.random.get_state()[1], before)
    for k, g in ((0, dx), (1, dw), (2, dp)):
        expected = numeric_gradient(forward["dropout_loss"], [x, w, 0.6, 5], k, 1.0)
        assert np.allclose(g, expected, atol=1e-6), k


@pytest.mark.parametrize(
    "body",
    [
        "mask = np.random.rand(*x.shape) < 0.5",  # no seed: the backward could not draw it again
        "np.random.seed(seed)\n    a = np.random.rand(*x.shape)\n    mask = np.random.rand(*x.shape) < a",
        "np.random.seed(3)\n    mask = np.random.rand(*x.shape) < 0.5",
    ],
)
def test_draws_the_backward_cannot_repeat_are_refused(body):
    source = f"import numpy as np\n\ndef f(x, seed):\n    {body}\n    return np.sum(x * mask)\n"
    with pytest.raises(stagegen.StagegenError) as info:
        stagegen.generate(source)
    assert "np.random" in str(info.value)


def test_a_gradient_returned_as_a_view_holds_no_one_elses_memory():
    """`dx = dx_row.reshape(np.shape(x))` is returned without a copy: dx_row is new and read
    once. Writing into the returned gradients must leave the caller's arrays alone."""
    text = stagegen.generate(textwrap.dedent(AFFINE))
    assert ".copy()" not in text.split("def affine_backward")[1]
    backward = load_backward_module(text)["affine_backward"]
    rng = np.random.default_rng(8)
    x, w, b = rng.normal(size=(2, 3, 2)), rng.normal(size=(6, 4)), rng.normal(size=4)
    dout = rng.normal(size=(2, 4))
    kept = [a.copy() for a in (x, w, b, dout)]
    first = [g.copy() for g in backward(x, w, b, dout)]
    for g in backward(x, w, b, dout):
        g[...] = 7.0
    assert all(np.array_equal(a, k) for a, k in zip((x, w, b, dout), kept))
    assert all(np.allclose(g, f) for g, f in zip(backward(x, w, b, dout), first))


def test_a_number_parameters_gradient_from_an_any_shape_value_takes_a_python_number():
    """dc sums a gradient of x's shape: `np.sum(...)`, since x may be a Python number."""
    forward, backward = generated(
        "import numpy as np\n\ndef f(x, c=0.5):\n    t = c * x / (1 + x ** 2)\n"
        "    return np.sum(t * x)\n"
    )
    for x in (0.7, np.array([0.3, -1.2])):
        dx, dc = backward["f_backward"](x, 0.5)
        assert np.allclose(dc, numeric_gradient(forward["f"], [x, 0.5], 1, 1.0), atol=1e-6)
        assert np.shape(dx) == np.shape(x)


# ---------------------------------------------------------------------------- shape reads

SHAPE_READS = '''
import numpy as np


def spelled(x, w):
    """
    - x: of shape (N, D)
    - w: of shape (D, M)
    """
    N, D = np.shape(x)
    h = x.dot(w) / len(x)
    return np.sum(h * h) / np.shape(w)[1] + x.ndim * np.sum(x) / (N * D)


def any_rank(x):
    n = len(x)
    return np.sum(x * x) / n


def loop_bounds(x, w):
    """
    - x: of shape (N, T)
    - w: of shape (N,)
    """
    s = w * 1.0
    xt = x.T
    for t in range(len(xt)):
        s = s * np.tanh(x[:, t])
    for t in range(np.shape(x)[1]):
        s = s + x[:, t]
    return np.sum(s)
'''


def test_len_np_shape_and_ndim_read_shapes_as_written():
    text = stagegen.generate(SHAPE_READS)
    assert "    h = x.dot(w) / len(x)  # (3)\n" in text
    assert "    dout_in = dout / np.shape(w)[1]  # (4)\n" in text
    rng = np.random.default_rng(3)
    gradient_check(
        SHAPE_READS, "spelled", [rng.standard_normal((3, 2)), rng.standard_normal((2, 4))]
    )
    gradient_check(
        SHAPE_READS, "spelled", [rng.standard_normal((1, 1)), rng.standard_normal((1, 1))]
    )


def test_len_and_np_shape_bound_loops_over_an_array():
    text = stagegen.generate(SHAPE_READS, "loop_bounds")
    assert "    for t in reversed(range(len(xt))):  # (3)\n" in text
    rng = np.random.default_rng(6)
    for n, t in ((3, 4), (1, 1)):
        gradient_check(
            SHAPE_READS, "loop_bounds", [rng.standard_normal((n, t)), rng.standard_normal(n)]
        )


@pytest.mark.parametrize("shape", [(3,), (1,), (2, 3), (2, 1, 4)])
def test_len_of_an_array_of_any_shape_needs_only_its_first_axis(shape):
    x = np.random.default_rng(4).standard_normal(shape)
    gradient_check(SHAPE_READS, "any_rank", [x])


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "    s = np.shape(x)\n    return np.sum(x)\n",
            "the whole shape is not a value here — read one dimension: `np.shape(x)[0]`, or "
            "unpack it: `N, D = ...`",
        ),
        (
            "    k = x.ndim\n    return np.sum(x) * k\n",
            "`x.ndim` needs to know how many dimensions `x` has",
        ),
    ],
)
def test_shape_reads_that_need_what_is_not_known_are_refused(body, message):
    source = f"import numpy as np\n\n\ndef f(x):\n{body}"
    with pytest.raises(stagegen.StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    assert message in str(caught.value)


PRODUCT_CALL = '''
import numpy as np


def gates(x, h, w):
    """
    - x: of shape (N, D)
    - h: of shape (N, H)
    - w: of shape (D, 4H)
    """
    return np.tanh(x.dot(w)) * np.sum(h)


def caller(x, h, w):
    """
    - x: of shape (N, D)
    - h: of shape (N, H)
    - w: of shape (D, {given})
    """
    a = gates(x, h, w)
    return np.sum(a * a)
'''


def test_a_callee_dimension_written_as_a_product_binds_to_the_callers_size():
    """`w: (D, 4H)` in the callee and the caller: the product matches (it used to say "would
    need 4*H to be 4*H"); a caller's (D, 3H) does not, located."""
    source = PRODUCT_CALL.replace("{given}", "4H")
    rng = np.random.default_rng(9)
    args = [rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((2, 8))]
    gradient_check(source, "caller", args)
    with pytest.raises(stagegen.StagegenError) as caught:
        stagegen.generate(PRODUCT_CALL.replace("{given}", "3H"), filename="m.py")
    assert "4*H does not match its size 3*H here" in str(caught.value), str(caught.value)
