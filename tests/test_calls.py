"""Calls to the module's own functions: one backward per callee, which the caller's backward
calls; several outputs; refusals located. Every generated gradient here is compared with
central differences of the forward as written (not only what the proof let through)."""

from __future__ import annotations

import math
import os
import random
import textwrap
from pathlib import Path

import pytest

import stagegen
from stagegen import StagegenError
from stagegen.api import load_backward_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "calls"


def module(source: str) -> str:
    return textwrap.dedent(source).lstrip()


def forward_namespace(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<forward>", "exec"), namespace)
    return namespace


def central(f, args, k, h=1e-6):
    up, down = list(args), list(args)
    up[k] += h
    down[k] -= h
    return (f(*up) - f(*down)) / (2 * h)


def check_gradients(source, name, points, weights=None, tol=1e-5):
    """The generated ``name_backward`` against central differences of ``name`` as written,
    at each point (with several outputs, of their weighted sum)."""
    text = stagegen.generate(source)
    generated = load_backward_module(text)
    forward = forward_namespace(source)[name]
    backward = generated[f"{name}_backward"]
    for point in points:
        if weights is None:
            f = forward
            result = backward(*point)
        else:

            def f(*a):
                return sum(w * o for w, o in zip(weights, forward(*a)))

            result = backward(*point, *weights)
        got = result if isinstance(result, tuple) else (result,)
        want = [central(f, point, k) for k in range(len(point))]
        for g, w in zip(got, want):
            assert math.isclose(g, w, rel_tol=tol, abs_tol=tol), (point, got, want)
    return text


SIGMOID = """
import math


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def f(w, x, b):
    z = w * x + b
    p = sigmoid(z)
    return -math.log(p)
"""


def test_the_callers_backward_calls_the_callees():
    text = check_gradients(module(SIGMOID), "f", [(0.5, -1.2, 0.3), (-2.0, 0.7, 1.1)])
    assert "def sigmoid_backward(z, dout=1.0):" in text
    assert "dz = sigmoid_backward(z, dp)  # (2)" in text
    # The replay calls the forward helper: the module carries it, so it runs alone.
    assert "def sigmoid(z):" in text and "p = sigmoid(z)  # (2)" in text


def test_a_callee_called_twice_with_a_default_and_through_three_levels():
    source = (EXAMPLES / "layers.py").read_text()
    text = check_gradients(source, "unit", [(0.3, -0.8), (1.5, 0.2), (-0.4, -1.3)])
    assert text.count("def square_backward(") == 1
    body = text.split("def unit_backward")[1]
    assert "dh, dk = norm2_backward(h, k, dn)" in body
    assert "scaled_tanh_backward(x, 2.0, dh)" in body


def test_a_callee_in_a_loop():
    source = module("""
        import math


        def cell(h, x, w):
            return math.tanh(w * h + x)


        def run(h, x, w, n):
            for i in range(n):
                h = cell(h, x, w)
            return h
        """)
    text = stagegen.generate(source)
    generated = load_backward_module(text)
    forward = forward_namespace(source)["run"]
    for point in [(0.1, 0.4, 0.9), (-0.5, 0.2, -1.1)]:
        got = generated["run_backward"](*point, 3)
        for k in range(3):
            want = central(lambda *a: forward(*a, 3), point, k)
            assert math.isclose(got[k], want, rel_tol=1e-5, abs_tol=1e-7)
    assert "cell_backward(" in text


def test_several_outputs_each_with_its_upstream_and_any_subset():
    source = module("""
        import math


        def pair(a, b):
            s = a * b
            t = a + math.sin(b)
            return s, t


        def g(u, v):
            p, q = pair(u, v)
            r = p * q
            return r, p
        """)
    points = [(0.3, -0.7), (1.2, 0.4)]
    for weights in [(1.0, 0.0), (0.0, 1.0), (0.5, -2.0)]:
        text = check_gradients(source, "g", points, weights=weights)
    assert "def g_backward(u, v, dr=0.0, dp=0.0):" in text
    assert "p, q = pair(u, v)" in text
    assert "du, dv = pair_backward(u, v, dp, dq)" in text
    # A caller may leave an upstream out: it counts as zero.
    generated = load_backward_module(text)
    assert generated["g_backward"](0.3, -0.7, dr=1.0) == generated["g_backward"](
        0.3, -0.7, 1.0, 0.0
    )


def test_a_call_whose_parts_are_not_all_read():
    source = module("""
        def pair(a, b):
            s = a * b
            t = a + b
            return s, t


        def first(u, v):
            p, q = pair(u, v)
            return p * 3.0
        """)
    text = check_gradients(source, "first", [(0.3, -0.7)])
    assert "pair_backward(u, v, dp, 0.0)" in text


def random_composition(rng: random.Random) -> str:
    """A module of random callees (one or two outputs, some with a default, some calling an
    earlier one) and a caller `top(x, y)` that calls them, in straight-line code, in a loop
    and in a branch."""
    unary = ["math.tanh({})", "math.sin({})", "({}) * ({})", "math.exp(-({}) * ({}))"]
    lines = ["import math", "", ""]
    helpers: list[tuple[str, bool]] = []
    for k in range(rng.randint(1, 3)):
        two = rng.random() < 0.4
        default = rng.random() < 0.3
        e1 = rng.choice(unary).format("a", "b")
        e2 = rng.choice(unary).format("b", "a")
        lines.append(f"def h{k}(a, b{'=0.5' if default else ''}):")
        if helpers and rng.random() < 0.5:  # a callee calling an earlier one
            inner, inner_two = rng.choice(helpers)
            if inner_two:
                lines.append(f"    u, _v = {inner}(a, b)")
            else:
                lines.append(f"    u = {inner}(a, b)")
            lines.append(f"    s = {e1} + u")
        else:
            lines.append(f"    s = {e1} + a")
        if two:
            lines += [f"    t = {e2} - b", "    return s, t", "", ""]
        else:
            lines += ["    return s * b", "", ""]
        helpers.append((f"h{k}", two))
    lines.append("def top(x, y):")
    live = ["x", "y"]
    for k in range(rng.randint(1, 4)):
        name, two = rng.choice(helpers)
        a, b = rng.choice(live), rng.choice(live)
        shape = rng.random()
        if shape < 0.2 and two:  # a call in a loop, binding again both names it reads
            lines += [
                f"    c{k}, e{k} = {a}, {b}",
                "    for i in range(2):",
                f"        c{k}, e{k} = {name}(c{k}, e{k})",
            ]
            live += [f"c{k}", f"e{k}"]
        elif shape < 0.2:  # a call in a loop, carrying its result
            lines += [
                f"    c{k} = {a}",
                "    for i in range(2):",
                f"        c{k} = {name}(c{k}, {b})",
            ]
            live.append(f"c{k}")
        elif shape < 0.35 and not two:  # a call in each arm of a branch
            lines += [
                f"    if {a} > {b}:",
                f"        c{k} = {name}({a}, {b})",
                "    else:",
                f"        c{k} = {name}({b}, {a})",
            ]
            live.append(f"c{k}")
        elif two:
            lines.append(f"    p{k}, q{k} = {name}({a}, {b})")
            live += [f"p{k}", f"q{k}"]
        else:
            lines.append(f"    p{k} = {name}({a}, {b})")
            live.append(f"p{k}")
    lines.append(f"    return {' + '.join(live[-2:])}")
    return "\n".join(lines) + "\n"


def test_random_compositions_against_central_differences():
    """Random callees composed by a random caller: the generated gradient, straight from
    generate() (not only what the proof let through), against central differences. 60 by
    default; STAGEGEN_FUZZ_EXAMPLES=N for more."""
    rng = random.Random(20261201)
    count = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES", "60"))
    for trial in range(count):
        source = random_composition(rng)
        points = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(2)]
        points = [(x, y) for x, y in points if abs(x - y) > 1e-3]  # away from a branch's edge
        try:
            check_gradients(source, "top", points, tol=1e-4)
        except AssertionError:
            print(source)
            raise


