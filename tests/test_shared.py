"""Shared sub-expressions of array backwards (stagegen/shared.py, applied by lower.py): a forward
stage's value read by its name, a repeated costly part named once; never where the name may
hold another value (loops, restores), never for number code.

Each generated backward here is also run against float64 central differences of the forward
as written (stagegen.numeric), so a rewrite that changed a value would fail here too.
"""

from __future__ import annotations

import textwrap

import pytest

np = pytest.importorskip("numpy")

import stagegen
from stagegen.arrays.ir import Reduce
from stagegen.expr import Bin, Call, Compare, Neg, Num, Var
from stagegen.numeric import central_differences
from stagegen.shared import (
    Row,
    name_repeats,
    negations_off_masks,
    readable_name,
)

LAYERNORM = """
import numpy as np


def layernorm(x: "N, D", gamma: "D", beta: "D"):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return gamma * xhat + beta
"""

SOFTMAX_LOSS = """
import numpy as np


def softmax_loss(x: "N, C", y: "N"):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = x.shape[0]
    return -np.sum(log_probs[np.arange(n), y]) / n
"""


def backward_of(source: str, function: str | None = None):
    """(the generated module's text, the backward's gradient lines: what follows the forward
    replay and the setup, without the `# backprop` comments, one string)."""
    text = stagegen.generate(textwrap.dedent(source), function, filename="shared.py")
    body = text.split("# backprop", 1)[1] if "# backprop" in text else ""
    code = [line for line in body.splitlines() if not line.strip().startswith("#")]
    return text, "\n".join(code)


def run_and_check(text: str, source: str, name: str, args: list, wrt: list[int]) -> None:
    """The generated backward's gradients equal central differences of the forward."""
    forward_ns: dict = {}
    exec(textwrap.dedent(source), forward_ns)
    backward_ns: dict = {}
    exec(text, backward_ns)
    forward = forward_ns[name]
    rng = np.random.default_rng(3)
    out = np.asarray(forward(*args))
    upstream = rng.standard_normal(out.shape) if out.shape else 1.0
    grads = backward_ns[f"{name}_backward"](*args, upstream)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def value(*moved):
        return np.asarray(forward(*moved), dtype=np.float64)

    expected = central_differences(value, args, wrt, upstream, step=1e-5)
    for got, k in zip(grads, wrt):
        assert np.allclose(got, expected[k], rtol=1e-6, atol=1e-8), (k, got, expected[k])


def lines_with(body: str, fragment: str) -> list[str]:
    return [line.strip() for line in body.splitlines() if fragment in line]


# ---------------------------------------------------------------------------- the brief's two


def test_layernorm_names_the_square_root_once_and_reads_mu_by_its_name():
    text, body = backward_of(LAYERNORM)
    # np.sqrt(var + 1e-5): computed once in the backward, under a name, at its first use's (3)
    assert lines_with(body, "np.sqrt(") == ["sqrt_var = np.sqrt(var + 1e-5)  # (3)"]
    assert body.count("sqrt_var") >= 4  # the definition and the three reads
    # var's backward reads the forward's mu instead of computing the mean again
    assert "x.mean(" not in body
    assert lines_with(body, "dx += (2 * (x - mu) / D) * dvar")
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5)]
    run_and_check(text, LAYERNORM, "layernorm", args, [0, 1, 2])


def test_softmax_loss_names_the_max_mask_once():
    text, body = backward_of(SOFTMAX_LOSS)
    mask = "x == np.max(x, axis=1, keepdims=True)"
    assert lines_with(body, mask) == [f"x_is_max = {mask}  # (1)"]
    assert lines_with(body, "np.exp(") == ["exp_shifted = np.exp(shifted)  # (2)"]
    assert "x_is_max / x_is_max.sum(axis=1, keepdims=True)" in body
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    run_and_check(text, SOFTMAX_LOSS, "softmax_loss", [x, np.array([0, 2, 2, 1])], [0])


def test_a_named_mask_is_never_negated():
    """NumPy refuses `-` on a boolean array: a named mask is multiplied by -1.0 instead (the
    array fuzzer's seed 244 of its seed-7 run)."""
    source = """
    import numpy as np


    def f(r: "1, D"):
        return np.max(r, axis=(0, 1), keepdims=True) * -r
    """
    text, body = backward_of(source)
    assert "r_is_max = " in body
    assert "-r_is_max" not in body
    run_and_check(text, source, "f", [np.array([[0.5, 2.0, -1.0]])], [0])


# ---------------------------------------------------------------------------- forward names


