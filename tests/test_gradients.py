"""Gradients of every supported construct, each checked two independent ways.

(a) ``stagegen.verify``: the generated backward against SymPy (local gradients and end to end).
(b) Central finite differences (stagegen.numeric): the forward source is exec'd, the generated
    module is exec'd, and the backward is compared with the difference quotient of the
    forward at fixed points chosen inside each function's domain.

Every construct is one row of ``CASES`` (one test id per construct and per check). Exact
conventions (zero gradients, non-differentiable points, return shapes, signatures) have their
own tests below, and a hypothesis property test draws random straight-line programs.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import stagegen
from stagegen.numeric import central_difference, central_differences, copies

RTOL = 1e-6  # finite differences against the generated gradient
FD_NOISE = 1e-8  # absolute slack, times max(1, |f|): rounding in the difference quotient
SAME = 1e-12  # two generated backwards that must agree (split vs default, scaling)


# ---------------------------------------------------------------------------- helpers


def forward_of(source: str, name: str = "f"):
    """The forward function, by running its source."""
    namespace: dict = {}
    exec(compile(source, "<forward>", "exec"), namespace)
    return namespace[name]


def backward_of(source: str, name: str = "f", **options):
    """The generated ``<name>_backward``, by running the module stagegen writes."""
    text = stagegen.generate(source, name, **options)
    namespace: dict = {}
    exec(compile(text, "<backward>", "exec"), namespace)
    return namespace[f"{name}_backward"]


def upstream_name(backward) -> str:
    """The last parameter of a backward is its upstream gradient, defaulting to 1.0."""
    last = list(inspect.signature(backward).parameters.values())[-1]
    assert last.name.startswith("d") and last.default == 1.0, last
    return last.name


def fd_partial(f, args, i, j=None) -> float:
    """Central difference of f along argument i (element j of a list argument): stagegen.numeric."""
    return central_difference(f, args, i, () if j is None else (j,)).slope()


def fd_gradient(f, args, wrt_indices):
    """Finite-difference gradient shaped like a backward's result: a tuple in parameter
    order, the bare value for one parameter, a list for a list parameter."""
    found = central_differences(f, list(args), list(wrt_indices))
    grads = [found[i] for i in wrt_indices]
    return grads[0] if len(grads) == 1 else tuple(grads)


def assert_close(got, want, *, rel=RTOL, abs_tol=0.0, where=""):
    """Same shape (tuple / list / scalar, same lengths) and close values, recursively."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(
            want
        ), f"{where}: got {got!r}, want {want!r}"
        for k, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, rel=rel, abs_tol=abs_tol, where=f"{where}[{k}]")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(
            want
        ), f"{where}: got {got!r}, want {want!r}"
        for k, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, rel=rel, abs_tol=abs_tol, where=f"{where}[{k}]")
    else:
        assert isinstance(got, (int, float)) and not isinstance(
            got, bool
        ), f"{where}: {got!r} is not a number"
        assert math.isfinite(got), f"{where}: {got!r}"
        assert math.isclose(
            got, want, rel_tol=rel, abs_tol=abs_tol
        ), f"{where}: got {got!r}, want {want!r}"


def scaled(grads, k):
    if isinstance(grads, tuple):
        return tuple(scaled(g, k) for g in grads)
    if isinstance(grads, list):
        return [g * k for g in grads]
    return grads * k


def param_names(f) -> list[str]:
    return list(inspect.signature(f).parameters)


def wrt_indices(f, wrt) -> list[int]:
    names = param_names(f)
    return [i for i, n in enumerate(names) if wrt is None or n in wrt]


def check_against_fd(source, points, *, wrt=None, split=False, name="f"):
    f = forward_of(source, name)
    backward = backward_of(source, name, wrt=wrt, split=split)
    assert param_names(backward)[:-1] == param_names(f), "backward signature = forward's + upstream"
    for args in points:
        args = list(args)
        want = fd_gradient(f, args, wrt_indices(f, wrt))
        got = backward(*copies(args))
        assert_close(
            got,
            want,
            abs_tol=FD_NOISE * max(1.0, abs(f(*copies(args)))),
            where=f"{name}{tuple(args)}",
        )


def src(body: str, params: str = "x, y", imports: str = "import math") -> str:
    """A forward module: the imports, then ``def f(params):`` with the (dedented) body."""
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"{imports}\n\n\ndef f({params}):\n{body}\n"


