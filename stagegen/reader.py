"""The choice of reader: each top-level function of a module is read as number code
(``parse.FunctionReader``) or, when its parameters carry shape annotations, as array code
(``arrays.parse.ArrayReader``, which extends it). Both readers are imported from here, and
neither imports this module, so the two frontends depend on each other in one direction only.
"""

from __future__ import annotations

import ast
import copy
import textwrap
from pathlib import Path

from .arrays.infer import docstring_shapes, uses_arrays
from .arrays.annotations import is_shape_annotation
from .errors import Source, StagegenError
from .names import as_python_reads
from .parse import FunctionReader, MathNames, comments_by_line, function_defs, parse_source
from .program import HandWritten, Program, backward_name


def read_programs(
    text: str,
    filename: str = "<string>",
    functions: list[str] | None = None,
    *,
    names: MathNames | None = None,
    line_offset: int = 0,
    col_offset: int = 0,
    importing: tuple[str, ...] = (),
    call_shapes: dict | None = None,
) -> list[Program]:
    """Every requested top-level function of a module, as Programs (all of them when
    ``functions`` is None). Other top-level code is ignored. Functions the module imports
    from a module beside it (``from helpers import sigmoid``, helpers.py in the same folder)
    are read from there, so calls to them are followed too. ``call_shapes`` (for @staged)
    are the concrete shapes of one call's arguments, by parameter."""
    source = Source(text, filename, line_offset, col_offset)
    module = parse_source(source)
    imported = _imported_programs(module, filename, importing)
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
    # `g_backward` beside `g` is the user's own backward of g, not a forward to differentiate.
    handwritten = {
        forward: by_name[backward_name(forward)]
        for forward in by_name
        if backward_name(forward) in by_name and backward_name(forward) != forward
    }
    backwards = {d.name for d in handwritten.values()}
    if functions is None:
        chosen = [d for d in defs if d.name not in backwards]
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
    module_functions = set(by_name) | set(imported)
    comments = comments_by_line(text)
    read: dict[str, Program] = {}

    def read_one(d, calling: list) -> Program:
        """``d`` as a Program, after the functions it calls (each read once)."""
        if d.name in read:
            return read[d.name]
        for call, callee in _calls(d, by_name):
            if callee.name == d.name:
                continue  # calls itself: the reader says so where the call is
            if callee.name in [c.name for c in calling]:
                cycle = " → ".join([c.name for c in calling] + [d.name, callee.name])
                raise source.error(
                    call,
                    f"recursion is not supported ({cycle})",
                    "write the computation as a loop, or without the cycle",
                )
            read_one(callee, calling + [d])
        args = d.args.posonlyargs + d.args.args + d.args.kwonlyargs
        calls_arrays = any(  # an unannotated caller of array code is array code too
            read[c.name].numpy for _, c in _calls(d, by_name) if c.name in read
        ) and not any(a.annotation is not None for a in args)
        if is_array_function(d, math_names.numpy) or (calls_arrays and math_names.numpy):
            from .arrays.parse import ArrayReader  # NumPy's language loads only when used

            reader = ArrayReader(source, math_names, module_functions, comments)
            reader.call_shapes = call_shapes
        else:
            reader = FunctionReader(source, math_names, module_functions, comments)
        reader.callees = {**imported, **read}
        program = reader.read(d)
        program.text, program.imports = _def_text(text, d, module)
        if d.name in handwritten:
            own = handwritten[d.name]
            program.handwritten = HandWritten(
                own.name,
                _def_text(text, own, module)[0],
                own.lineno + line_offset,
                own.col_offset + 1 + col_offset,
                source.lines[own.lineno - 1] if own.lineno <= len(source.lines) else "",
            )
        program.callees = {
            callee.name: read[callee.name]
            for _, callee in _calls(d, by_name)
            if callee.name in read
        }
        program.callees.update(
            {name: p for name, p in imported.items() if name in _called_names(d)}
        )
        read[d.name] = program
        return program

    return [read_one(d, []) for d in chosen]


def _def_text(text: str, fn, module: ast.Module) -> tuple[str, list[str]]:
    """The ``def`` as the user wrote it (comments kept; annotations dropped only when they
    are more than strings, since they may name what a generated module does not import), and
    the module's imports of math and NumPy, as written."""
    args = fn.args
    annotations = [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    plain = all(
        a is None or (isinstance(a, ast.Constant) and isinstance(a.value, str))
        for a in [*annotations, fn.returns]
    )
    segment = ast.get_source_segment(text, fn) if plain else None
    if segment is None:
        bare = copy.deepcopy(fn)
        bare.decorator_list, bare.returns = [], None
        for a in [*bare.args.posonlyargs, *bare.args.args, *bare.args.kwonlyargs]:
            a.annotation = None
        segment = ast.unparse(bare)
    imports = []
    for node in module.body:
        if isinstance(node, ast.Import) and any(a.name in ("math", "numpy") for a in node.names):
            imports.append(ast.unparse(node))
        elif isinstance(node, ast.ImportFrom) and node.module in ("math", "numpy"):
            imports.append(ast.unparse(node))
    return textwrap.dedent(segment), imports


def _imported_programs(module: ast.Module, filename: str, importing: tuple) -> dict:
    """{name: Program} of the functions ``from helpers import name`` imports, where helpers.py
    sits beside the module (other imports are not followed)."""
    folder = Path(filename).parent if not filename.startswith("<") else None
    found: dict[str, Program] = {}
    if folder is None:
        return found
    for node in module.body:
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
            continue
        path = folder / (node.module.replace(".", "/") + ".py")
        if node.module in ("math", "numpy") or not path.is_file():
            continue
        if str(path.resolve()) in importing:
            continue  # a cycle of imports: the reader of that module refuses recursion
        text = path.read_text(encoding="utf-8")
        defined = {d.name for d in function_defs(ast.parse(text))}
        wanted = [a.name for a in node.names if a.name in defined]
        if not wanted:
            continue
        programs = read_programs(
            text, str(path), wanted, importing=importing + (str(Path(filename).resolve()),)
        )
        for alias in node.names:
            if alias.name in defined:
                program = next(p for p in programs if p.name == alias.name)
                found[alias.asname or alias.name] = program
    return found


def _called_names(fn) -> set[str]:
    return {
        n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


def _calls(fn, by_name: dict) -> list[tuple[ast.Call, ast.FunctionDef]]:
    """The calls in ``fn`` to the module's other functions (where no local name hides them)."""
    local = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    local |= {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    found = []
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in by_name
            and node.func.id not in local
            and node is not fn
        ):
            found.append((node, by_name[node.func.id]))
    return found


def is_array_function(fn: ast.FunctionDef | ast.AsyncFunctionDef, numpy_names=()) -> bool:
    """A function whose parameters carry shape annotations (``x: "N, D"``, jaxtyping's
    ``Float[np.ndarray, "N D"]``) is array code; so is one without annotations that calls NumPy
    or reads a shape (its parameters' shapes are inferred: ``arrays.infer``)."""
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    if not any(a.annotation is not None for a in args):
        return bool(numpy_names) and (
            uses_arrays(fn, set(numpy_names)) or any(docstring_shapes(fn).values())
        )
    return any(
        is_shape_annotation(a.annotation)
        # np.ndarray, numpy.ndarray, NDArray: array code, whose reader asks for the shape
        or (a.annotation is not None and "ndarray" in ast.unparse(a.annotation).lower())
        or (isinstance(a.annotation, ast.Name) and a.annotation.id == "NDArray")
        for a in args
    )
