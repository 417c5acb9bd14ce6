"""Writes into arrays: ``a[index] = value`` and ``a[index] += value`` in array code.

A write is read as a new value of the array (the array before it, with the value at the
index); its backward zeroes the gradient where the value went and gives the value the gradient
at those positions. Each form below is generated and checked against central differences of
the forward as written, at distinct sizes and at a batch of one; the refusals are checked by
their exact located messages (a write another name, the caller or a callee would see; a write
in a loop; a value whose gradient NumPy's "last write wins" would make inexact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import stagegen
import test_infer
from stagegen.errors import StagegenError

FORMS = '''
import numpy as np


def relu(x):
    """
    - x: Inputs, of any shape
    """
    out = x.copy()
    out[out < 0] = 0
    return out


def masked_by_another(x):
    """
    - x: of shape (N, D)
    """
    out = x * 2.0
    out[x < 0] = 0.5
    return np.sum(out * out)


def rows_and_labels(x, y, w):
    """
    - x: of shape (N, C)
    - y: labels of shape (N,)
    - w: of shape (N,)
    """
    N = x.shape[0]
    s = x * 1.0
    s[np.arange(N), y] = w * 3.0
    return np.sum(s * s)


def slices(x, w):
    """
    - x: of shape (N, 2D)
    - w: of shape (D,)
    """
    D = w.shape[0]
    h = np.tanh(x)
    h[:, :D] = w
    h[:, D : 2 * D] += 2.0 * w
    return np.sum(h * h)


def a_number_at_a_mask(x, c):
    """
    - x: of shape (N, D)
    - c: a number
    """
    out = np.exp(x)
    out[out > 2.0] = c
    return np.sum(out * x)


def labels_that_repeat(x, y):
    """
    - x: of shape (V, D)
    - y: labels of shape (N,)
    """
    s = x * x
    s[y] = 0.0
    return np.sum(s)


def into_zeros(x, w):
    """
    - x: of shape (N, D)
    - w: of shape (D,)
    """
    N, D = x.shape
    h = np.zeros((N, 2 * D))
    h[:, :D] = x
    h[:, D : 2 * D] = np.tanh(x) * w
    h *= 3.0
    return np.sum(np.maximum(0, h) ** 2)


def the_old_value_is_read_below(x, y):
    """
    - x: of shape (N, C)
    - y: labels of shape (N,)
    """
    N = x.shape[0]
    e = np.exp(x)
    e[np.arange(N), y] -= 1.0
    e[np.arange(N), y] *= x[np.arange(N), y]
    return np.sum(e * x)
'''

rng = np.random.default_rng(5)


def arguments(name: str, sizes: dict) -> list:
    N, D, C, V = sizes["N"], sizes["D"], sizes["C"], sizes["V"]
    normal = rng.standard_normal
    return {
        "relu": lambda: [normal((N, D, 2))],
        "masked_by_another": lambda: [normal((N, D))],
        "rows_and_labels": lambda: [normal((N, C)), rng.integers(0, C, N), normal(N)],
        "slices": lambda: [normal((N, 2 * D)), normal(D)],
        "a_number_at_a_mask": lambda: [normal((N, D)), 0.7],
        "labels_that_repeat": lambda: [normal((V, D)), rng.integers(0, V, N)],
        "into_zeros": lambda: [normal((N, D)), normal(D)],
        "the_old_value_is_read_below": lambda: [normal((N, C)), rng.integers(0, C, N)],
    }[name]()


NAMES = [
    "relu",
    "masked_by_another",
    "rows_and_labels",
    "slices",
    "a_number_at_a_mask",
    "labels_that_repeat",
    "into_zeros",
    "the_old_value_is_read_below",
]


def gradient_check(name: str, args: list) -> None:
    """Every gradient equals central differences of sum(forward * upstream), at a random
    upstream of the output's shape; labels stay integers."""
    forward, backward = test_infer.generated(FORMS)
    f = forward[name]
    upstream = rng.standard_normal(np.shape(f(*args)))
    grads = backward[f"{name}_backward"](*args, upstream)
    grads = grads if isinstance(grads, tuple) else (grads,)
    floats = [k for k, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]
    assert len(grads) == len(floats)
    for k, g in zip(floats, grads):
        x = np.asarray(args[k], dtype=float)
        expected = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            for sign in (1, -1):
                moved = x.copy()
                moved[index] += sign * 1e-6
                value = f(*args[:k], moved if moved.shape else float(moved), *args[k + 1 :])
                expected[index] += sign * np.sum(value * upstream) / 2e-6
        assert np.shape(g) == np.shape(args[k]), (k, np.shape(g))
        assert np.allclose(g, expected, atol=1e-6), (k, g, expected)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sizes", [dict(N=3, D=2, C=4, V=2), dict(N=1, D=1, C=1, V=1)])
