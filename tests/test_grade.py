"""`stagegen grade`: a hand-written backward graded line by line against its forward.

The examples in examples/grading/ (the notes' staged example, correct and with five planted
mistakes, each marked `<- planted mistake`) have committed reports; the notes' own forms are
accepted; accumulation mistakes are named on their line; what grading cannot read is refused,
located. A property test grades stagegen's own generated backwards of random programs (all
must pass) and single mutations of them (each caught on its line, unless the mutation leaves
the gradient unchanged, decided numerically).

Regenerate the reports after a deliberate change of wording (from examples/grading/):

    for f in *.py; do stagegen grade $f::f_backward > ${f%.py}.grade.txt; done
"""

from __future__ import annotations

import ast
import io
import math
import os
import random
import re
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import stagegen
from stagegen.cli import main as cli_main
from stagegen.errors import StagegenError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_properties import programs  # noqa: E402  (the straight-line program generator)

GRADING = Path(__file__).resolve().parent.parent / "examples" / "grading"
EXAMPLES = sorted(GRADING.glob("*.py"))
PLANTED = [p for p in EXAMPLES if p.name != "staged.py"]
MARKER = "<- planted mistake"


def planted_line(path: Path) -> int:
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if MARKER in text]
    assert len(lines) == 1, f"{path.name}: one line marked `{MARKER}`"
    return lines[0]


def graded(path: Path):
    return stagegen.grade(path.read_text(), "f_backward", filename=path.name)


# ---------------------------------------------------------------------------- the examples


def test_the_examples_are_there():
    names = {p.stem for p in PLANTED}
    assert names == {
        "mul_not_swapped",
        "fork_assign",
        "sigmoid_missing",
        "wrong_sign",
        "power_rule",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_report_matches_its_golden(path):
    golden = path.with_suffix(".grade.txt").read_text(encoding="utf-8")
    assert graded(path).text() == golden, f"regenerate {path.stem}.grade.txt (module docstring)"


def test_the_correct_backward_is_ok():
    report = graded(GRADING / "staged.py")
    assert report.ok and report.first_error is None
    gradient_lines = [v for v in report.lines if v.kind == "gradient"]
    assert len(gradient_lines) == 12 and all(v.ok for v in gradient_lines)
    # each gradient line is matched with the stage its `#(n)` comment names
    for v in gradient_lines:
        assert v.stages == (int(re.search(r"#\((\d)\)", v.text).group(1)),), v.text


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name)
def test_grade_names_exactly_the_planted_line(path):
    report = graded(path)
    assert not report.ok
    line = planted_line(path)
    assert report.first_error.line == line
    assert [i.line for i in report.issues] == [line], "no other line is blamed"
    assert report.first_error.col == 5  # where the statement starts
    wrong = [v for v in report.lines if v.ok is False]
    assert [v.line for v in wrong] == [line]


EXPECTED_WORDS = {
    "mul_not_swapped": ["mul gate swaps its inputs", "`invden * df`"],
    "fork_assign": ["`=` at a fork", "`dx` already holds the gradient from line", "`dx += ...`"],
    "sigmoid_missing": ["missing the sigmoid's local gradient `(1 - sigy) * sigy`"],
    "wrong_sign": ["wrong sign", "(-invden / den) * dinvden"],
    "power_rule": ["power rule: d/dxpy xpy**2 is `2 * xpy`"],
}


@pytest.mark.parametrize("path", PLANTED, ids=lambda p: p.name)
def test_the_reason_is_in_the_gates_terms(path):
    message = graded(path).first_error.message
    for words in EXPECTED_WORDS[path.stem]:
        assert words in message, message


def test_the_fork_message_points_at_the_earlier_line():
    path = GRADING / "fork_assign.py"
    earlier = next(
        n for n, t in enumerate(path.read_text().splitlines(), 1) if t.strip().startswith("dx =")
    )
    assert f"from line {earlier};" in graded(path).first_error.message


# ---------------------------------------------------------------------------- the notes' forms

