"""The first of the course's forms (issue 16): a placeholder `out = None` before the value is
computed, and `N, D = x.shape`. Each is read, proven, and refused where it would be misread."""

import textwrap

import numpy as np
import pytest

import stagegen
from stagegen.errors import StagegenError
from stagegen.program import backward_name

AFFINE = textwrap.dedent("""
    import numpy as np


    def affine_forward(x: "N, D", w: "D, M", b: "M"):
        out = None
        N, D = x.shape
        out = x.reshape(N, D).dot(w) + b
        return out
    """)

RNN = textwrap.dedent("""
    import numpy as np


    def rnn_loss(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
        N, T, D = x.shape
        h = h0
        for t in range(T):
            h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b)
        return np.sum(h * h)
    """)


def backward_of(source: str, name: str):
    namespace: dict = {}
    exec(stagegen.generate(source, filename="forward.py"), namespace)
    return namespace[backward_name(name)]


def forward_of(source: str, name: str):
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def check_against_differences(source: str, name: str, args: list) -> None:
    f, fb = forward_of(source, name), backward_of(source, name)
    upstream = np.ones_like(np.asarray(f(*args), dtype=float))
    grads = fb(*args)
    for k, a in enumerate(args):
        for index in [(0,) * a.ndim, tuple(d - 1 for d in a.shape)]:
            up, down = [x.copy() for x in args], [x.copy() for x in args]
            up[k][index] += 1e-6
            down[k][index] -= 1e-6
            want = np.sum((f(*up) - f(*down)) * upstream) / 2e-6
            assert grads[k][index] == pytest.approx(want, rel=1e-5, abs=1e-6), (name, k, index)


@pytest.mark.parametrize("source, name", [(AFFINE, "affine_forward"), (RNN, "rnn_loss")])
def test_placeholder_and_shape_unpacking_are_read_and_proven(source, name):
    report = stagegen.verify(source, filename="forward.py")
    assert report.max_rel_error < 1e-6
    rng = np.random.default_rng(0)
    if name == "affine_forward":
        shapes = [[(3, 4), (4, 2), (2,)], [(1, 4), (4, 2), (2,)]]  # a batch of one too
    else:
        shapes = [
            [(2, 3, 4), (2, 5), (4, 5), (5, 5), (5,)],
            [(1, 1, 4), (1, 5), (4, 5), (5, 5), (5,)],
        ]
    for sizes in shapes:
        check_against_differences(source, name, [rng.normal(size=s) for s in sizes])


def test_a_placeholder_is_not_replayed_or_differentiated():
    text = stagegen.generate(AFFINE, filename="forward.py")
    assert "None" not in text.split("def affine_backward")[1]


REFUSED = [
    (
        "def f(x):\n    out = None\n    y = out * x\n    return y\n",
        (3, 9),
        "`out` is still the placeholder None here",
    ),
    ("def f(x):\n    x = None\n    return 1.0\n", (2, 5), "would change a value"),
    (
        'import numpy as np\n\n\ndef f(x: "N, D"):\n    N, D, K = x.shape\n    return np.sum(x)\n',
        (5, 15),
        "has 2 dimension(s), unpacked into 3 name(s)",
    ),
]


@pytest.mark.parametrize("source, where, says", REFUSED)
def test_misreadings_are_refused_with_location(source, where, says):
    with pytest.raises(StagegenError) as info:
        stagegen.generate(source, filename="forward.py")
    assert (info.value.line, info.value.col) == where and says in info.value.message