# ---------------------------------------------------------------------------- the constructs


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    points: tuple  # argument tuples inside the function's domain, away from kinks
    wrt: tuple | None = None


XY = ((1.3, -0.4), (-0.7, 2.1), (2.5, 0.6))  # generic points of either sign
XY_POS = ((1.3, 0.4), (0.7, 2.1), (2.5, 1.6))  # logs, roots, real powers
XYZ = ((1.3, -0.4, 0.8), (-0.7, 2.1, 1.5), (0.3, 0.9, -1.2))
X = ((1.3,), (-0.7,), (2.4,))
X_POS = ((1.3,), (0.35,), (2.4,))

CASES = [
    # operators
    Case("add", src("return x + y"), XY),
    Case("sub", src("return x - y"), XY),
    Case("mul", src("return x * y"), XY),
    Case("div", src("return x / y"), XY),
    Case("div_compound", src("return (x + 1) / (x * y - 3)"), XY),
    Case("chained_ops", src("return x - y - x * y / (y + 3) + x / y / 2"), XY),
    Case("pow_int", src("return x ** 3 + y ** 2 * x"), XY),
    Case("pow_float", src("return x ** 2.5 + y ** 0.5"), XY_POS),
    Case("pow_negative_int", src("return x ** -2 * y"), XY),
    Case("pow_negative_float", src("return x ** -0.5 + y ** -1.5"), XY_POS),
    Case("pow_variable_exponent", src("return x ** y"), XY_POS),
    Case("pow_constant_base", src("return 2.0 ** x + 3 ** (x * y)"), XY),
    Case("pow_expression_exponent", src("return (x + 1) ** (y * 0.5)"), XY_POS),
    Case("unary_minus", src("return -x * y - -y"), XY),
    Case("unary_plus", src("return +x * y + +y"), XY),
    Case("unary_nested", src("return -(-x) * -(x - y)"), XY),
    Case(
        "literals_int_float_exponent", src("return 3 * x + 2.5 * y - 1e-3 * x * y + 7 - 0.25"), XY
    ),
    Case("constant_subexpression", src("return x * 2 ** 2 + y / (2 * 3)"), XY),
    Case("math_pi", src("return math.pi * x ** 2 + y / math.pi"), XY),
    Case("math_e", src("return math.e ** x + math.e * y"), XY),
    Case("math_tau", src("return x / math.tau + math.tau * x * y"), XY),
    # math functions, each inside an expression so the chain rule is exercised too
    Case("exp", src("return math.exp(x * y)"), XY),
    Case("sigmoid", src("return 1.0 / (1 + math.exp(-x * y))"), XY),
    Case("log", src("return math.log(x * y)"), XY_POS),
    Case("log_variable_base", src("return math.log(x, y)"), ((1.3, 0.4), (0.7, 2.1), (2.5, 1.6))),
    Case("log_constant_base", src("return math.log(x * x + y, 10)"), XY_POS),
    Case("log_expression_base", src("return math.log(x + 2, y * y + 2)"), XY),
    Case("log2", src("return math.log2(x * x + y)"), XY_POS),
    Case("log10", src("return math.log10(x + y * y)"), XY_POS),
    Case("log1p", src("return math.log1p(x * y)"), ((0.5, -0.8), (1.2, 0.3), (-2.0, 0.2))),
    Case("expm1", src("return math.expm1(x * y)"), XY),
    Case("sqrt", src("return math.sqrt(x * x + y)"), XY_POS),
    Case("sin", src("return math.sin(x * y)"), XY),
    Case("cos", src("return math.cos(x * y)"), XY),
    Case("tan", src("return math.tan(x * y)"), ((1.3, 0.4), (-0.7, 1.1), (0.5, -2.0))),
    Case("asin", src("return math.asin(x * y)"), ((1.3, 0.4), (-0.7, 1.1), (0.5, -1.5))),
    Case("acos", src("return math.acos(x * y)"), ((1.3, 0.4), (-0.7, 1.1), (0.5, -1.5))),
    Case("atan", src("return math.atan(x * y)"), XY),
    Case(
        "atan2",
        src("return math.atan2(y, x)"),
        ((1.0, 2.0), (-0.5, -1.5), (-2.0, 0.3), (0.4, -0.9)),
    ),
    Case("atan2_compound", src("return math.atan2(x * y, x + y)"), XY),
    Case("sinh", src("return math.sinh(x * y)"), XY),
    Case("cosh", src("return math.cosh(x * y)"), XY),
    Case("tanh", src("return math.tanh(x * y)"), XY),
    Case("erf", src("return math.erf(x * y)"), XY),
    Case("hypot_2_args", src("return math.hypot(x, y)"), XY),
    Case("hypot_3_args", src("return math.hypot(x, y, z)", "x, y, z"), XYZ),
    Case("hypot_compound", src("return math.hypot(x * y, x - y)"), XY),
    Case("math_pow_variable", src("return math.pow(x, y)"), XY_POS),
    Case("math_pow_constant", src("return math.pow(x, 3) + math.pow(y, -2)"), XY),
    Case("abs", src("return abs(x - y) * x"), XY),
    Case("max_2_args", src("return max(x, y) * x"), XY),
    Case("max_3_args", src("return max(x, y, z)", "x, y, z"), XYZ),
    Case("max_4_args_compound", src("return max(x * y, x + y, z, 0.5)", "x, y, z"), XYZ),
    Case("min_2_args", src("return min(x, y) * y"), XY),
    Case("min_3_args", src("return min(x, y, z)", "x, y, z"), XYZ),
    Case("min_4_args_compound", src("return min(x * y, x + y, z, 0.5)", "x, y, z"), XYZ),
    # import styles
    Case(
        "import_math_as_m",
        src("return m.exp(x) * m.sin(y) + m.pi * x", imports="import math as m"),
        XY,
    ),
    Case("from_math_import_exp", src("return exp(x * y)", imports="from math import exp"), XY),
    Case(
        "from_math_import_exp_as_e", src("return e(x) * y", imports="from math import exp as e"), XY
    ),
    Case(
        "from_math_import_several",
        src("return s(x) * cos(y) + pi", imports="from math import sin as s, cos, pi"),
        XY,
    ),
    # statements
    Case("reassign_name", src("z = x * y\nz = z + x\nz = z * z\nreturn z"), XY),
    Case("reassign_parameter", src("x = x * 2\nx = x + y\nreturn x * y"), XY),
    Case(
        "reassign_parameter_with_gate", src("x = math.exp(x)\nx = math.tanh(x * y)\nreturn x"), XY
    ),
    Case("aug_add", src("z = x\nz += y * y\nreturn z * x"), XY),
    Case("aug_sub", src("z = x * y\nz -= y\nreturn z * x"), XY),
    Case("aug_mul", src("z = x + 1\nz *= y\nreturn z * x"), XY),
    Case("aug_div", src("z = x * x\nz /= y\nreturn z + x"), XY),
    Case("aug_pow", src("z = x + y\nz **= 3\nreturn z"), XY),
    Case("aug_pow_variable", src("z = x\nz **= y\nreturn z"), XY_POS),
    Case("aug_on_parameter", src("x *= y\nx += y\nx -= 1\nx /= 2\nreturn x"), XY),
    Case("tuple_unpacking", src("a, b = x * y, x + y\nreturn a * b"), XY),
    Case("tuple_swap", src("a, b = x, 2 * y\na, b = b, a\nreturn a * a - 3 * b"), XY),
    Case("tuple_swap_parameters", src("x, y = y, x\nreturn x * y ** 2"), XY),
    Case("annotated_assignment", src("z: float = x * x\nw: float = z * y\nreturn w"), XY),
    Case(
        "list_neuron",
        src("y = w[0] * x[0] + w[1] * x[1] + w[2]\ns = 1.0 / (1 + math.exp(-y))\nreturn s", "w, x"),
        (
            ([2.0, -3.0, -3.0], [-1.0, -2.0]),
            ([0.5, 0.1, -0.2], [1.5, -0.7]),
            ([-1.2, 0.4, 0.9], [0.3, 2.2]),
        ),
    ),
    Case(
        "list_unused_elements",
        src("return w[0] * x + w[2]", "w, x"),
        (([0.5, 9.0, -1.5, 4.0], 1.7), ([2.0, 0.0, 3.0, 1.0], -0.6)),
    ),
    Case("return_expression", src("z = x * y\nreturn z + math.sin(z)"), XY),
    Case("return_parameter", src("z = x * y\nreturn x"), XY),
    Case("return_reassigned_name", src("z = x * y\nz = z - x\nreturn z"), XY),
    Case(
        "forks",
        src("a = x * x\nb = a * x + x\nreturn b * x + math.sin(x) * x + x / (1 + x * x)", "x"),
        X,
    ),
    Case("unused_stages", src("u = math.exp(x)\nv = x * y\nq = u * v\nreturn v"), XY),
    Case("no_path_parameter", src("return x * x"), XY),
    Case("wrt_one", src("return x * y * z", "x, y, z"), XYZ, wrt=("y",)),
    Case(
        "wrt_two_out_of_order",
        src("return x * math.sin(y) + z ** 2", "x, y, z"),
        XYZ,
        wrt=("z", "x"),
    ),
    Case(
        "wrt_list",
        src("return w[0] * x + w[1] * x * x", "w, x"),
        (([0.5, -1.0], 1.7), ([2.0, 3.0], -0.6)),
        wrt=("w",),
    ),
    Case("default_parameter", src("return x * y + y", "x, y=2.0"), XY),
    Case("scaled_input_named_a", src("return math.sin(2 * a) * b", "a, b"), XY),
    Case(
        "long_chain",
        src("""
            a = x * y
            b = math.sin(a)
            c = b + x
            d = c * c
            e = math.exp(-d)
            g = e / (1 + a * a)
            return g
            """),
        XY,
    ),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "duplicate case id"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_verify_passes(case):
    report = stagegen.verify(case.source, "f", wrt=list(case.wrt) if case.wrt else None)
    assert [fr.name for fr in report.functions] == ["f"]
    fr = report.functions[0]
    assert len(fr.local_checks) >= 1, str(report)
    assert len(fr.points) >= 1, str(report)
    assert report.max_rel_error <= 1e-7


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_finite_differences(case):
    check_against_fd(case.source, case.points, wrt=list(case.wrt) if case.wrt else None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_split_gives_same_gradients(case):
    wrt = list(case.wrt) if case.wrt else None
    default, split = backward_of(case.source, wrt=wrt), backward_of(
        case.source, wrt=wrt, split=True
    )
    assert param_names(split) == param_names(default)
    for args in case.points:
        assert_close(
            split(*copies(args)), default(*copies(args)), rel=SAME, abs_tol=SAME, where=str(args)
        )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_upstream_gradient_scales_every_gradient(case):
    backward = backward_of(case.source, wrt=list(case.wrt) if case.wrt else None)
    up = upstream_name(backward)
    for args in case.points:
        base = backward(*copies(args))
        assert_close(
            backward(*copies(args), **{up: 2.5}),
            scaled(base, 2.5),
            rel=SAME,
            abs_tol=SAME,
            where=str(args),
        )
        assert_close(
            backward(*copies(args), **{up: -0.5}),
            scaled(base, -0.5),
            rel=SAME,
            abs_tol=SAME,
            where=str(args),
        )


SPLIT_SAMPLE = {
    "div_compound",
    "sigmoid",
    "log_expression_base",
    "hypot_compound",
    "max_4_args_compound",
    "list_neuron",
    "long_chain",
    "wrt_two_out_of_order",
}


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SPLIT_SAMPLE], ids=lambda c: c.id)
def test_split_verify_and_finite_differences(case):
    wrt = list(case.wrt) if case.wrt else None
    report = stagegen.verify(case.source, "f", wrt=wrt, split=True)
    assert report.functions[0].local_checks and report.functions[0].points
    check_against_fd(case.source, case.points, wrt=wrt, split=True)


