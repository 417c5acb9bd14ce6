"""The notes' 2-D neuron: a dot product of weights and inputs, squashed by a sigmoid.

The sigmoid stays one gate, so its local gradient reuses the forward value: (1 - f) * f.
"""

import math


def neuron(w, x):
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1 + math.exp(-dot))  # sigmoid function
    return f