@pytest.mark.parametrize(
    "source, line, col, words",
    [
        (
            "def f(x):\n    return g(x)\n\n\ndef g(x):\n    return f(x)\n",
            6,
            12,
            "recursion is not supported (f → g → f)",
        ),
        ("def f(x):\n    return 2.0 * f(x)\n", 2, 18, "recursion"),
        (
            "def g(x):\n    return x * x\n\n\ndef f(x):\n    return 2.0 * g(x)\n",
            6,
            18,
            "inside an expression",
        ),
        (
            "def g(x):\n    return x, 2.0 * x\n\n\ndef f(x):\n    y = g(x)\n    return y\n",
            6,
            9,
            "returns 2 values",
        ),
        ("def g(x):\n    return x * x\n\n\ndef f(x):\n    return g(x, x)\n", 6, 12, "takes 1"),
        ("def f(x):\n    return unknown(x)\n", 2, 12, "unknown function `unknown`"),
    ],
)
def test_refusals_are_located(source, line, col, words):
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    err = caught.value
    assert words in str(err)
    assert (err.line, err.col) == (line, col), str(err)


def test_the_proof_runs_the_callees_as_written():
    report = stagegen.verify(module(SIGMOID))
    names = [f.name for f in report.functions]
    assert sorted(names) == ["f", "sigmoid"]
    assert all(f.points for f in report.functions)


