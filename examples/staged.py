"""The staged example of the notes ("Backprop in practice: Staged computation").

    f(x, y) = (x + sigmoid(y)) / (sigmoid(x) + (x + y)**2)

written the way the notes stage it: one simple expression per line.
"""

import math


def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator
    num = x + sigy  # numerator
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr  # denominator
    invden = 1.0 / den
    f = num * invden  # done!
    return f
