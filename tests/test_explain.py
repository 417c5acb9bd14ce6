"""stagegen explain: the numbers at a point (checked against hand computations), the words in
the gates' terms, symbolic mode, --split, the formats, the notebook object and the CLI."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stagegen
from stagegen import cli
from stagegen.api import load_backward_module
from stagegen.explanation import explain_source, parse_at, short

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CIRCUITS = (EXAMPLES / "circuits.py").read_text()
STAGED = (EXAMPLES / "staged.py").read_text()


def add_mul(x, y, z):
    q = x + y
    f = q * z
    return f


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "stagegen", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def notes_circuit():
    return explain_source(CIRCUITS, "add_mul", {"x": -2, "y": 5, "z": -4})


# ---------------------------------------------------------------------------- numbers


def test_short_numbers_print_exactly_when_they_can():
    assert [short(v) for v in (3.0, -12.0, 0.5, -2.25, 0.0, -0.0, 1e-3)] == [
        "3",
        "-12",
        "0.5",
        "-2.25",
        "0",
        "0",
        "0.001",
    ]
    assert short(1 / (1 + math.exp(-1))) == "0.7311"
    assert short(0.1 + 0.2) == "0.3"


def test_notes_circuit_values_and_gradients(notes_circuit):
    ex = notes_circuit
    assert [(s.stage.target, s.value) for s in ex.forward] == [("q", 3.0), ("f", -12.0)]
    steps = {s.gradient: s for b in ex.blocks for s in b.steps}
    assert steps["dq"].local_value == -4 and steps["dq"].result == -4
    assert steps["dz"].local_value == 3 and steps["dz"].result == 3
    assert steps["dx"].local_value == 1 and steps["dx"].upstream_value == -4
    assert steps["dx"].result == -4 and steps["dy"].result == -4
    assert [(g.name, g.value, g.sympy) for g in ex.inputs] == [
        ("x", -4.0, -4.0),
        ("y", -4.0, -4.0),
        ("z", 3.0, 3.0),
    ]
    assert all(g.finite_difference == pytest.approx(g.value, rel=1e-6) for g in ex.inputs)
    assert [b.gate.name for b in ex.blocks] == ["mul", "add"]


def test_notes_circuit_text_names_the_gates_and_shows_the_numbers(notes_circuit):
    text = str(notes_circuit)
    assert "q becomes 3" in text and "f becomes -12" in text
    assert "the mul gate swaps its inputs" in text
    assert "the add gate distributes the gradient" in text
    assert "→ dq = -4" in text and "→ dz = 3" in text
    assert "→ dx = -4" in text and "→ dy = -4" in text
    assert re.search(r"^\s+dx = -4\s+# SymPy -4, finite difference -4 ✓ agree$", text, re.M)
    assert re.search(r"^\s+dz = 3\s+# SymPy 3, finite difference 3 ✓ agree$", text, re.M)
    assert "\x1b[" not in text


def staged_by_hand(x, y):
    """The notes' staged example, forward and backward, computed here independently."""
    v = {}
    v["sigy"] = 1.0 / (1 + math.exp(-y))
    v["num"] = x + v["sigy"]
    v["sigx"] = 1.0 / (1 + math.exp(-x))
    v["xpy"] = x + y
    v["xpysqr"] = v["xpy"] ** 2
    v["den"] = v["sigx"] + v["xpysqr"]
    v["invden"] = 1.0 / v["den"]
    v["f"] = v["num"] * v["invden"]
    sigmoid_x = (1 - v["sigx"]) * v["sigx"]
    sigmoid_y = (1 - v["sigy"]) * v["sigy"]
    dden = -1.0 / v["den"] ** 2 * v["num"]
    dxpy = 2 * v["xpy"] * dden
    # (gradient, local, upstream, result) in the order the notes write the backward pass
    steps = [
        ("dnum", v["invden"], 1.0, v["invden"]),
        ("dinvden", v["num"], 1.0, v["num"]),
        ("dden", -1.0 / v["den"] ** 2, v["num"], dden),
        ("dsigx", 1, dden, dden),
        ("dxpysqr", 1, dden, dden),
        ("dxpy", 2 * v["xpy"], dden, dxpy),
        ("dx", 1, dxpy, dxpy),
        ("dy", 1, dxpy, dxpy),
        ("dx", sigmoid_x, dden, dxpy + sigmoid_x * dden),
        ("dx", 1, v["invden"], dxpy + sigmoid_x * dden + v["invden"]),
        ("dsigy", 1, v["invden"], v["invden"]),
        ("dy", sigmoid_y, v["invden"], dxpy + sigmoid_y * v["invden"]),
    ]
    return v, steps


