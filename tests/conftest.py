import os
import tempfile
import textwrap

import pytest

# The decorator's on-disk cache goes to a fresh directory for the test run, never to the
# user's own cache (set before any test module decorates a function at import).
os.environ["STAGEGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="stagegen-test-cache-")

import stagegen
from stagegen.program import backward_name
from stagegen.api import load_backward_module


@pytest.fixture
def backward():
    """backward(source, name, **options) -> the generated NAME_backward function."""

    def make(source: str, name: str, **options):
        text = stagegen.generate(textwrap.dedent(source), function=name, **options)
        return load_backward_module(text)[backward_name(name)]

    return make
