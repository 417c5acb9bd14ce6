"""Negative log-likelihood of x under a normal distribution with mean mu and scale sigma."""

import math as m


def gaussian_nll(x, mu, sigma=1.0):
    z = (x - mu) / sigma
    nll = 0.5 * z**2 + m.log(sigma) + 0.5 * m.log(2 * m.pi)
    return nll