SOFTPLUS = (EXAMPLES / "softplus.py").read_text()


def test_a_hand_written_backward_is_proven_and_used_as_written():
    source = module(SOFTPLUS)
    report = stagegen.verify(source)
    assert "softplus_backward (hand-written)" in [f.name for f in report.functions]
    text = check_gradients(
        source, "smooth_hinge", [(0.4, 2.0, 1.0), (-1.5, 0.3, -1.0), (30.0, -40.0, 1.0)]
    )
    assert text.count("def softplus_backward(") == 1
    assert "sig = e / (1.0 + e)" in text  # the user's own code, as written
    assert "dmargin = softplus_backward(margin, dout)" in text
    # The generated module runs alone: far out, where a naive softplus overflows, the
    # hand-written backward is what keeps the gradient finite.
    generated = load_backward_module(text)
    got = generated["smooth_hinge_backward"](-800.0, 1.0, 1.0)
    assert got == (pytest.approx(-1.0), pytest.approx(800.0), pytest.approx(800.0))


def test_a_wrong_hand_written_backward_is_the_users_error_located_on_it():
    wrong = module(SOFTPLUS).replace("return sig * dout", "return (1.0 - sig) * dout")
    with pytest.raises(StagegenError) as caught:
        stagegen.verify(wrong, filename="m.py")
    err = caught.value
    assert not isinstance(err, stagegen.VerificationError)  # exit 2: the user's bug
    assert "the hand-written `softplus_backward` is wrong" in str(err)
    lines = wrong.split("\n")
    assert lines[err.line - 1].startswith("def softplus_backward(")


def test_a_hand_written_backward_with_the_wrong_signature_is_refused():
    wrong = module(SOFTPLUS).replace(
        "def softplus_backward(x, dout=1.0):", "def softplus_backward(x):"
    )
    wrong = wrong.replace("return sig * dout", "return sig")
    with pytest.raises(StagegenError) as caught:
        stagegen.verify(wrong, filename="m.py")
    assert "cannot be called as a backward" in str(caught.value)


# ---------------------------------------------------------------------------- arrays

np = pytest.importorskip("numpy")

LAYERS = (EXAMPLES / "affine_relu.py").read_text()


def array_central(f, arrays, k, h=1e-6):
    grad = np.zeros_like(arrays[k])
    for index in np.ndindex(arrays[k].shape):
        up = [a.copy() for a in arrays]
        down = [a.copy() for a in arrays]
        up[k][index] += h
        down[k][index] -= h
        grad[index] = (f(*up) - f(*down)) / (2 * h)
    return grad


@pytest.mark.parametrize("n", [1, 3])
def test_the_course_layers_composed_from_their_parts(n):
    text = stagegen.generate(module(LAYERS))
    body = text.split("def affine_relu_backward")[1].split("\ndef ")[0]
    assert "da = relu_backward(a, dout)" in body
    assert "dx, dw, db = affine_backward(x, w, b, da)" in body
    generated = load_backward_module(text)
    forward = forward_namespace(module(LAYERS))
    rng = np.random.default_rng(n)
    x, w1, b1 = rng.normal(size=(n, 4)), rng.normal(size=(4, 5)), rng.normal(size=5)
    w2, b2 = rng.normal(size=(5, 3)), rng.normal(size=3)
    arrays = [x, w1, b1, w2, b2]
    dloss, dscores = 0.7, rng.normal(size=(n, 3))

    def weighted(*a):
        loss, scores = forward["two_layer_net"](*a)
        return dloss * loss + np.sum(dscores * scores)

    got = generated["two_layer_net_backward"](*arrays, dloss, dscores)
    for k in range(5):
        np.testing.assert_allclose(got[k], array_central(weighted, arrays, k), rtol=1e-5, atol=1e-6)
    # dscores is the caller's array: the backward adds to a copy of it.
    before = dscores.copy()
    generated["two_layer_net_backward"](*arrays, dloss, dscores)
    np.testing.assert_array_equal(dscores, before)


