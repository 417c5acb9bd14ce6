"""The circuit of an explanation, drawn the way the notes draw it: inputs on the left, gates as
nodes, the output on the right, and on every wire its forward value (green, above) and the
gradient flowing back along it (red, below).

Pure Python, no system package: a layered layout (columns by depth; long wires pass through
waypoints in the columns they cross; rows ordered by the barycentre of their neighbours and
placed by least squares under a minimum gap), then SVG written by hand. The same
explanation always gives the same bytes. ``to_dot`` writes the same graph for Graphviz, and
``write`` makes a PNG where a converter is available.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from .arrays.ir import ArrayPrinter, Dot, Index, Put, Reduce, Reshape, Transpose
from .errors import StagegenError
from . import gates
from .expr import Bin, Call, Elem, Neg, Num, Var, leaves, mul, rebuild
from .explain_arrays import ArrayExplanationData, Scattered, shape_text
from .explained import PRINT, ExplanationData, PathExplanationData, folded, point_text, short
from .unroll import PathBranch, PathLoop, path_stages
from .split import split_program

VALUE_COLOUR = "#1a7f37"  # green, as in the notes' diagrams
GRADIENT_COLOUR = "#cf222e"  # red
INK = "#24292f"
FONT = 13  # px, monospace
CHAR = 0.6 * FONT  # width of one monospace character
GATE_R = 21
LANE = 44  # vertical distance between the input lanes of one gate
GAP = 24  # least vertical gap between two things in a column
CURVE = 46  # horizontal room for a wire to bend between columns
MARGIN = 24
LABEL_LIMIT = 26  # characters; longer symbolic labels are cut
# px: in a page, the drawing shrinks with its column down to this width (labels about 8 px),
# and below it the column scrolls
MIN_FLUID_WIDTH = 720


@dataclass
class Node:
    id: str  # an input ("x", "w[0]"), a stage's target, or "output"
    kind: str  # input | gate | output
    label: str  # what is written on it: "x", "+", "*", "max", "σ", ...
    title: str  # the full stage, for a tooltip
    note: str = ""  # under an input: its total gradient ("dx = -4")
    layer: int = 0
    y: float = 0.0
    ports: int = 1  # how many input lanes
    stage: str = ""  # a gate: the stage (target) it is, or is part of

    @property
    def half_width(self) -> float:
        """Half the room the node takes in its column (an input's note included)."""
        if self.kind == "input":
            return max(self.box_half_width, (len(self.note) * CHAR + 8) / 2)
        return self.box_half_width

    @property
    def box_half_width(self) -> float:
        """Half the width of what is drawn: the circle, or the box around the label."""
        if self.kind == "gate" and len(self.label) <= 3:
            return GATE_R
        return (max(len(self.label), 3 if self.kind != "gate" else 0) * CHAR + 18) / 2

    @property
    def height(self) -> float:
        own = 2 * GATE_R if self.kind == "gate" else 28 + (18 if self.note else 0)
        return max(own, self.ports * LANE - (LANE - 2 * GATE_R) if self.ports > 1 else own)


@dataclass
class Wire:
    source: str
    target: str
    value: str  # green, above
    gradient: str  # red, below
    port: int = 0  # which input lane of the target
    amount: float | None = None  # the gradient as a number, at a point
    waypoints: list[float] = field(default_factory=list)  # its heights in the columns it crosses


@dataclass
class Circuit:
    title: str
    nodes: list[Node]
    wires: list[Wire]
    symbolic: bool = False

    def node(self, id: str) -> Node:
        return next(n for n in self.nodes if n.id == id)


# ---------------------------------------------------------------------------- the graph


def gate_label(expr) -> str:
    """A gate's symbol, with constant operands written in: ``+``, ``* 2.0``, ``1.0 /``, ``σ``."""
    if gates.sigmoid_input(expr) is not None:
        return "σ"
    if isinstance(expr, Bin):
        left_const = _constant(expr.left)
        right_const = _constant(expr.right)
        if right_const is not None and left_const is None:
            return f"{expr.op}{right_const}" if expr.op == "**" else f"{expr.op} {right_const}"
        if left_const is not None and right_const is None:
            return f"{left_const} {expr.op}"
        if _is_leaf(expr.left) and _is_leaf(expr.right):
            return expr.op
    if isinstance(expr, Neg) and _is_leaf(expr.operand):
        return "-"
    if isinstance(expr, Call) and all(_is_leaf(a) or _constant(a) for a in expr.args):
        return expr.fn
    if isinstance(expr, (Var, Elem)):
        return "="
    return PRINT(expr)  # a compound stage: its expression


def _is_leaf(e) -> bool:
    return isinstance(e, (Var, Elem))


def _constant(e) -> str | None:
    if isinstance(e, Num) or (isinstance(e, Neg) and isinstance(e.operand, Num)):
        return PRINT(e)
    return None


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_LIMIT else text[: LABEL_LIMIT - 1] + "…"


def drawn_explanation(ex: ExplanationData) -> ExplanationData:
    """The explanation whose stages are drawn: ``ex`` itself when every stage is one gate, else
    the same function split into elementary gates by ``--split``'s splitter, at the same point, so
    that ``(x + y) ** 2`` is drawn as a ``+`` gate wired into a ``**2`` gate."""
    if ex.split or all(step.gate.elementary for step in ex.forward):
        return ex
    split = split_program(ex.program)
    if len(split.stages) == len(ex.program.stages):
        return ex  # nothing the splitter breaks further (a negated name stays in its gate)
    try:
        return ex.explained_as(split)
    except StagegenError:  # an inner gate undefined where the whole stage is not: draw it whole
        return ex


def circuit_of(ex: ExplanationData | ArrayExplanationData | PathExplanationData) -> Circuit:
    if isinstance(ex, ArrayExplanationData):
        return array_circuit(ex)
    if isinstance(ex, PathExplanationData):
        return path_circuit(ex)
    circuit = _scalar_circuit(ex)
    layout(circuit)
    return circuit


def _scalar_circuit(ex: ExplanationData) -> Circuit:
    """The gates of scalar code, wired, before layout."""
    program = ex.program
    drawn = drawn_explanation(ex)
    nodes: list[Node] = []
    for g in ex.inputs:
        note = ""
        if not ex.symbolic:
            note = f"{g.gradient} = {short(g.value)}" if g.value is not None else ""
        nodes.append(Node(g.name, "input", g.name, g.name, note))
    contribution = {}  # (input text, stage target) -> the gradient along that wire
    along = {}  # the same as a number (None when symbolic)
    for block in drawn.blocks:
        for step in block.steps:
            label = _cut(step.code.split("=", 1)[1].strip()) if ex.symbolic else None
            contribution[(step.of, block.stage.target)] = (
                label if ex.symbolic else short(step.contribution)
            )
            along[(step.of, block.stage.target)] = step.contribution
    upstream = drawn.backward.gradient_names
    wires = []
    for step, title, owner in zip(drawn.forward, _titles(ex, drawn), _owners(ex, drawn)):
        s = step.stage
        negated = _negated_inputs(s.expr)
        label_expr = s.expr
        for leaf in leaves(s.expr):
            name = leaf.name if isinstance(leaf, Var) else f"{leaf.name}[{leaf.index}]"
            value = name if ex.symbolic else short(drawn.value_of(name))
            gradient = contribution.get((name, s.target), "0")
            amount = along.get((name, s.target), 0.0)
            if leaf not in negated:
                wires.append(Wire(name, s.target, value, gradient, amount=amount))
                continue
            # A negated input (exp(-m), a * -x) is a negate gate of its own, wired into this one.
            minus = f"{s.target}.-{name}"
            whole = title.split(": ", 1)[0] if title.startswith("part of ") else f"part of {title}"
            nodes.append(Node(minus, "gate", "-", f"{whole}: -{name}", stage=owner))
            wires.append(Wire(name, minus, value, gradient, amount=amount))
            if ex.symbolic:
                gate, inputs = gates.gate_of(s.expr)
                partial = gate.rule(Var(s.target), *inputs)[inputs.index(Neg(leaf))]
                flowing = _cut(PRINT(mul(partial, Var(upstream[s.target]))))
            else:
                flowing = short(-along.get((name, s.target), 0.0))
            wires.append(
                Wire(
                    minus,
                    s.target,
                    f"-{name}" if ex.symbolic else _negative(value),
                    flowing,
                    amount=None if ex.symbolic else -along.get((name, s.target), 0.0),
                )
            )
            label_expr = _replace(label_expr, Neg(leaf), Var(minus))
        nodes.append(Node(s.target, "gate", gate_label(label_expr), title, stage=owner))
    out_name = program.returned_name or "out"
    nodes.append(Node("output", "output", out_name, f"the output {out_name}"))
    last = ex.output
    wires.append(
        Wire(
            last,
            "output",
            last if ex.symbolic else short(ex.value_of(last)),
            ex.upstream if ex.symbolic else "1",
        )
    )
    where = (
        "symbolic"
        if ex.symbolic
        else ", ".join(f"{k} = {point_text(v)}" for k, v in ex.point.items())
    )
    return Circuit(f"{program.name}: {where}", nodes, wires, ex.symbolic)


def _negated_inputs(expr) -> set:
    """The names a gate takes negated (``exp(-m)``: m), where that is the only way it reads them
    (``x * -x`` reads x both ways and stays one gate). The sigmoid's own -u is inside its gate."""
    found = gates.gate_of(expr)
    if found is None or isinstance(expr, Neg):
        return set()
    _, inputs = found
    if tuple(inputs) != tuple(expr.children()):  # the sigmoid: its input is inside
        return set()
    negated = {i.operand for i in inputs if isinstance(i, Neg) and _is_leaf(i.operand)}
    plain = {i for i in inputs if _is_leaf(i)}
    return {leaf for leaf in negated - plain if sum(i == Neg(leaf) for i in inputs) == 1}


def _replace(expr, old, new):
    """``expr`` with its input ``old`` replaced by ``new`` (one level: a gate's inputs)."""
    return rebuild(expr, tuple(new if k == old else k for k in expr.children()))


def _negative(value: str) -> str:
    return value[1:] if value.startswith("-") else ("0" if value == "0" else f"-{value}")


def _owners(ex: ExplanationData, drawn: ExplanationData) -> list[str]:
    """The stage of ``ex`` each drawn gate is (or is part of: the splitter puts a stage's inner
    gates just before it)."""
    own = {step.stage.target for step in ex.forward}
    owners: list[str] = []
    inner = 0
    for step in drawn.forward:
        target = step.stage.target
        if target not in own:
            inner += 1
            continue
        owners += [target] * (inner + 1)
        inner = 0
    return owners + [""] * inner


def _titles(ex: ExplanationData, drawn: ExplanationData) -> list[str]:
    """A tooltip for each drawn gate: the stage it is, or, for a gate inside a compound stage,
    which stage it is part of (the splitter puts a stage's inner gates just before it)."""
    own = {step.stage.target: step for step in ex.forward}
    titles: list[str] = []
    inner: list[str] = []
    for step in drawn.forward:
        target = step.stage.target
        if target not in own:
            inner.append(step.code)
            continue
        whole = own[target]
        stage = f"({whole.stage.number}) {whole.code}"
        titles += [f"part of {stage}: {code}" for code in inner] + [stage]
        inner = []
    return titles + inner


# ---------------------------------------------------------------------------- a path


def path_circuit(ex: PathExplanationData) -> Circuit:
    """The circuit of the path taken: the gates of the stages that ran, with each long loop's
    middle steps folded into one box (the text folds the same steps), whose wires carry the
    values going in and out and, back from it, the gradient those steps add up."""
    c = _scalar_circuit(ex.straight)
    where = ", ".join(f"{k} = {point_text(v)}" for k, v in ex.point.items())
    c.title = f"{ex.program.name}: {where} (the path taken)"
    for k, (loop, hidden) in enumerate(_folds(ex.path.body)):
        _fold(c, f"fold{k}", loop, hidden)
    layout(c)
    return c


def _folds(body) -> list:
    """(loop, [its folded steps]) for every loop folded on the path, outermost first; the loops
    inside a folded step are in its box."""
    out = []
    for node in body:
        if isinstance(node, PathBranch):
            out += _folds(node.body)
        elif isinstance(node, PathLoop):
            first, hidden, last = folded(node.steps)
            if hidden:
                out.append((node.loop, hidden))
            for step in first + last:
                out += _folds(step.body)
    return out


def _fold(c: Circuit, id: str, loop, hidden) -> None:
    """Replace the gates of ``hidden`` steps by one box wired as they were."""
    inside = {node.target for step in hidden for node in path_stages(step.body)}
    boxed = {n.id for n in c.nodes if n.kind == "gate" and n.stage in inside}
    if not boxed:
        return
    span = f"steps {hidden[0].number} to {hidden[-1].number}"
    if hidden[0].index is not None:
        span = f"{loop.index} = {hidden[0].index} to {hidden[-1].index}"
    box = Node(id, "gate", f"… {len(hidden)} steps of ({loop.number}) …", f"{loop.text}: {span}")
    position = next(k for k, n in enumerate(c.nodes) if n.id in boxed)
    c.nodes = [n for n in c.nodes if n.id not in boxed]
    c.nodes.insert(position, box)
    wires: list[Wire] = []
    merged: dict[str, Wire] = {}  # source -> its one wire into the box
    for w in c.wires:
        into, out_of = w.target in boxed, w.source in boxed
        if into and out_of:
            continue
        if into:
            if w.source in merged:
                m = merged[w.source]
                if m.amount is not None and w.amount is not None:
                    m.amount += w.amount
                    m.gradient = short(m.amount)
                continue
            w.target = id
            merged[w.source] = w
        elif out_of:
            w.source = id
        wires.append(w)
    c.wires = wires
    _gather_inputs(c, id)


def _gather_inputs(c: Circuit, box: str) -> None:
    """Inputs wired only into a folded box (``xs[3]`` to ``xs[17]``) drawn as one: their
    values and gradients are in the text."""
    feeds: dict[str, set[str]] = {}
    for w in c.wires:
        feeds.setdefault(w.source, set()).add(w.target)
    only = [n for n in c.nodes if n.kind == "input" and feeds.get(n.id) == {box}]
    if len(only) < 2:
        return
    gone = {n.id for n in only}
    label = f"{only[0].label} … {only[-1].label}"
    node = Node(f"{box}.inputs", "input", label, ", ".join(n.id for n in only))
    c.nodes = [node] + [n for n in c.nodes if n.id not in gone]
    c.wires = [w for w in c.wires if w.source not in gone]
    c.wires.append(Wire(node.id, box, f"{len(only)} inputs", "in the text"))


# ---------------------------------------------------------------------------- array code


def array_gate_label(expr, np_name: str = "np") -> str:
    """An array stage's operation: ``dot``, ``+``, ``sum``, ``exp``, ``.T``; a compound stage
    is written out (cut), as for numbers."""

    def simple(e) -> bool:
        return _is_leaf(e) or _constant(e) is not None

    if isinstance(expr, Dot) and simple(expr.left) and simple(expr.right):
        return "@" if expr.spelling == "@" else "dot"
    if isinstance(expr, Reduce) and simple(expr.operand):
        return expr.fn
    if isinstance(expr, Transpose) and simple(expr.operand):
        return ".T"
    if isinstance(expr, Reshape) and simple(expr.operand):
        return "reshape"
    if isinstance(expr, Index) and _is_leaf(expr.operand):
        return "[ ]"
    if isinstance(expr, Put) and _is_leaf(expr.operand):
        return "[ ] ="  # a write into the array
    if isinstance(expr, Call) and all(simple(a) for a in expr.args):
        return expr.fn
    if isinstance(expr, (Bin, Neg)) and all(simple(k) for k in expr.children()):
        return gate_label(expr)
    return _cut(ArrayPrinter(np_name).text(expr))


def _flowing(step) -> str:
    """What a gradient statement sends along its wire: its right-hand side as generated."""
    scattered = [a for a in step.arguments if isinstance(a, Scattered)]
    if scattered:
        return scattered[0].values
    lines = [line.strip() for line in step.lines]
    if len(lines) == 2 and lines[1].endswith("= 0.0") and lines[1].startswith(f"{step.gradient}["):
        # a write's gradient: the one after it, with zeros where it wrote
        after = lines[0].split(" = ", 1)[1].removesuffix(".copy()")
        at = lines[1][len(step.gradient) : -len(" = 0.0")]
        return f"{after}, 0 at {at}"
    code = " ".join(lines)
    for sign in (" += ", " = "):
        if sign in code:
            code = code.split(sign, 1)[1]
            break
    return code.removesuffix(".copy()")  # the copy is the gradient's own array, not its value


def _array_value(shape, value, symbolic: bool) -> str:
    """Above a wire: the shape it carries (symbolic), or its size or number at the point."""
    import numpy as np

    if symbolic:
        return "a number" if shape == () else shape_text(shape)
    if not shape:
        return short(np.asarray(value).item())
    return f"{shape_text(shape)} = {shape_text(np.shape(value))}"


def array_circuit(ex: ArrayExplanationData) -> Circuit:
    """The stages of array code as a circuit: one node per stage (its operation), every wire
    labelled with the shape it carries (green, above) and the gradient expression flowing back
    along it (red, below), as the generated backward writes it."""
    program, types = ex.program, ex.program.types
    read = {l.name for s in program.stages for l in leaves(s.expr) if isinstance(l, Var)}
    gradients = {g.name: g for g in ex.inputs}
    nodes: list[Node] = []
    for p in program.params:
        if p.name not in read:
            continue
        g = gradients.get(p.name)
        note = ""
        if g is not None and ex.symbolic:
            note = g.gradient
        elif g is not None:
            note = f"{g.gradient} {_array_value(g.shape, g.value, False)}"
        title = f"{p.name}: labels" if p.labels else p.name
        nodes.append(Node(p.name, "input", p.name, title, _cut(note)))
    along = {
        (step.of, block.stage.target): _cut(_flowing(step))
        for block in ex.blocks
        for step in block.steps
        if step.of is not None
    }
    wires = []
    values = ex.values or {}
    for step in ex.forward:
        s = step.stage
        seen: list[str] = []
        for leaf in leaves(s.expr):
            if not isinstance(leaf, Var) or leaf.name in seen:
                continue
            seen.append(leaf.name)
            t = types[leaf.name]
            value = values.get(leaf.name)
            if value is None:
                value = next((f.value for f in ex.forward if f.stage.target == leaf.name), None)
            carries = t.differentiable and types[s.target].differentiable
            flowing = along.get((leaf.name, s.target), "0" if carries else "none")
            wires.append(
                Wire(leaf.name, s.target, _array_value(t.shape, value, ex.symbolic), flowing)
            )
        nodes.append(
            Node(
                s.target,
                "gate",
                array_gate_label(s.expr, program.numpy),
                f"({s.number}) {step.code}",
            )
        )
    out_name = program.returned_name or "out"
    nodes.append(Node("output", "output", out_name, f"the output {out_name}"))
    last = ex.forward[-1]
    wires.append(
        Wire(
            ex.output,
            "output",
            _array_value(last.shape, last.value, ex.symbolic),
            ex.upstream if ex.symbolic else "1",
        )
    )
    circuit = Circuit(f"{program.name}: {ex.where()}", nodes, wires, ex.symbolic)
    layout(circuit)
    return circuit


# ---------------------------------------------------------------------------- layout


class _Waypoint:
    """Where a long wire crosses a column: a point that takes a row like a node does."""

    height = 4.0

    def __init__(self):
        self.y = 0.0


@dataclass
class _Link:
    """A piece of wire between two adjacent columns, with where it meets each end
    (a vertical offset from the item's centre: a gate's input lane, or 0)."""

    wire: Wire
    left: object
    left_offset: float
    right: object
    right_offset: float


def _lane(node: Node, w: Wire) -> float:
    return (w.port - (node.ports - 1) / 2) * LANE


def layout(c: Circuit) -> None:
    """Columns by depth, rows by barycentre, then least-squares heights under a gap."""
    by_id = {n.id: n for n in c.nodes}
    incoming: dict[str, list[Wire]] = {n.id: [] for n in c.nodes}
    for w in c.wires:
        incoming[w.target].append(w)
    for n in c.nodes:  # nodes come in dependency order: inputs, stages, output
        sources = [by_id[w.source].layer for w in incoming[n.id]]
        n.layer = 0 if n.kind == "input" else 1 + max(sources, default=0)  # constants: column 1
        n.ports = max(1, len(incoming[n.id]))
    columns: dict[int, list] = {}
    for n in c.nodes:
        columns.setdefault(n.layer, []).append(n)
    links: list[_Link] = []
    crossing: dict[int, list[_Waypoint]] = {}
    for w in c.wires:
        src, dst = by_id[w.source], by_id[w.target]
        chain: list = [src]
        for layer in range(src.layer + 1, dst.layer):
            point = _Waypoint()
            columns[layer].append(point)
            chain.append(point)
        chain.append(dst)
        for a, b in zip(chain, chain[1:]):
            links.append(_Link(w, a, 0.0, b, 0.0))
        crossing[id(w)] = chain[1:-1]
    order = [columns[k] for k in sorted(columns)]
    into: dict[int, list[_Link]] = {}  # the links arriving at each item, and leaving it
    out_of: dict[int, list[_Link]] = {}
    for link in links:
        into.setdefault(id(link.right), []).append(link)
        out_of.setdefault(id(link.left), []).append(link)
    _order_rows(order, into, out_of)
    # A gate's input lanes follow the rows its wires come from, so they do not cross.
    rank = {id(item): k for column in order for k, item in enumerate(column)}
    arriving = sorted(
        (l for l in links if isinstance(l.right, Node)), key=lambda l: rank[id(l.left)]
    )
    ports: dict[int, int] = {}
    for l in arriving:
        l.wire.port = ports.get(id(l.right), 0)
        ports[id(l.right)] = l.wire.port + 1
    for l in arriving:
        l.right_offset = _lane(l.right, l.wire)
    _place_rows(order, into, out_of)
    for w in c.wires:
        w.waypoints = [point.y for point in crossing[id(w)]]


def _order_rows(order: list[list], into: dict, out_of: dict) -> None:
    """Barycentre sweeps: each column sorted by the mean row of what it is wired to."""
    for sweep in range(6):
        forward = sweep % 2 == 0
        indices = range(1, len(order)) if forward else range(len(order) - 2, -1, -1)
        for i in indices:
            rank = {id(x): k for k, x in enumerate(order[i - 1 if forward else i + 1])}
            scored = []
            for k, item in enumerate(order[i]):
                if forward:
                    ranks = [rank[id(l.left)] for l in into.get(id(item), ())]
                else:
                    ranks = [rank[id(l.right)] for l in out_of.get(id(item), ())]
                scored.append((sum(ranks) / len(ranks) if ranks else k, k, item))
            order[i] = [item for _, _, item in sorted(scored, key=lambda t: (t[0], t[1]))]


def _place_rows(order: list[list], into: dict, out_of: dict) -> None:
    """Heights: each item as level as it can be with what it is wired to, each column kept in
    order with a minimum gap (least squares, by pooling adjacent violators)."""
    for column in order:  # start stacked
        y = 0.0
        for item in column:
            item.y = y + item.height / 2
            y += item.height + GAP
    for sweep in range(10):
        forward = sweep % 2 == 0
        indices = range(1, len(order)) if forward else range(len(order) - 2, -1, -1)
        for i in indices:
            wanted = []
            for item in order[i]:
                if forward:
                    ys = [l.left.y + l.left_offset - l.right_offset for l in into.get(id(item), ())]
                else:
                    ys = [
                        l.right.y + l.right_offset - l.left_offset for l in out_of.get(id(item), ())
                    ]
                wanted.append(sum(ys) / len(ys) if ys else item.y)
            for item, y in zip(order[i], _spaced(wanted, [x.height for x in order[i]])):
                item.y = y
    top = min(item.y - item.height / 2 for column in order for item in column)
    for column in order:
        for item in column:
            item.y = round(item.y - top + MARGIN + 34, 2)  # room for the title


def _spaced(wanted: list[float], heights: list[float]) -> list[float]:
    """The positions closest to ``wanted`` (least squares) that keep the order and the gaps."""
    offsets = [0.0]
    for a, b in zip(heights, heights[1:]):
        offsets.append(offsets[-1] + a / 2 + GAP + b / 2)
    blocks: list[list[float]] = []  # [mean, count]: pooled adjacent violators
    for t in (w - o for w, o in zip(wanted, offsets)):
        blocks.append([t, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    flat = [m for m, n in blocks for _ in range(int(n))]
    return [z + o for z, o in zip(flat, offsets)]


# ---------------------------------------------------------------------------- SVG


def _columns(c: Circuit) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Per column: the centre x, the half-width of its widest node, the length of its lanes."""
    layers = sorted({n.layer for n in c.nodes})
    half = {k: 0.0 for k in layers}
    for n in c.nodes:
        half[n.layer] = max(half[n.layer], n.half_width)
    lane = {k: 0.0 for k in layers}
    by_id = {n.id: n for n in c.nodes}
    for w in c.wires:
        k = by_id[w.target].layer
        lane[k] = max(lane[k], max(len(w.value), len(w.gradient)) * CHAR + 16, 56.0)
    x: dict[int, float] = {}
    for k in layers:
        if k == layers[0]:
            x[k] = MARGIN + half[k]
        else:
            x[k] = x[k - 1] + half[k - 1] + CURVE + lane[k] + 8 + half[k]
    return x, half, lane


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _bend(x0: float, y0: float, x1: float, y1: float) -> str:
    if abs(y0 - y1) < 0.05:
        return f" L{_num(x1)},{_num(y1)}"
    dx = (x1 - x0) / 2
    return f" C{_num(x0 + dx)},{_num(y0)} {_num(x1 - dx)},{_num(y1)} {_num(x1)},{_num(y1)}"


def _entry(node: Node, x: float, from_x: float, from_y: float) -> tuple[float, float]:
    """Where a wire arriving at (from_x, from_y) meets the node's outline."""
    if node.kind == "gate" and len(node.label) <= 3:
        dx, dy = from_x - x, from_y - node.y
        d = math.hypot(dx, dy) or 1.0
        return x + GATE_R * dx / d, node.y + GATE_R * dy / d
    if node.kind == "gate":
        return x - node.box_half_width, min(max(from_y, node.y - 12), node.y + 12)
    return x - node.box_half_width, node.y


def _text(x, y, text, *, size=FONT, fill=INK, anchor="middle", weight=None, cls=None) -> str:
    attrs = f'x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"'
    if weight:
        attrs += f' font-weight="{weight}"'
    if cls:
        attrs = f'class="{cls}" ' + attrs
    return f"<text {attrs}>{escape(text)}</text>"


def to_svg(c: Circuit, fluid: bool = False) -> str:
    """The drawing as SVG: at its own size, or (``fluid``, for a page) as wide as its container
    up to its own width, scaled by its viewBox so that nothing is clipped."""
    x, half, lane = _columns(c)
    by_id = {n.id: n for n in c.nodes}
    legend = "green, above a wire: the value it carries · red, below: the gradient flowing back"
    width = max(
        [x[n.layer] + n.half_width + MARGIN for n in c.nodes]
        + [2 * MARGIN + len(legend) * 0.6 * 12, 2 * MARGIN + len(c.title) * 0.6 * 14]
    )
    bottom = max(n.y + n.height / 2 for n in c.nodes)
    for w in c.wires:
        bottom = max([bottom] + [y + 20 for y in w.waypoints])
    height = bottom + 52
    if fluid:
        least = _num(min(width, MIN_FLUID_WIDTH))
        size = (
            f'width="100%" style="max-width: {_num(width)}px; min-width: {least}px; '
            'height: auto; display: block"'
        )
    else:
        size = f'width="{_num(width)}" height="{_num(height)}"'
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" {size} '
        f'viewBox="0 0 {_num(width)} {_num(height)}" '
        'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">',
        f"<title>{escape(c.title)}</title>",
        f'<rect width="{_num(width)}" height="{_num(height)}" fill="white"/>',
        _text(MARGIN, MARGIN + 6, c.title, size=14, anchor="start", weight="bold"),
        '<g class="wires">',
    ]
    for w in c.wires:
        src, dst = by_id[w.source], by_id[w.target]
        k0, k1 = src.layer, dst.layer
        px, py = x[k0] + src.box_half_width, src.y
        path = f"M{_num(px)},{_num(py)}"
        for k, wy in zip(range(k0 + 1, k1), w.waypoints):
            start = x[k] - half[k] - 8 - lane[k]
            path += _bend(px, py, start, wy) + f" L{_num(x[k] + half[k])},{_num(wy)}"
            px, py = x[k] + half[k], wy
        lane_y = dst.y + _lane(dst, w)
        lane_start = x[k1] - half[k1] - 8 - lane[k1]
        lane_end = x[k1] - half[k1] - 8
        path += _bend(px, py, lane_start, lane_y) + f" L{_num(lane_end)},{_num(lane_y)}"
        ex, ey = _entry(dst, x[k1], lane_end, lane_y)
        path += f" L{_num(ex)},{_num(ey)}"
        mid = (lane_start + lane_end) / 2
        out += [
            f'<g class="wire" data-from={quoteattr(w.source)} data-to={quoteattr(w.target)}>',
            f'<path d="{path}" fill="none" stroke="{INK}" stroke-width="1.4"/>',
            _text(mid, lane_y - 6, w.value, fill=VALUE_COLOUR, cls="value"),
            _text(mid, lane_y + 16, w.gradient, fill=GRADIENT_COLOUR, cls="gradient"),
            "</g>",
        ]
    out.append("</g>")
    out.append('<g class="nodes">')
    for n in c.nodes:
        cx = x[n.layer]
        out.append(
            f'<g class="node {n.kind}" data-name={quoteattr(n.id)}><title>{escape(n.title)}</title>'
        )
        if n.kind == "gate" and len(n.label) <= 3:
            out.append(
                f'<circle cx="{_num(cx)}" cy="{_num(n.y)}" r="{GATE_R}" fill="white" '
                f'stroke="{INK}" stroke-width="1.6"/>'
            )
            out.append(_text(cx, n.y + 5, n.label, size=15 if len(n.label) == 1 else FONT))
        elif n.kind == "gate":
            w2 = n.box_half_width
            out.append(
                f'<rect x="{_num(cx - w2)}" y="{_num(n.y - 17)}" width="{_num(2 * w2)}" height="34" '
                f'rx="8" fill="white" stroke="{INK}" stroke-width="1.6"/>'
            )
            out.append(_text(cx, n.y + 4, n.label))
        else:
            w2 = n.box_half_width
            out.append(
                f'<rect x="{_num(cx - w2)}" y="{_num(n.y - 14)}" width="{_num(2 * w2)}" height="28" '
                f'rx="4" fill="#f6f8fa" stroke="#8c959f"/>'
            )
            out.append(_text(cx, n.y + 5, n.label, weight="bold"))
            if n.note:
                out.append(_text(cx, n.y + 30, n.note, size=12, fill=GRADIENT_COLOUR))
        out.append("</g>")
    out.append("</g>")
    out.append(_text(MARGIN, height - 16, legend, size=12, fill="#57606a", anchor="start"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- DOT and files


def _dot_id(*lines: str) -> str:
    """A quoted DOT string; several lines are joined by DOT's own line break (``\\n``, written
    as a backslash and an n inside the quotes), each line escaped on its own."""
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(c: Circuit) -> str:
    """The same graph for Graphviz: ``dot -Tsvg`` lays it out its own way."""
    lines = [
        f"digraph {_dot_id(c.title)} {{",
        "  rankdir=LR;",
        '  node [fontname="monospace"]; edge [fontname="monospace", arrowsize=0.6];',
        f"  label={_dot_id(c.title)}; labelloc=t;",
    ]
    for n in c.nodes:
        shape = {"input": "box", "output": "plaintext"}.get(
            n.kind, "circle" if len(n.label) <= 3 else "box"
        )
        extra = ', style="rounded"' if n.kind == "gate" and shape == "box" else ""
        label = _dot_id(n.label, n.note) if n.note else _dot_id(n.label)
        lines.append(
            f"  {_dot_id(n.id)} [shape={shape}, label={label}, tooltip={_dot_id(n.title)}{extra}];"
        )
    for w in c.wires:
        label = (
            f'<<font color="{VALUE_COLOUR}">{escape(w.value)}</font><br/>'
            f'<font color="{GRADIENT_COLOUR}">{escape(w.gradient)}</font>>'
        )
        lines.append(f"  {_dot_id(w.source)} -> {_dot_id(w.target)} [label={label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(c: Circuit, path: str) -> str:
    """Write the circuit as .svg, .dot or .png (by the file's suffix); returns a note on how."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix == "svg":
        _save(path, to_svg(c).encode("utf-8"))
        return "drawn by stagegen"
    if suffix in ("dot", "gv"):
        _save(path, to_dot(c).encode("utf-8"))
        return "Graphviz source"
    if suffix == "png":
        _save(path, _png(c))
        return "PNG"
    raise StagegenError(
        f"cannot draw a circuit as `.{suffix or path}`",
        "name the file .svg (always works), .dot (Graphviz source) or .png",
        filename="--graph",
    )


def _save(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise StagegenError(
            f"cannot write {path}: {exc.strerror or exc}", "check the directory", filename="--graph"
        ) from None


def _png(c: Circuit) -> bytes:
    """Our SVG through a converter that is installed (cairosvg, rsvg-convert), else Graphviz."""
    svg = to_svg(c).encode("utf-8")
    try:
        import cairosvg  # optional; not a dependency

        return cairosvg.svg2png(bytestring=svg)
    except Exception:  # not installed, or its native library is missing
        pass
    for command, data in (
        (["rsvg-convert", "--format=png"], svg),
        (["dot", "-Tpng"], to_dot(c).encode("utf-8")),
    ):
        if shutil.which(command[0]):
            done = subprocess.run(command, input=data, capture_output=True)
            if done.returncode == 0 and done.stdout:
                return done.stdout
    raise StagegenError(
        "cannot make a PNG here: no SVG converter is installed (cairosvg, rsvg-convert or "
        "Graphviz's dot)",
        "write --graph FILE.svg instead (every browser shows it), or install one of those",
        filename="--graph",
    )