FORWARD = """\
import math


def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden
    return f
"""

# The notes' backward, verbatim (as the body of a function without an upstream parameter:
# `dnum = invden` reads the output's gradient as 1).
NOTES_BACKWARD = """\
def f_backward(x, y):
    sigy = 1.0 / (1 + math.exp(-y)) # sigmoid in numerator   #(1)
    num = x + sigy # numerator                               #(2)
    sigx = 1.0 / (1 + math.exp(-x)) # sigmoid in denominator #(3)
    xpy = x + y                                              #(4)
    xpysqr = xpy**2                                          #(5)
    den = sigx + xpysqr # denominator                        #(6)
    invden = 1.0 / den                                       #(7)
    # backprop f = num * invden
    dnum = invden # gradient on numerator                             #(8)
    dinvden = num                                                     #(8)
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den**2)) * dinvden                                #(7)
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden                                                #(6)
    dxpysqr = (1) * dden                                              #(6)
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr                                        #(5)
    # backprop xpy = x + y
    dx = (1) * dxpy                                                   #(4)
    dy = (1) * dxpy                                                   #(4)
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx # Notice += !! See notes below  #(3)
    # backprop num = x + sigy
    dx += (1) * dnum                                                  #(2)
    dsigy = (1) * dnum                                                #(2)
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += ((1 - sigy) * sigy) * dsigy                                 #(1)
    # done! phew
    return dx, dy
"""


def grade_text(backward: str, forward: str = FORWARD, **options):
    return stagegen.grade(forward + "\n\n" + textwrap.dedent(backward), **options)


def test_the_notes_backward_verbatim_is_ok():
    report = grade_text(NOTES_BACKWARD)
    assert report.ok, report.text()


def test_without_comments_any_spacing_and_another_upstream_name():
    text = re.sub(r"\s*#.*", "", NOTES_BACKWARD)
    text = text.replace(" = ", "=").replace(" * ", "*").replace("(x, y)", "(x, y, dout=1.0)")
    text = text.replace("dnum=invden", "dnum=invden*dout").replace(
        "dinvden=num", "dinvden=dout*num"
    )
    report = grade_text(text)
    assert report.ok, report.text()


def test_replay_in_another_order_and_equivalent_local_gradients():
    backward = """\
    def f_backward(x, y, df=1.0):
        sigx = 1 / (1 + math.exp(-x))
        xpy = y + x
        sigy = 1.0 / (1 + math.exp(-y))
        xpysqr = xpy * xpy
        den = xpysqr + sigx
        num = sigy + x
        invden = den**-1
        dinvden = df * num
        dnum = df / den                   # 1/den is invden
        dden = -invden * invden * dinvden  # the local gradient read from the output
        dsigx = dden
        dxpysqr = dden
        dxpy = xpy * dxpysqr * 2
        local = math.exp(-x) / (1 + math.exp(-x)) ** 2  # a helper: the sigmoid's slope
        dx = local * dsigx
        dx = dx + dxpy                     # accumulation spelled out
        dy = dxpy
        dx += dnum
        dsigy = dnum
        dy += sigy * (1 - sigy) * dsigy
        return dx, dy
    """
    report = grade_text(backward)
    assert report.ok, report.text()


@pytest.mark.parametrize(
    "signature, seed, ok",
    [("", "", False), ("", "    dt = 1.0\n", True), (", dt=1.0", "", True)],
)
def test_the_upstream_gradient_is_a_parameter_or_set_before_it_is_read(signature, seed, ok):
    source = f"""\
def f(a, x):
    t = a * x
    return t


def f_backward(a, x{signature}):
{seed}    da = x * dt
    dx = a * dt
    return da, dx
"""
    report = stagegen.grade(source)
    assert report.ok == ok
    if not ok:
        assert report.first_error.line == 7 and "`dt` has no value here" in str(report.first_error)


