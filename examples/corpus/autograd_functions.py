# Functions of autograd that branch or loop on numbers or NumPy arrays, copied as written,
# for stagegen's corpus measurement (examples/corpus/README.md).
#
# Source: https://github.com/HIPS/autograd, commit bff107b8d71a444a1160deade3e1cbd0b92f4fa6.
# License: MIT. Copyright (c) 2025 by the President and Fellows of Harvard University.
#
# - f: tests/test_wrappers.py, defined inside checkpoint_memory(); moved to the top level
#   (its four lines dedented), nothing else changed.
# - fun: examples/sinusoid.py, the second `fun` ("Taylor approximation to sin function").
# - project: examples/fluidsim/fluidsim.py.
#
# The rest of autograd's tests/ has no other such function: its loops and branches are in the
# test harness, in functions of dicts (tests/test_dict.py), of a function (testfun in
# tests/test_wrappers.py), or in lambdas on complex numbers (tests/test_logic.py).
# Added: `import autograd.numpy as np` (the files' own import); nothing else.

import autograd.numpy as np


def f(a):
    for _ in range(10):
        a = np.sin(a**2 + 1)
    return a


# Taylor approximation to sin function
def fun(x):
    currterm = x
    ans = currterm
    for i in range(1000):
        print(i, end=" ")
        currterm = -currterm * x**2 / ((2 * i + 3) * (2 * i + 2))
        ans = ans + currterm
        if np.abs(currterm) < 0.2:
            break  # (Very generous tolerance!)

    return ans


def project(vx, vy):
    """Project the velocity field to be approximately mass-conserving,
    using a few iterations of Gauss-Seidel."""
    p = np.zeros(vx.shape)
    h = 1.0 / vx.shape[0]
    div = (
        -0.5
        * h
        * (
            np.roll(vx, -1, axis=0)
            - np.roll(vx, 1, axis=0)
            + np.roll(vy, -1, axis=1)
            - np.roll(vy, 1, axis=1)
        )
    )

    for k in range(10):
        p = (
            div
            + np.roll(p, 1, axis=0)
            + np.roll(p, -1, axis=0)
            + np.roll(p, 1, axis=1)
            + np.roll(p, -1, axis=1)
        ) / 4.0

    vx -= 0.5 * (np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)) / h
    vy -= 0.5 * (np.roll(p, -1, axis=1) - np.roll(p, 1, axis=1)) / h
    return vx, vy
