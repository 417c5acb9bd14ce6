"""Word embedding from the course's rnn_layers.py (assignment 3), the forward pass only, as
students write it: no shape annotations, the course's docstring, placeholders.

A module of its own because it indexes with a two-dimensional integer array (`W[x]`, x of shape
(N, T)), so that the rest of rnn_layers.py does not share its status.
"""

import numpy as np


def word_embedding_forward(x, W):
    """
    Forward pass for word embeddings. We operate on minibatches of size N where
    each sequence has length T. We assume a vocabulary of V words, assigning
    each word to a vector of dimension D.

    Inputs:
    - x: Integer array of shape (N, T) giving indices of words. Each element idx
      of x must be in the range 0 <= idx < V.
    - W: Weight matrix of shape (V, D) giving word vectors for all words.

    Returns a tuple of:
    - out: Array of shape (N, T, D) giving word vectors for all input words.
    - cache: Values needed for the backward pass
    """
    out, cache = None, None
    out = W[x]
    cache = (x, W)
    return out, cache
