"""Clamp x into [lo, hi] with early returns: the gradient goes to whichever value was
returned (x inside the interval, lo or hi outside it)."""


def clamp(x, lo, hi):
    if x < lo:
        return lo
    elif x > hi:
        return hi
    return x
