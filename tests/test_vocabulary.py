"""The course's NumPy vocabulary (issue 16, part 2): each operation added to the one table of
operations, its generated backward checked against float64 central differences of the forward
as written, at random shapes (distinct sizes, and a batch of one: every dimension 1 in turn),
with a random upstream gradient and no floating-point error in the backward; then proven
(stagegen.verify: the 50-digit oracle, SymPy's meaning, central differences).

The conventions where an operation's derivative does not exist are pinned here, and the proof
and the fuzzer draw random points, which never meet them:
* min (like max): tied minima share the gradient equally;
* clip: at x == lo or x == hi the gradient passes (the ties of max and min go to x);
* std and np.linalg.norm at 0: the gradient is 0 (a subgradient; for std over one element it is
  the derivative, std being 0 there for every x);
* prod: the product of the other elements, exact where an element is 0 (no division by it).
"""

from __future__ import annotations

import re
import textwrap
import zlib

import numpy as np
import pytest

import stagegen
from stagegen.api import load_backward_module
from stagegen.errors import StagegenError
from stagegen.gates import NUMPY_ONLY
from stagegen.numeric import central_differences

POSITIVE = "(x * x + 0.5)"

# name -> (the forward's body, the expression returned); parameters are x: "N, D", w: "D",
# v: "N", t: "A, B, C" as each source names them. Every case returns a number or an array.
CASES = {
    "square": "np.square(x) * w",
    "reciprocal": f"np.reciprocal({POSITIVE})",
    "negative": "np.negative(x) * w",
    "exp2": "np.exp2(x)",
    "sign": "np.sign(x) * x",
    "arcsinh": "np.arcsinh(x)",
    "arccosh": f"np.arccosh({POSITIVE} + 1.0)",
    "arctanh": "np.arctanh(0.5 * np.tanh(x))",
    "logaddexp": "np.logaddexp(x, w)",
    "logaddexp2": "np.logaddexp2(w, x)",
    "rad2deg": "np.rad2deg(x) * np.degrees(x)",
    "deg2rad": "np.deg2rad(x) + np.radians(x * x)",
    "absolute": "np.absolute(x) * np.fabs(w)",
    "min": "np.min(x, axis=1)",
    "min:method-keepdims": "x.min(axis=0, keepdims=True) * x",
    "min:all": "x.min() * w",
    "var": "np.var(x, axis=0)",
    "var:keepdims": "(x - x.mean(axis=0)) / np.sqrt(np.var(x, axis=0, keepdims=True) + 1e-5)",
    "var:all": "x.var() * w",
    "std": "np.std(x, axis=1) * v",
    "std:method": "x.std(axis=0, keepdims=True) * x",
    "prod": "np.prod(x, axis=1)",
    "prod:method": "x.prod(axis=0) * w",
    "prod:all": "np.prod(x)",
    "norm": "np.linalg.norm(x)",
    "norm:axis": "np.linalg.norm(x, axis=1) * v",
    "norm:keepdims": "x / np.linalg.norm(x, axis=0, keepdims=True)",
    "clip": "np.clip(x, -0.5, 0.7) * w",
    "clip:method": "x.clip(-0.3, 0.4) + x.clip(0, None)",
    "clip:keywords": "np.clip(x, a_min=-0.4, a_max=0.6) + x.clip(min=0.1) * np.clip(x, None, 0.3)",
    "where": "np.where(x > 0, x * w, 0.1 * x)",
    "where:broadcast": "np.where(x > w, w, x * x)",
    "outer": "np.outer(v, w) * x",
    "expand_dims": "np.expand_dims(x, 1) * w",
    "newaxis": "x[:, np.newaxis, :] * w[np.newaxis, :]",
    "squeeze": "np.squeeze(x[:, None], axis=1) * w + x[None].squeeze(0)",
    "transpose:axes": "np.transpose(t, (2, 0, 1)) * t.transpose(2, 0, 1)",
    "transpose:method": "t.transpose(1, 0, 2) ** 2",
    "transpose:none": "x.transpose() * x.T",
    "astype:np": "x.astype(np.float64) + x.astype('float64')",
    "swapaxes": "np.swapaxes(t, 0, 2) * t.swapaxes(2, 0)",
    "ravel": "x.ravel() * np.ravel(x * w)",
    "flatten": "x.flatten() ** 2",
    "copy": "x.copy() * np.copy(x)",
    "astype": "x.astype(float) * w",
    "zeros": "np.zeros((N, D)) + np.ones(x.shape) * x + np.full((N, D), 0.5) * x",
    "zeros_like": "np.zeros_like(x) + np.ones_like(x) * x + np.full_like(x, 2.0) * x",
    "stack": "np.stack([x, x * w], axis=1)",
    "stack:default": "np.stack([v, v * v])",
    "concatenate": "np.concatenate([x, x * w, x], axis=0)",
    "concatenate:axis1": "np.concatenate((x, x * x), axis=1)",
    "hstack": "np.hstack([x, x * w])",
    "hstack:vectors": "np.hstack([w, w * w])",
    "vstack": "np.vstack([x, np.tanh(x)])",
    "vstack:vectors": "np.vstack([w, w * w])",
}

