"""NumPy array functions (issue 6): the same pipeline as scalar code, parse -> program ->
reverse -> emit, with shapes worked out while reading, so that every gradient is written for
its exact shape: ``dw = x.T.dot(dout)``, ``db = dout.sum(axis=0)``."""
