"""The Huber loss of a residual r: quadratic near zero, linear beyond delta.

Written with an `if`, as one would by hand. At r = ±delta the two branches meet with the
same slope; the gradient is that of the branch the forward took.
"""


def huber(r, delta):
    if abs(r) <= delta:
        loss = 0.5 * r**2
    else:
        loss = delta * (abs(r) - 0.5 * delta)
    return loss
