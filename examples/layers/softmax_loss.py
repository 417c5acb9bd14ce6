"""The softmax (cross-entropy) loss of class scores x, for integer labels y, averaged over the batch.

The maximum is subtracted first, for numerical stability; it does not change the loss.
"""

import numpy as np


def softmax_loss(x: "N, C", y: "N"):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_z = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_z
    n = x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    return loss
