"""The circuit drawing: valid SVG with a node for every input and gate, both labels on every
wire carrying the explanation's numbers, a layout without overlaps, deterministic bytes, DOT,
and a clear refusal where no PNG converter exists."""

import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import stagegen
from stagegen import circuit
from stagegen.expr import leaves
from stagegen.explanation import explain_source, parse_at

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SVG = "{http://www.w3.org/2000/svg}"
SOURCES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.endswith("_backward.py"))


def parsed(svg: str):
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def wires(root) -> dict[tuple[str, str], tuple[str, str]]:
    found = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "wire":
            texts = {t.get("class"): (t.text or "") for t in g.iter(f"{SVG}text")}
            found[(g.get("data-from"), g.get("data-to"))] = (texts["value"], texts["gradient"])
    return found


def nodes(root) -> dict[str, str]:
    return {
        g.get("data-name"): g.get("class").split()[1]
        for g in root.iter(f"{SVG}g")
        if (g.get("class") or "").startswith("node ")
    }


def test_notes_circuit_svg_carries_the_numbers_on_its_wires():
    ex = explain_source(
        (EXAMPLES / "circuits.py").read_text(), "add_mul", parse_at("x=-2,y=5,z=-4")
    )
    root = parsed(ex.svg())
    assert nodes(root) == {
        "x": "input",
        "y": "input",
        "z": "input",
        "q": "gate",
        "f": "gate",
        "output": "output",
    }
    assert wires(root) == {
        ("x", "q"): ("-2", "-4"),
        ("y", "q"): ("5", "-4"),
        ("q", "f"): ("3", "-4"),
        ("z", "f"): ("-4", "3"),
        ("f", "output"): ("-12", "1"),
    }
    labels = {
        g.get("data-name"): "".join(g.itertext())
        for g in root.iter(f"{SVG}g")
        if g.get("data-name")
    }
    assert "+" in labels["q"] and "*" in labels["f"]
    # green above the wire, red below it, as in the notes' diagrams
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "wire":
            value, gradient = (t for t in g.iter(f"{SVG}text"))
            assert (
                value.get("fill") == circuit.VALUE_COLOUR
                and gradient.get("fill") == circuit.GRADIENT_COLOUR
            )
            assert float(value.get("y")) < float(gradient.get("y"))


def test_fork_wires_carry_their_share_and_inputs_their_total():
    """x feeds three gates in the staged example: the wires' gradients add up to dx."""
    ex = explain_source((EXAMPLES / "staged.py").read_text(), "f", {"x": 3, "y": -4})
    steps = [s for b in ex.blocks for s in b.steps if s.gradient == "dx"]
    c = circuit.circuit_of(ex)
    shares = {w.target: w.gradient for w in c.wires if w.source == "x"}
    assert set(shares) == {"num", "sigx", "xpy"}
    from stagegen.explanation import short

    assert sorted(shares.values()) == sorted(short(s.contribution) for s in steps)
    assert c.node("x").note == f"dx = {short(ex.inputs[0].value)}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
@pytest.mark.parametrize("split", [False, True], ids=["staged", "split"])
def test_every_example_draws_every_node_and_labels_every_wire(source, split):
    from stagegen.reader import read_programs

    text = source.read_text()
    for program in read_programs(text, str(source)):
        if program.numpy:
            continue
        point = {
            p.name: [0.3 + 0.1 * i for i in range(p.length)] if p.is_list else 0.7 - 0.2 * k
            for k, p in enumerate(program.params)
        }
        for values in (point, None):
            ex = explain_source(text, program.name, values, split=split)
            drawn = circuit.drawn_explanation(ex)
            root = parsed(ex.svg())
            found_nodes = nodes(root)
            # every stage of the function is a gate, and so is every gate inside a compound one
            own = {s.stage.target for s in ex.forward}
            expected = {g.name for g in ex.inputs} | {s.stage.target for s in drawn.forward}
            c = circuit.circuit_of(ex)
            negations = {n.id for n in c.nodes if n.kind == "gate" and n.id not in expected}
            assert all(c.node(n).label == "-" and c.node(n).ports == 1 for n in negations)
            assert set(found_nodes) == expected | negations | {"output"}
            assert own <= set(found_nodes)
            found = wires(root)
            assert found and all(v and g for v, g in found.values()), found
            # one wire per distinct input of each gate (a negated one through its own negate
            # gate), and one out to the output
            inputs = sum(len(leaves(s.stage.expr)) for s in drawn.forward)
            assert len(found) == inputs + len(negations) + 1
            for n in c.nodes:
                if n.kind == "gate":
                    _assert_one_gate(n)
            if values is not None:
                _assert_shares_add_up(ex, c)


