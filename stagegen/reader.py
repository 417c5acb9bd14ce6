"""The choice of reader: each top-level function of a module is read as number code
(``parse.FunctionReader``) or, when its parameters carry shape annotations, as array code
(``arrays.parse.ArrayReader``, which extends it). Both readers are imported from here, and
neither imports this module, so the two frontends depend on each other in one direction only.
"""

from __future__ import annotations

import ast

from .arrays.annotations import is_shape_annotation
from .errors import Source, StagegenError
from .names import as_python_reads
from .parse import FunctionReader, MathNames, comments_by_line, function_defs, parse_source
from .program import Program


def read_programs(
    text: str,
    filename: str = "<string>",
    functions: list[str] | None = None,
    *,
    names: MathNames | None = None,
    line_offset: int = 0,
    col_offset: int = 0,
) -> list[Program]:
    """Every requested top-level function of a module, as Programs (all of them when
    ``functions`` is None). Other top-level code is ignored."""
    source = Source(text, filename, line_offset, col_offset)
    module = parse_source(source)
    defs = function_defs(module)
    if functions is not None:
        functions = [as_python_reads(f) if isinstance(f, str) else f for f in functions]
    by_name: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for d in defs:
        wanted = functions is None or d.name in functions
        if d.name in by_name and wanted:
            raise source.error(
                d,
                f"`{d.name}` is defined twice (first at line {by_name[d.name].lineno + line_offset})",
                "Python keeps only the last definition: rename or remove one",
            )
        by_name[d.name] = d
    if functions is None:
        chosen = defs
        if not chosen:
            raise StagegenError(
                "no function definitions found",
                "define the forward function with `def`",
                filename=filename,
            )
    else:
        chosen = []
        for name in functions:
            if name not in by_name:
                have = ", ".join(by_name) or "none"
                raise StagegenError(
                    f"no top-level function named `{name}`",
                    f"functions defined here: {have}",
                    filename=filename,
                )
            chosen.append(by_name[name])
    math_names = names or MathNames.from_module(module)
    module_functions = set(by_name)
    comments = comments_by_line(text)
    reader = FunctionReader(source, math_names, module_functions, comments)
    programs = []
    for d in chosen:
        if is_array_function(d):
            from .arrays.parse import ArrayReader  # NumPy's language loads only when used

            programs.append(ArrayReader(source, math_names, module_functions, comments).read(d))
        else:
            programs.append(reader.read(d))
    return programs


def is_array_function(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function whose parameters carry shape annotations (``x: "N, D"``, jaxtyping's
    ``Float[np.ndarray, "N D"]``) is array code."""
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    return any(
        is_shape_annotation(a.annotation)
        # np.ndarray, numpy.ndarray, NDArray: array code, whose reader asks for the shape
        or (a.annotation is not None and "ndarray" in ast.unparse(a.annotation).lower())
        or (isinstance(a.annotation, ast.Name) and a.annotation.id == "NDArray")
        for a in args
    )
