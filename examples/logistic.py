"""Logistic regression: the loss on one example, in the numerically stable log1p form.

w holds two weights, x the two features, b the bias and y the label (+1 or -1).
"""

from math import exp, log1p


def logistic_loss(w, x, b, y):
    z = w[0] * x[0] + w[1] * x[1] + b  # the score
    margin = y * z
    loss = log1p(exp(-margin))  # log(1 + e^-margin)
    return loss
