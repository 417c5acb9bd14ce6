"""A one-unit recurrent network unrolled over three inputs.

The hidden state h is re-assigned at every step: stagegen versions it (h, h_1, h_2, ...)
so each step's value stays available to the backward pass, and the gradient on the shared
weights adds up over the steps.
"""

import math


def rnn(wh, wx, b, x0, x1, x2):
    h = math.tanh(wx * x0 + b)
    h = math.tanh(wh * h + wx * x1 + b)
    h = math.tanh(wh * h + wx * x2 + b)
    loss = (h - 0.5) ** 2
    return loss
