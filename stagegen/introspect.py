"""Source of a live function object, for the decorator and verify(func).

The function is never called: its source is read through ``inspect`` and parsed like a file,
with line and column offsets so that errors point into the function's own file.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass, field

from .errors import StagegenError


@dataclass(frozen=True)
class FunctionSource:
    """A live function's source and globals: what the parser needs, before any parsing.

    The decorator's warm path stops here (it needs the fingerprint, not a parse), which is
    why this module imports neither the parser nor the pipeline at the top."""

    name: str
    text: str  # the function's own source, dedented
    filename: str
    line_offset: int
    col_offset: int
    namespace: dict = field(repr=False, compare=False)  # the function's globals
    global_reads: tuple[str, ...] = ()  # names the code reads that are not its locals

    def fingerprint(self) -> str:
        """What the generated module depends on (the decorator's cache key is built from it):
        the source, and what the globals make of math names and of the names the code reads.
        Line offsets are left out: they move error locations only, and errors are never cached."""
        bindings = []
        for name, value in sorted(self.namespace.items()):
            if value is math:
                bindings.append(f"{name}=math")
            elif getattr(value, "__module__", None) == "math":
                bindings.append(f"{name}=math.{getattr(value, '__name__', '?')}")
            elif isinstance(value, float) and value in (math.pi, math.e, math.tau):
                bindings.append(f"{name}={value!r}")
            elif name in self.global_reads:
                bindings.append(f"{name}:{type(value).__name__}")
        return "\0".join([self.name, self.filename.rsplit("/", 1)[-1], self.text, *bindings])


def function_source(func) -> FunctionSource:
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
    code = getattr(func, "__code__", None)
    return FunctionSource(
        name=name,
        text=dedented,
        filename=inspect.getsourcefile(func) or filename,
        line_offset=max(first_line - 1, 0),
        col_offset=indent if dedented != text else 0,
        namespace=getattr(func, "__globals__", {}),
        global_reads=tuple(code.co_names) if code is not None else (),
    )


def programs_of_source(source: FunctionSource):
    from .parse import MathNames, read_programs

    return read_programs(
        source.text,
        source.filename,
        [source.name],
        names=MathNames.from_globals(source.namespace),
        line_offset=source.line_offset,
        col_offset=source.col_offset,
    )


def programs_of_function(func):
    return programs_of_source(function_source(func))
