"""An affine (fully connected) layer: out = x w + b, for a batch of N rows of D features."""

import numpy as np


def affine(x: "N, D", w: "D, M", b: "M"):
    out = x.dot(w) + b
    return out