def _assert_one_gate(n: circuit.Node) -> None:
    """A gate's label says how many inputs it has: a constant written into it (`**2`, `0.5 *`,
    `- 1`) or a function leaves one; a bare operator takes one or two (x * x: one wire)."""
    if n.label in ("+", "-", "*", "/", "**", "max", "min"):
        assert 1 <= n.ports <= (2 if n.label not in ("max", "min") else 9), n
    elif n.label.endswith((" *", " /", " +", " -")) or n.label.startswith(("*", "/", "+", "-")):
        assert n.ports == 1, n
    elif n.label.startswith("**"):
        assert n.ports == 1, n


def _assert_shares_add_up(ex, c: circuit.Circuit) -> None:
    """The gradients drawn on the wires leaving an input add up to the input's own gradient,
    which the text computes on the unsplit stages: two computations that must agree."""
    from stagegen.explanation import short

    for g in ex.inputs:
        shares = [float(w.gradient) for w in c.wires if w.source == g.name]
        assert c.node(g.name).note == f"{g.gradient} = {short(g.value)}"
        assert sum(shares) == pytest.approx(g.value, rel=2e-3, abs=1e-3), g.name


LOSS = """
def square(x, y):
    s = (x + y) ** 2
    return s


def loss(w, x, target):
    out = w * x
    l = 0.5 * (out - target) ** 2
    return l
"""


def _gates(c: circuit.Circuit) -> dict[str, circuit.Node]:
    return {n.label: n for n in c.nodes if n.kind == "gate"}


def _into(c: circuit.Circuit, node_id: str) -> dict[str, tuple[str, str]]:
    return {w.source: (w.value, w.gradient) for w in c.wires if w.target == node_id}


def test_a_squared_sum_is_drawn_as_an_add_gate_into_a_square_gate():
    """(x + y) ** 2 was one `**2` gate with two inputs: it is + then **2, the sum on the wire
    between them."""
    from stagegen.explanation import short

    x, y = 1.5, -4.0
    c = circuit.circuit_of(explain_source(LOSS, "square", {"x": x, "y": y}))
    gates = _gates(c)
    assert sorted(gates) == sorted(["+", "**2"])
    add, square = gates["+"], gates["**2"]
    assert (add.ports, square.ports) == (2, 1)
    assert _into(c, add.id) == {
        "x": (short(x), short(2 * (x + y))),
        "y": (short(y), short(2 * (x + y))),
    }
    assert _into(c, square.id) == {add.id: (short(x + y), short(2 * (x + y)))}
    assert square.id == "s" and add.id not in ("x", "y", "s")  # the user's stage, an inner value
    assert "part of (1) s = (x + y) ** 2" in add.title
    assert _into(c, "output") == {"s": (short((x + y) ** 2), "1")}
    # in the SVG, the inner gate is drawn with its operator, not a made-up name
    root = parsed(circuit.to_svg(c))
    drawn = {g.get("data-name"): g for g in root.iter(f"{SVG}g") if g.get("data-name")}
    assert [t.text for t in drawn[add.id].iter(f"{SVG}text")] == ["+"]


@pytest.mark.parametrize("symbolic", [False, True], ids=["at a point", "symbolic"])
def test_a_half_squared_error_is_drawn_as_its_three_gates(symbolic):
    """0.5 * (out - target) ** 2 was one `0.5 *` gate with two inputs: it is -, **2, 0.5 *."""
    from stagegen.explanation import short

    w, x, target = 2.0, 1.5, 0.5
    point = None if symbolic else {"w": w, "x": x, "target": target}
    c = circuit.circuit_of(explain_source(LOSS, "loss", point))
    gates = _gates(c)
    assert sorted(gates) == sorted(["*", "-", "**2", "0.5 *"])
    assert [gates[k].ports for k in ("*", "-", "**2", "0.5 *")] == [2, 2, 1, 1]
    sub, sq, half = gates["-"].id, gates["**2"].id, gates["0.5 *"].id
    assert set(_into(c, sub)) == {"out", "target"}
    assert set(_into(c, sq)) == {sub} and set(_into(c, half)) == {sq}
    assert half == "l"
    if symbolic:
        assert _into(c, half)[sq] == (sq, "0.5 * dl")
        return
    out = w * x
    diff = out - target
    assert _into(c, sub) == {
        "out": (short(out), short(diff)),
        "target": (short(target), short(-diff)),
    }
    assert _into(c, sq) == {sub: (short(diff), short(diff))}  # d(0.5 u)/du * 2 diff = diff
    assert _into(c, half) == {sq: (short(diff**2), "0.5")}
    assert _into(c, "out") == {"w": (short(w), short(diff * x)), "x": (short(x), short(diff * w))}


