"""log(sum(exp(x))) over a list, written with loops: first the running maximum (so that no
exp overflows), then the sum of the shifted exponentials."""

import math


def logsumexp(x):
    m = x[0]
    for i in range(1, len(x)):
        m = max(m, x[i])
    s = 0.0
    for xi in x:
        s += math.exp(xi - m)
    return m + math.log(s)