def test_each_form_of_write_against_central_differences(name, sizes):
    args = arguments(name, sizes)
    if name == "labels_that_repeat" and sizes["N"] > 1:
        args[1][:2] = 1  # a row named twice
    gradient_check(name, args)


def test_the_backward_writes_only_into_its_own_arrays():
    """The zeros of a write's gradient go into a copy: the caller's upstream and arguments are
    left as they were."""
    forward, backward = test_infer.generated(FORMS)
    x = rng.standard_normal((3, 2, 2))
    upstream = rng.standard_normal((3, 2, 2))
    x0, upstream0 = x.copy(), upstream.copy()
    dx = backward["relu_backward"](x, upstream)
    assert np.array_equal(x, x0) and np.array_equal(upstream, upstream0)
    assert np.array_equal(dx, (x >= 0) * upstream0)
    dx[...] = 7.0  # the gradient is the caller's own array
    assert np.array_equal(upstream, upstream0)


# The course's SVM loss as students write it (examples/course/layers.py).
COURSE = Path(__file__).resolve().parent.parent / "examples" / "course" / "layers.py"
COURSE_LAYERS = COURSE.read_text()


def test_the_course_svm_loss_reads_as_one_writes_it_by_hand():
    text = stagegen.generate(COURSE_LAYERS, "svm_loss")
    assert "    dmargins = dmargins_1.copy()  # (4)\n" in text
    assert "    dmargins[np.arange(N), y] = 0.0  # (4)\n" in text
    # rows np.arange(N) beside one label per row name each position once: no np.add.at
    assert "    dx[np.arange(N), y] += dcorrect_class_scores  # (2)\n" in text
    assert "np.add.at" not in text


def test_a_write_is_replayed_into_a_copy_when_the_backward_reads_the_array_after_it():
    text = stagegen.generate(FORMS, "masked_by_another")
    assert "    out_1 = out.copy()  # (2)\n    out_1[x < 0] = 0.5  # (2)\n" in text


def test_an_added_part_passes_the_gradient_on_untouched():
    """`h[:, a:b] += v`: no zeros and no scatter back, the gradient passes as it is."""
    text = stagegen.generate(FORMS, "slices")
    assert "    dh_1 = dh_2  # (4)\n" in text
    assert "    dw = 2.0 * dh_2[:, D:2 * D].sum(axis=0)  # (4)\n" in text


def test_the_proof_checks_writes():
    """Every form, and the SVM loss, proven: the forward as written (its writes into arrays
    made by np.zeros hold 50-digit numbers in the proof), and SymPy's reading of the writes."""
    for source, function in ((FORMS, None), (COURSE_LAYERS, "svm_loss")):
        report = stagegen.verify(source, function)  # raises where a gradient is wrong
        assert report.checks >= 13 * len(report.functions), str(report)
        assert "SymPy element by element" in str(report), str(report)


def test_explain_shows_a_write_and_its_zeroed_gradient():
    from stagegen.cli import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["explain", f"{COURSE}::svm_loss", "--at", "N=2,C=3"])
    text = out.getvalue()
    assert code == 0
    assert "margins_1[np.arange(N), y] = 0" in text  # the forward's write, as a stage
    assert "dmargins_1 with zeros at [np.arange(N), y]: the write replaced the values there" in text
    assert text.count("✓ agree") == 1