def test_both_contributions_in_one_line():
    backward = """\
    def f_backward(x, y, df=1.0):
        sigy = 1.0 / (1 + math.exp(-y))
        num = x + sigy
        sigx = 1.0 / (1 + math.exp(-x))
        xpy = x + y
        den = sigx + xpy**2
        invden = 1.0 / den
        dnum, dinvden = invden * df, num * df
        dden = -invden / den * dinvden
        dsigx, dxpysqr = dden, dden
        dxpy = 2 * xpy * dxpysqr
        dsigy = dnum
        dx = dxpy + (1 - sigx) * sigx * dsigx + dnum
        dy = dxpy + (1 - sigy) * sigy * dsigy
        return dx, dy
    """
    report = grade_text(backward)
    assert report.ok, report.text()
    lines = {v.text.strip(): v for v in report.lines}
    assert lines["dx = dxpy + (1 - sigx) * sigx * dsigx + dnum"].stages == (4, 3, 2)


def test_a_value_that_always_ties_is_still_checked():
    """`max(t1, abs(t1))` with t1 = abs(a) ties at every point: the first side's gradient is
    accepted (SymPy's own is the mean of the sides), and a wrong sign is still caught there
    (found by the fuzz: every point was skipped as a kink)."""
    source = """\
def f(a):
    t1 = abs(a)
    return t1 * max(t1, abs(t1)) + t1


def f_backward(a, dout=1.0):
    t1 = abs(a)
    dt1 = SIGN(max(t1, abs(t1)) + (t1 if t1 >= abs(t1) else 0.0) + 1) * dout
    da = dt1 if a > 0 else -dt1 if a < 0 else 0.0
    return da
"""
    assert stagegen.grade(source.replace("SIGN", "")).ok
    report = stagegen.grade(source.replace("SIGN", "-"))
    assert report.first_error.line == 8 and "wrong sign" in report.first_error.message


def test_a_tie_that_sympy_simplifies_away_accepts_the_gates_choice():
    """min(max(0.5, t4, b), b) is b to SymPy; with t4 = min(t2, b) = b wherever b < t2, the
    gate table gives the tie to t4 (the first input wins), a right gradient too (the fuzz)."""
    source = """\
import math


def f(a, b):
    t2 = math.tan(math.tanh(a))
    t4 = min(t2, b)
    t7 = min(max(0.5, t4, b), b)
    return t7
"""
    report = stagegen.grade(source + "\n\n" + stagegen.generate(source, "f"))
    assert report.ok, report.text()


# ---------------------------------------------------------------------------- accumulation

CORRECT = (GRADING / "staged.py").read_text()


def with_change(old: str, new: str, text: str = CORRECT):
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    line = changed[: changed.index(new)].count("\n") + 1 if new else None
    return stagegen.grade(changed), line


def test_an_upstream_read_before_it_is_complete():
    # the (2) block moved above the (3) block: dx is fine, but reading dnum early is not the
    # problem; moving the sigmoid (1) block before (2) reads dsigy before it is written.
    first = (
        "    # backprop num = x + sigy\n    dx += (1) * dnum  #(2)\n    dsigy = (1) * dnum  #(2)\n"
    )
    last = "    # backprop sigy = 1.0 / (1 + math.exp(-y))\n    dy += ((1 - sigy) * sigy) * dsigy  #(1)\n"
    text = CORRECT.replace(first + last, last + first)
    report = stagegen.grade(text)
    line = text[: text.index("    dy += ((1 - sigy)")].count("\n") + 1
    assert report.first_error.line == line
    assert "`dsigy` is read before it is written" in report.first_error.message


