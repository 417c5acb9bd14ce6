"""The course's rnn_layers.py (assignment 3): one step of a vanilla RNN, the forward pass only,
as students write it: no shape annotations, the course's docstring, placeholders.

The rest of the file is split by the forms it needs, so that each module's status is its own
(a module is generated, or refused, as a whole): word embedding in `rnn_embedding.py`, the
temporal affine layer and softmax loss in `rnn_temporal.py`, one LSTM step in `rnn_lstm.py`.
"""

import numpy as np


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """
    Run the forward pass for a single timestep of a vanilla RNN with a tanh
    activation.

    The input data has dimension D, the hidden state has dimension H, and the
    minibatch has size N.

    Inputs:
    - x: Input data for this timestep, of shape (N, D).
    - prev_h: Hidden state from previous timestep, of shape (N, H)
    - Wx: Weight matrix for input-to-hidden connections, of shape (D, H)
    - Wh: Weight matrix for hidden-to-hidden connections, of shape (H, H)
    - b: Biases of shape (H,)

    Returns a tuple of:
    - next_h: Next hidden state, of shape (N, H)
    - cache: Tuple of values needed for the backward pass.
    """
    next_h, cache = None, None
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    return next_h, cache