@pytest.mark.parametrize(
    "body, params, args",
    [
        pytest.param(
            "return math.sin(x * y + 1) * (x + y)", "x, y", (1.3, -0.4), id="control_short_names"
        ),
        pytest.param("return x * 2 ** 2", "x", (1.3,), id="int_squared"),
        pytest.param("return x * 10 ** 3", "x", (1.3,), id="int_cubed"),
        pytest.param(
            "return x * 3 ** 2.0",
            "x",
            (1.3,),
            id="int_squared_float",
        ),
        pytest.param("return x / (2 * 3)", "x", (1.3,), id="int_times_int"),
        pytest.param(
            "return math.sin(2 * a)",
            "a",
            (1.3,),
            id="scaled_a",
        ),
        pytest.param(
            "return math.exp(3 * i)",
            "i",
            (0.3,),
            id="scaled_i",
        ),
    ],
)
def test_split_stage_names_are_identifiers(body, params, args):
    """--split names its stages after their operands; every name must be a usable identifier."""
    check_against_fd(src(body, params), [args], split=True)


@pytest.mark.parametrize(
    "body, params, args",
    [
        pytest.param("return x * dx", "x, dx", (1.3, -0.4), id="parameter_named_dx"),
        pytest.param("return out * y", "out, y", (1.3, -0.4), id="parameter_named_out"),
        pytest.param(
            "x = x * 2\nreturn x * x_1", "x, x_1", (1.3, -0.4), id="parameter_named_like_a_version"
        ),
        pytest.param("return m.exp(math) * y", "math, y", (1.3, -0.4), id="parameter_named_math"),
        pytest.param(
            "r = x * dr\nreturn r", "x, dr", (1.3, -0.4), id="parameter_named_like_upstream"
        ),
        pytest.param(
            "return ef * y",
            "ef, y",
            (1.3, -0.4),
            id="parameter_ef",
        ),
        pytest.param(
            "el = x * y\nreturn el * x",
            "x, y",
            (1.3, -0.4),
            id="stage_el",
        ),
        pytest.param(
            "ef = x * x\nreturn ef",
            "x",
            (1.3,),
            id="returned_ef",
        ),
        pytest.param(
            "return w[0] * len",
            "w, len",
            ([2.0], 3.0),
            id="parameter_len",
        ),
    ],
)
def test_user_names_do_not_break_the_output(body, params, args):
    """Gradient names are d<name>; whatever the user's names, the module must run and be right."""
    imports = "import math as m" if "m.exp" in body else "import math"
    check_against_fd(src(body, params, imports), [args])


