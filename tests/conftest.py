import textwrap

import pytest

import stagegen
from stagegen.api import load_backward_module


@pytest.fixture
def backward():
    """backward(source, name, **options) -> the generated NAME_backward function."""

    def make(source: str, name: str, **options):
        text = stagegen.generate(textwrap.dedent(source), function=name, **options)
        return load_backward_module(text)[f"{name}_backward"]

    return make
