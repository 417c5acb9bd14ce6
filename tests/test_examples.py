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
    assert len(SOURCES) >= 6 and len(LAYERS) >= 7
    missing = [
        p.name for p in SOURCES + LAYERS if not (p.parent / f"{p.stem}_backward.py").exists()
    ]
    assert not missing


@pytest.mark.parametrize("source", SOURCES + LAYERS, ids=lambda p: p.name)
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
