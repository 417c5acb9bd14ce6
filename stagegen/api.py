"""The pipeline wired together: parse -> (split) -> reverse -> emit. Proof sits beside it."""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pipeline loads on first use: a warm @staged import never needs it
    from .program import Program
    from .reverse import Backward


@dataclass
class Build:
    """One generated module: the backward of each function, and the module's text."""

    backwards: list[Backward]
    text: str
    filename: str
    # The text the functions were read from (the whole module), for the proof, which runs the
    # user's own `def` from it; None when it is not available.
    source: str | None = None


def regenerate_command(filename: str, functions=None, *, wrt=None, split=False) -> str:
    """The CLI command that writes the same module again (run from the source's directory)."""
    parts = [
        "stagegen",
        os.path.basename(filename) if filename and not filename.startswith("<") else "FILE.py",
    ]
    for name in functions or ():
        parts += ["--function", name]
    if wrt:
        parts += ["--wrt", ",".join([wrt] if isinstance(wrt, str) else list(wrt))]
    if split:
        parts.append("--split")
    return " ".join(parts)


RECURSION_LIMIT = 12_000


@contextmanager
def working_on(filename: str):
    """Around one generation or proof: the cyclic garbage collector paused, room for deep
    expressions, and an expression too deep even for that reported as bad input.

    They allocate many small objects (expression trees, black's syntax tree, SymPy terms) and
    free them by reference counting; the collector's full passes over a growing heap made a
    10,000-stage file several times slower than it needs to be."""
    was_enabled = gc.isenabled()
    gc.disable()
    # A flat sum of hundreds of terms is an expression tree hundreds of levels deep, and the
    # printer and the SymPy conversion recurse through it.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
    try:
        yield
    except RecursionError:
        from .errors import StagegenError

        raise StagegenError(
            "an expression is nested too deeply to differentiate",
            "split it into several assignments",
            filename=filename,
        ) from None
    finally:
        sys.setrecursionlimit(limit)
        if was_enabled:
            gc.enable()


def build_programs(
    programs: list[Program],
    filename: str,
    functions=None,
    *,
    wrt=None,
    split=False,
    source: str | None = None,
) -> Build:
    """The backward module of programs already read. ``source`` is the text they were read
    from; by default, the file as Python loaded it (a function object's module)."""
    from .emit import render
    from .reverse import differentiate

    programs = _with_callees(programs)
    with working_on(filename):
        if split:
            from .split import split_program

            programs = [split_program(p) for p in programs]
        # A function another one calls is differentiated with respect to all its inputs:
        # its callers' backwards read each of those gradients.
        called = {name for p in programs for name in p.callees}
        backwards = [differentiate(p, None if p.name in called else wrt) for p in programs]
        source_name = os.path.basename(filename) if not filename.startswith("<") else filename
        command = regenerate_command(filename, functions, wrt=wrt, split=split)
        text = render(backwards, source_name, command)
    if source is None:
        from .oracle import source_text

        source = source_text(filename)
    return Build(backwards, text, filename, source)


def _with_callees(programs: list[Program]) -> list[Program]:
    """The programs asked for, then every function they call (each once): the generated
    module holds a backward for each, since the callers' backwards call them."""
    found = {p.name: p for p in programs}
    for p in programs:
        for callee in p.all_callees():
            found.setdefault(callee.name, callee)
    return list(found.values())


def build(
    source: str, function=None, *, wrt=None, split=False, filename: str = "<string>"
) -> Build:
    from .reader import read_programs

    functions = [function] if isinstance(function, str) else (list(function) if function else None)
    with working_on(filename):
        programs = read_programs(source, filename, functions)
    return build_programs(programs, filename, functions, wrt=wrt, split=split, source=source)


def generate(
    source: str, function=None, *, wrt=None, split: bool = False, filename: str = "<string>"
) -> str:
    """The text of the backward module of ``source`` (of every top-level function when
    ``function`` is None). Raises StagegenError, located, for anything outside the language."""
    return build(source, function, wrt=wrt, split=split, filename=filename).text


def load_backward_module(text: str, filename: str = "<string>") -> dict:
    """Run a generated module's text and return its namespace (its functions)."""
    namespace: dict = {"__name__": "stagegen_generated"}
    exec(compile(text, f"{filename} (backward generated by stagegen)", "exec"), namespace)
    return namespace
