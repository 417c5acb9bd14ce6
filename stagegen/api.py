"""The public functions, wiring the pipeline together: parse -> (split) -> reverse -> emit."""

from __future__ import annotations

import os

from .parse import read_programs
from .program import Program
from .reverse import Backward, differentiate


def regenerate_command(filename: str, functions=None, *, wrt=None, split=False) -> str:
    """The CLI command that writes the same module again (run from the source's directory)."""
    parts = ["stagegen", os.path.basename(filename) if filename and not filename.startswith("<") else "FILE.py"]
    for name in functions or ():
        parts += ["--function", name]
    if wrt:
        parts += ["--wrt", ",".join([wrt] if isinstance(wrt, str) else list(wrt))]
    if split:
        parts.append("--split")
    return " ".join(parts)


def backwards_of(programs: list[Program], *, wrt=None, split=False) -> list[Backward]:
    if split:
        from .split import split_program

        programs = [split_program(p) for p in programs]
    return [differentiate(p, wrt) for p in programs]


def generate(
    source: str,
    function: str | list[str] | None = None,
    *,
    wrt=None,
    split: bool = False,
    filename: str = "<string>",
) -> str:
    """The text of the backward module of ``source`` (of every top-level function when
    ``function`` is None). Raises StagegenError, located, for anything outside the language."""
    from .emit import render

    functions = [function] if isinstance(function, str) else function
    programs = read_programs(source, filename, functions)
    backwards = backwards_of(programs, wrt=wrt, split=split)
    source_name = os.path.basename(filename) if not filename.startswith("<") else filename
    return render(backwards, source_name, regenerate_command(filename, functions, wrt=wrt, split=split))
