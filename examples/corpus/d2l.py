# The control-flow example of Dive into Deep Learning, copied as written, for stagegen's corpus
# measurement (examples/corpus/README.md).
#
# Source: https://github.com/d2l-ai/d2l-en, chapter_preliminaries/autograd.md, section
#         "Gradients and Python Control Flow", the `%%tab mxnet` cell (the tab written with
#         NumPy's API: MXNet's `np` follows NumPy), commit
#         23d7a5aecceee57d1292c56e90cce307f183bb0a (2024-03-16).
# License: the book's sample code is under a modified MIT license (LICENSE-SAMPLECODE):
#          Copyright 2019 Amazon.com, Inc. or its affiliates. All Rights Reserved.
#          Permission is hereby granted, free of charge, to any person obtaining a copy of this
#          software and associated documentation files (the "Software"), to deal in the Software
#          without restriction, including without limitation the rights to use, copy, modify,
#          merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
#          permit persons to whom the Software is furnished to do so.
# The book calls it with a scalar, `a = np.random.normal()`.
# Added: `import numpy as np` (the chapter's mxnet tab imports `from mxnet import np`).

import numpy as np


def f(a):
    b = a * 2
    while np.linalg.norm(b) < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c
