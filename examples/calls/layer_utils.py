"""The course's layers as its layer_utils.py composes them: each forward returns its output and a
cache (saved values, which have no gradient), with shape annotations added."""

import numpy as np


def affine_forward(x: "N, D", w: "D, M", b: "M"):
    out = None
    out = x.dot(w) + b
    cache = (x, w, b)
    return out, cache


def relu_forward(x: "N, M"):
    out, cache = None, None
    out = np.maximum(0, x)
    cache = x
    return out, cache


def affine_relu_forward(x: "N, D", w: "D, M", b: "M"):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    cache = (fc_cache, relu_cache)
    return out, cache
