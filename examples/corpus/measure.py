"""Measure stagegen on the corpus: other tools' test functions that branch or loop, as written.

    python examples/corpus/measure.py            # print the table (markdown)
    python examples/corpus/measure.py --write    # also rewrite the table in README.md and the
                                                 # goldens (X_backward.py, the accepted functions)

Each function is generated (``stagegen.generate``) and then proven (``stagegen.verify``) on
its own, and lands in one of four outcomes: proven; accepted but the proof fails (a stagegen
bug); refused, with stagegen's message; internal error (any other exception, a stagegen bug).
A function is measured when its body holds an ``if``, ``for``, ``while``, conditional
expression or comprehension; helpers a source calls (Tangent's ``_inner_fn``) are not.

Standard library and stagegen only. It never imports the corpus modules: it reads them.
"""

from __future__ import annotations

import argparse
import ast
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import stagegen

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN = "<!-- measure.py: begin -->"
END = "<!-- measure.py: end -->"
OUTCOMES = ("proven", "proof fails", "refused", "internal error")
CONTROL = (ast.If, ast.For, ast.While, ast.IfExp, ast.comprehension)
TIMEOUT_S = 120


@dataclass(frozen=True)
class Result:
    source: str  # file name in examples/corpus
    function: str
    outcome: str  # one of OUTCOMES
    message: str = ""  # the refusal (message — hint), or the error


def sources() -> list[Path]:
    """The corpus modules: every .py here except this script and the generated goldens."""
    return sorted(
        p
        for p in HERE.glob("*.py")
        if p.name != Path(__file__).name and not p.name.endswith("_backward.py")
    )


def measured_functions(text: str) -> list[str]:
    """The top-level functions that branch or loop, in file order."""
    return [
        node.name
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(inner, CONTROL) for inner in ast.walk(node))
    ]


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout(f"no answer after {TIMEOUT_S} s")


def measure_one(path: Path, text: str, name: str) -> Result:
    """Generate, then prove, one function of a corpus module."""
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(TIMEOUT_S)
    try:
        try:
            stagegen.generate(text, name, filename=path.name)
            stagegen.verify(text, name, filename=path.name)
        except stagegen.VerificationError as exc:
            return Result(path.name, name, "proof fails", one_line(str(exc)))
        except stagegen.StagegenError as exc:
            text_of = exc.message + (f" — {exc.hint}" if exc.hint else "")
            return Result(path.name, name, "refused", text_of)
        except Exception as exc:  # noqa: BLE001 — any other exception is an internal error
            return Result(path.name, name, "internal error", f"{type(exc).__name__}: {exc}")
        return Result(path.name, name, "proven")
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def one_line(text: str) -> str:
    return " ".join(text.split())


def measure(paths: list[Path] | None = None) -> list[Result]:
    results = []
    for path in paths or sources():
        text = path.read_text(encoding="utf-8")
        for name in measured_functions(text):
            results.append(measure_one(path, text, name))
    return results


def group_key(message: str) -> str:
    """A refusal's message with the names in backticks left out, so that the same refusal of
    different functions (`np.sqrt` in one, `np.abs` in another) falls in one group."""
    head = message.split(" — ")[0]
    return re.sub(r"`[^`]*`", "`…`", head)


def backticked(message: str, function: str) -> str:
    """The names a refusal's message quotes (before its hint), but the function's own."""
    names = re.findall(r"`[^`]*`", message.split(" — ")[0])
    return ", ".join(n for n in names if n != f"`{function}`")


def table(results: list[Result]) -> str:
    """The measurement as markdown: counts by outcome and source, refusals by message, and
    each function's outcome."""
    names = [p.name for p in sources() if any(r.source == p.name for r in results)]
    lines = ["| outcome | " + " | ".join(f"`{n}`" for n in names) + " | all |"]
    lines.append("|---" * (len(names) + 2) + "|")
    for outcome in OUTCOMES:
        counts = [sum(r.outcome == outcome and r.source == n for r in results) for n in names]
        total = sum(r.outcome == outcome for r in results)
        lines.append(f"| {outcome} | " + " | ".join(map(str, counts)) + f" | {total} |")
    counts = [sum(r.source == n for r in results) for n in names]
    lines.append("| **functions** | " + " | ".join(map(str, counts)) + f" | {len(results)} |")

    groups: dict[str, list[Result]] = {}
    for r in results:
        if r.outcome == "refused":
            groups.setdefault(group_key(r.message), []).append(r)
    lines += ["", "Refusals, grouped by message (most common first):", ""]
    lines.append("| refusals | message (names left out) | functions (the names) |")
    lines.append("|---|---|---|")
    for key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        who = "; ".join(
            (
                f"{m.function} ({backticked(m.message, m.function)})"
                if backticked(m.message, m.function)
                else m.function
            )
            for m in members
        )
        lines.append(f"| {len(members)} | {escape(key)} | {escape(who)} |")

    lines += ["", "Each function:", ""]
    lines.append("| source | function | outcome | message |")
    lines.append("|---|---|---|---|")
    for r in results:
        lines.append(f"| `{r.source}` | `{r.function}` | {r.outcome} | {escape(r.message)} |")
    return "\n".join(lines) + "\n"


def escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_readme(text: str) -> None:
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    README.write_text(readme[:start] + "\n" + text + readme[end:], encoding="utf-8")


def table_in_readme() -> str:
    readme = README.read_text(encoding="utf-8")
    return readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].lstrip("\n")


def write_goldens(results: list[Result]) -> None:
    """X_backward.py beside each source, with its proven functions, written by the CLI (so the
    header records the command that regenerates it); a source with none has no golden."""
    from stagegen.cli import main as cli_main

    for path in sources():
        proven = [r.function for r in results if r.source == path.name and r.outcome == "proven"]
        golden = path.with_name(f"{path.stem}_backward.py")
        if not proven:
            golden.unlink(missing_ok=True)
            continue
        argv = [str(path), "--quiet"]
        for name in proven:
            argv += ["--function", name]
        status = cli_main(argv)
        if status != 0:
            raise SystemExit(f"stagegen exited {status} on {path.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite the table in README.md and the goldens"
    )
    args = parser.parse_args(argv)
    results = measure()
    text = table(results)
    sys.stdout.write(text)
    if args.write:
        write_readme(text)
        write_goldens(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