PARAMS = {"x": ("N", "D"), "w": ("D",), "v": ("N",), "t": ("A", "B", "C")}


def source_of(expr: str) -> str:
    names = [p for p in PARAMS if re.search(rf"\b{p}\b", expr)] or ["x"]
    signature = ", ".join(f'{p}: "{", ".join(PARAMS[p])}"' for p in names)
    setup = "    N, D = x.shape\n" if re.search(r"\b[ND]\b", expr) else ""
    return f"import numpy as np\n\n\ndef f({signature}):\n{setup}    out = {expr}\n    return out\n"


def sizes_to_try(rng) -> list[dict]:
    """Distinct sizes, then a batch of one (every dimension 1 in turn), then random ones."""
    names = ("N", "D", "A", "B", "C")
    out = [dict(zip(names, (2, 3, 4, 5, 2)))]
    for one in names:
        sizes = dict(zip(names, (3, 4, 2, 3, 2)))
        sizes[one] = 1
        out.append(sizes)
    out.append({n: int(rng.integers(1, 5)) for n in names})
    return out


def arguments(source: str, sizes: dict, rng) -> list:
    params = re.search(r"def f\((.*)\):", source).group(1)
    names = re.findall(r'(\w+): "', params)
    args = []
    for name in names:
        shape = tuple(sizes[d] for d in PARAMS[name])
        # away from 0, ties and the bounds of clip: each element drawn from a signed band
        args.append(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.15, 1.2, size=shape))
    return args


def check_against_differences(source: str, key: str) -> str:
    text = stagegen.generate(source, filename="case.py")
    namespace: dict = {}
    exec(compile(source, "case.py", "exec"), namespace)
    forward = namespace["f"]
    backward = load_backward_module(text)["f_backward"]
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    for sizes in sizes_to_try(rng):
        args = arguments(source, sizes, rng)
        out = forward(*[a.copy() for a in args])
        upstream = rng.normal(size=np.shape(out)) if np.shape(out) else float(rng.normal())
        with np.errstate(all="raise"):  # no floating-point error where the forward has none
            grads = backward(*[a.copy() for a in args], upstream)
        grads = grads if isinstance(grads, tuple) else (grads,)
        numeric = central_differences(
            forward, [a.copy() for a in args], list(range(len(args))), upstream
        )
        for k, (analytic, arg) in enumerate(zip(grads, args)):
            assert np.shape(analytic) == arg.shape, (key, sizes, text)
            want = np.asarray(numeric[k], dtype=float)
            scale = np.max(np.abs(want), initial=0.0) + np.max(np.abs(analytic), initial=0.0)
            # relative, with a floor for a gradient that is zero but for rounding (x / |x|)
            floor = 1e-4 * (1.0 + np.max(np.abs(upstream)))
            error = np.max(np.abs(analytic - want), initial=0.0) / max(scale, floor)
            assert error < 1e-6, (key, sizes, error, text)
    return text


@pytest.mark.parametrize("key", sorted(CASES))
def test_backward_matches_central_differences_at_random_shapes_and_a_batch_of_one(key):
    check_against_differences(source_of(CASES[key]), key)


# The proof is the slow part (a second or so each): one case per operation family.
PROVEN = (
    "square", "logaddexp", "logaddexp2", "rad2deg", "min:method-keepdims", "var:keepdims", "std", "prod",
    "norm:axis", "clip", "where:broadcast", "outer", "squeeze", "transpose:axes", "swapaxes",
    "ravel", "astype", "zeros_like", "stack", "concatenate", "vstack:vectors",
)  # fmt: skip


@pytest.mark.parametrize("key", PROVEN)
def test_the_proof_accepts_it(key):
    report = stagegen.verify(source_of(CASES[key]), filename="case.py")
    assert report.functions and all(r.points for r in report.functions), report


