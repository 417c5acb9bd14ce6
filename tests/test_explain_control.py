"""stagegen explain on branches and loops: the path the forward takes at the point, unrolled
(each branch named, loops by step, folded after a few), its values and gradients checked
against the forward (central differences), the generated backward and SymPy; the circuit of
the path; the refusals."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stagegen
from stagegen.api import generate, load_backward_module
from stagegen.circuit import circuit_of
from stagegen.explanation import explain_source
from stagegen.numeric import central_difference
from stagegen.program import has_control_flow
from stagegen.unroll import PathBranch, PathLoop

CONTROL = Path(__file__).resolve().parent.parent / "examples" / "control"
CLAMP = (CONTROL / "clamp.py").read_text()
RNN = (CONTROL / "rnn.py").read_text()
NEWTON = (CONTROL / "newton_sqrt.py").read_text()

LOOPS = """
def first_big(w, t):
    s = 0.0
    for wi in w:
        if wi > t:
            s = s + wi * t
            break
        s = s + wi
    return s


def logs(x):
    s = 0.0
    for xi in x:
        s += math.log(xi)
    return s


def forever(x):
    while x > 0:
        x = x + 1
    return x
"""
LOOPS = "import math\n" + LOOPS


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "stagegen", *map(str, args)], capture_output=True, text=True
    )


def forward(source: str, name: str):
    """The user's own function, run as written (the tests' reference)."""
    namespace: dict = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[name]


def slope(f, args: list, k: int) -> float:
    d = central_difference(f, args, k, ())
    assert d is not None
    return d.slope()


def values_of(ex) -> dict:
    return {step.stage.target: step.value for step in ex.straight.forward}


def gradients_of(ex) -> dict:
    """Each gradient written on the path, as it stands after its last statement."""
    out = {}
    for block in ex.straight.blocks:
        for step in block.steps:
            out[step.gradient] = step.result
    return out


def check_inputs(ex):
    for g in ex.inputs:
        assert g.agrees_with_generated, g
        assert g.agrees_with_sympy, g
        assert g.agrees_with_finite_difference, g


# ---------------------------------------------------------------------------- a branch


@pytest.mark.parametrize(
    "x, taken, gradients",
    [
        (-2.0, [True], {"x": 0, "lo": 1, "hi": 0}),
        (5.0, [False, True], {"x": 0, "lo": 0, "hi": 1}),
        (0.5, [False, False], {"x": 1, "lo": 0, "hi": 0}),
    ],
)
def test_clamp_names_the_branch_taken_and_sends_the_gradient_there(x, taken, gradients):
    ex = explain_source(CLAMP, "clamp", {"x": x, "lo": 0, "hi": 1})
    branches, body = [], ex.path.body
    while body and isinstance(body[0], PathBranch):
        branches.append(body[0].taken)
        body = body[0].body
    assert branches == taken
    assert {g.name: g.value for g in ex.inputs} == gradients
    check_inputs(ex)
    text = str(ex)
    first = "taken" if taken[0] else "not taken"
    assert f"(1) {first}: x = {x:g}, lo = 0" in text
    if not taken[0]:
        assert f"(3) {'taken' if taken[1] else 'not taken'}: x = {x:g}, hi = 1" in text
    # the circuit is that of the path: one copy gate, from the value returned
    c = circuit_of(ex)
    gates = [n for n in c.nodes if n.kind == "gate"]
    assert len(gates) == 1 and gates[0].label == "="
    returned = next(name for name, v in gradients.items() if v == 1)
    assert [w.source for w in c.wires if w.target == gates[0].id] == [returned]


# ---------------------------------------------------------------------------- the RNN


def rnn_at(steps: int) -> dict:
    return {"xs": [0.3 * (k % 5) - 0.5 for k in range(steps)], "h0": 0.1, "wh": 0.8}


def rnn_point(steps: int) -> dict:
    return {**rnn_at(steps), "wx": 0.7, "b": -0.2}


@pytest.fixture(scope="module")
def rnn_backward():
    return load_backward_module(generate(RNN))["rnn_backward"]


@pytest.mark.parametrize("steps", [3, 20])
def test_rnn_per_step_values_and_gradients_are_the_forwards(steps, rnn_backward):
    point = rnn_point(steps)
    ex = explain_source(RNN, "rnn", point)
    loop = next(n for n in ex.path.body if isinstance(n, PathLoop))
    assert [s.index for s in loop.steps] == list(range(steps))
    rnn = forward(RNN, "rnn")
    values, gradients = values_of(ex), gradients_of(ex)
    xs, wh, wx, b = point["xs"], point["wh"], point["wx"], point["b"]
    h = point["h0"]
    for t in range(1, steps + 1):
        h = math.tanh(wh * h + wx * xs[t - 1] + b)
        assert values[f"h_{t}"] == pytest.approx(h, rel=1e-12)
        # dloss/dh_t: the rest of the run is an RNN over xs[t:] starting from h_t
        rest = [xs[t:], h, wh, wx, b]
        by_difference = slope(lambda *a: rnn(*a), rest, 1)
        by_generated = rnn_backward(*rest)[1]
        assert gradients[f"dh_{t}"] == pytest.approx(by_generated, rel=1e-9, abs=1e-15)
        assert gradients[f"dh_{t}"] == pytest.approx(by_difference, rel=1e-5, abs=1e-9)
    check_inputs(ex)


def test_rnn_with_3_steps_shows_every_step():
    text = str(explain_source(RNN, "rnn", rnn_point(3)))
    assert "(2) 3 steps, the range is exhausted" in text
    for t in range(3):
        assert f"# step {t + 1} of 3: i = {t}" in text
        assert (
            f"h_{t + 1} = math.tanh(wh * h{'_' + str(t) if t else ''} + wx * xs[{t}] + b)" in text
        )
    assert "more steps" not in text
    assert "dh_2 = wh * dh_3_in" in text
    assert "gradients add at a fork: dwh = " in text and "(from (3) at i = 2)" in text
    assert "def rnn_backward(xs, h0, wh, wx, b, dloss=1.0):" in text  # shown as generated


def test_rnn_with_20_steps_folds_the_middle_steps():
    ex = explain_source(RNN, "rnn", rnn_point(20))
    text = str(ex)
    forward_part = text.split("backward along")[0]
    assert "... 15 more steps of (2), steps 4 to 18 (i = 3 to 17) ..." in forward_part
    shown = [t for t in range(1, 21) if f"    h_{t} = math.tanh" in forward_part]
    assert shown == [1, 2, 3, 19, 20]
    backward_part = text.split("backward along")[1].split("gradient on each input")[0]
    assert "... 15 more steps of (2), steps 17 to 3 (i = 16 to 2) ..." in backward_part
    shown = [t for t in range(0, 21) if f"    dh_{t}_in = " in backward_part]
    assert shown == [1, 2, 18, 19, 20]
    # a += after the fold adds to the folded steps' contributions, and says so
    assert "(from (3) at i = 19, 18, ..., 2)" in backward_part
    assert len(ex.inputs) == 24
    check_inputs(ex)
    # the circuit folds the same steps into one box, and draws the others' gates only
    c = circuit_of(ex)
    boxes = [n for n in c.nodes if n.label.startswith("…")]
    assert [b.label for b in boxes] == ["… 15 steps of (2) …"]
    drawn = {n.stage for n in c.nodes if n.kind == "gate" and n.stage}
    assert drawn == {"h", "h_1", "h_2", "h_3", "h_19", "h_20", "loss"}
    assert any(n.label == "xs[3] … xs[17]" for n in c.nodes)
    into = {w.source: w for w in c.wires if w.target == boxes[0].id}
    assert into["h_3"].value == "%s" % stagegen.explanation.short(values_of(ex)["h_3"])
    # the gradient flowing back into wh from the box is the sum of its steps' contributions
    folded = sum(
        s.contribution
        for block in ex.straight.blocks
        if block.stage.target in {f"h_{t}" for t in range(4, 19)}
        for s in block.steps
        if s.of == "wh"
    )
    assert into["wh"].amount == pytest.approx(folded, rel=1e-12)
    svg = ex.svg()
    assert svg.startswith("<svg") and "15 steps of (2)" in svg


# ---------------------------------------------------------------------------- while, break


def test_newton_while_loop_runs_the_forwards_steps():
    a = 2.0
    ex = explain_source(NEWTON, "newton_sqrt", {"a": a})
    loop = next(n for n in ex.path.body if isinstance(n, PathLoop))
    s, g, k = 1 + a * a, 1 + a * a, 0
    while abs(g * g - s) > 1e-12 * s and k < 50:
        g, k = 0.5 * (g + s / g), k + 1
    assert len(loop.steps) == k and loop.ended == "then its test is false"
    assert ex.path.value == g
    (da,) = ex.inputs
    assert da.value == pytest.approx(a / math.sqrt(1 + a * a), rel=1e-9)
    check_inputs(ex)
    text = str(ex)
    assert f"(4) {k} steps, then its test is false" in text
    assert f"# step {k} of {k}" in text and "i = " not in text
    assert "(from (5) at steps 5, 4, ..., 1)" in text


def test_a_break_ends_the_loop_and_is_named():
    point = {"w": [1.0, 2.0, 5.0, 1.0], "t": 3.0}
    ex = explain_source(LOOPS, "first_big", point)
    loop = next(n for n in ex.path.body if isinstance(n, PathLoop))
    assert len(loop.steps) == 3 and loop.ended == "a break ends it at step 3"
    assert [step.body[0].taken for step in loop.steps] == [False, False, True]
    text = str(ex)
    assert "(3) taken: w[2] = 5, t = 3" in text and "(5) leaves the loop" in text
    gradients = {g.name: g.value for g in ex.inputs}
    assert gradients == {"w[0]": 1, "w[1]": 1, "w[2]": 3, "w[3]": 0, "t": 5}
    f = forward(LOOPS, "first_big")
    assert gradients["t"] == pytest.approx(slope(f, [point["w"], point["t"]], 1), rel=1e-6)
    check_inputs(ex)


# ---------------------------------------------------------------------------- faces, refusals


def test_cli_explains_a_loop_and_draws_its_path(tmp_path):
    svg = tmp_path / "rnn.svg"
    done = run(
        "explain",
        CONTROL / "rnn.py",
        "--at",
        "xs=[1,2,3],h0=0,wh=0.5,wx=1,b=0",
        "--graph",
        svg,
    )
    assert done.returncode == 0, done.stderr
    assert "h_3 = math.tanh(wh * h_2 + wx * xs[2] + b)" in done.stdout
    assert svg.read_text().count('class="node gate"') > 0
    html = run("explain", CONTROL / "clamp.py", "--at", "x=3,lo=0,hi=1", "--format", "html")
    assert html.returncode == 0 and "<svg" in html.stdout and "not taken" in html.stdout


def test_without_a_point_it_asks_for_one(tmp_path):
    done = run("explain", CONTROL / "rnn.py")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "rnn.py:10:5: error:" in done.stderr and "--at 'xs=[" in done.stderr
    with pytest.raises(stagegen.StagegenError, match="needs one"):
        stagegen.explain(CLAMP, "clamp")


@pytest.mark.parametrize(
    "function, at, message",
    [
        ("logs", {"x": [1.0, -2.0]}, "undefined at this point, in the step where i = 1"),
        ("forever", {"x": 1.0}, "runs more than 2000 stages"),
        ("first_big", {"w": 2.0, "t": 1.0}, "is a list of numbers"),
    ],
)
def test_bad_points_are_located(function, at, message):
    with pytest.raises(stagegen.StagegenError, match=message) as caught:
        explain_source(LOOPS, function, at)
    assert caught.value.line > 0


def test_arrays_with_loops_and_split_are_refused_located():
    numpy_rnn = (CONTROL / "numpy_rnn.py").read_text()
    with pytest.raises(stagegen.StagegenError, match="array code with loops") as caught:
        explain_source(numpy_rnn, "rnn_loss", {"N": 2, "T": 3, "D": 2, "H": 2})
    assert caught.value.line == 9
    with pytest.raises(stagegen.StagegenError, match="--split"):
        explain_source(RNN, "rnn", rnn_point(3), split=True)


def test_the_readme_shows_what_the_command_prints():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    command = "stagegen explain examples/control/rnn.py --at 'xs=[1,-1,2],h0=0,wh=0.5,wx=1,b=0'\n"
    shown_block = readme.split(command + "```\n\n```\n", 1)[1].split("```", 1)[0]
    done = run("explain", CONTROL / "rnn.py", "--at", "xs=[1,-1,2],h0=0,wh=0.5,wx=1,b=0")
    printed = done.stdout.splitlines()
    lines = [line for line in shown_block.splitlines() if line.strip() not in ("", "...")]
    assert len(lines) >= 20
    for line in lines:
        assert line in printed, line


EXPLAIN_FUZZ = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES") or 12)


def test_explain_on_random_control_flow_programs_agrees_with_the_generated_backward():
    """The control-flow fuzzer's programs (tests/test_control_fuzz.py), explained at their first
    point: each is explained or refused with a located error, and on every one explained, the
    gradient of the unrolled path equals what the generated backward (which keeps its loops
    and branches) returns there. ``STAGEGEN_FUZZ_EXAMPLES=N`` runs N programs."""
    from test_control_fuzz import build_program
    from test_properties import RandomChooser

    explained = 0
    for seed in range(EXPLAIN_FUZZ):
        prog = build_program(RandomChooser(seed))
        values = dict(zip((name for name, _ in prog.params), prog.points[0]))
        try:
            ex = explain_source(prog.source, "f", values)
        except stagegen.StagegenError as exc:  # refused (on purpose) or outside the domain
            assert exc.message and exc.hint and exc.line, str(exc)
            continue
        if not has_control_flow(ex.program.body):
            continue  # straight-line code: test_explain.py
        text = ex.text()
        ex.svg()
        largest = max([abs(g.value) for g in ex.inputs] + [1.0])
        for g in ex.inputs:
            assert g.generated == pytest.approx(
                g.value, rel=1e-9, abs=1e-12 * largest
            ), f"seed {seed}, {g.name}:\n{prog.source}\n{text}"
        explained += 1
    assert explained >= EXPLAIN_FUZZ // 3


def test_a_branch_whose_arms_bind_what_its_test_reads_names_the_values_it_read():
    source = """
