"""A compound stage whose inputs meet in one inner node writes that node's gradient once."""

import math

import pytest

import stagegen


def backward_text(source, **options):
    return stagegen.generate(source, **options)


def test_tanh_of_a_sum_names_the_gradient_at_its_input():
    text = backward_text(
        "import math\ndef f(w, x, b):\n    h = math.tanh(w * x + b)\n    return h\n"
    )
    assert "dh_in = (1 - h**2) * dh  # (1) at the tanh's input" in text
    assert "dw = x * dh_in  # (1)" in text and "db = dh_in  # (1)" in text
    assert text.count("(1 - h**2)") == 1


def test_a_user_variable_named_like_the_intermediate_keeps_its_gradient(backward):
    source = (
        "import math\n"
        "def f(w, x):\n"
        "    h_in = w * x\n"
        "    h = math.tanh(h_in * w + x)\n"
        "    return h * h_in\n"
    )
    text = backward_text(source)
    back = backward(source, "f")
    w, x = 0.3, -0.7
    h_in = w * x
    h = math.tanh(h_in * w + x)
    inner = (1 - h**2) * h_in  # dh times the tanh's derivative, with dh = h_in
    dh_in_total = h + inner * w  # the user's h_in: read by the product and by the tanh
    dw = dh_in_total * x + inner * h_in
    dx = dh_in_total * w + inner
    assert back(w, x) == pytest.approx((dw, dx), rel=1e-12)
    assert "dh_in_1" in text or "d_h_in" in text  # the intermediate took another name
    assert "note:" not in text  # and no note claims the user wrote it


@pytest.mark.parametrize(
    "source",
    [
        "import math\ndef f(x):\n    return math.tanh(2 * x + 1)\n",  # one input: nothing to share
        "def f(x, y):\n    return 3 * (x + y)\n",  # a number is as cheap to repeat
        "def f(x, y):\n    return x * y\n",  # no inner node
    ],
)
def test_no_intermediate_where_it_would_not_help(source):
    assert "_in = " not in backward_text(source)


def test_the_proof_checks_the_printed_factors():
    report = stagegen.verify(
        "import math\ndef f(a, b, c):\n    s = 1.0 / (1 + math.exp(-(a * b + c)))\n    return s\n"
    )
    checked = {c.of for c in report["f"].local_checks}
    assert checked == {"a", "b", "c"}  # the intermediate is proven through its readers
