"""The notes' hand-written staged code, as the notes write it, for the runtime comparison.

Each function runs the notes' forward pass and then their backward pass, line for line
(including the notes' ``(1) *`` local factors, and the forward value ``f`` the backward never
reads): this is the code a careful engineer writes by hand, and what the generated backward
is measured against. The notes assume an upstream gradient of 1, so there is no ``df``.
"""

import math


def staged_hand(x, y):
    """The notes' "Backprop in practice: Staged computation" example, forward and backward."""
    # forward pass
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator   #(1)
    num = x + sigy  # numerator                               #(2)
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator #(3)
    xpy = x + y  # (4)
    xpysqr = xpy**2  # (5)
    den = sigx + xpysqr  # denominator                        #(6)
    invden = 1.0 / den  # (7)
    f = num * invden  # done!                                 #(8)  # noqa: F841
    # backprop f = num * invden
    dnum = invden  # gradient on numerator                             #(8)
    dinvden = num  # (8)
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den**2)) * dinvden  # (7)
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden  # (6)
    dxpysqr = (1) * dden  # (6)
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr  # (5)
    # backprop xpy = x + y
    dx = (1) * dxpy  # (4)
    dy = (1) * dxpy  # (4)
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx  # Notice += !! See notes below  #(3)
    # backprop num = x + sigy
    dx += (1) * dnum  # (2)
    dsigy = (1) * dnum  # (2)
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += ((1 - sigy) * sigy) * dsigy  # (1)
    # done! phew
    return dx, dy


def neuron_hand(w, x):
    """The notes' 2-D neuron, forward and backward ("Modularity: Sigmoid example")."""
    # forward pass
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1 + math.exp(-dot))  # sigmoid function
    # backward pass through the neuron (backpropagation)
    ddot = (1 - f) * f  # gradient on dot variable, using the sigmoid gradient derivation
    dx = [w[0] * ddot, w[1] * ddot]  # backprop into x
    dw = [x[0] * ddot, x[1] * ddot, 1.0 * ddot]  # backprop into w
    # we're done! we have the gradients on the inputs to the circuit
    return dw, dx


HAND_WRITTEN = {"staged": staged_hand, "neuron": neuron_hand}