@pytest.mark.parametrize(
    "expr", ["np.var(x, axis=0, ddof=1)", "x.std(axis=1, ddof=1) * v", "np.std(x, ddof=2)"]
)
def test_var_and_std_with_a_ddof(expr):
    # (not at a batch of one: with one element fewer than ddof + 1 NumPy divides by 0 or less)
    source = source_of(expr)
    text = stagegen.generate(source, filename="case.py")
    assert "ddof=" in text and ("- 1)" in text or "- 2)" in text), text  # divided by N - ddof
    namespace: dict = {}
    exec(compile(source, "case.py", "exec"), namespace)
    backward = load_backward_module(text)["f_backward"]
    rng = np.random.default_rng(3)
    args = arguments(source, {"N": 3, "D": 4}, rng)
    out = namespace["f"](*args)
    upstream = rng.normal(size=np.shape(out)) if np.shape(out) else 1.3
    grads = backward(*[a.copy() for a in args], upstream)
    grads = grads if isinstance(grads, tuple) else (grads,)
    numeric = central_differences(namespace["f"], args, list(range(len(args))), upstream)
    for k, g in enumerate(grads):
        assert np.allclose(g, np.asarray(numeric[k], dtype=float), rtol=1e-6, atol=1e-8), text
    report = stagegen.verify(source, filename="case.py")
    assert report.functions and all(r.points for r in report.functions), report


def test_every_numpy_only_gate_is_a_case_and_means_numpys_function():
    import sympy

    assert set(NUMPY_ONLY) <= set(CASES)
    for key, gate in NUMPY_ONLY.items():
        args = {1: (0.3,), 2: (0.3, -0.7), 3: (0.3, -0.5, 0.7)}[gate.arity[0]]
        if key == "arccosh":
            args = (1.7,)
        meaning = gate.sympy(sympy, *[sympy.Rational(repr(a)) for a in args])
        assert float(meaning) == pytest.approx(getattr(np, gate.numpy)(*args), rel=1e-12), key


# ---------------------------------------------------------------------------- the readable forms


def backward_text(expr: str) -> str:
    return stagegen.generate(source_of(expr), filename="case.py")


def test_the_forms_read_as_a_course_solution_writes_them():
    assert "dx = 2 * x * dout" in backward_text("np.square(x)")
    assert "dv = dout.dot(w)" in backward_text("np.outer(v, w)")
    assert "dw = dout.T.dot(v)" in backward_text("np.outer(v, w)")
    var = backward_text("np.var(x, axis=0)")
    assert "dx = (2 * (x - x.mean(axis=0)) / N) * dout" in var, var
    var = backward_text("np.var(x, axis=1)")
    assert "dx = (2 * (x - x.mean(axis=1, keepdims=True)) / D) * dout[:, None]" in var, var
    minimum = backward_text("np.min(x, axis=1)")
    assert "x_is_min = x == x.min(axis=1, keepdims=True)  # (1)" in minimum, minimum
    assert "(x_is_min / x_is_min.sum(axis=1, keepdims=True))" in minimum, minimum
    joined = backward_text("np.concatenate([x, x * x], axis=1)")
    assert "dout[:, :D]" in joined and "dout[:, D:]" in joined, joined
    assert "dx = dout[0]" in backward_text("np.stack([x, x * x])")
    assert "dt = dout.transpose(1, 2, 0)" in backward_text("np.transpose(t, (2, 0, 1))")
    assert "np.expand_dims(dout, axis=1)" in backward_text("x[:, None].squeeze(axis=1) * 1.0")


# ---------------------------------------------------------------------------- the conventions


def run(expr: str, *args, upstream=None):
    text = backward_text(expr)
    backward = load_backward_module(text)["f_backward"]
    with np.errstate(all="raise"):
        return backward(*args) if upstream is None else backward(*args, upstream)


def test_prod_is_exact_where_elements_are_zero():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 0.5]])
    got = run("np.prod(x, axis=1)", x.copy(), upstream=np.ones(3))
    want = np.array([[6.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.75, -3.0]])
    assert np.array_equal(got, want)
    got_all = run("np.prod(x)", np.array([[2.0, 0.0], [3.0, 4.0]]))
    assert np.array_equal(got_all, np.array([[0.0, 24.0], [0.0, 0.0]]))


def test_std_over_one_element_and_norm_at_zero_have_gradient_zero():
    # std over an axis of one element is 0 for every x: its derivative is 0 (no 0 / 0)
    got = run("np.std(x, axis=0) * w", np.array([[0.3, -1.2]]), np.array([1.0, 2.0]))
    assert np.array_equal(got[0], np.zeros((1, 2)))
    # where every element is equal std has a kink; the convention is the subgradient 0
    assert np.array_equal(run("x.std()", np.full((2, 2), 0.7)), np.zeros((2, 2)))
    assert np.array_equal(run("np.linalg.norm(x)", np.zeros((2, 3))), np.zeros((2, 3)))
    rows = np.array([[0.0, 0.0], [3.0, 4.0]])
    got = run("np.linalg.norm(x, axis=1)", rows, upstream=np.ones(2))
    assert np.allclose(got, [[0.0, 0.0], [0.6, 0.8]])


