"""The multiclass SVM (hinge) loss of class scores x, for integer labels y, averaged over the batch.

Every class counts a margin, the correct one included; its margin is always exactly 1,
so the sum is corrected by n.
"""

import numpy as np


def svm_loss(x: "N, C", y: "N"):
    n = x.shape[0]
    correct = x[np.arange(n), y]
    margins = np.maximum(0, x - correct[:, None] + 1.0)
    loss = (np.sum(margins) - n) / n
    return loss
