"""The course's affine-ReLU layer, composed from its parts as layer_utils.py composes it."""

import numpy as np


def affine_forward(x: "N, D", w: "D, M", b: "M"):
    out = x.dot(w) + b
    return out


def relu_forward(x: "N, M"):
    out = np.maximum(0, x)
    return out


def affine_relu_forward(x: "N, D", w: "D, M", b: "M"):
    a = affine_forward(x, w, b)
    out = relu_forward(a)
    return out


def two_layer_net(x: "N, D", w1: "D, H", b1: "H", w2: "H, C", b2: "C"):
    """A two-layer net's squared-error loss, and its scores (one upstream gradient each)."""
    h = affine_relu_forward(x, w1, b1)
    scores = affine_forward(h, w2, b2)
    loss = 0.5 * np.sum(scores * scores)
    return loss, scores