def test_an_incomplete_upstream_is_named_with_the_missing_stage():
    source = FORWARD.replace("    num = x + sigy\n", "    num = x + sigy + sigy * sigy\n")
    backward = """\
    def f_backward(x, y, df=1.0):
        sigy = 1.0 / (1 + math.exp(-y))
        num = x + sigy + sigy * sigy
        sigx = 1.0 / (1 + math.exp(-x))
        xpy = x + y
        xpysqr = xpy**2
        den = sigx + xpysqr
        invden = 1.0 / den
        dnum = invden * df
        dinvden = num * df
        dden = (-invden / den) * dinvden
        dsigx = dden
        dxpysqr = dden
        dxpy = 2 * xpy * dxpysqr
        dx = dxpy
        dy = dxpy
        dx += (1 - sigx) * sigx * dsigx
        dx += dnum
        dy += (1 - sigy) * sigy * dsigy
        dsigy = (1 + 2 * sigy) * dnum
        return dx, dy
    """
    report = grade_text(backward, forward=source)
    assert "`dsigy` is read before it is written" in report.first_error.message
    assert "stage (2)" in report.first_error.message


def test_a_contribution_added_twice():
    report, line = with_change(
        "    dx += (1) * dnum  #(2)\n", "    dx += (1) * dnum  #(2)\n    dx += dnum\n"
    )
    assert report.first_error.line == line + 1
    assert "again" in report.first_error.message and "counts twice" in report.first_error.message


def test_a_missing_contribution_is_reported_at_the_return():
    report, _ = with_change("    dy += ((1 - sigy) * sigy) * dsigy  #(1)\n", "")
    returned = CORRECT.replace("    dy += ((1 - sigy) * sigy) * dsigy  #(1)\n", "")
    line = returned[: returned.index("    return dx, dy")].count("\n") + 1
    assert report.first_error.line == line
    assert "`dy` is returned without the gradient from stage (1)" in report.first_error.message
    assert "dy += (1 - sigy) * sigy * dsigy" in report.first_error.message


def test_plus_equals_before_a_value():
    report, line = with_change("    dy = (1) * dxpy  #(4)\n", "    dy += (1) * dxpy  #(4)\n")
    assert report.first_error.line == line
    assert "`+=` before `dy` has a value" in report.first_error.message


def test_a_value_not_replayed():
    report, _ = with_change("    sigx = 1.0 / (1 + math.exp(-x))  #(3)\n", "")
    assert "`sigx` has no value here: replay the forward line" in report.first_error.message


def test_a_wrong_replay():
    tail = "    xpysqr = xpy**2  #(5)\n    den = sigx + xpysqr  #(6)\n"
    report, line = with_change("    xpy = x + y  #(4)\n" + tail, "    xpy = x - y  #(4)\n" + tail)
    assert report.first_error.line == line
    assert "computes `xpy` differently from the forward's stage (4)" in report.first_error.message


def test_gradients_returned_out_of_order():
    report, line = with_change("    return dx, dy\n", "    return dy, dx\n")
    assert report.first_error.line == line
    assert "`return dx, dy`" in report.first_error.message


def test_a_missing_upstream_factor():
    report, line = with_change(
        "    dden = (-1.0 / (den**2)) * dinvden  #(7)\n", "    dden = (-1.0 / (den**2))  #(7)\n"
    )
    assert report.first_error.line == line
    assert "reads no upstream gradient" in report.first_error.message
    assert "`dinvden`" in report.first_error.message


def test_the_fallback_message_gives_expected_and_got():
    report, line = with_change(
        "    dden = (-1.0 / (den**2)) * dinvden  #(7)\n",
        "    dden = (-1.0 / den) * dinvden  #(7)\n",
    )
    assert report.first_error.line == line
    message = report.first_error.message
    assert (
        "the local gradient should be `-invden / den`" in message and "this line gives" in message
    )


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "statement, what",
    [
        ("    for _ in range(1):\n        pass\n", "a `for` loop"),
        ("    if x > 0:\n        pass\n", "an `if` statement"),
        ("    while False:\n        pass\n", "a `while` loop"),
    ],
)
def test_control_flow_in_the_backward_is_refused(statement, what):
    text = CORRECT.replace("    # done! phew\n", statement)
    with pytest.raises(StagegenError) as caught:
        stagegen.grade(text, filename="staged.py")
    error = caught.value
    assert what in error.message and "straight-line" in error.hint
    assert error.line == text[: text.index(statement)].count("\n") + 1 and error.col == 5


