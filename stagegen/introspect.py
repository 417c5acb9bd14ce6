"""Source of a live function object, for the decorator and verify(func).

The function is never called: its source is read through ``inspect`` and parsed like a file,
with line and column offsets so that errors point into the function's own file.

The text ``inspect`` finds is the file's *current* text, which need not be the text the running
function was compiled from (the file was edited after import, or the function was made by
``exec`` of other text under the file's name). So the live function's compiled code is hashed
(``code_hash``), the hash is part of the decorator's cache key, and before anything is generated
the text is compiled again and must give the same code, defaults and annotations
(``FunctionSource.check_live``): stagegen never differentiates other code than the one running.
"""

from __future__ import annotations

import inspect
import math
import os
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
    live: str = ""  # live_fingerprint() of the running function ("" when there is none)
    function: object = field(default=None, repr=False, compare=False)  # the running function

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
        parts = [self.name, self.filename.rsplit("/", 1)[-1], self.text, self.live, *bindings]
        return "\0".join(parts)

    def check_live(self) -> None:
        """Raise a located StagegenError unless ``text`` compiles to the running function's code
        (with its defaults and annotations): the backward must be of the code that runs."""
        if self.function is None:
            return
        try:
            lines, _ = inspect.findsource(self.function)
            file_text = "".join(lines)
        except (OSError, TypeError):
            file_text = None
        if text_matches_function(self.text, self.function, file_text, self.line_offset + 1):
            return
        raise StagegenError(
            f"the source of `{self.name}` in {self.filename} is not the code that is running: "
            "the file was edited after the function was defined, or the function was compiled "
            "from other text",
            "re-import the module (or restart the interpreter) so that the function and its "
            "file agree",
            filename=self.filename,
            line=self.line_offset + 1,
            col=self.col_offset + 1,
            source_line=" " * self.col_offset + self.text.split("\n", 1)[0],
        )


def function_source(func) -> FunctionSource:
    name = getattr(func, "__name__", repr(func))
    filename = getattr(getattr(func, "__code__", None), "co_filename", "<unknown>")
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError):
        line = getattr(getattr(func, "__code__", None), "co_firstlineno", 0)
        if line and os.path.isfile(filename):  # the file is there, the function is not
            raise StagegenError(
                f"the source of `{name}` is no longer at line {line} of {filename}, where it "
                "was defined: the file was edited after the function was defined",
                "re-import the module (or restart the interpreter) so that the function and its "
                "file agree",
                filename=filename,
            ) from None
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
        live=live_fingerprint(func) if code is not None else "",
        function=func if code is not None else None,
    )


def programs_of_source(source: FunctionSource, call_shapes: dict | None = None):
    from .parse import MathNames
    from .reader import read_programs

    source.check_live()

    return read_programs(
        source.text,
        source.filename,
        [source.name],
        names=MathNames.from_globals(source.namespace),
        line_offset=source.line_offset,
        col_offset=source.col_offset,
        call_shapes=call_shapes,
    )


def programs_of_function(func):
    return programs_of_source(function_source(func))


# ------------------------------------------------------------------- the running code


CO_NESTED = 0x10  # set when a function is defined inside another; its text may be compiled alone


def code_hash(code) -> str:
    """A deterministic hash of a compiled code object: its bytecode, constants (nested code
    objects included, sets in a fixed order), names, arguments and flags. Positions (file name, line numbers,
    line table) and the qualified name are left out: they do not change what the code computes,
    and the text is compiled again cut out of its file."""
    import hashlib

    return hashlib.sha256(repr(_canonical_code(code)).encode("utf-8")).hexdigest()


def _canonical_code(code) -> tuple:
    return (
        "code",
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & ~CO_NESTED,
        code.co_code,
        tuple(_canonical_constant(c) for c in code.co_consts),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        getattr(code, "co_exceptiontable", b""),  # Python 3.11 and later
    )


def _canonical_constant(value):
    if hasattr(value, "co_code"):
        return _canonical_code(value)
    if isinstance(value, tuple):
        return ("tuple", tuple(_canonical_constant(v) for v in value))
    if isinstance(value, frozenset):  # iteration order follows string hashing: sort it
        return ("frozenset", tuple(sorted((_canonical_constant(v) for v in value), key=repr)))
    return (type(value).__name__, repr(value))


