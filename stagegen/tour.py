"""The tour: examples/tour.md, the notes' circuits and staged example retold with stagegen
explain's own output, and their circuits as examples/tour/*.svg.

    python -m stagegen.tour            # regenerate (from a source checkout)
    python -m stagegen.tour --check    # exit 1 if a file is stale (the test suite does this too)

The prose lives in templates/tour.md.j2; everything else is generated, so it cannot go stale.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .explanation import explain_source, parse_at
from .narrate import render_markdown


def _checkout() -> Path:
    """The source checkout: where this package sits when installed editable, else the current
    directory (a regular install puts the package in site-packages, far from examples/)."""
    beside = Path(__file__).resolve().parent.parent
    return beside if (beside / "examples").is_dir() else Path.cwd()


ROOT = _checkout()


@dataclass
class Stop:
    """One stop of the tour: a function of examples/ explained at a point."""

    key: str
    source: str  # a file in examples/
    function: str
    at: str | None
    split: bool = False

    @property
    def svg(self) -> str:
        return f"tour/{self.key}.svg"

    @property
    def command(self) -> str:
        parts = ["stagegen", "explain", f"examples/{self.source}::{self.function}"]
        if self.at:
            parts += ["--at", self.at]
        if self.split:
            parts.append("--split")
        return " ".join(parts + ["--graph", self.key + ".svg"])


STOPS = [
    Stop("add_mul", "circuits.py", "add_mul", "x=-2,y=5,z=-4"),
    Stop("max_circuit", "circuits.py", "max_circuit", "x=3,y=-4,z=2,w=-1"),
    Stop("neuron", "neuron.py", "neuron", "w=[2,-3,-3],x=[-1,-2]", split=True),
    Stop("staged", "staged.py", "f", "x=3,y=-4"),
    Stop("symbolic", "circuits.py", "add_mul", None),
]


def build(root: Path | None = None) -> dict[str, str]:
    """Every file of the tour, by its path under examples/, as text."""
    from .narrate import template

    examples = (root or ROOT) / "examples"
    files: dict[str, str] = {}
    context = {}
    for stop in STOPS:
        text = (examples / stop.source).read_text(encoding="utf-8")
        ex = explain_source(
            text,
            stop.function,
            parse_at(stop.at) if stop.at else None,
            split=stop.split,
            filename=f"examples/{stop.source}",
        )
        files[stop.svg] = ex.svg()
        context[stop.key] = {
            "command": stop.command,
            "markdown": render_markdown(ex, svg_path=stop.svg).strip(),
            "explanation": ex,
        }
    files["tour.md"] = template("tour.md.j2").render(**context)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagegen.tour", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    examples = ROOT / "examples"
    if not examples.is_dir():
        print("the tour is made in a source checkout: examples/ is not here", file=sys.stderr)
        return 2
    stale = []
    for name, text in build(ROOT).items():
        path = examples / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    verb = "stale" if args.check else "wrote"
    for name in stale:
        print(f"{verb} examples/{name}", file=sys.stderr)
    if not stale:
        print("the tour is up to date", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