def _boxes(c: circuit.Circuit):
    x, half, lane = circuit._columns(c)
    return [
        (
            x[n.layer] - n.half_width,
            n.y - n.height / 2,
            x[n.layer] + n.half_width,
            n.y + n.height / 2,
            n.id,
        )
        for n in c.nodes
    ]


@pytest.mark.parametrize(
    "name, source, point, split",
    [
        ("f", "staged.py", "x=3,y=-4", False),
        ("neuron", "neuron.py", "w=[2,-3,-3],x=[-1,-2]", True),
        ("rnn", "rnn.py", "wh=0.5,wx=1,b=0.1,x0=1,x1=-1,x2=0.5", True),
        ("max_circuit", "circuits.py", "x=3,y=-4,z=2,w=-1", False),
    ],
)
def test_layout_has_no_overlapping_nodes_and_fits_the_canvas(name, source, point, split):
    ex = explain_source((EXAMPLES / source).read_text(), name, parse_at(point), split=split)
    c = circuit.circuit_of(ex)
    boxes = _boxes(c)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] + 8 <= b[1] or b[3] + 8 <= a[1]
            assert apart, (a[4], b[4])
    root = parsed(circuit.to_svg(c))
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(
        0 <= box[0] and box[2] <= width and 0 <= box[1] and box[3] <= height for box in boxes
    )
    # inputs on the left, the output on the right
    layers = {n.id: n.layer for n in c.nodes}
    assert all(layers[g.name] == 0 for g in ex.inputs)
    assert layers["output"] == max(layers.values())


def test_svg_is_deterministic_across_processes():
    code = (
        "import sys; from stagegen.explanation import explain_source;"
        "sys.stdout.write(explain_source(open(sys.argv[1]).read(), 'f', {'x': 3, 'y': -4}).svg())"
    )
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-c", code, str(EXAMPLES / "staged.py")],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1


NEGATED = """
import math


def logistic(y, z):
    margin = y * z
    loss = math.log1p(math.exp(-margin))
    return loss


def both(a, x):
    q = a * -x
    r = x * -x
    return q + r
"""


def test_a_negated_input_gets_its_own_negate_gate():
    """log1p(exp(-margin)) is three gates, -, exp and log1p: the exp gate's input is -margin,
    drawn on a wire of its own with its own value and gradient."""
    from stagegen.explanation import short

    y, z = 1.5, 0.5
    ex = explain_source(NEGATED, "logistic", {"y": y, "z": z})
    c = circuit.circuit_of(ex)
    gates = _gates(c)
    assert sorted(gates) == sorted(["*", "-", "exp", "log1p"])
    minus, exp, log1p = gates["-"], gates["exp"], gates["log1p"]
    m = y * z
    dloss_dexp = 1 / (1 + math.exp(-m))
    assert _into(c, minus.id) == {"margin": (short(m), short(-math.exp(-m) * dloss_dexp))}
    assert _into(c, exp.id) == {minus.id: (short(-m), short(math.exp(-m) * dloss_dexp))}
    assert _into(c, log1p.id) == {exp.id: (short(math.exp(-m)), short(dloss_dexp))}
    assert minus.title == "part of (2) loss = math.log1p(math.exp(-margin)): -margin"
    symbolic = circuit.circuit_of(explain_source(NEGATED, "logistic"))
    assert _into(symbolic, _gates(symbolic)["exp"].id)[_gates(symbolic)["-"].id][0] == "-margin"
    # a * -x: a negate gate into a mul gate; x * -x reads x both ways and stays one gate
    ex = explain_source(NEGATED, "both", {"a": 2, "x": 3})
    c = circuit.circuit_of(ex)
    minus = next(n for n in c.nodes if n.label == "-")
    assert _into(c, minus.id) == {"x": ("3", "-2")} and _into(c, "q") == {
        "a": ("2", "-3"),
        minus.id: ("-3", "2"),
    }
    assert c.node("r").label == "x * -x" and c.node("r").ports == 1


def test_dot_has_every_node_and_labelled_edge():
    ex = explain_source(
        (EXAMPLES / "circuits.py").read_text(), "add_mul", {"x": -2, "y": 5, "z": -4}
    )
    dot = ex.dot()
    assert dot.startswith('digraph "add_mul') and dot.rstrip().endswith("}")
    assert re.search(
        r'"x" -> "q" \[label=<<font color="#1a7f37">-2</font><br/><font color="#cf222e">-4</font>>\]',
        dot,
    )
    assert '"f" -> "output"' in dot and '"q" [shape=circle, label="+"' in dot


_DOT_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_DOT_ESCAPES = {"n": "\n", "l": "\n", "r": "\n", '"': '"', "\\": "\\"}