def test_staged_example_every_backward_line_matches_a_hand_computation():
    ex = explain_source(STAGED, "f", parse_at("x=3,y=-4"))
    values, want = staged_by_hand(3.0, -4.0)
    assert {s.stage.target: s.value for s in ex.forward} == pytest.approx(values, rel=1e-14)
    got = [s for b in ex.blocks for s in b.steps]
    assert [s.gradient for s in got] == [w[0] for w in want]
    assert [s.accumulate for s in got] == [False] * 8 + [True, True, False, True]
    for step, (grad, local, upstream, result) in zip(got, want):
        assert step.local_value == pytest.approx(local, rel=1e-12), step.code
        assert step.upstream_value == pytest.approx(upstream, rel=1e-12), step.code
        assert step.contribution == pytest.approx(local * upstream, rel=1e-12), step.code
        assert step.result == pytest.approx(result, rel=1e-12), step.code
    # The += lines say which earlier contributions they add to.
    assert [s.earlier for s in got if s.accumulate] == [[4], [4, 3], [4]]
    dx, dy = want[9][3], want[11][3]
    assert [g.value for g in ex.inputs] == pytest.approx([dx, dy], rel=1e-12)
    assert [g.sympy for g in ex.inputs] == pytest.approx([dx, dy], rel=1e-12)
    assert [g.finite_difference for g in ex.inputs] == pytest.approx([dx, dy], rel=1e-7)


def test_staged_example_text_carries_the_hand_computed_numbers():
    text = explain_source(STAGED, "f", {"x": 3, "y": -4}).text()
    values, want = staged_by_hand(3.0, -4.0)
    for name, value in values.items():
        assert f"{name} becomes {short(value)}" in text
    for grad, local, upstream, result in want:
        if grad in ("dx", "dy") and result != want[6][3]:
            continue  # the += lines, checked below
        assert f"→ {grad} = {short(result)}" in text, grad
    sigmoid_x = (1 - values["sigx"]) * values["sigx"]
    assert f"local ∂sigx/∂x = (1 - sigx) * sigx = {short(sigmoid_x)}" in text
    before, after = want[8][3], want[9][3]
    assert (
        f"gradients add at a fork: dx = {short(before)} (from (4), (3)) + {short(values['invden'])}"
        f" = {short(after)}" in text
    )


def test_max_gate_routes_and_says_why():
    ex = explain_source(CIRCUITS, "max_circuit", {"x": 3, "y": -4, "z": 2, "w": -1})
    steps = {s.gradient: s for b in ex.blocks for s in b.steps}
    assert steps["dz"].result == 2 and steps["dw"].result == 0
    assert "is the larger input" in steps["dz"].reason and "z = 2" in steps["dz"].reason
    assert "not the larger input" in steps["dw"].reason
    assert [g.value for g in ex.inputs] == [-8, 6, 2, 0]
    text = ex.text()
    assert "the max gate routes the gradient to the larger input" in text
    assert "s becomes -10" in text and "f becomes -20" in text


def test_a_tie_at_the_max_gate_goes_to_the_first_input():
    ex = explain_source(CIRCUITS, "max_circuit", {"x": 3, "y": -4, "z": 1, "w": 1})
    steps = {s.gradient: s for b in ex.blocks for s in b.steps}
    assert steps["dz"].result == 2 and "a tie goes to the first" in steps["dz"].reason


def test_symbolic_explanation_has_formulas_and_no_numbers():
    ex = explain_source(STAGED, "f")
    assert ex.symbolic and all(s.value is None for s in ex.forward)
    text = ex.text()
    assert "becomes" not in text and "SymPy" not in text
    assert "local ∂f/∂num = invden (num gets the other input, invden)" in text
    assert "local ∂sigx/∂x = (1 - sigx) * sigx" in text
    assert "gradients add at a fork: adds to dx from (4), (3)" in text
    assert re.search(
        r"^\s+dx\s+# the sum of the contributions from \(4\), \(3\), \(2\)", text, re.M
    )
    assert not re.search(r"= -?\d+\.\d{3}", text)  # no evaluated numbers anywhere


