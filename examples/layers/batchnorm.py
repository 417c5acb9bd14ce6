"""Batch normalization (training mode), staged one step per line.

Each feature is normalized over the batch, then scaled by gamma and shifted by beta.
"""

import numpy as np


def batchnorm(x: "N, D", gamma: "D", beta: "D", eps=1e-5):
    mu = np.mean(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = np.mean(sq, axis=0)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta
    return out
