"""The program and the generated backward are trees of blocks (issue 13): a stage's block opens
with its `# backprop` comment; a block that opens a compound statement indents its lines. Today
every block is a stage's; these tests hold the tree's rendering to what loops and branches
(issue 14) will need, and the stages' order to the program's."""

import textwrap

import stagegen
from stagegen.api import build, load_backward_module
from stagegen.emit import environment
from stagegen.layout import format_code
from stagegen.lower import lower
from stagegen.reader import read_programs

SOURCE = textwrap.dedent("""\
    import math


    def f(x, y):
        a = x * y
        b = math.sin(a)
        return b + x
    """)


def body_macro():
    return environment().get_template("blocks.py.j2").module.body


def test_a_nested_block_is_indented_under_its_opening_line_and_black_keeps_it():
    tree = [
        "s = 0.0",
        {
            "opening": "for t in reversed(range(3)):",
            "nested": True,
            "lines": [
                {"opening": "# backprop h = w * h", "nested": False, "lines": ["dw += h * dh"]},
                "dh = w * dh",
            ],
        },
        "return s",
    ]
    text = "def g(w, h, dh):" + body_macro()(tree, "    ") + "\n"
    assert text == (
        "def g(w, h, dh):\n"
        "    s = 0.0\n"
        "    for t in reversed(range(3)):\n"
        "        # backprop h = w * h\n"
        "        dw += h * dh\n"
        "        dh = w * dh\n"
        "    return s\n"
    )
    assert format_code(text) == text  # black's layout already


def test_stage_blocks_are_not_indented_and_the_module_is_unchanged_by_black():
    text = stagegen.generate(SOURCE)
    assert "    # backprop b = math.sin(a)\n    da = math.cos(a) * db  # (2)\n" in text
    assert format_code(text) == text


def test_the_body_is_the_tree_and_stages_lists_it_in_program_order():
    (program,) = read_programs(SOURCE, "f.py")
    assert [s.target for s in program.body] == ["a", "b", "out"]  # the returned b + x is a stage
    assert program.stages == list(program.body)
    assert [s.number for s in program.stages] == [1, 2, 3]


def test_the_lowered_backward_is_a_tree_of_stage_blocks_in_reverse_order():
    built = build(SOURCE, filename="f.py")
    (lowered,) = [lower(b) for b in built.backwards]
    assert [block.stage.target for block in lowered.blocks] == ["out", "b", "a"]
    assert not any(block.nested for block in lowered.blocks)
    backward = load_backward_module(built.text)["f_backward"]
    import math

    dx, dy = backward(0.5, 2.0)
    assert abs(dx - (math.cos(1.0) * 2.0 + 1.0)) < 1e-12
    assert abs(dy - math.cos(1.0) * 0.5) < 1e-12