# ---------------------------------------------------------------------------- exact conventions


@pytest.mark.parametrize(
    "source, expected",
    [
        (src("r = x * y\nreturn r"), "dr"),
        (src("return x * y"), "dout"),
        (src("z = x * y\nreturn x"), "dout"),
        (src("return x"), "dout"),
        (src("f = x * y\nreturn f"), "df"),
        (src("z = x * y\nz = z + 1\nreturn z"), "dz"),
    ],
    ids=[
        "returned_name",
        "expression",
        "parameter_after_stages",
        "parameter_only",
        "named_like_function",
        "reassigned_name",
    ],
)
def test_upstream_gradient_name(source, expected):
    backward = backward_of(source)
    assert upstream_name(backward) == expected
    assert param_names(backward) == ["x", "y", expected]


def test_upstream_gradient_keyword_scales_named_case():
    backward = backward_of(src("f = x * x * y\nreturn f"))
    assert backward(1.5, 2.0, df=2.5) == pytest.approx(
        (2.5 * 2 * 1.5 * 2.0, 2.5 * 1.5 * 1.5), rel=1e-15
    )


@pytest.mark.parametrize("args", [(1.3, -0.4), (0.0, 5.0), (-2.0, 0.0)])
def test_parameter_without_path_is_exactly_zero(args):
    backward = backward_of(src("return x * x"))
    dx, dy = backward(*args, dout=2.5)
    assert dx == pytest.approx(2.5 * 2 * args[0], rel=1e-15)
    assert type(dy) is float and dy == 0.0