def live_fingerprint(func) -> str:
    """What the running function is: its code's hash, its defaults and its annotations."""
    annotations = getattr(func, "__annotations__", None) or {}
    described = sorted((name, _describe(value)) for name, value in annotations.items())
    defaults = tuple(_describe(v) for v in getattr(func, "__defaults__", None) or ())
    return repr((code_hash(func.__code__), defaults, described))


def _describe(value) -> str:
    if isinstance(value, (str, int, float, complex, bool, type(None), list, tuple)):
        return repr(value)
    return f"{type(value).__module__}.{getattr(value, '__qualname__', type(value).__name__)}"


def text_matches_function(text: str, func, file_text: str | None = None, line: int = 0) -> bool:
    """Whether ``text`` (a function's dedented source, decorators included, found at ``line``
    of a file holding ``file_text``) compiles to the running ``func``: the same code, the same
    default values and the same string annotations.

    The bytecode of a function depends a little on the module around it (3.11 reads a method
    of an imported module with LOAD_ATTR where it would use LOAD_METHOD; a closure's cells), so
    the code compiled from the whole file at that line is accepted too: the same text either
    way, and nothing else in the file."""
    import ast

    code = func.__code__
    flags = code.co_flags & FUTURE_FLAGS
    try:
        tree = compile(text, "<stagegen check>", "exec", ast.PyCF_ONLY_AST | flags, True)
        candidates = list(_code_objects(compile(tree, "<stagegen check>", "exec", flags, True)))
    except (SyntaxError, ValueError):
        return False
    if file_text is not None:
        candidates += [c for c in _compiled_file(file_text) if c.co_firstlineno == line]
    wanted = code_hash(code)
    if not any(c.co_name == code.co_name and code_hash(c) == wanted for c in candidates):
        return False
    definitions = [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name
    ]
    return any(_signature_matches(node, func, flags) for node in definitions)


_compiled_files: dict[str, list] = {}


def _compiled_file(file_text: str) -> list:
    """Every code object of a module's text (memoized: a module of many decorated functions
    is compiled once)."""
    if file_text not in _compiled_files:
        try:
            compiled = list(_code_objects(compile(file_text, "<stagegen check>", "exec", 0, True)))
        except (SyntaxError, ValueError):
            compiled = []
        _compiled_files.clear()  # keep only the latest file
        _compiled_files[file_text] = compiled
    return _compiled_files[file_text]


def _future_flags() -> int:
    import __future__

    return __future__.annotations.compiler_flag | __future__.generator_stop.compiler_flag


FUTURE_FLAGS = _future_flags()


def _code_objects(code):
    for constant in code.co_consts:
        if hasattr(constant, "co_code"):
            yield constant
            yield from _code_objects(constant)


def _signature_matches(node, func, flags: int) -> bool:
    import __future__
    import ast

    args = node.args
    positional = list(args.posonlyargs) + list(args.args)
    live_defaults = tuple(getattr(func, "__defaults__", None) or ())
    if len(args.defaults) != len(live_defaults):
        return False
    for default, live in zip(args.defaults, live_defaults):
        try:
            value = ast.literal_eval(default)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue  # not a literal: the parser refuses it, located, later
        if type(value) is not type(live) or value != live:
            return False
    postponed = bool(flags & __future__.annotations.compiler_flag)
    live_annotations = getattr(func, "__annotations__", None) or {}
    for arg in positional + list(args.kwonlyargs) + [args.vararg, args.kwarg]:
        if arg is None:
            continue
        live = live_annotations.get(arg.arg)
        if arg.annotation is None:
            if live is not None:
                return False
            continue
        if postponed:
            expected = ast.unparse(arg.annotation)
        elif isinstance(arg.annotation, ast.Constant):
            expected = arg.annotation.value
        else:
            continue  # an expression evaluated at definition (np.ndarray): not comparable
        if live != expected:
            return False
    return True
