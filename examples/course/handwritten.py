"""Good hand-written backward passes for the course's layers in this folder, written as a good
student solution is: the course's calling convention (`affine_backward(dout, cache)`, with the
cache the forward returned), its readable forms (`db = dout.sum(axis=0)`), the compact
batch normalization and softmax gradients.

They are the reference the line counts compare against (`python examples/course/count_lines.py`),
and tests/test_course.py checks each one against central differences of its forward. The losses
have no cache: the course computes `dx` inside the loss function, after the loss; here that part
is a function of its own, which computes again what it reads (the probabilities, the margins),
for an upstream gradient of 1. This module is not a forward: `stagegen` skips it (pyproject.toml).
"""

import numpy as np

from layers import affine_forward, relu_forward


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_backward(dout, cache):
    x = cache
    dx = dout * (x > 0)
    return dx


def batchnorm_backward(dout, cache):
    x, x_hat, sample_mean, sample_var, gamma, eps = cache
    N = x.shape[0]
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = dout.sum(axis=0)
    dx_hat = dout * gamma
    dx = (N * dx_hat - dx_hat.sum(axis=0) - x_hat * np.sum(dx_hat * x_hat, axis=0)) / (
        N * np.sqrt(sample_var + eps)
    )
    return dx, dgamma, dbeta


def layernorm_backward(dout, cache):
    x, x_hat, mu, var, gamma, eps = cache
    D = x.shape[1]
    dgamma = np.sum(dout * x_hat, axis=0)
    dbeta = dout.sum(axis=0)
    dx_hat = dout * gamma
    dx = (
        D * dx_hat
        - dx_hat.sum(axis=1, keepdims=True)
        - x_hat * np.sum(dx_hat * x_hat, axis=1, keepdims=True)
    ) / (D * np.sqrt(var + eps))
    return dx, dgamma, dbeta


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx_flat, dgamma, dbeta = batchnorm_backward(dout_flat, cache)
    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


def dropout_backward(dout, cache):
    mask = cache
    dx = dout * mask
    return dx


def svm_loss_backward(x, y):
    N = x.shape[0]
    correct_class_scores = x[np.arange(N), y]
    margins = np.maximum(0, x - correct_class_scores[:, np.newaxis] + 1.0)
    margins[np.arange(N), y] = 0
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(N), y] -= dx.sum(axis=1)
    dx /= N
    return dx


def softmax_loss_backward(x, y):
    shifted_logits = x - np.max(x, axis=1, keepdims=True)
    probs = np.exp(shifted_logits)
    probs /= np.sum(probs, axis=1, keepdims=True)
    N = x.shape[0]
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return dx


def two_layer_loss_backward(X, y, W1, b1, W2, b2, reg=0.0):
    hidden, cache_1 = affine_forward(X, W1, b1)
    hidden_relu, cache_relu = relu_forward(hidden)
    scores, cache_2 = affine_forward(hidden_relu, W2, b2)
    dscores = softmax_loss_backward(scores, y)
    dhidden_relu, dW2, db2 = affine_backward(dscores, cache_2)
    dhidden = relu_backward(dhidden_relu, cache_relu)
    dX, dW1, db1 = affine_backward(dhidden, cache_1)
    dW1 += reg * W1
    dW2 += reg * W2
    return dW1, db1, dW2, db2


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    dz = dnext_h * (1 - next_h**2)
    dx = dz.dot(Wx.T)
    dprev_h = dz.dot(Wh.T)
    dWx = x.T.dot(dz)
    dWh = prev_h.T.dot(dz)
    db = dz.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx, dWh, db = 0.0, 0.0, 0.0
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(
            dh[:, t, :] + dprev_h, cache[t]
        )
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx, dWh, db = 0.0, 0.0, 0.0
    dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        step = lstm_step_backward(dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dx[:, t, :], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_backward(dout, cache):
    x, w, b, out = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T.dot(dout.reshape(N * T, M))
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss_backward(x, y, mask):
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    probs = np.exp(x_flat - np.max(x_flat, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    dx_flat = probs.copy()
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    dx = dx_flat.reshape(N, T, V)
    return dx


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, a, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dnext_c = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di = dnext_c * g
    df = dnext_c * prev_c
    do = dnext_h * tanh_c
    dg = dnext_c * i
    dprev_c = dnext_c * f
    da = np.hstack((i * (1 - i) * di, f * (1 - f) * df, o * (1 - o) * do, (1 - g**2) * dg))
    dx = da.dot(Wx.T)
    dprev_h = da.dot(Wh.T)
    dWx = x.T.dot(da)
    dWh = prev_h.T.dot(da)
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db