def test_array_calls_are_proven():
    report = stagegen.verify(module(LAYERS))
    assert {f.name for f in report.functions} == {
        "affine_forward",
        "relu_forward",
        "affine_relu_forward",
        "two_layer_net",
    }
    assert all(f.points for f in report.functions)


def test_a_hand_written_course_backward_is_used_for_arrays():
    source = module(LAYERS).replace(
        "def affine_relu_forward",
        "def relu_backward(x, dout):\n    dx = dout * (x > 0)\n    return dx\n\n\n"
        "def affine_relu_forward",
    )
    text = stagegen.generate(source)
    assert "dx = dout * (x > 0)" in text  # the student's own relu_backward, as written
    stagegen.verify(source)
    wrong = source.replace("dx = dout * (x > 0)", "dx = dout * (x >= 0) + 0.5 * dout * (x < 0)")
    with pytest.raises(StagegenError) as caught:
        stagegen.verify(wrong, filename="layers.py")
    assert "the hand-written `relu_backward` is wrong" in str(caught.value)


def test_a_call_whose_argument_shapes_disagree_is_refused():
    source = module(LAYERS) + (
        '\n\ndef bad(x: "N, D", w: "M, D", b: "M"):\n    return affine_forward(x, w, b)\n'
    )
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, function="bad", filename="m.py")
    assert "`affine_forward` takes `w` of shape (D, M)" in str(caught.value)


