"""Source of a live function object, for the decorator and verify(func).

The function is never called: its source is read through ``inspect`` and parsed like a file,
with line and column offsets so that errors point into the function's own file.
"""

from __future__ import annotations

import inspect
import textwrap

from .errors import StagegenError
from .parse import MathNames, read_programs
from .program import Program


def programs_of_function(func) -> list[Program]:
    name = getattr(func, "__name__", repr(func))
    filename = getattr(getattr(func, "__code__", None), "co_filename", "<unknown>")
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError):
        raise StagegenError(
            f"the source of `{name}` is not available (defined in a REPL, by exec, or in a compiled module)",
            "define the function in a .py file, or pass its source text to stagegen.generate()",
            filename=filename,
        ) from None
    text = "".join(lines)
    dedented = textwrap.dedent(text)
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    names = MathNames.from_globals(getattr(func, "__globals__", {}))
    return read_programs(
        dedented,
        inspect.getsourcefile(func) or filename,
        [name],
        names=names,
        line_offset=max(first_line - 1, 0),
        col_offset=indent if dedented != text else 0,
    )
