"""The SVM loss from the course's layers.py (assignment 2), vectorized, the forward part only, as
students write it: no shape annotations, the course's docstring.

The course's `svm_loss` returns `loss, dx`; this one returns the loss (its gradient is what
stagegen writes). It is a module of its own because it zeroes the correct classes' margins by
writing into the array (`margins[np.arange(N), y] = 0`), which stagegen does not read, so that
the rest of layers.py does not share its status.
"""

import numpy as np


def svm_loss(x, y):
    """
    Computes the loss for multiclass SVM classification.

    Inputs:
    - x: Input data, of shape (N, C) where x[i, j] is the score for the jth
      class for the ith input.
    - y: Vector of labels, of shape (N,) where y[i] is the label for x[i] and
      0 <= y[i] < C

    Returns:
    - loss: Scalar giving the loss
    """
    loss = None
    N = x.shape[0]
    correct_class_scores = x[np.arange(N), y]
    margins = np.maximum(0, x - correct_class_scores[:, np.newaxis] + 1.0)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N
    return loss
