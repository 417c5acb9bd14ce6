"""Three levels of calls, a helper called twice, a default argument and a loop over a helper."""

import math


def square(x):
    return x * x


def norm2(a, b):
    aa = square(a)
    bb = square(b)
    return math.sqrt(aa + bb)


def scaled_tanh(x, gain=2.0):
    t = math.tanh(x)
    return gain * t


def unit(x, y):
    h = scaled_tanh(x)
    k = scaled_tanh(y, 0.5)
    n = norm2(h, k)
    return n


def deep(x, y, steps):
    s = x
    for i in range(steps):
        s = unit(s, y)
    return s
