"""The corpus (examples/corpus/): other tools' functions with branches and loops, as written.

Its goldens are current, every function in them is still accepted and proven, no fewer are
proven than the committed table says, and the table in its README is what measure.py prints.
After a change to stagegen that changes the measurement: `python examples/corpus/measure.py
--write`, and review the diff."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import stagegen
from stagegen.config import options_from_header, project_for

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "examples" / "corpus"
REGENERATE = "regenerate with `python examples/corpus/measure.py --write` and review the diff"


def load_measure():
    spec = importlib.util.spec_from_file_location("corpus_measure", CORPUS / "measure.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


measure = load_measure()
SOURCES = measure.sources()
GOLDENS = sorted(CORPUS.glob("*_backward.py"))


def golden_of(source: Path) -> Path:
    return source.with_name(f"{source.stem}_backward.py")


def golden_functions(golden: Path) -> list[str]:
    options = options_from_header(golden.read_text(encoding="utf-8"))
    assert options is not None and options.function, f"{golden.name}: no --function in its header"
    return list(options.function)


def committed_count(outcome: str) -> int:
    """The count of ``outcome`` over all sources, from the table committed in the README."""
    row = re.search(rf"^\| {outcome} \|.*\| (\d+) \|$", measure.table_in_readme(), re.M)
    assert row, f"no `{outcome}` row in examples/corpus/README.md"
    return int(row.group(1))


def test_the_corpus_is_there():
    names = {p.name for p in SOURCES}
    assert {"tangent_functions.py", "autograd_functions.py", "d2l.py"} <= names
    assert GOLDENS, "no golden in examples/corpus"
    for source in SOURCES:
        header = source.read_text(encoding="utf-8")[:2000]
        assert "commit" in header and "License" in header, f"{source.name}: header"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_golden_is_current(golden):
    source = golden.with_name(golden.name.replace("_backward.py", ".py"))
    options = options_from_header(golden.read_text(encoding="utf-8"))
    text = stagegen.generate(
        source.read_text(encoding="utf-8"),
        list(options.function),
        wrt=options.wrt,
        split=options.split,
        filename=source.name,
    )
    assert text == golden.read_text(encoding="utf-8"), f"{golden.name} is stale: {REGENERATE}"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_golden_functions_are_still_proven(golden):
    """Each function a golden holds is still accepted, and its backward proven (3 points)."""
    source = golden.with_name(golden.name.replace("_backward.py", ".py"))
    text = source.read_text(encoding="utf-8")
    failed = []
    for name in golden_functions(golden):
        try:
            report = stagegen.verify(text, name, points=3, filename=source.name)
        except stagegen.StagegenError as exc:
            failed.append(f"{name}: {exc}")
            continue
        assert report.max_rel_error < 1e-6, str(report)
    assert not failed, "\n".join(failed)


def test_the_measurement_matches_the_committed_table():
    """Not fewer functions proven than committed, and the README's table is current."""
    results = measure.measure()
    proven = sum(r.outcome == "proven" for r in results)
    assert proven >= committed_count("proven"), measure.table(results)
    bugs = [r for r in results if r.outcome in ("proof fails", "internal error")]
    assert len(bugs) <= committed_count("proof fails") + committed_count("internal error"), bugs
    in_goldens = {
        (g.name.replace("_backward.py", ".py"), f) for g in GOLDENS for f in golden_functions(g)
    }
    assert in_goldens == {
        (r.source, r.function) for r in results if r.outcome == "proven"
    }, f"the goldens do not hold exactly the proven functions: {REGENERATE}"
    assert measure.table(results) == measure.table_in_readme(), f"README is stale: {REGENERATE}"


def test_folder_searches_skip_exactly_the_modules_without_a_golden():
    """`stagegen --check examples` checks the corpus's goldens; the modules without one and
    measure.py are left out by the `exclude` of [tool.stagegen]."""
    project = project_for(CORPUS)
    assert project is not None and project.exclude is not None
    for path in SOURCES + [CORPUS / "measure.py"]:
        rel = "/" + path.relative_to(REPO / "examples").as_posix()
        has_golden = golden_of(path).exists()
        assert (
            bool(project.exclude.search(rel)) != has_golden
        ), f"{path.name}: take it out of (or put it in) `exclude` in pyproject.toml"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_golden_is_what_black_writes(golden):
    """As the README promises for every generated module (stagegen writes black's defaults)."""
    import black

    text = golden.read_text(encoding="utf-8")
    assert black.format_str(text, mode=black.Mode()) == text