def f(x, y):
    if x > y:
        x = x * 2
        y = y + x
    else:
        y = y * x
    return x * y
"""
    ex = explain_source(source, "f", {"x": 3, "y": 1})
    text = str(ex)
    assert (
        "(1) taken: x = 3, y = 1" in text and "cond" not in text.split("the generated backward")[0]
    )
    assert {g.name: g.value for g in ex.inputs} == {"x": 2 * 7 + 6 * 2, "y": 6}
    check_inputs(ex)
    ex = explain_source(source, "f", {"x": 1, "y": 3})
    assert "(1) not taken: x = 1, y = 3" in str(ex)
    check_inputs(ex)


def test_a_stage_off_the_path_to_the_output_with_a_negated_input_is_drawn():
    """Found by the fuzzer through explain on a path, but straight-line code had it too: a
    negated input (exp(-x)) of a stage that does not reach the output carries no gradient."""
    source = "import math\n\n\ndef f(x, y):\n    t = math.exp(-x)\n    return y * 2\n"
    c = circuit_of(explain_source(source, "f", {"x": 1, "y": 2}))
    assert [w.gradient for w in c.wires if w.target == "t"] == ["0"]


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="no timer signal")
def test_sympys_value_is_left_out_when_it_takes_too_long(monkeypatch):
    """SymPy's derivative of a path is a second opinion within a time budget (the proof's path
    reference can take minutes where a loop's expressions swell); past it, a note says so."""
    import stagegen.explanation as explanation

    monkeypatch.setattr(explanation, "SYMPY_SECONDS", 1e-6)
    ex = explain_source(RNN, "rnn", rnn_point(3))
    assert any("it took more than" in n for n in ex.notes)
    assert all(g.sympy is None and g.agrees_with_generated for g in ex.inputs)
    text = str(ex)
    assert "SymPy on this path" not in text.split("gradient on each input")[1].split("\n\n")[0]
    assert "note: SymPy's derivative of this path is not shown" in text