REFUSALS = {
    "a parameter": (
        "def f(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    x[x < 0] = 0.0\n"
        "    return np.sum(x)\n",
        "5:5: error: writing into `x[...]` writes into the caller's array `x` (NumPy updates it "
        "in place) — copy it first (`x = x.copy()`), or build a new array",
    ),
    "an alias": (
        "def f(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    h = x * 2.0\n    v = h.T\n"
        "    h[h < 0] = 0.0\n    return np.sum(v)\n",
        "7:5: error: writing into `h[...]` also changes `v` (they share one array, and NumPy "
        "updates it in place) — copy it first (`h = h.copy()`), or build a new array; or bind "
        "`v` to a copy (`... .copy()`)",
    ),
    "a value reading the array, in a loop": (
        "def f(x):\n    '''\n    - x: of shape (N, T)\n    '''\n    N, T = x.shape\n"
        "    h = x * 1.0\n    for t in range(T):\n        h[:, t] = h[:, t] * 2.0\n"
        "    return np.sum(h * h)\n",
        "8:19: error: inside a loop or branch, a value written into `h` that reads `h` itself is "
        "not supported — compute it into a name first (`v = ...`), then write `h[...] = v`",
    ),
    "labels that may repeat": (
        "def f(x, y, w):\n    '''\n    - x: of shape (V, D)\n    - y: labels of shape (N,)\n"
        "    - w: of shape (D,)\n    '''\n    s = x * 1.0\n    s[y] = w\n    return np.sum(s * s)\n",
        "8:7: error: this index may name one position twice, and NumPy keeps one of the values "
        "written there, so the value's gradient is not exact — write a number there, or index "
        "rows with `np.arange(N)` beside the labels",
    ),
    "a mask of another shape": (
        "def f(x, w):\n    '''\n    - x: of shape (N, D)\n    - w: of shape (D,)\n    '''\n"
        "    h = x * 1.0\n    h[w > 0] = 0.0\n    return np.sum(h)\n",
        "7:7: error: the mask has shape (D,), `h` (N, D) — index `h` with a mask of its own shape",
    ),
    "what a callee returned": (
        "def ident(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    return x\n\n\n"
        "def f(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    h = ident(x)\n"
        "    h[h > 0] = 0.0\n    return np.sum(x * x)\n",
        "13:5: error: writing into `h[...]` writes into the array `ident` returned, which may be "
        "one of its arguments (NumPy updates it in place) — copy it first (`h = h.copy()`), or "
        "build a new array",
    ),
    "+= into what a callee returned": (
        "def ident(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    return x\n\n\n"
        "def f(x):\n    '''\n    - x: of shape (N, D)\n    '''\n    h = ident(x)\n"
        "    h += 1.0\n    return np.sum(x * x)\n",
        "13:5: error: `h += ...` writes into the array `ident` returned, which may be one of its "
        "arguments (NumPy updates it in place) — write `h = h + ...`, which makes a new array",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_write_another_name_would_see_or_that_is_not_exact_is_refused(case):
    body, message = REFUSALS[case]
    source = "import numpy as np\n\n\n" + body
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    line, rest = message.split(":", 1)
    assert str(caught.value).splitlines()[0] == f"m.py:{int(line) + 3}:{rest}"


# ---------------------------------------------------------------------------- found in review

REVIEW_REFUSALS = {
    "an alias bound in one branch": (
        'def f(x: "N, D", c):\n    if c > 1.5:\n        h = x\n    else:\n        h = x * 2.0\n'
        "    h[h > 0] = 0.0\n    return np.sum(x * x) + np.sum(h)\n",
        "writes into the caller's array `x`",
    ),
    "an alias from a conditional expression": (
        'def f(x: "N, D", c):\n    h = x * 2.0\n    v = h if c > 0 else x * 3.0\n'
        "    h[h > 0] = 0.0\n    return np.sum(v * v)\n",
        "also changes `v`",
    ),
    "an argument a callee may return": (
        'def ident(x: "N, D"):\n    return x\n\n\ndef f(x: "N, D"):\n    h = x * 2.0\n'
        "    r = ident(h)\n    h[h < 0] = 0.0\n    return np.sum(r * r * r)\n",
        "also changes `r`",
    ),
    "a slice view of the array": (
        'def f(x: "N, 2*D", w: "D"):\n    D = w.shape[0]\n    h = x * 1.0\n    v = h[:, :D]\n'
        "    h[h < 0] = 0.0\n    return np.sum(v * w)\n",
        "also changes `v`",
    ),
    "rows np.arange(1) beside more labels": (
        'def f(x: "1, C", y: "M", w: "M"):\n    s = x * 1.0\n'
        "    s[np.arange(x.shape[0]), y] = w\n    return np.sum(s * s)\n",
        "this index may name one position twice",
    ),
    "integers made by np.zeros_like": (
        'def f(x: "N", y: "N", w: "N"):\n    s = x[y] * 1.0\n    h = np.zeros_like(y)\n'
        "    h[:] = w * 2.5\n    return np.sum(h * s)\n",
        "`h` holds integers",
    ),
    "integers made by np.where": (
        'def f(x: "N", w: "N"):\n    h = np.where(x > 0, 1, 0)\n    h[:] = w * 2.5\n'
        "    return np.sum(h * x)\n",
        "`h` holds integers",
    ),
    "a loop's index after the loop": (
        'def f(x: "N, T", w: "N"):\n    h = x * 1.0\n    for t in range(x.shape[1]):\n'
        "        h = h * 1.5\n    h[:, t] = w\n    return np.sum(h * h)\n",
        "`t` is a loop's index, read after the loop",
    ),
    "an update at a mask": (
        'def f(x: "N, D"):\n    s = x * 1.0\n    s[x > 0] *= 2.0\n    return np.sum(s)\n',
        "write `s = np.where(x > 0, s * 2.0, s)`",
    ),
    "a product at labels that may repeat": (
        'def f(x: "V, D", y: "N"):\n    s = x * x\n    s[y] *= 2.0\n    return np.sum(s * x)\n',
        "`*=` at an index that may name one position twice",
    ),
}


@pytest.mark.parametrize("case", sorted(REVIEW_REFUSALS))
def test_what_the_review_found_is_refused_where_it_is(case):
    body, said = REVIEW_REFUSALS[case]
    source = "import numpy as np\n\n\n" + body
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    assert said in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("m.py:")


REVIEW_ACCEPTED = """
import numpy as np


def added_at_labels_that_repeat(x: "V, D", y: "N"):
    s = x * x
    s[y] += 2.0
    s[y] -= 0.5
    return np.sum(s * s)


def rows_of_one_gathered(x: "1, C", y: "M"):
    g = x[np.arange(x.shape[0]), y]
    return np.sum(g * g)


def filled_with_a_number(x: "N, D", c):
    return np.sum(np.full((x.shape[0], x.shape[1]), c) * x)


def written_into_floats_made_of_integers(x: "N", w: "N"):
    h = np.arange(x.shape[0]) * 1.0
    h[x > 0] = 0.5
    h[:] = h * w
    return np.sum(h * x)
"""


def test_what_the_review_found_is_exact_and_proven():
    """Repeated labels: a number added once per position; rows np.arange(1) beside several
    labels: scattered with np.add.at (a label may repeat); np.full's value gets the gradient
    of every element; and the proof's 50-digit forward keeps what is written into a float
    array made of integers (it used to round it to float64 and fail a right gradient)."""
    text = stagegen.generate(REVIEW_ACCEPTED)
    assert "np.add.at(dx, (np.arange(x.shape[0]), y), " in text
    assert "    dc = dout_in.sum()  # (1)\n" in text  # (it used to say c does not reach it)
    report = stagegen.verify(REVIEW_ACCEPTED)
    assert len(report.functions) == 4, str(report)


# ---------------------------------------------------------------------------- in loops and branches

IN_LOOPS = '''
import numpy as np


def rnn(x, h0, Wx, Wh, b):
    """
    - x: of shape (N, T, D)
    - h0: of shape (N, H)
    - Wx: of shape (D, H)
    - Wh: of shape (H, H)
    - b: of shape (H,)
    """
    N, T, D = x.shape
    _, H = h0.shape
    h = np.zeros((N, T, H))
    prev_h = h0
    for t in range(T):
        next_h = np.tanh(x[:, t, :].dot(Wx) + prev_h.dot(Wh) + b)
        h[:, t, :] = next_h
        prev_h = next_h
    return np.sum(h * h)


def slots_read_back(x, w):
    """
    - x: of shape (N, T)
    - w: of shape (N,)
    """
    N, T = x.shape
    h = np.tanh(x)
    for t in range(T):
        v = h[:, t] * w
        h[:, t] = v
        h[:, t] += w * 0.5
        h[h < -0.5] = 0.0
    return np.sum(h * x)


def in_a_branch(x, c):
    """
    - x: of shape (N, D)
    """
    h = x * 2.0
    if c > 0.5:
        h[x > 0] = 0.5
    else:
        h[x < -1.0] = c
    return np.sum(h * h)
'''


def test_writes_in_loops_and_branches_against_central_differences():
    forward, backward = test_infer.generated(IN_LOOPS)
    rng = np.random.default_rng(8)
    for n, t, d, h in ((3, 4, 2, 3), (1, 1, 1, 1)):
        args = [rng.standard_normal(s) for s in ((n, t, d), (n, h), (d, h), (h, h), (h,))]
        grads = backward["rnn_backward"](*args)
        for k, g in enumerate(grads):
            assert np.allclose(g, test_infer.numeric_gradient(forward["rnn"], args, k, 1.0))
        args = [rng.standard_normal((n, t)), rng.standard_normal(n)]
        grads = backward["slots_read_back_backward"](*args)
        for k, g in enumerate(grads):
            want = test_infer.numeric_gradient(forward["slots_read_back"], args, k, 1.0)
            assert np.allclose(g, want, atol=1e-6), k
    for c in (0.2, 0.9):
        x = rng.standard_normal((3, 2)) * 2
        dx, dc = backward["in_a_branch_backward"](x, c)
        assert np.allclose(dx, test_infer.numeric_gradient(forward["in_a_branch"], [x, c], 0, 1.0))
        step = 1e-6
        want = (forward["in_a_branch"](x, c + step) - forward["in_a_branch"](x, c - step)) / 2e-6
        assert np.isclose(dc, want, atol=1e-5)


def test_a_write_in_a_loop_zeroes_its_gradient_in_place_after_reading_it():
    """In a loop the array before and after the write share one name and one gradient: the
    value's gradient is read from it first, then the zeros go in, into an array of its own
    (the upstream is copied once, before the loop, not at every step)."""
    text = stagegen.generate(IN_LOOPS, "rnn")
    read, zeroed = "        dnext_h += dh[:, t, :]  # (", "        dh[:, t, :] = 0.0  # ("
    assert read in text and zeroed in text and text.index(read) < text.index(zeroed)
    assert "dh.copy()" not in text.split("for t in reversed")[1]
    # the forward replay writes into h itself (no step's h is saved): no copy at every step
    assert "        h[:, t, :] = next_h  # (10)\n" in text and "h = h.copy()" not in text
    saved = stagegen.generate(IN_LOOPS, "slots_read_back")  # here each step's h is saved
    assert "h_saved.append(h)\n        h = h.copy()  # (6)\n        h[:, t] = v  # (6)" in saved
    assert stagegen.verify(IN_LOOPS).checks > 0


def test_the_course_rnn_forward_appends_its_caches_to_a_list():
    course = (COURSE.parent / "rnn_layers.py").read_text()
    text = stagegen.generate(course, "rnn_forward")
    assert "prev_h, _ = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)" in text
    assert "The saved values it also returns (a cache) have no gradient." in text


def test_a_view_bound_later_in_a_loop_is_seen_by_the_next_steps_write():
    """`prev = h[:, t]` after the writes: the next step writes into the array prev shares (found
    by the loop fuzzer: a label write there changed prev, a wrong gradient from generate())."""
    source = (
        'import numpy as np\n\n\ndef f(x: "N, T", y: "N", p: "N"):\n    N, T = x.shape\n'
        "    h = np.zeros((N, T))\n    prev = p * 1.0\n    for t in range(T):\n"
        "        h[np.arange(N), y] = np.tanh(x[:, t] + prev)\n        prev = h[:, t]\n"
        "    return np.sum(h) + np.sum(prev)\n"
    )
    with pytest.raises(StagegenError) as caught:
        stagegen.generate(source, filename="m.py")
    assert "writing into `h[...]` also changes `prev`" in str(caught.value)
    assert str(caught.value).startswith("m.py:9:9: error:")
    fixed = source.replace("prev = h[:, t]\n", "prev = h[:, t].copy()\n")
    assert stagegen.verify(fixed).checks > 0
