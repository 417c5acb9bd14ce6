"""A logistic regression's loss on one example, with the sigmoid as a helper of its own."""

import math


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def loss(w1, w2, b, x1, x2, y):
    z = w1 * x1 + w2 * x2 + b
    p = sigmoid(z)
    # cross-entropy of the label y (0 or 1) under the predicted probability p
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))