def test_tied_minima_share_the_gradient_as_tied_maxima_do():
    x = np.array([[1.0, 1.0, 2.0], [0.5, 3.0, 0.5]])
    got = run("np.min(x, axis=1)", x, upstream=np.array([1.0, 2.0]))
    assert np.array_equal(got, [[0.5, 0.5, 0.0], [1.0, 0.0, 1.0]])
    assert np.array_equal(got, run("np.max(-x, axis=1)", x, upstream=np.array([-1.0, -2.0])))


def test_clip_passes_the_gradient_at_its_bounds_and_not_beyond():
    x = np.array([[-1.0, -0.5, 0.0], [0.7, 0.9, 0.2]])
    got = run("np.clip(x, -0.5, 0.7)", x, upstream=np.ones((2, 3)))
    assert np.array_equal(got, [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])


def test_where_sends_the_gradient_to_the_chosen_side_only():
    x = np.array([[1.0, -2.0], [-0.5, 3.0]])
    dx, dw = run("np.where(x > 0, x, w)", x, np.array([10.0, 20.0]), upstream=np.ones((2, 2)))
    assert np.array_equal(dx, [[1.0, 0.0], [0.0, 1.0]])
    assert np.array_equal(dw, [1.0, 1.0])


def test_a_returned_slice_of_the_upstream_is_a_copy():
    # dx = dout[:, :D] then dx += ...: must not write into the caller's upstream
    upstream = np.ones((2, 6))
    kept = upstream.copy()
    x = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    dx = run("np.hstack([x, x])", x, upstream=upstream)
    assert np.array_equal(upstream, kept) and np.array_equal(dx, 2 * np.ones((2, 3)))


# ---------------------------------------------------------------------------- refusals

REFUSED = {
    "x.squeeze()": ("needs its axis", "x.squeeze(axis=1)"),
    "np.concatenate([x, v[:, None]], axis=1)": ("sum of different dimensions", "same dimension"),
    "np.linalg.norm(x, 1)": ("2-norm", "ord"),
    "np.linalg.norm(x, axis=(0, 1))": ("matrix norm", "one axis"),
    "np.prod(x, axis=(0, 1))": ("several axes", "reshape"),
    "np.var(x, ddof=0.5)": ("ddof", "ddof=1"),
    "np.clip(x, w, 1.0)": ("numbers written in the code", "np.maximum"),
    "x.astype(int)": ("astype(float)", "drop the conversion"),
    "np.where(x, x, 0.0)": ("must be a mask", "x > 0"),
    "np.outer(x, w)": ("two vectors", "reshape"),
    "np.stack([x, w])": ("one shape", "same shape"),
    "np.clip(x, 1.0, -1.0)": ("lower bound is above", "smaller bound first"),
    "x.transpose(0, 0)": ("permutation", "each axis once"),
    "np.squeeze(x, axis=1)": ("size 1", "size 1"),
    "x.sum().clip(0, 1)": ("of a number", "np.clip"),
}


@pytest.mark.parametrize("expr", sorted(REFUSED))
def test_what_is_not_supported_is_refused_where_it_is_written(expr):
    what, hint = REFUSED[expr]
    source = source_of(expr)
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, filename="case.py")
    message = str(caught.value)
    assert what in message and hint in message, message
    line = next(k for k, text in enumerate(source.splitlines(), 1) if "out = " in text)
    assert caught.value.line == line, message


def test_the_supported_list_names_the_new_operations():
    from stagegen.arrays.parse import SUPPORTED

    for name in ("np.var", "np.linalg.norm", "np.clip", "np.where", "np.stack", "np.zeros_like"):
        assert name in SUPPORTED
    text = textwrap.dedent("""\
        import numpy as np


        def f(x: "N, D"):
            return np.cumsum(x)
        """)
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(text)
    assert "np.cumsum" in str(caught.value) and "np.var" in str(caught.value)


# ---------------------------------------------------------------------------- the teaching aid


def test_explain_says_what_each_new_backward_does_and_agrees_at_a_point():
    from stagegen.explanation import explain_source

    expr = (
        "np.sum(np.prod(x, axis=1)) + np.sum(np.concatenate([x, x * x], axis=0))"
        " + np.sum(np.stack([w, w * w])) + np.sum(np.std(x, axis=0))"
        " + np.sum(np.squeeze(x[:, None], axis=1) ** 2)"
    )
    source = source_of(expr)
    words = str(explain_source(source, "f", filename="case.py"))
    assert "the product of the other elements along axis 1" in words, words
    assert "exact where an element is 0" in words
    assert "this part's slice of the joined gradient" in words
    assert "this part's slice of the stacked gradient" in words
    assert "puts back the axis squeeze took away" in words
    assert "a subgradient of the kink, instead of 0 / 0" in words
    assert "dout_in (N, D): the gradient inside stage" in words, words  # shapes known
    at_point = str(explain_source(source, "f", {"N": 2, "D": 3}, filename="case.py"))
    assert at_point.count("✓ agree") == 2 and "✗" not in at_point, at_point