def _dot_text(quoted: str) -> str:
    """A DOT string's text as Graphviz reads it: \\n (and \\l, \\r) a line break, \\" a quote,
    \\\\ a backslash; any other backslash is an escape Graphviz would misread (\\N, \\G...)."""

    def one(m):
        assert m.group(1) in _DOT_ESCAPES, f"stray escape \\{m.group(1)} in {quoted!r}"
        return _DOT_ESCAPES[m.group(1)]

    return re.sub(r"\\(.)", one, quoted)


def _dot_nodes(dot: str) -> dict[str, dict[str, str]]:
    """Each node statement's attributes, read by a small parser of the subset to_dot writes."""
    found = {}
    statement = re.compile(r'^\s*("(?:[^"\\]|\\.)*")\s*\[(.*)\];$')
    for line in dot.splitlines():
        m = statement.match(line)
        if not m or "->" in line:
            continue
        attrs = {}
        for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\w+)', m.group(2)):
            attrs[key] = _dot_text(value[1:-1]) if value.startswith('"') else value
        found[_dot_text(m.group(1)[1:-1])] = attrs
    return found


def test_dot_labels_break_lines_the_way_graphviz_reads_them():
    """An input's label is its name, then (a real line break) its gradient: not a literal
    backslash-n, which a doubly escaped string shows."""
    ex = explain_source((EXAMPLES / "staged.py").read_text(), "f", {"x": 3, "y": -4})
    dot = ex.dot()
    assert "\\\\n" not in dot  # no escaped backslash before an n
    nodes = _dot_nodes(dot)
    from stagegen.explanation import short

    for g in ex.inputs:
        assert nodes[g.name]["label"].split("\n") == [g.name, f"{g.gradient} = {short(g.value)}"]
    for string in _DOT_STRING.findall(dot):
        _dot_text(string)  # every escape is one Graphviz reads as meant
    assert dot.count("{") == dot.count("}") == 1
    # a compound stage's gates are in the DOT too, each with its own operator
    loss = _dot_nodes(explain_source(LOSS, "loss", {"w": 2, "x": 1.5, "target": 0.5}).dot())
    labels = sorted(n["label"] for n in loss.values() if "tooltip" in n and "(" in n["tooltip"])
    assert labels == sorted(["*", "-", "**2", "0.5 *"])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_renders_the_dot_with_two_line_input_labels():
    ex = explain_source((EXAMPLES / "staged.py").read_text(), "f", {"x": 3, "y": -4})
    done = subprocess.run(["dot", "-Tsvg"], input=ex.dot(), capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    root = ET.fromstring(done.stdout)
    texts = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            name = g.find(f"{SVG}title").text
            texts[name] = [t.text for t in g.iter(f"{SVG}text")]
    from stagegen.explanation import short

    assert texts["x"] == ["x", f"dx = {short(ex.inputs[0].value)}"]  # two lines, no backslash
    assert texts["xpy"] == ["+"] and texts["output"] == ["f"]


def test_write_by_suffix(tmp_path):
    ex = explain_source(
        (EXAMPLES / "circuits.py").read_text(), "add_mul", {"x": -2, "y": 5, "z": -4}
    )
    c = circuit.circuit_of(ex)
    circuit.write(c, str(tmp_path / "a.svg"))
    circuit.write(c, str(tmp_path / "a.dot"))
    assert (tmp_path / "a.svg").read_text() == ex.svg()
    assert (tmp_path / "a.dot").read_text() == ex.dot()
    with pytest.raises(stagegen.StagegenError, match=r"\.svg \(always works\)"):
        circuit.write(c, str(tmp_path / "a.gif"))


def test_png_without_a_converter_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # import fails
    monkeypatch.setattr(circuit.shutil, "which", lambda name: None)
    ex = explain_source(
        (EXAMPLES / "circuits.py").read_text(), "add_mul", {"x": -2, "y": 5, "z": -4}
    )
    with pytest.raises(stagegen.StagegenError) as info:
        circuit.write(circuit.circuit_of(ex), str(tmp_path / "a.png"))
    assert "cannot make a PNG here" in str(info.value) and "--graph FILE.svg" in str(info.value)
    assert not (tmp_path / "a.png").exists()


def test_png_goes_through_an_installed_converter(monkeypatch, tmp_path):
    """With rsvg-convert on PATH, our own SVG is what it is given to convert."""
    monkeypatch.setitem(sys.modules, "cairosvg", None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rsvg-convert"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\ndata = sys.stdin.buffer.read()\n"
        "sys.stdout.buffer.write(b'\\x89PNG fake ' + str(len(data)).encode())\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ex = explain_source(
        (EXAMPLES / "circuits.py").read_text(), "add_mul", {"x": -2, "y": 5, "z": -4}
    )
    circuit.write(circuit.circuit_of(ex), str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG fake " + str(
        len(ex.svg().encode())
    ).encode()