def test_a_stage_the_replay_leaves_out_is_replayed_when_a_gradient_line_computes_it():
    source = """
    import numpy as np


    def f(x: "N, D"):
        mu = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        return var + mu
    """
    text, body = backward_of(source)
    replay = text.split("# forward pass", 1)[1].split("# backprop", 1)[0]
    assert "mu = x.mean(axis=1, keepdims=True)  # (1)" in replay
    assert "x.mean(" not in body and "(x - mu)" in body
    run_and_check(text, source, "f", [np.random.default_rng(2).standard_normal((3, 4))], [0])


def test_a_name_bound_again_in_straight_line_code_is_read_at_the_right_version():
    """Straight-line code binds versions (mu, mu_1): the mean is the first one, `mu`."""
    source = """
    import numpy as np


    def f(x: "N, D"):
        mu = x.mean(axis=1, keepdims=True)
        mu = np.tanh(mu)
        return x.var(axis=1, keepdims=True) * mu
    """
    text, body = backward_of(source)
    assert "(x - mu)" in body and "(x - mu_1)" not in body
    run_and_check(text, source, "f", [np.random.default_rng(4).standard_normal((3, 4))], [0])


LOOPS = """
import numpy as np


def bound_again(x: "N, D", n: int):
    m = x.mean(axis=1, keepdims=True)
    for i in range(n):
        m = np.tanh(m)
    return x.var(axis=1, keepdims=True) * m


def inside(x: "N, D", n: int):
    h = x * 1.0
    for i in range(n):
        mu = h.mean(axis=1, keepdims=True)
        h = h.var(axis=1, keepdims=True) + mu * h
    return h
"""


@pytest.mark.parametrize(
    "name, mean",
    [
        ("bound_again", "x - x.mean(axis=1, keepdims=True)"),  # m holds tanh(...) at the end
        ("inside", "h - h.mean(axis=1, keepdims=True)"),  # mu and h are restored each step
    ],
)
def test_no_forward_name_is_reused_where_a_loop_binds_it_again(name, mean):
    text, body = backward_of(LOOPS, name)
    assert mean in body
    x = np.random.default_rng(5).standard_normal((3, 4))
    run_and_check(text, LOOPS, name, [x, 2], [0])


# ---------------------------------------------------------------------------- names


def test_a_local_never_takes_a_name_the_function_uses():
    source = LAYERNORM.replace("gamma", "sqrt_var")
    text, body = backward_of(source)
    assert "sqrt_var_2 = np.sqrt(var + 1e-5)  # (3)" in body
    rng = np.random.default_rng(7)
    args = [rng.standard_normal((2, 3)), rng.standard_normal(3), rng.standard_normal(3)]
    run_and_check(text, source, "layernorm", args, [0, 1, 2])


@pytest.mark.parametrize(
    "expr, name",
    [
        (Call("sqrt", (Bin("+", Var("var"), Num(1e-5)),)), "sqrt_var"),
        (Call("maximum", (Num(0), Var("x"))), "maximum_x"),
        (Reduce("sum", Call("exp", (Var("s"),)), (1,), True), "sum_exp_s"),
        (Compare("==", Var("x"), Reduce("max", Var("x"), (1,), True)), "x_is_max"),
        (Compare(">", Var("h"), Num(0)), "h_gt_0"),
    ],
)
def test_the_naming_rule(expr, name):
    assert readable_name(expr, set()) == name
    assert readable_name(expr, {name}) == f"{name}_2"
    assert readable_name(expr, {name, f"{name}_2"}) == f"{name}_3"


# ---------------------------------------------------------------------------- the pass itself

EXP_A = Call("exp", (Var("a"),))


def placed_text(placed) -> list[tuple]:
    return [(p.row, p.name, p.value) for p in placed]


def test_a_repeat_is_named_before_its_first_use_with_that_line():
    rows = [
        Row(Bin("*", Var("g"), Var("a")), frozenset({"dz"})),
        Row(Bin("*", EXP_A, Var("g")), frozenset({"dx"})),
        Row(Bin("/", Var("g"), EXP_A), frozenset({"dy"})),
    ]
    out = name_repeats(rows, set())
    assert placed_text(out) == [
        (0, None, rows[0].value),
        (1, "exp_a", EXP_A),
        (1, None, Bin("*", Var("exp_a"), Var("g"))),
        (2, None, Bin("/", Var("g"), Var("exp_a"))),
    ]