def test_explain_and_the_decorator_refuse_calls_located(tmp_path, monkeypatch):
    with pytest.raises(StagegenError) as caught:
        stagegen.explain(module(SIGMOID), "f", w=0.5, x=1.0, b=0.1)
    assert "does not follow the call to `sigmoid`" in str(caught.value)
    assert caught.value.line == module(SIGMOID).split("\n").index("    p = sigmoid(z)") + 1
    path = tmp_path / "decorated.py"
    path.write_text(
        "from stagegen import staged\n\n\ndef sq(x):\n    return x * x\n\n\n"
        "@staged(verify=False)\ndef f(x, y):\n    s = sq(x)\n    return s * y\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StagegenError) as caught:
        __import__("decorated")
    assert "@staged does not follow calls to your own functions (`sq`)" in str(caught.value)
    assert (caught.value.line, caught.value.col) == (10, 9)


def test_a_function_imported_from_a_module_beside_it(tmp_path):
    """`from helpers import sigmoid`, with helpers.py beside model.py: the call is followed, and
    the generated module carries what it needs (it runs without helpers_backward.py)."""
    from stagegen.cli import main

    (tmp_path / "helpers.py").write_text(
        "import math\n\n\ndef sigmoid(z):\n    return 1.0 / (1.0 + math.exp(-z))\n"
    )
    (tmp_path / "model.py").write_text(
        "import math\n\nfrom helpers import sigmoid\n\n\ndef loss(w, x):\n"
        "    p = sigmoid(w * x)\n    return -math.log(p)\n"
    )
    assert main([str(tmp_path / "model.py"), "-q"]) == 0
    text = (tmp_path / "model_backward.py").read_text()
    assert "def sigmoid_backward(z, dout=1.0):" in text
    assert "dw_x = sigmoid_backward(w * x, dp)" in text or "sigmoid_backward(w * x, dp)" in text
    generated = load_backward_module(text)
    forward = forward_namespace((tmp_path / "helpers.py").read_text())["sigmoid"]

    def loss(w, x):
        return -math.log(forward(w * x))

    got = generated["loss_backward"](0.3, -1.2)
    assert got == pytest.approx((central(loss, (0.3, -1.2), 0), central(loss, (0.3, -1.2), 1)))


def test_the_course_forward_passes_returning_out_and_cache():
    """`return out, cache` as the course writes it: the cache (a tuple of names, or a name
    called cache) is saved values, with no upstream gradient; callers unpack it and pass it on."""
    source = (EXAMPLES / "layer_utils.py").read_text()
    text = stagegen.generate(source)
    assert "def affine_backward(x, w, b, dout=1.0):" in text
    assert "def relu_backward(x, dout=1.0):" in text
    assert "a, _ = affine_forward(x, w, b)  # (1)" in text
    assert "da = relu_backward(a, dout)  # (2)" in text
    report = stagegen.verify(source)
    assert all(f.points for f in report.functions)
    generated = load_backward_module(text)
    forward = forward_namespace(source)
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    upstream = rng.normal(size=(2, 4))

    def weighted(*a):
        out, cache = forward["affine_relu_forward"](*a)
        assert cache[0][0] is a[0]  # the cache holds what the course's backward would read
        return np.sum(upstream * out)

    got = generated["affine_relu_backward"](x, w, b, upstream)
    for k in range(3):
        np.testing.assert_allclose(got[k], array_central(weighted, [x, w, b], k), atol=1e-6)


@pytest.mark.parametrize(
    "body, words",
    [
        ("    cache = (x, x)\n    return cache * 2.0\n", "holds saved values"),
        ("    cache = (x, 2.0 * x)\n    return x, cache\n", "holds names only"),
        ("    return (x,), (x,)\n", "every returned value is a tuple of saved values"),
    ],
)
def test_saved_values_are_only_returned(body, words):
    with pytest.raises(StagegenError) as caught:
        stagegen.generate("def f(x):\n" + body, filename="m.py")
    assert words in str(caught.value)


def test_wrt_narrows_the_caller_only():
    text = stagegen.generate(module(SIGMOID), wrt="w")
    generated = load_backward_module(text)
    assert generated["sigmoid_backward"](0.3) == pytest.approx(
        1 / (1 + math.exp(-0.3)) * (1 - 1 / (1 + math.exp(-0.3)))
    )
    assert "return dw\n" in text.split("def f_backward")[1]


ARRAY_CALLEES = """
import numpy as np


def lin(x: "N, D", w: "D, M", b: "M"):
    return x.dot(w) + b


def act(h: "N, M"):
    return {act}


def pair(a: "N, M", c: "N, M"):
    s = a * c
    t = a + np.sin(c)
    return s, t


def rows(h: "N, M"):
    return np.sum(h * h, axis=1)
"""

ACTIVATIONS = ["np.tanh(h)", "np.maximum(0, h)", "1.0 / (1.0 + np.exp(-h))", "h * h"]


def random_array_composition(rng: random.Random) -> str:
    lines = [ARRAY_CALLEES.format(act=rng.choice(ACTIVATIONS)).strip(), "", ""]
    lines.append('def top(x: "N, D", w: "D, M", b: "M", v: "N, M"):')
    lines.append("    h0 = lin(x, w, b)")
    live = ["h0", "v"]
    for k in range(rng.randint(1, 4)):
        kind = rng.choice(["act", "pair", "mix"])
        a, c = rng.choice(live), rng.choice(live)
        if kind == "act":
            lines.append(f"    a{k} = act({a})")
            live.append(f"a{k}")
        elif kind == "pair":
            lines.append(f"    s{k}, t{k} = pair({a}, {c})")
            live += [f"s{k}", f"t{k}"]
        else:
            lines.append(f"    m{k} = {a} * 0.5 - {c}")
            live.append(f"m{k}")
    last = live[-1]
    if rng.random() < 0.5:
        lines += [f"    r = rows({last})", "    return np.sum(r)"]
    else:
        lines.append(f"    return np.sum({last} * {live[-2]})")
    return "\n".join(lines) + "\n"


def test_random_array_compositions_against_central_differences():
    """Random array callees composed by a random caller (annotated shapes, one or two outputs):
    the generated gradients against central differences, at a batch of one and of three. 20
    by default; STAGEGEN_FUZZ_EXAMPLES=N for more."""
    rng = random.Random(7)
    count = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES", "20"))
    for trial in range(count):
        source = random_array_composition(rng)
        try:
            generated = load_backward_module(stagegen.generate(source))
        except StagegenError:
            print(source)
            raise
        forward = forward_namespace(source)["top"]
        n = 1 if trial % 2 else 3
        nrng = np.random.default_rng(trial)
        arrays = [
            nrng.normal(size=(n, 3)),
            nrng.normal(size=(3, 4)),
            nrng.normal(size=4),
            nrng.normal(size=(n, 4)),
        ]
        got = generated["top_backward"](*arrays)
        for k in range(4):
            want = array_central(forward, arrays, k)
            np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-5, err_msg=source)