def test_parameter_without_path_through_pruned_stage_is_exactly_zero():
    backward = backward_of(src("u = math.exp(y) * y\nreturn x * x"))
    dx, dy = backward(1.5, 0.7)
    assert dx == pytest.approx(3.0, rel=1e-15)
    assert type(dy) is float and dy == 0.0


@pytest.mark.parametrize("n", [3, 4, 6])
def test_list_unused_elements_are_zero_and_length_matches(n):
    backward = backward_of(src("return w[0] * x + w[2]", "w, x"))
    w = [0.5 + k for k in range(n)]
    dw, dx = backward(w, 1.7, dout=2.0)
    assert isinstance(dw, list) and len(dw) == n
    assert dw[0] == pytest.approx(2.0 * 1.7, rel=1e-15)
    assert dw[2] == pytest.approx(2.0, rel=1e-15)
    assert all(type(g) is float and g == 0.0 for k, g in enumerate(dw) if k not in (0, 2))
    assert dx == pytest.approx(2.0 * 0.5, rel=1e-15)
    assert w == [0.5 + k for k in range(n)], "the input list must not be modified"


def test_list_parameter_without_path_is_all_zero():
    backward = backward_of(src("u = w[0] * 2\nreturn x * x", "w, x"))
    dw, dx = backward([1.0, 2.0], 3.0)
    assert dw == [0.0, 0.0] and dx == pytest.approx(6.0)


