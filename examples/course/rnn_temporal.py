"""The temporal layers from the course's rnn_layers.py (assignment 3), forward passes only, as
students write them: no shape annotations, the course's docstrings, `N, T, D = x.shape`.

The loss returns the loss only (the course's version also returns the gradient, which is what
stagegen writes) and takes no `verbose` flag. Both flatten the time axis into the batch
(`x.reshape(N * T, D)`), so they share a module of their own.
"""

import numpy as np


def temporal_affine_forward(x, w, b):
    """
    Forward pass for a temporal affine layer. The input is a set of
    D-dimensional vectors arranged into a minibatch of N timeseries, each of
    length T. An affine function transforms each of those vectors into a new
    vector of dimension M.

    Inputs:
    - x: Input data of shape (N, T, D)
    - w: Weights of shape (D, M)
    - b: Biases of shape (M,)

    Returns a tuple of:
    - out: Output data of shape (N, T, M)
    - cache: Values needed for the backward pass
    """
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    cache = x, w, b, out
    return out, cache


def temporal_softmax_loss(x, y, mask):
    """
    A temporal version of softmax loss for use in RNNs. Predictions are made
    over a vocabulary of size V for each timestep of a timeseries of length T,
    over a minibatch of size N. The loss is a cross-entropy at each timestep,
    summed over the timesteps and averaged over the minibatch. The mask tells
    which timesteps count (sequences padded with NULL tokens).

    Inputs:
    - x: Input scores, of shape (N, T, V)
    - y: Ground-truth indices, of shape (N, T) where each element is in the
      range 0 <= y[i, t] < V
    - mask: Boolean array of shape (N, T) where mask[i, t] tells whether or not
      the scores at x[i, t] should contribute to the loss.

    Returns:
    - loss: Scalar giving loss
    """
    N, T, V = x.shape

    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)

    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * np.log(probs[np.arange(N * T), y_flat])) / N
    return loss