def test_a_call_in_a_loop_binding_again_the_names_it_reads():
    """`a, b = pair(a, b)` in a loop: the call's backward reads the gradients of the new a and
    b and gives those of the old ones (found by the proof: they were added, then zeroed)."""
    source = module("""
        import math


        def pair(a, b):
            s = a * b
            t = a + math.sin(b)
            return s, t


        def looped(a, b):
            for i in range(3):
                a, b = pair(a, b)
            return a + b
        """)
    text = check_gradients(source, "looped", [(-0.6, 1.4), (0.3, 0.2)])
    assert "da, db = pair_backward(a, b, da, db)  # (2)" in text
    stagegen.verify(source)


def test_a_trip_count_passed_to_a_callee_stays_an_integer():
    source = module("""
        import math


        def steps(x, n):
            y = x
            for i in range(n):
                y = math.sin(y) + x
            return y


        def outer(x, n):
            z = steps(x, n)
            return z * 2.0
        """)
    text = stagegen.generate(source)
    assert "def outer_backward(x, n, dout=1.0):" in text
    assert "x = float(x)" in text.split("def outer_backward")[1]  # n stays an int
    generated = load_backward_module(text)
    forward = forward_namespace(source)["outer"]
    got = generated["outer_backward"](0.4, 3)
    assert got == pytest.approx(central(lambda x: forward(x, 3), (0.4,), 0), rel=1e-6)


def test_the_replay_saves_before_a_call_binds_again_and_after_it_binds_anew():
    source = module("""
        import math


        def pair(a, b):
            s = a * b
            t = a + math.sin(b)
            return s, t


        def looped(a, b):
            for i in range(3):
                a, b = pair(a, b)
            return a + b


        def local(x, y):
            acc = 0.0
            for i in range(3):
                p, q = pair(x, y)
                acc = acc + p * q
                x = x + 0.1 * q
            return acc
        """)
    text = check_gradients(source, "local", [(0.2, -0.7), (1.1, 0.4)])
    replay = text.split("def looped_backward")[1].split("# backprop")[0]
    assert "a_saved.append(a)\n        b_saved.append(b)\n        a, b = pair(a, b)" in replay
    replay = text.split("def local_backward")[1].split("# backprop")[0]
    assert (
        "p, q = pair(x, y)  # (3)\n        p_saved.append(p)\n        q_saved.append(q)" in replay
    )
    stagegen.verify(source)


def test_a_wrong_straight_line_hand_written_backward_is_located_on_its_wrong_line(tmp_path):
    """Grading reads it line by line: the error points at the line that is wrong, in the gates'
    terms, with the proof's point; the CLI exits 2 and writes nothing."""
    from stagegen.cli import main

    source = module("""
        import math


        def sig(z):
            return 1.0 / (1.0 + math.exp(-z))


        def sig_backward(z, dout=1.0):
            s = 1.0 / (1.0 + math.exp(-z))
            dz = s * dout  # wrong: the sigmoid's local gradient is (1 - s) * s
            return dz


        def f(x, y):
            p = sig(x * y)
            return p * p
        """)
    wrong_line = (
        source.split("\n").index(
            "    dz = s * dout  # wrong: the sigmoid's local gradient is (1 - s) * s"
        )
        + 1
    )
    with pytest.raises(StagegenError) as caught:
        stagegen.verify(source, filename="m.py")
    err = caught.value
    assert (err.line, err.col) == (wrong_line, 5)
    assert "missing the factor" in err.message and "the proof:" in err.message
    path = tmp_path / "m.py"
    path.write_text(source)
    assert main([str(path), "-q"]) == 2
    assert not (tmp_path / "m_backward.py").exists()


def test_a_copied_forward_keeps_a_docstring_over_several_lines():
    """A replayed callee is copied into the generated module; its docstring's lines are text,
    not statements to format one at a time (a `;` in one crashed the formatter)."""
    source = (
        'import numpy as np\n\n\ndef layer(x: "N, D"):\n    """\n    Twice x; and a cache.\n'
        '    """\n    out = 2 * x\n    cache = x\n    return out, cache\n\n\n'
        'def loss(x: "N, D"):\n    h, cache = layer(x)\n    return np.sum(h * h)\n'
    )
    text = stagegen.generate(source)
    assert "    Twice x; and a cache.\n" in text
    x = np.arange(6.0).reshape(2, 3)
    assert np.allclose(load_backward_module(text)["loss_backward"](x), 8 * x)
