"""The notes' two small circuits: how the add, mul and max gates treat the gradient."""


def add_mul(x, y, z):
    q = x + y  # the add gate distributes the gradient
    f = q * z  # the mul gate swaps its inputs
    return f


def max_circuit(x, y, z, w):
    xy = x * y
    m = max(z, w)  # the max gate routes the gradient to the larger input
    s = xy + m
    f = s * 2.0
    return f