def test_neuron_matches_notes_numbers():
    """The notes' neuron at w = [2, -3, -3], x = [-1, -2]: the dot product is 1, sigmoid 0.73."""
    backward = backward_of(CASES[IDS.index("list_neuron")].source)
    dw, dx = backward([2.0, -3.0, -3.0], [-1.0, -2.0])
    s = 1 / (1 + math.exp(-1.0))
    ds = (1 - s) * s  # 0.1966...
    assert dw == pytest.approx([-ds, -2 * ds, ds], rel=1e-15)
    assert dx == pytest.approx([2 * ds, -3 * ds], rel=1e-15)


WRT_SOURCE = src("return x * math.sin(y) + z ** 2 * y", "x, y, z")


@pytest.mark.parametrize(
    "wrt, picked",
    [
        (["x", "y", "z"], (0, 1, 2)),
        (["z", "x"], (0, 2)),
        (["y", "x"], (0, 1)),
        (["z"], (2,)),
        (["y"], (1,)),
        ("z,x", (0, 2)),
    ],
    ids=[
        "all",
        "z_x_in_parameter_order",
        "y_x_in_parameter_order",
        "only_z_bare",
        "only_y_bare",
        "comma_string",
    ],
)
def test_wrt_narrows_in_parameter_order(wrt, picked):
    args = (1.3, -0.4, 0.8)
    full = backward_of(WRT_SOURCE)(*args)
    narrow_backward = backward_of(WRT_SOURCE, wrt=wrt)
    assert param_names(narrow_backward) == ["x", "y", "z", "dout"]
    got = narrow_backward(*args, dout=2.5)
    want = tuple(2.5 * full[i] for i in picked)
    if len(picked) == 1:
        assert isinstance(got, float), "one requested gradient is returned bare"
        assert got == pytest.approx(want[0], rel=1e-15)
    else:
        assert isinstance(got, tuple) and got == pytest.approx(want, rel=1e-15)


def test_wrt_unknown_parameter_is_an_error():
    with pytest.raises(stagegen.StagegenError):
        stagegen.generate(WRT_SOURCE, "f", wrt=["q"])


@pytest.mark.parametrize(
    "backward_args", [(3.0,), (3.0, 2.0)], ids=["default_used", "default_given"]
)
def test_defaults_in_signature(backward_args):
    source = src("return x * y + y", "x, y=2.0")
    backward = backward_of(source)
    assert inspect.signature(backward).parameters["y"].default == 2.0
    assert backward(*backward_args) == pytest.approx((2.0, 4.0), rel=1e-15)
    assert backward(*backward_args, dout=2.5) == pytest.approx((5.0, 10.0), rel=1e-15)
    f = forward_of(source)
    assert backward(3.0)[0] == pytest.approx(fd_partial(lambda x: f(x), [3.0], 0), rel=RTOL)


def test_bare_gradient_for_one_parameter():
    got = backward_of(src("return x ** 3", "x"))(2.0)
    assert isinstance(got, float) and got == pytest.approx(12.0, rel=1e-15)


def test_list_gradient_for_one_list_parameter():
    got = backward_of(src("return w[0] * w[1]", "w"))([3.0, 5.0])
    assert isinstance(got, list) and got == pytest.approx([5.0, 3.0], rel=1e-15)


def test_module_with_several_functions():
    source = src("return x * y") + "\n\ndef g(a):\n    b = a * a\n    return b\n"
    namespace: dict = {}
    exec(stagegen.generate(source), namespace)
    assert namespace["f_backward"](2.0, 3.0) == pytest.approx((3.0, 2.0))
    assert namespace["g_backward"](3.0, db=0.5) == pytest.approx(3.0)
    only_g: dict = {}
    exec(stagegen.generate(source, "g"), only_g)
    assert "g_backward" in only_g and "f_backward" not in only_g
    report = stagegen.verify(source)
    assert [fr.name for fr in report.functions] == ["f", "g"]


def test_generation_is_deterministic():
    source = CASES[IDS.index("long_chain")].source
    assert stagegen.generate(source) == stagegen.generate(source)
    assert stagegen.generate(source, split=True) == stagegen.generate(source, split=True)


