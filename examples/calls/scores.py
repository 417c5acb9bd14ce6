"""A two-class linear model that returns its loss and its scores, as training code often does."""

import math


def scores_of(w1, w2, x1, x2):
    s1 = w1 * x1
    s2 = w2 * x2
    return s1, s2


def loss_and_scores(w1, w2, x1, x2):
    s1, s2 = scores_of(w1, w2, x1, x2)
    m = max(s1, s2)
    log_z = m + math.log(math.exp(s1 - m) + math.exp(s2 - m))
    loss = log_z - s1  # the first class is the right one
    return loss, s1
