"""The circuit drawing: valid SVG with a node for every input and gate, both labels on every
wire carrying the explanation's numbers, a layout without overlaps, deterministic bytes, DOT,
and a clear refusal where no PNG converter exists."""

import os
import re
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
    from stagegen.parse import read_programs

    text = source.read_text()
    for program in read_programs(text, str(source)):
        point = {
            p.name: [0.3 + 0.1 * i for i in range(p.length)] if p.is_list else 0.7 - 0.2 * k
            for k, p in enumerate(program.params)
        }
        for values in (point, None):
            ex = explain_source(text, program.name, values, split=split)
            root = parsed(ex.svg())
            expected = (
                {g.name for g in ex.inputs} | {s.stage.target for s in ex.forward} | {"output"}
            )
            assert set(nodes(root)) == expected
            found = wires(root)
            assert found and all(v and g for v, g in found.values()), found
            # one wire per distinct input of each stage, and one out to the output
            assert len(found) == sum(len(leaves(s.stage.expr)) for s in ex.forward) + 1


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
