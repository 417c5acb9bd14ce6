"""The notes' staged example written as one expression.

Run `stagegen expression.py --split` to have stagegen stage it the way the notes do by hand:
sigy, num, sigx, xpy, xpysqr, den.
"""

import math


def f(x, y):
    return (x + 1.0 / (1 + math.exp(-y))) / (1.0 / (1 + math.exp(-x)) + (x + y) ** 2)
