"""Golden outputs: every examples/X.py has a committed X_backward.py, and regenerating it with
the command written in its own header gives the same bytes. A change in output shows up as a
diff in review. Each example is also proven against SymPy."""

import re
import shlex
from pathlib import Path

import pytest

import stagegen
from stagegen.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.endswith("_backward.py"))
# The NumPy layers of issue 6, with their goldens beside them.
LAYERS = sorted(
    p for p in (EXAMPLES / "layers").glob("*.py") if not p.name.endswith("_backward.py")
)
# Branches and loops (issue 14): Huber and clamp with `if`, logsumexp and a dot product with
# loops, a scalar RNN over a list, Newton's method with `while`, an RNN over time in NumPy.
CONTROL = sorted(
    p for p in (EXAMPLES / "control").glob("*.py") if not p.name.endswith("_backward.py")
)


def regenerate_options(golden: str) -> dict:
    """The options of the `stagegen ...` command the golden file says regenerates it."""
    command = re.search(r"^#\s+(stagegen .*)$", golden, re.M).group(1)
    argv = shlex.split(command)[2:]
    options = {"function": None, "wrt": None, "split": False}
    while argv:
        flag = argv.pop(0)
        if flag == "--split":
            options["split"] = True
        elif flag == "--function":
            options["function"] = (options["function"] or []) + [argv.pop(0)]
        elif flag == "--wrt":
            options["wrt"] = argv.pop(0)
        else:
            raise AssertionError(f"unexpected flag in the golden header: {flag}")
    return options


def test_every_example_has_a_golden():
    assert len(SOURCES) >= 6 and len(LAYERS) >= 7 and len(CONTROL) >= 7
    missing = [
        p.name
        for p in SOURCES + LAYERS + CONTROL
        if not (p.parent / f"{p.stem}_backward.py").exists()
    ]
    assert not missing


@pytest.mark.parametrize("source", SOURCES + LAYERS + CONTROL, ids=lambda p: p.name)
def test_golden_is_current(source):
    golden = (source.parent / f"{source.stem}_backward.py").read_text(encoding="utf-8")
    options = regenerate_options(golden)
    text = stagegen.generate(source.read_text(encoding="utf-8"), filename=str(source), **options)
    assert (
        text == golden
    ), f"{source.name}: regenerate with the command in its header and review the diff"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_example_is_proven(source):
    options = regenerate_options(
        (EXAMPLES / f"{source.stem}_backward.py").read_text(encoding="utf-8")
    )
    report = stagegen.verify(source.read_text(encoding="utf-8"), filename=str(source), **options)
    for f in report.functions:
        assert f.local_checks and len(f.points) == 5, str(report)
    assert report.max_rel_error < 1e-9


def test_cli_check_passes_on_examples(capsys):
    default = [
        str(p) for p in SOURCES if "--split" not in (EXAMPLES / f"{p.stem}_backward.py").read_text()
    ]
    assert cli_main(["--check", "--no-verify", *default]) == 0


def test_split_example_matches_the_notes_staging():
    """--split on the one-line expression recovers the notes' stage names."""
    text = (EXAMPLES / "expression_backward.py").read_text()
    for name in ["sigy", "num", "sigx", "xpy", "xpysqr", "den"]:
        assert re.search(rf"^\s+{name} = ", text, re.M), name
    assert re.findall(r"^\s*(\w+) \+=", text, re.M) == ["dx", "dx", "dy"]


@pytest.mark.parametrize("source", CONTROL, ids=lambda p: p.name)
def test_control_example_is_proven(source):
    """Each branch and loop example is proven: its stages' local gradients against SymPy, and
    the backward at random points against the derivative of the path the forward took."""
    report = stagegen.verify(source.read_text(encoding="utf-8"), filename=str(source))
    for f in report.functions:
        assert len(f.points) >= 5, str(report)
    assert report.max_rel_error < 1e-6


def test_control_examples_read_as_written_by_hand():
    """The backward of a loop runs the steps last first, with `+=` across steps; a branch
    repeats the forward's test; the RNN saves h before each step and pops it back."""
    rnn = (EXAMPLES / "control" / "rnn_backward.py").read_text()
    assert "for i in reversed(range(len(xs))):" in rnn
    assert "h_saved.append(h)" in rnn and "h = h_saved.pop()" in rnn
    assert re.search(r"^\s+dwh \+= h \* dh_in", rnn, re.M)
    clamp = (EXAMPLES / "control" / "clamp_backward.py").read_text()
    assert re.findall(r"^\s*(if|elif|else)\b", clamp, re.M) == ["if", "elif", "else"]
    newton = (EXAMPLES / "control" / "newton_sqrt_backward.py").read_text()
    assert "for _ in range(steps):" in newton
    numpy_rnn = (EXAMPLES / "control" / "numpy_rnn_backward.py").read_text()
    assert "dx[:, t, :] += " in numpy_rnn and "for t in reversed(range(x.shape[1])):" in numpy_rnn