def test_array_forwards_are_refused():
    source = """\
import numpy as np


def f(x: "N, D", w: "D"):
    out = x.dot(w)
    return out.sum()


def f_backward(x, w, dout=1.0):
    return x, w
"""
    with pytest.raises(StagegenError) as caught:
        stagegen.grade(source)
    assert "array code" in caught.value.message and caught.value.line == 4


def test_a_forward_with_branches_is_refused():
    source = FORWARD.replace(
        "    num = x + sigy\n", "    if x > 0:\n        x = x * 2\n    num = x + sigy\n"
    )
    with pytest.raises(StagegenError) as caught:
        stagegen.grade(source + "\n\n" + textwrap.dedent(NOTES_BACKWARD))
    assert "loops or branches" in caught.value.message


def test_the_forward_by_name_and_missing_functions():
    source = FORWARD.replace("def f(", "def g(") + "\n\n" + NOTES_BACKWARD
    assert stagegen.grade(source, "f_backward", forward="g").ok
    with pytest.raises(StagegenError, match="no top-level function named `f`"):
        stagegen.grade(source, "f_backward")
    with pytest.raises(StagegenError, match="no top-level function named `h_backward`"):
        stagegen.grade(source, "h_backward")
    with pytest.raises(StagegenError, match="cannot tell the forward"):
        stagegen.grade(source, "g")


# ---------------------------------------------------------------------------- the CLI


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = cli_main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_cli_exit_status_and_text(monkeypatch):
    monkeypatch.chdir(GRADING)
    status, out, err = run_cli("grade", "staged.py::f_backward")
    assert status == 0 and out == (GRADING / "staged.grade.txt").read_text() and not err
    status, out, err = run_cli("grade", "wrong_sign.py::f_backward")
    assert status == 1 and out == (GRADING / "wrong_sign.grade.txt").read_text()


def test_cli_markdown_and_html(monkeypatch):
    monkeypatch.chdir(GRADING)
    status, out, _ = run_cli("grade", "power_rule.py::f_backward", "--format", "markdown")
    line = planted_line(GRADING / "power_rule.py")
    assert status == 1 and f"- **line {line}**: " in out and "```text" in out
    status, out, _ = run_cli("grade", "power_rule.py::f_backward", "--format", "html")
    assert status == 1 and out.startswith("<!doctype html>") and "power rule" in out
    assert 'class="bad-line"' in out and "xpy**2" in out