def test_split_explains_the_elementary_gate_version():
    source = (EXAMPLES / "expression.py").read_text()
    ex = explain_source(source, "f", {"x": 3, "y": -4}, split=True)
    assert [s.stage.target for s in ex.forward][:2] == ["sigy", "num"]
    staged = explain_source(STAGED, "f", {"x": 3, "y": -4})
    assert [g.value for g in ex.inputs] == pytest.approx([g.value for g in staged.inputs])
    assert "split into elementary gates" in ex.text()


def test_compound_stage_is_named_with_its_gates():
    ex = explain_source(
        (EXAMPLES / "neuron.py").read_text(), "neuron", parse_at("w=[2,-3,-3],x=[-1,-2]")
    )
    assert ex.blocks[1].gate.name == "compound"
    assert "add and mul gates" in ex.blocks[1].gate.behaviour
    assert ex.blocks[0].gate.name == "sigmoid"
    assert ex.output_value == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert [g.name for g in ex.inputs] == ["w[0]", "w[1]", "w[2]", "x[0]", "x[1]"]
    ddot = (1 - ex.output_value) * ex.output_value
    assert [g.value for g in ex.inputs] == pytest.approx(
        [-1 * ddot, -2 * ddot, ddot, 2 * ddot, -3 * ddot]
    )


