"""A softplus with a hand-written, numerically stable backward, which stagegen proves and uses.

softplus(x) = log(1 + exp(x)) overflows for large x if written naively; its derivative is the
sigmoid, which we write in the form that never overflows."""

import math


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def softplus_backward(x, dout=1.0):
    if x >= 0:
        sig = 1.0 / (1.0 + math.exp(-x))
    else:
        e = math.exp(x)
        sig = e / (1.0 + e)
    return sig * dout


def smooth_hinge(w, x, y):
    margin = 1.0 - y * w * x
    return softplus(margin)