def test_cli_bad_input_exits_2_without_a_traceback(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text(CORRECT.replace("    # done! phew\n", "    for i in range(2):\n        pass\n"))
    status, out, err = run_cli("grade", f"{path}::f_backward")
    assert status == 2 and not out
    assert re.match(rf"{re.escape(str(path))}:\d+:5: error: a `for` loop", err)
    assert "Traceback" not in err
    assert run_cli("grade", str(path))[0] == 2  # no function named
    assert run_cli("grade", f"{tmp_path}/missing.py::f_backward")[0] == 2


def test_the_readme_shows_a_current_report(monkeypatch):
    readme = (GRADING.parent.parent / "README.md").read_text(encoding="utf-8")
    command = "$ stagegen grade examples/grading/mul_not_swapped.py::f_backward\n"
    shown = readme.split(command, 1)[1].split("$ echo $?", 1)[0]
    monkeypatch.chdir(GRADING.parent.parent)
    status, out, _ = run_cli("grade", "examples/grading/mul_not_swapped.py::f_backward")
    assert status == 1 and shown == out


def test_completion_offers_grade_and_its_options():
    status, script, _ = run_cli("completion", "bash")
    assert status == 0 and "explain grade completion" in script
    assert '[[ "$first" == grade ]] && options="--format --forward --help -h"' in script


def test_stagegen_grade_stays_the_function():
    for _ in range(2):  # importing the module behind it must not replace it
        assert stagegen.grade(CORRECT).ok
    assert callable(stagegen.grade)


def test_cli_ascii_fallback():
    report = graded(GRADING / "wrong_sign.py")
    text = report.text(ascii=True)
    text.encode("ascii")  # raises if anything is left
    assert " XX (7) " in text and " ok (8) " in text and "--" in text


# ---------------------------------------------------------------------------- generated backwards

FUZZ = int(os.environ.get("STAGEGEN_FUZZ_EXAMPLES", "0") or 0)
EXAMPLES_RUN = FUZZ if FUZZ else 12


def generated_module(prog) -> str | None:
    """The forward and its generated backward in one module, or None for what grading does
    not read (list parameters) or stagegen refuses."""
    if any(p.length for p in prog.params):
        return None
    try:
        text = stagegen.generate(prog.source, "f", wrt=prog.wrt)
    except StagegenError:
        return None
    return prog.source + "\n\n" + text


def gradient_statements(module: str, forward_values: set[str]) -> list[ast.stmt]:
    tree = ast.parse(module)
    fn = next(d for d in tree.body if isinstance(d, ast.FunctionDef) and d.name == "f_backward")
    found = []
    for stmt in fn.body:
        target = getattr(stmt, "target", None) or (getattr(stmt, "targets", [None]) or [None])[0]
        if (
            isinstance(stmt, (ast.Assign, ast.AugAssign))
            and isinstance(target, ast.Name)
            and target.id[1:] in forward_values
            and target.id.startswith("d")
            and target.id not in forward_values
            and not (isinstance(stmt.value, ast.Constant))
        ):
            found.append(stmt)
    return found


def _offset(lines: list[str], line: int, col: int) -> int:
    """A character offset from ast's (line, byte column)."""
    text = lines[line - 1]
    return sum(len(t) for t in lines[: line - 1]) + len(
        text.encode("utf-8")[:col].decode("utf-8", "ignore")
    )


def mutate(module: str, stmt: ast.stmt, kind: str, rng: random.Random, forward_values: list[str]):
    """One mutation of one gradient statement, on its own lines: (text, kind) or None. Kinds:
    "sign" (the right-hand side negated), "assign" (`+=` made `=`), "factor" (a forward value
    it reads replaced by another)."""
    lines = module.splitlines(keepends=True)
    value = stmt.value
    start = _offset(lines, value.lineno, value.col_offset)
    end = _offset(lines, value.end_lineno, value.end_col_offset)
    if kind == "sign":
        return module[:start] + "-(" + module[start:end] + ")" + module[end:], kind
    if kind == "assign":
        head_end = _offset(lines, stmt.target.end_lineno, stmt.target.end_col_offset)
        head = module[head_end:start]
        return module[:head_end] + head.replace("+=", "=", 1) + module[start:], kind
    names = [
        n
        for n in ast.walk(value)
        if isinstance(n, ast.Name) and n.id in forward_values and n.lineno == n.end_lineno
    ]
    if not names:
        return None
    node = rng.choice(names)
    others = [v for v in forward_values if v != node.id]
    if not others:
        return None
    a = _offset(lines, node.lineno, node.col_offset)
    b = _offset(lines, node.end_lineno, node.end_col_offset)
    return module[:a] + rng.choice(others) + module[b:], kind


def gradients_at(module: str, points) -> list:
    namespace: dict = {}
    exec(compile(module, "<graded>", "exec"), namespace)
    results = []
    for args in points:
        try:
            got = namespace["f_backward"](*args)
        except (ValueError, OverflowError, ZeroDivisionError, TypeError, NameError):
            results.append(None)
            continue
        got = got if isinstance(got, tuple) else (got,)
        results.append(
            None
            if any(isinstance(g, complex) or not math.isfinite(g) for g in got)
            else [float(g) for g in got]
        )
    return results


def differs(a: list, b: list) -> bool | None:
    """True/False where both ran at some point; None if they never did."""
    compared = False
    for x, y in zip(a, b):
        if x is None or y is None:
            continue
        compared = True
        if any(abs(p - q) > 1e-7 * (1 + abs(q)) for p, q in zip(x, y)):
            return True
    return False if compared else None


@settings(
    max_examples=EXAMPLES_RUN,
    deadline=None,
    derandomize=not FUZZ,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(prog=programs(max_statements=10, allow_split=False), seed=st.integers(0, 2**31))
def test_generated_backwards_grade_ok_and_mutations_are_caught(prog, seed):
    module = generated_module(prog)
    assume(module is not None)
    report = stagegen.grade(module, "f_backward")
    assert report.ok, f"{report.text()}\n{module}"

    from stagegen.reader import read_programs

    program = read_programs(prog.source, "<string>", ["f"])[0]
    values = {p.name for p in program.params} | {s.target for s in program.stages}
    statements = gradient_statements(module, values)
    assume(statements)
    rng = random.Random(seed)
    kind = rng.choice(["sign", "factor", "assign"])
    if kind == "assign":  # `+=` made `=`: only where there is a `+=`
        statements = [s for s in statements if isinstance(s, ast.AugAssign)] or statements
        kind = "assign" if isinstance(statements[0], ast.AugAssign) else "sign"
    stmt = rng.choice(statements)
    mutated = mutate(module, stmt, kind, rng, sorted(values & _names_before(module, stmt)))
    assume(mutated is not None)
    text, kind = mutated
    points = [[rng.uniform(-2, 2) for _ in program.params] for _ in range(4)]
    changed = differs(gradients_at(module, points), gradients_at(text, points))
    assume(changed is not None)
    report = stagegen.grade(text, "f_backward")
    if kind == "assign" and not _only_zero_before(module, stmt):
        changed = True  # `=` at a fork is wrong even where the earlier part happens to be 0
    event(f"mutation {kind}: {'changes the gradient' if changed else 'equivalent'}")
    if changed and report.ok and kind == "factor":
        # Grading samples piecewise gradients at 64 points: a changed condition that tells
        # the two apart on a small part of the inputs only can be missed (the limitation).
        dense = [[rng.uniform(-2, 2) for _ in program.params] for _ in range(RARE_POINTS)]
        share = _share_differing(gradients_at(module, dense), gradients_at(text, dense))
        if share < RARE:
            event("mutation factor: missed, changes the gradient on a small part of the inputs")
            return
    if changed:
        assert not report.ok, f"{kind} mutation at line {stmt.lineno} not caught:\n{text}"
        assert report.first_error.line == stmt.lineno, f"{report.text()}\n{text}"
    else:
        assert report.ok or report.first_error.line == stmt.lineno, f"{report.text()}\n{text}"


RARE, RARE_POINTS = 0.1, 300  # a change on less than this share of [-2, 2]^n may be missed


def _share_differing(a: list, b: list) -> float:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    differing = sum(
        1 for x, y in pairs if any(abs(p - q) > 1e-7 * (1 + abs(q)) for p, q in zip(x, y))
    )
    return differing / max(len(pairs), 1)


def _names_before(module: str, stmt: ast.stmt) -> set[str]:
    """Forward values bound in the backward before ``stmt`` (parameters and replays)."""
    tree = ast.parse(module)
    fn = next(d for d in tree.body if isinstance(d, ast.FunctionDef) and d.name == "f_backward")
    names = {a.arg for a in fn.args.args}
    for s in fn.body:
        if s.lineno >= stmt.lineno:
            break
        for node in ast.walk(s):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def _only_zero_before(module: str, stmt: ast.AugAssign) -> bool:
    """Whether every earlier write of the statement's gradient is a literal zero."""
    tree = ast.parse(module)
    fn = next(d for d in tree.body if isinstance(d, ast.FunctionDef) and d.name == "f_backward")
    name = stmt.target.id
    for s in fn.body:
        if s.lineno >= stmt.lineno:
            break
        target = getattr(s, "target", None) or (getattr(s, "targets", [None]) or [None])[0]
        zero = isinstance(s.value, ast.Constant) and s.value.value == 0
        if isinstance(target, ast.Name) and target.id == name and not zero:
            return False
    return True
