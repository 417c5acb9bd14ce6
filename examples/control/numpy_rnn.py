"""A vanilla RNN over T time steps in NumPy, as the course writes it, returning a loss of the
last hidden state: h = tanh(x_t Wx + h Wh + b) at every step."""

import numpy as np


def rnn_loss(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    h = h0
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t, :] @ Wx + h @ Wh + b)
    loss = np.sum(h * h)
    return loss