SOURCES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.endswith("_backward.py"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_explained_gradients_are_exactly_what_the_generated_backward_returns(source):
    """The numbers explain prints are the generated module's, to the last bit."""
    from stagegen.reader import read_programs

    text = source.read_text()
    for program in read_programs(text, str(source)):
        point = {
            p.name: [0.3 + 0.1 * i for i in range(p.length)] if p.is_list else 0.7 - 0.2 * k
            for k, p in enumerate(program.params)
        }
        ex = explain_source(text, program.name, point)
        backward = load_backward_module(stagegen.generate(text, program.name))
        got = backward[f"{program.name}_backward"](*point.values())
        got = [got] if len(program.params) == 1 else list(got)
        flat = [v for g in got for v in (g[: len(g)] if isinstance(g, list) else [g])]
        assert [g.value for g in ex.inputs] == flat
        assert all(g.agrees_with_sympy for g in ex.inputs), [(g.value, g.sympy) for g in ex.inputs]


# ---------------------------------------------------------------------------- formats


def test_markdown_has_headings_and_python_blocks(notes_circuit):
    md = notes_circuit.markdown()
    assert md.startswith("### add_mul")
    assert md.count("```python") == 3 and "q = x + y  # (1) q becomes 3" in md


def test_html_is_one_self_contained_file(notes_circuit):
    from stagegen.narrate import render_html

    page = render_html(notes_circuit, standalone=True)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""\b(src|href)\s*=""", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert page.count("<svg") == 1 and "q becomes" in page
    assert '<span class="v">3</span>' in page  # values coloured as in the notes


def test_notebook_object_renders_html_and_text():
    ex = stagegen.explain(add_mul, x=-2, y=5, z=-4)
    html = ex._repr_html_()
    assert "<svg" in html and "<pre>" in html and "<html" not in html
    assert "f becomes -12" in str(ex) and "→ dz = 3" in str(ex)
    assert [g.value for g in ex.inputs] == [-4, -4, 3]
    symbolic = stagegen.explain(add_mul)
    assert symbolic.symbolic and "<svg" in symbolic._repr_html_()
    from_source = stagegen.explain(CIRCUITS, "add_mul", at={"x": -2, "y": 5, "z": -4})
    backward = lambda e: str(e).split("backward:", 1)[1]  # noqa: E731 (comments differ above)
    assert backward(from_source) == backward(ex)


# ---------------------------------------------------------------------------- the notebook view


def _module_function(path: Path, name: str):
    """A function of a module imported from ``path`` (as a notebook cell's code is compiled
    from a file name that may be temporary)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"m_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _heading(html: str) -> str:
    import html as markup

    return markup.unescape(re.search(r"<h3>(.*?)</h3>", html, re.S).group(1))


def test_notebook_title_names_the_function_and_only_a_real_file(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ipykernel_") as folder:  # like a notebook cell's
        cell = Path(folder) / "3141592.py"
        cell.write_text(CIRCUITS)
        from_cell = stagegen.explain(_module_function(cell, "add_mul"), x=-2, y=5, z=-4)
    title = _heading(from_cell._repr_html_())
    assert title.startswith("add_mul, at x = -2") and str(cell.parent) not in title
    assert tempfile.gettempdir() not in str(from_cell).splitlines()[0]
    from_file = stagegen.explain(
        _module_function(EXAMPLES / "circuits.py", "add_mul"), x=1, y=2, z=3
    )
    title = _heading(from_file._repr_html_())
    assert title.startswith("add_mul from ") and "circuits.py, at x = 1" in title
    # the command line names the file it was given, wherever it is
    model = tmp_path / "model.py"
    model.write_text(CIRCUITS)
    text = explain_source(CIRCUITS, "add_mul", {"x": 1, "y": 2, "z": 3}, filename=str(model)).text()
    assert text.startswith(f"add_mul from {model}, at x = 1")


def test_symbolic_title_asks_a_python_reader_for_values_not_for_at():
    ex = stagegen.explain(add_mul)
    for shown in (_heading(ex._repr_html_()), str(ex).splitlines()[0]):
        assert "pass values, e.g. explain(add_mul, x=3, y=-4, z=2)" in shown
        assert "--at" not in shown
    assert "give --at" in ex.text()  # what `stagegen explain` prints
    neuron = explain_source((EXAMPLES / "neuron.py").read_text(), "neuron")
    from stagegen.narrate import render_html

    assert "explain(neuron, w=[3, -4, 2], x=[-4, 2])" in _heading(render_html(neuron))
    clash = explain_source("def g(at, x):\n    return at * x\n", "g")
    assert 'explain(g, at={"at": 3, "x": -4})' in _heading(render_html(clash))


def test_notebook_svg_scales_to_its_column_and_the_file_keeps_its_size(notes_circuit):
    import xml.etree.ElementTree as ET

    html = notes_circuit._repr_html_()
    svg = ET.fromstring(re.search(r"<svg.*</svg>", html, re.S).group(0))
    assert svg.get("width") == "100%" and svg.get("height") is None
    style = dict(
        (k.strip(), v.strip()) for k, v in (d.split(":") for d in svg.get("style").split(";") if d)
    )
    _, _, width, height = map(float, svg.get("viewBox").split())
    assert style["max-width"] == f"{width:g}px" and style["height"] == "auto"
    # in a very narrow column it stops shrinking and its container scrolls: never clipped
    assert float(style["min-width"].removesuffix("px")) <= width
    assert re.search(r"\.circuit \{[^}]*overflow-x: auto", html)
    own = ET.fromstring(notes_circuit.svg())  # the --graph file: its own size
    assert float(own.get("width")) == width and float(own.get("height")) == height


def _css_rules(html: str) -> list[tuple[list[str], dict[str, str]]]:
    """The rules of the page's <style>: (selectors, {property: value})."""
    css = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        declarations = {}
        for item in body.split(";"):
            if ":" in item:
                key, value = item.split(":", 1)
                declarations[key.strip()] = value.strip()
        rules.append(([s.strip() for s in selectors.split(",")], declarations))
    return rules


def test_notebook_html_is_readable_on_a_dark_theme(notes_circuit):
    """A dark notebook theme sets a light text colour and a dark background: the view must not
    force a dark colour without its own background, and its text must not take the theme's
    colour onto a light background either."""
    html = notes_circuit._repr_html_()
    root = re.search(r'<div class="([^"]+)">', html).group(1)
    rules = _css_rules(html)
    own = {}
    for selectors, declarations in rules:
        for selector in selectors:
            assert selector.split()[0] == f"div.{root}", selector  # nothing leaks to the page
            own.setdefault(selector, {}).update(declarations)
    top = own[f"div.{root}"]
    assert top.get("color") and top.get("background", top.get("background-color"))
    light = (
        lambda colour: int(colour[1:3], 16) + int(colour[3:5], 16) + int(colour[5:7], 16)
    )  # noqa
    assert light(top["background"]) > 600 and light(top["color"]) < 200  # dark on light
    for element in ("h3", "h4", "pre", "p"):  # the theme styles these: we set their colour
        rule = own[f"div.{root} {element}"]
        assert rule.get("color"), element
    assert light(own[f"div.{root} pre"]["background"]) > 600
    # the elements the page uses are exactly the styled ones (no unstyled text element)
    used = set(re.findall(r"<(h3|h4|pre|p|em)\b", html))
    assert used <= {"h3", "h4", "pre", "p", "em"}


# ---------------------------------------------------------------------------- in a REPL


def test_repr_is_one_short_line_and_str_the_whole_text(notes_circuit):
    text = str(notes_circuit)
    summary = re.fullmatch(
        r"<Explanation of add_mul at x=-2, y=5, z=-4: (\d+) backward lines>", repr(notes_circuit)
    )
    assert summary and len(text) > 10 * len(repr(notes_circuit)) and "dz = 3" in text
    backward = text.split("backward:", 1)[1].split("gradient on each input")[0]
    statements = [l for l in backward.splitlines() if re.match(r"\s+d\w+(\[\d+\])? \+?=", l)]
    assert int(summary.group(1)) == len(statements)
    symbolic = stagegen.explain(add_mul)
    assert (
        repr(symbolic) == f"<Explanation of add_mul symbolically: {len(statements)} backward lines>"
    )
    neuron = explain_source(
        (EXAMPLES / "neuron.py").read_text(), "neuron", parse_at("w=[2,-3,-3],x=[-1,-2]")
    )
    assert repr(neuron).startswith("<Explanation of neuron at w=[2, -3, -3], x=[-1, -2]: ")
    assert "\n" not in repr(neuron) and len(repr(neuron)) < 100


def test_ipython_shows_the_short_line_as_plain_text(notes_circuit):
    class Printer:  # what IPython's pretty printer hands to _repr_pretty_
        def __init__(self):
            self.written = []

        def text(self, s):
            self.written.append(s)

    printer = Printer()
    notes_circuit._repr_pretty_(printer, False)
    assert printer.written == [repr(notes_circuit)]
    try:
        from IPython.lib.pretty import pretty
    except ImportError:
        return
    assert pretty(notes_circuit) == repr(notes_circuit)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "spec, message",
    [
        ("x3", "cannot read `x3`"),
        ("x=3,x=4", "`x` is given twice"),
        ("x=abc", "`x=abc` is not a number"),
        ("x=", "cannot read `x=`"),
    ],
)
def test_bad_at_is_reported(spec, message):
    with pytest.raises(stagegen.StagegenError, match=re.escape(message)) as info:
        parse_at(spec)
    assert str(info.value).startswith("--at: error:")


def test_missing_and_unknown_inputs_are_located_at_the_def():
    with pytest.raises(stagegen.StagegenError) as info:
        explain_source(CIRCUITS, "add_mul", {"x": 1, "y": 2}, filename="circuits.py")
    assert "no value for `z`" in str(info.value) and "circuits.py:4:" in str(info.value)
    with pytest.raises(stagegen.StagegenError, match="`q` is not a parameter of `add_mul`"):
        explain_source(CIRCUITS, "add_mul", {"x": 1, "y": 2, "z": 3, "q": 1})
    with pytest.raises(stagegen.StagegenError, match="at least 3 numbers"):
        explain_source((EXAMPLES / "neuron.py").read_text(), "neuron", parse_at("w=[1,2],x=[1,2]"))


def test_a_point_outside_the_domain_is_located_at_the_stage():
    source = "import math\n\ndef f(x):\n    y = math.log(x)\n    return y * y\n"
    with pytest.raises(stagegen.StagegenError) as info:
        explain_source(source, "f", {"x": -1}, filename="<model>")
    text = str(info.value)
    assert text.startswith("<model>:4:5: error: the value of stage (1) `y = math.log(x)`")
    assert "undefined at this point (math domain error)" in text and "x=-1" in text
    assert "    y = math.log(x)\n    ^" in text


def test_a_local_gradient_outside_its_domain_is_located():
    source = "import math\n\ndef f(x):\n    r = math.sqrt(x)\n    return r\n"
    with pytest.raises(stagegen.StagegenError, match=r"local gradient on `x` of stage \(1\)"):
        explain_source(source, "f", {"x": 0})


def test_several_functions_need_a_name():
    with pytest.raises(stagegen.StagegenError, match="add_mul, max_circuit"):
        explain_source(CIRCUITS, None, None)


# ---------------------------------------------------------------------------- the command


def test_cli_explain_piped_is_plain_text():
    result = run("explain", EXAMPLES / "circuits.py::add_mul", "--at", "x=-2,y=5,z=-4")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout and "q becomes 3" in result.stdout
    assert (
        result.stdout
        == explain_source(
            CIRCUITS, "add_mul", {"x": -2, "y": 5, "z": -4}, filename=str(EXAMPLES / "circuits.py")
        ).text()
    )


class _Terminal:
    def __init__(self):
        self.parts = []

    def isatty(self):
        return True

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass


def test_cli_colours_a_terminal_unless_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out, err = _Terminal(), _Terminal()
    target = f"{EXAMPLES / 'circuits.py'}::add_mul"
    assert cli.explain_main([target, "--at", "x=-2,y=5,z=-4"], out, err) == 0
    coloured = "".join(out.parts)
    assert "\x1b[32m3\x1b[0m" in coloured  # a value, green as in the notes
    assert "\x1b[31m-4\x1b[0m" in coloured  # a gradient, red
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert "q becomes 3" in plain and "dx = dq" in plain
    monkeypatch.setenv("NO_COLOR", "1")
    out = _Terminal()
    assert cli.explain_main([target, "--at", "x=-2,y=5,z=-4"], out, _Terminal()) == 0
    assert "\x1b[" not in "".join(out.parts)


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "{ex}/circuits.py::add_mul", "--at", "x=1,y="], "cannot read `y=`"),
        (["explain", "{ex}/circuits.py::nope"], "no top-level function named `nope`"),
        (["explain", "{ex}/circuits.py::add_mul", "--at", "x=1,y=2"], "no value for `z`"),
        (["explain", "{ex}/missing.py::f"], "no such file"),
        (["explain", "{ex}/circuits.py"], "say which one to explain"),
        (["explain", "{ex}/circuits.py::add_mul", "--format", "pdf"], "invalid choice"),
        (["explain", "{ex}/circuits.py::add_mul", "--graph", "out.jpg"], "cannot draw a circuit"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(args, message):
    result = run(*[a.format(ex=EXAMPLES) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_outside_the_domain_exits_2(tmp_path):
    model = tmp_path / "model.py"
    model.write_text("import math\n\ndef f(x):\n    y = math.log(x)\n    return y\n")
    result = run("explain", f"{model}::f", "--at", "x=-2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{model}:4:5: error:" in result.stderr and "math domain error" in result.stderr


def test_cli_formats_and_graph(tmp_path):
    target = f"{EXAMPLES / 'circuits.py'}::add_mul"
    md = run("explain", target, "--at", "x=-2,y=5,z=-4", "--format", "markdown")
    assert md.returncode == 0 and "```python" in md.stdout
    svg = tmp_path / "c.svg"
    page = run("explain", target, "--at", "x=-2,y=5,z=-4", "--format", "html", "--graph", svg)
    assert page.returncode == 0 and page.stdout.startswith("<!DOCTYPE html>")
    assert svg.read_text().startswith("<svg") and f"drew {svg}" in page.stderr
    symbolic = run("explain", target)
    assert symbolic.returncode == 0 and "symbolically" in symbolic.stdout


def test_the_file_command_is_unchanged_by_the_subcommand(tmp_path):
    """`stagegen FILE.py` still works, and a file named like the subcommand is not confused."""
    model = tmp_path / "m.py"
    model.write_text("def g(a):\n    return a * a\n")
    result = run("--stdout", "--no-verify", model)
    assert result.returncode == 0 and "def g_backward" in result.stdout


def test_import_stays_light():
    code = (
        "import sys, stagegen; stagegen.explain;"
        "print(sorted(m for m in ('sympy', 'black', 'jinja2') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# ---------------------------------------------------------------------------- the tour


def test_tour_is_up_to_date():
    """examples/tour.md and its pictures are what `python -m stagegen.tour` writes now."""
    from stagegen import tour

    files = tour.build(EXAMPLES.parent)
    assert set(files) == {"tour.md"} | {stop.svg for stop in tour.STOPS}
    for name, text in files.items():
        on_disk = (EXAMPLES / name).read_text(encoding="utf-8")
        assert on_disk == text, f"examples/{name} is stale: run `python -m stagegen.tour`"
    md = files["tour.md"]
    assert "q becomes 3" in md and "f becomes -12" in md and "→ dz = 3" in md
    assert "the max gate routes the gradient to the larger input" in md
    assert md.count("](tour/") == len(tour.STOPS)


def test_tour_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    from stagegen import tour

    for path in [*EXAMPLES.glob("*.py"), *EXAMPLES.glob("tour/*.svg"), EXAMPLES / "tour.md"]:
        target = tmp_path / "examples" / path.relative_to(EXAMPLES)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    monkeypatch.setattr(tour, "ROOT", tmp_path)
    assert tour.main(["--check"]) == 0
    (tmp_path / "examples" / "tour" / "staged.svg").write_text("old")
    assert tour.main(["--check"]) == 1
    assert "stale examples/tour/staged.svg" in capsys.readouterr().err
    assert tour.main([]) == 0 and tour.main(["--check"]) == 0