# Non-differentiable points, with the documented convention: abs'(0) = 0; max and min send the
# whole gradient to the first of the tied arguments.
@pytest.mark.parametrize(
    "body, params, args, expected",
    [
        ("return abs(x)", "x", (0.0,), 0.0),
        ("return abs(x)", "x", (-0.0,), 0.0),
        ("return abs(x - y)", "x, y", (1.5, 1.5), (0.0, 0.0)),
        ("return abs(x)", "x", (-2.0,), -1.0),
        ("return abs(x)", "x", (2.0,), 1.0),
        ("return max(x, y)", "x, y", (1.5, 1.5), (1.0, 0.0)),
        ("return max(y, x)", "x, y", (1.5, 1.5), (0.0, 1.0)),
        ("return min(x, y)", "x, y", (1.5, 1.5), (1.0, 0.0)),
        ("return min(y, x)", "x, y", (1.5, 1.5), (0.0, 1.0)),
        ("return max(x, y, z)", "x, y, z", (2.0, 2.0, 2.0), (1.0, 0.0, 0.0)),
        ("return max(x, y, z)", "x, y, z", (1.0, 2.0, 2.0), (0.0, 1.0, 0.0)),
        ("return max(x, y, z)", "x, y, z", (2.0, 1.0, 2.0), (1.0, 0.0, 0.0)),
        ("return min(x, y, z)", "x, y, z", (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)),
        ("return min(x, y, z)", "x, y, z", (3.0, 1.0, 1.0), (0.0, 1.0, 0.0)),
        ("return min(x, y, z)", "x, y, z", (1.0, 3.0, 1.0), (1.0, 0.0, 0.0)),
        ("return max(x, x)", "x", (0.7,), 1.0),
        ("return max(0.0, x)", "x", (0.0,), 0.0),
        ("return max(x, 0.0)", "x", (0.0,), 1.0),
    ],
    ids=[
        "abs_at_0", "abs_at_minus_0", "abs_of_difference_at_tie", "abs_negative", "abs_positive",
        "max_tie_first", "max_tie_first_is_y", "min_tie_first", "min_tie_first_is_y",
        "max3_all_tied", "max3_tie_2nd_3rd", "max3_tie_1st_3rd", "min3_all_tied", "min3_tie_2nd_3rd",
        "min3_tie_1st_3rd", "max_same_argument", "relu_at_0_constant_first", "relu_at_0_x_first",
    ],
)  # fmt: skip
def test_non_differentiable_points(body, params, args, expected):
    backward = backward_of(src(body, params))
    got = backward(*args)
    assert got == expected
    assert type(got) is tuple if isinstance(expected, tuple) else type(got) is float
    assert backward(*args, dout=2.5) == scaled(expected, 2.5)


# ---------------------------------------------------------------------------- property test

PARAMS = ("a", "b", "c")
BINARY = ("{} + {}", "{} - {}", "{} * {}", "{} / (1.0 + {} * {})")
UNARY = ("math.exp(math.tanh({}))", "math.tanh({})", "math.sin({})", "{} ** 2")


@st.composite
def straight_line_programs(draw):
    n_params = draw(st.integers(2, 3))
    names = list(PARAMS[:n_params])
    lines = []
    for k in range(1, draw(st.integers(3, 8)) + 1):
        if draw(st.booleans()):
            a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
            template = draw(st.sampled_from(BINARY))
            expr = template.format(a, b, b) if template.count("{}") == 3 else template.format(a, b)
        else:
            expr = draw(st.sampled_from(UNARY)).format(draw(st.sampled_from(names)))
        lines.append(f"t{k} = {expr}")
        names.append(f"t{k}")
    lines.append(f"return {names[-1]}")
    point = tuple(draw(st.floats(-1.5, 1.5, allow_nan=False)) for _ in range(n_params))
    return src("\n".join(lines), ", ".join(PARAMS[:n_params])), point


@settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(straight_line_programs())
def test_random_programs_match_finite_differences(program):
    source, point = program
    f = forward_of(source)
    try:
        value = f(*point)
    except (ValueError, ZeroDivisionError, OverflowError):
        assume(False)
    assume(math.isfinite(value) and abs(value) < 1e6)
    backward = backward_of(source)
    want = fd_gradient(f, list(point), range(len(point)))
    assert_close(backward(*point), want, abs_tol=FD_NOISE * max(1.0, abs(value)), where=source)