def test_a_repeat_is_not_shared_across_a_line_that_writes_what_it_reads():
    rows = [
        Row(Bin("*", EXP_A, Var("g")), frozenset({"dx"})),
        Row(Var("b"), frozenset({"a"})),  # `a` bound again between the two reads
        Row(Bin("/", Var("g"), EXP_A), frozenset({"dy"})),
    ]
    assert [p.name for p in name_repeats(rows, set())] == [None, None, None]
    # ... but the line that writes still reads the value before it writes
    rows[1] = Row(Bin("+", EXP_A, Var("b")), frozenset({"a"}))
    out = name_repeats(rows, set())
    assert [p.name for p in out] == ["exp_a", None, None, None]
    assert out[3].value == Bin("/", Var("g"), EXP_A)  # after the write: left as it was


def test_the_whole_right_side_of_an_assignment_is_never_a_second_name_for_one_array():
    """``da = np.exp(a)`` and ``db = np.exp(a)`` as ``da = db = exp_a`` would share memory; a
    ``+=`` line may read the name."""
    rows = [Row(EXP_A, frozenset({"da"})), Row(EXP_A, frozenset({"db"}))]
    assert [p.name for p in name_repeats(rows, set())] == [None, None]
    rows = [Row(EXP_A, frozenset({"da"}), whole=True), Row(EXP_A, frozenset({"db"}), whole=True)]
    assert [p.name for p in name_repeats(rows, set())] == ["exp_a", None, None]


def test_the_largest_repeat_is_named_first():
    total = Reduce("sum", EXP_A, (1,), True)
    rows = [
        Row(Bin("*", EXP_A, Bin("/", Var("g"), total)), frozenset({"dx"})),
        Row(Bin("/", Var("h"), total), frozenset({"dy"})),
    ]
    out = name_repeats(rows, set())
    # the sum first; then the exp, which its definition and the first line still read twice
    assert placed_text(out) == [
        (0, "exp_a", EXP_A),
        (0, "sum_exp_a", Reduce("sum", Var("exp_a"), (1,), True)),
        (0, None, Bin("*", Var("exp_a"), Bin("/", Var("g"), Var("sum_exp_a")))),
        (1, None, Bin("/", Var("h"), Var("sum_exp_a"))),
    ]


def test_negations_come_off_masks_as_the_printer_spells_them():
    mask = Compare(">", Var("x"), Num(0))
    assert negations_off_masks(Neg(mask)) == Bin("*", Num(-1.0), mask)
    assert negations_off_masks(Neg(Bin("*", mask, Var("d")))) == Bin("*", mask, Neg(Var("d")))
    plain = Neg(Bin("*", Var("a"), Var("d")))
    assert negations_off_masks(plain) is plain


# ---------------------------------------------------------------------------- number code


def test_number_code_is_printed_as_the_sweep_wrote_it():
    source = """
    import math


    def f(x, y):
        return math.exp(x) * y + math.exp(x) / y
    """
    _, body = backward_of(source)
    assert body.count("math.exp(x)") >= 2
    assert "exp_x" not in body


def test_a_part_a_loop_step_repeats_is_named_inside_the_step():
    source = """
    import numpy as np


    def f(x: "N, D", n: int):
        h = x * 1.0
        for i in range(n):
            h = h / np.sqrt(h.var(axis=1, keepdims=True) + 1.0)
        return h
    """
    text, body = backward_of(source)
    step = body.split("for i in reversed(range(n)):", 1)[1]
    # computed once per step, before the line reading it, and read from there
    definitions = lines_with(step, "np.sqrt(")
    assert len(definitions) == 1 and definitions[0].startswith("sqrt_var_")
    name = definitions[0].split(" = ")[0]
    assert step.count(name) == 4
    x = np.random.default_rng(8).standard_normal((3, 4))
    run_and_check(text, source, "f", [x, 3], [0])


def test_a_size_the_user_named_is_read_by_its_name():
    """`N = x.shape[0]`, which no gradient reads, is replayed once the backward would read
    `x.shape[0]` (the upstream's shape, var's count): both read `N` then."""
    source = """
    import numpy as np


    def f(x: "N, D"):
        N = x.shape[0]
        y = x.var(axis=0)
        return np.exp(x) * y + N
    """
    text, body = backward_of(source)
    assert text.count("x.shape[0]") == 1 and "    N = x.shape[0]  # (1)\n" in text
    assert "dout = np.broadcast_to(dout, (N, D))" in text
    assert "/ N) * dy" in body
    run_and_check(text, source, "f", [np.random.default_rng(10).standard_normal((3, 2))], [0])
