"""The loss of the course's TwoLayerNet (fc_net.py, assignment 2), written as a function of the
net's parameters: affine - relu - affine - softmax, with L2 regularization, calling the layers
as students do (the class keeps the weights in `self.params`; here they are parameters).

The course imports the layers with `from ..layers import *`; here they come by name from the
layers.py beside this file.
"""

import numpy as np

from layers import affine_forward, relu_forward, softmax_loss


def two_layer_loss(X, y, W1, b1, W2, b2, reg=0.0):
    """
    Compute the loss for a minibatch of data.

    Inputs:
    - X: Array of input data of shape (N, d_1, ..., d_k)
    - y: Array of labels, of shape (N,). y[i] gives the label for X[i].
    - W1: First layer weights, of shape (D, H)
    - b1: First layer biases, of shape (H,)
    - W2: Second layer weights, of shape (H, C)
    - b2: Second layer biases, of shape (C,)
    - reg: Scalar giving L2 regularization strength.

    Returns:
    - loss: Scalar value giving the loss
    """
    loss = None
    hidden, cache_1 = affine_forward(X, W1, b1)
    hidden_relu, cache_relu = relu_forward(hidden)
    scores, cache_2 = affine_forward(hidden_relu, W2, b2)
    loss = softmax_loss(scores, y)
    loss += 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    return loss
