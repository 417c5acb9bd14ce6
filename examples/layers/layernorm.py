"""Layer normalization: like batch normalization, but each row is normalized over its features."""

import numpy as np


def layernorm(x: "N, D", gamma: "D", beta: "D", eps=1e-5):
    mu = x.mean(axis=1, keepdims=True)
    xmu = x - mu
    var = (xmu**2).mean(axis=1, keepdims=True)
    xhat = xmu / np.sqrt(var + eps)
    out = gamma * xhat + beta
    return out
