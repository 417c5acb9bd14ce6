"""Dropout from the course's layers.py (assignment 2), the forward pass only, as students write
it: no shape annotations, the course's docstring, placeholders.

The course passes `dropout_param = {"mode": "train", "p": p, "seed": seed}`; here `p` and `seed`
are plain parameters and the mode is training (inverted dropout: the kept units are scaled by
1 / p). The backward draws the same mask again from the same seed.
"""

import numpy as np


def dropout_forward(x, p, seed):
    """
    Performs the forward pass for (inverted) dropout, in training mode.

    Inputs:
    - x: Input data, of any shape
    - p: Dropout parameter. We keep each neuron output with probability p.
    - seed: Seed for the random number generator, so that the mask can be drawn
      again.

    Outputs:
    - out: Array of the same shape as x.
    - cache: the dropout mask.
    """
    mask = None
    out = None
    np.random.seed(seed)
    mask = (np.random.rand(*x.shape) < p) / p
    out = x * mask
    cache = mask
    return out, cache
