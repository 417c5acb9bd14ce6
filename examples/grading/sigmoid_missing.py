"""The notes' staged example with ONE planted mistake in the hand-written backward:
the sigmoid's local gradient left out (its line says so in a comment).

    stagegen grade sigmoid_missing.py::f_backward
"""

import math


def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator    #(1)
    num = x + sigy  # numerator                                #(2)
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator  #(3)
    xpy = x + y  #(4)
    xpysqr = xpy**2  #(5)
    den = sigx + xpysqr  # denominator  #(6)
    invden = 1.0 / den  #(7)
    f = num * invden  # done!  #(8)
    return f


def f_backward(x, y, df=1.0):
    # forward pass, replayed: the backward reads these values
    sigy = 1.0 / (1 + math.exp(-y))  #(1)
    num = x + sigy  #(2)
    sigx = 1.0 / (1 + math.exp(-x))  #(3)
    xpy = x + y  #(4)
    xpysqr = xpy**2  #(5)
    den = sigx + xpysqr  #(6)
    invden = 1.0 / den  #(7)
    # backprop f = num * invden
    dnum = invden * df  # gradient on numerator  #(8)
    dinvden = num * df  #(8)
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den**2)) * dinvden  #(7)
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden  #(6)
    dxpysqr = (1) * dden  #(6)
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr  #(5)
    # backprop xpy = x + y
    dx = (1) * dxpy  #(4)
    dy = (1) * dxpy  #(4)
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx  # Notice += !! See notes below  #(3)
    # backprop num = x + sigy
    dx += (1) * dnum  #(2)
    dsigy = (1) * dnum  #(2)
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += (1) * dsigy  #(1)  <- planted mistake
    # done! phew
    return dx, dy
