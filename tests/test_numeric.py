"""stagegen.numeric, the one central-difference implementation (the proofs, explain and the
tests use it): against analytic derivatives, for numbers, lists and arrays (broadcasting, a 0-d
upstream), in float64 and in 50-digit mpmath; and a planted wrong gradient it must reject."""

import math

import mpmath
import pytest

np = pytest.importorskip("numpy")

from stagegen.numeric import (  # noqa: E402
    FLOAT64_STEP,
    MPMATH_STEP_DIGITS,
    central_difference,
    central_differences,
    copies,
    indices,
    step_for,
)

RTOL = 1e-8  # float64 central differences against the analytic derivative


def course_error(a, b) -> float:
    """The course's relative error over a whole gradient: max |a - b| / max(|a| + |b|)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a) + np.abs(b)))


# ---------------------------------------------------------------------------- numbers and lists


@pytest.mark.parametrize("x, y", [(0.3, -1.2), (2.5, 0.7), (-40.0, 3.0), (1e-3, 1e3)])
def test_numbers_against_the_analytic_derivative(x, y):
    def f(x, y):
        return math.sin(x) * y + math.exp(y / 1000)

    got = central_differences(f, [x, y], [0, 1])
    assert got[0] == pytest.approx(math.cos(x) * y, rel=RTOL)
    assert got[1] == pytest.approx(math.sin(x) + math.exp(y / 1000) / 1000, rel=RTOL)


def test_a_list_gets_a_list_gradient_and_an_upstream_scales_it():
    def f(w, x):
        return sum(wi * x**i for i, wi in enumerate(w))

    w, x = [0.5, -1.5, 2.0, 0.25], 1.3
    got = central_differences(f, [w, x], [0, 1], 2.5)
    assert isinstance(got[0], list) and len(got[0]) == len(w)
    assert got[0] == pytest.approx([2.5 * x**i for i in range(len(w))], rel=RTOL)
    dx = sum(i * wi * x ** (i - 1) for i, wi in enumerate(w) if i)
    assert got[1] == pytest.approx(2.5 * dx, rel=RTOL)
    assert w == [0.5, -1.5, 2.0, 0.25]  # the caller's list is left as it was


def test_one_element_of_a_list_and_the_elements_option():
    def f(w):
        return w[0] * w[1] ** 3

    w = [1.5, -0.8]
    assert central_difference(f, [w], 0, (1,)).slope() == pytest.approx(
        3 * w[0] * w[1] ** 2, rel=RTOL
    )
    only = central_differences(f, [w], [0], elements={0: [(0,)]})[0]
    assert only[0] == pytest.approx(w[1] ** 3, rel=RTOL) and math.isnan(only[1])


# ---------------------------------------------------------------------------- arrays


def test_arrays_with_broadcasting_and_a_random_upstream():
    rng = np.random.default_rng(0)
    X, b, s = rng.normal(size=(3, 4)), rng.normal(size=4), 0.7
    u = rng.normal(size=(3, 4))

    def f(X, b, s):
        return np.tanh(X + b) * s

    got = central_differences(f, [X, b, s], [0, 1, 2], u)
    local = (1 - np.tanh(X + b) ** 2) * s * u
    assert got[0].shape == X.shape and got[1].shape == b.shape
    assert course_error(got[0], local) < RTOL
    assert course_error(got[1], local.sum(axis=0)) < RTOL  # summed over the broadcast axis
    assert got[2] == pytest.approx(float(np.sum(np.tanh(X + b) * u)), rel=RTOL)


def test_reductions_and_products():
    rng = np.random.default_rng(1)
    X, W = rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    u = rng.normal(size=2)

    def f(X, W):
        return (X @ W).sum(axis=0)

    got = central_differences(f, [X, W], [0, 1], u)
    assert course_error(got[0], np.ones((5, 1)) * u @ W.T) < RTOL
    assert course_error(got[1], X.T @ (np.ones((5, 1)) * u)) < RTOL


@pytest.mark.parametrize("upstream", [np.array(2.5), 2.5])
def test_a_0d_upstream_scales_an_array_output_and_a_number_output(upstream):
    rng = np.random.default_rng(2)
    X = rng.uniform(0.5, 1.5, size=(2, 3))

    def square(X):
        return X * X

    def total(X):
        return np.sum(np.log(X))

    assert course_error(central_differences(square, [X], [0], upstream)[0], 2.5 * 2 * X) < RTOL
    assert course_error(central_differences(total, [X], [0], upstream)[0], 2.5 / X) < RTOL


def test_a_forward_that_updates_its_arguments_in_place_sees_fresh_copies():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])

    def f(X):
        X *= 3.0  # in place: the next moved point must not start from this
        return X

    got = central_differences(f, [X], [0])[0]
    assert course_error(got, np.full((2, 2), 3.0)) < RTOL
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.0]])
    assert copies([X])[0] is not X


def test_outside_the_domain_is_none():
    def f(x):
        return math.log(x) if x > 0 else None

    assert central_differences(f, [1e-7], [0]) is None  # x - h < 0 with h = 1e-6
    assert central_differences(f, [0.5], [0])[0] == pytest.approx(2.0, rel=RTOL)


def test_indices_of_each_kind_of_argument():
    assert indices(1.5) == [()]
    assert indices([1.0, 2.0]) == [(0,), (1,)]
    assert indices(np.zeros((2, 1))) == [(0, 0), (1, 0)]
    assert indices(np.array(3.0)) == [()]


# ---------------------------------------------------------------------------- the step


def test_the_step_is_relative_above_one_and_chosen_by_the_kind_of_number():
    assert step_for(0.25) == FLOAT64_STEP
    assert step_for(-400.0) == pytest.approx(400 * FLOAT64_STEP)
    assert step_for(np.float64(3.0)) == pytest.approx(3 * FLOAT64_STEP)
    assert step_for(2.0, step=1e-3) == pytest.approx(2e-3)
    with mpmath.workdps(65):
        h = step_for(mpmath.mpf(5))
        assert isinstance(h, mpmath.mpf)
        assert h == 5 * mpmath.mpf(10) ** -MPMATH_STEP_DIGITS


def test_the_divisor_is_the_width_the_floats_moved():
    x = 1e6 + 0.3  # x + h and x - h are rounded: their distance is not exactly 2h
    d = central_difference(lambda x: 2.0 * x, [x], 0)
    h = step_for(x)
    assert d.width == (x + h) - (x - h) and d.width != 2 * h
    assert d.slope() == pytest.approx(2.0, rel=1e-12)


def test_mpmath_numbers_give_the_derivative_to_far_more_than_float_digits():
    with mpmath.workdps(65):
        x = [mpmath.mpf("0.7"), mpmath.mpf("-1.3")]

        def f(a, b):
            return mpmath.exp(a) * mpmath.sin(b)

        got = central_differences(f, x, [0, 1])
        assert abs(got[0] - mpmath.exp(x[0]) * mpmath.sin(x[1])) < mpmath.mpf(10) ** -35
        assert abs(got[1] - mpmath.exp(x[0]) * mpmath.cos(x[1])) < mpmath.mpf(10) ** -35

        arr = np.array([mpmath.mpf("0.5"), mpmath.mpf("2.0")], dtype=object)
        weights = np.array([1.5, -2.0])
        grad = central_differences(lambda v: v * v * v, [arr], [0], weights)[0]
        assert grad.dtype == object
        for g, v, w in zip(grad, arr, weights):
            assert abs(g - 3 * v * v * w) < mpmath.mpf(10) ** -35


def test_the_rounding_bound_covers_the_error_of_a_quotient():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 3))
    u = rng.normal(size=(4, 3))
    for index in indices(X):
        d = central_difference(np.sin, [X], 0, index)
        want = float(np.cos(X[index]) * u[index])
        truncation = d.width**2 / 24  # h**2 |f'''| / 6 with |f'''| <= 1
        assert 0 < d.rounding(u) < 1e-8
        assert abs(d.slope(u) - want) <= d.rounding(u) + truncation * abs(u[index])


# ---------------------------------------------------------------------------- it must reject


def test_a_planted_wrong_gradient_is_rejected_and_the_right_one_accepted():
    """A softmax cross-entropy layer: the right gradient agrees to 1e-7; the same gradient with
    one element off by a millionth of the largest one, a gradient that forgets the 1/N of the
    mean, and one that forgets to sum over the broadcast axis do not."""
    rng = np.random.default_rng(4)
    N, C = 5, 4
    scores, b = rng.normal(size=(N, C)), rng.normal(size=C)
    labels = rng.integers(0, C, size=N)

    def loss(scores, b):
        z = scores + b
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return -np.mean(np.log(p[np.arange(N), labels]))

    z = scores + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = p.copy()
    dz[np.arange(N), labels] -= 1
    dz /= N
    numeric = central_differences(loss, [scores, b], [0, 1])
    assert course_error(dz, numeric[0]) < 1e-7
    assert course_error(dz.sum(axis=0), numeric[1]) < 1e-7

    off = dz.copy()
    off[2, 1] += 1e-6 * np.max(np.abs(dz))
    assert course_error(off, numeric[0]) > 1e-7
    assert course_error(dz * N, numeric[0]) > 1e-7  # the mean's 1/N forgotten
    assert np.shape(dz) != np.shape(numeric[1])  # db without the sum over the batch axis
    assert course_error(dz[0], numeric[1]) > 1e-7


def test_an_output_the_move_leaves_unchanged_still_counts_in_the_rounding_bound():
    # A saturated tanh: its slope (~1.3e-12 here) moves the output by less than a unit in the
    # last place, so the quotient is exactly 0. The rounding bound must cover the true slope,
    # or a correct backward is reported as wrong (found by the generation benchmark).
    def forward(x):
        return np.tanh(x + 14.0)

    x = np.array([0.3, -0.2, 0.1])
    d = central_difference(forward, [x], 0, (0,))
    true_slope = 1.0 - np.tanh(14.3) ** 2
    assert d.slope(1.0) == 0.0 and true_slope > 0
    assert d.rounding(1.0) >= true_slope
    # and an output that does change is still bounded by units of itself, not by the others
    moving = central_difference(lambda t: np.array([t[0] * 3.0, 5.0]), [x], 0, (0,))
    assert moving.slope(1.0) == pytest.approx(3.0)
    assert moving.rounding(1.0) < 1e-6
