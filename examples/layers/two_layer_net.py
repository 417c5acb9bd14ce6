"""The loss of a two-layer net: affine, ReLU, affine, softmax, with L2 regularization."""

import numpy as np


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C", reg=0.0):
    hidden = np.maximum(0, X @ W1 + b1)
    scores = hidden @ W2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = X.shape[0]
    data_loss = -np.sum(log_probs[np.arange(n), y]) / n
    loss = data_loss + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    return loss
