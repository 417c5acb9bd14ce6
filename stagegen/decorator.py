"""@staged: attach the generated backward to a function when its module is imported.

    @staged
    def f(x, y): ...

    f(3.0, -4.0)            # unchanged
    f.backward(3.0, -4.0)   # (df/dx, df/dy), with df=1.0 as the upstream gradient
    f.backward_source       # the generated module, as the CLI would write it
    f.verification          # the proof's report (unless verify=False)

The function object itself is returned, so calling it costs nothing extra. The backward is
proven against SymPy unless ``verify=False``; a failed proof raises VerificationError at
decoration time. Errors in the forward surface at import, located in the function's own file,
as one exception whose traceback ends at the decorator: stagegen's internal frames are dropped
(they say nothing about the user's code; a bug in stagegen, any other exception, keeps them).

Generated modules and their proof reports are cached on disk (see stagegen.cache), so a warm
import neither parses, generates, proves nor loads black, jinja2 or SymPy. The cache key
includes the running function's compiled code, and nothing is generated from a file whose
text is not the code that runs (see stagegen.introspect).
"""

from __future__ import annotations

import sys

from . import __version__, cache
from .api import load_backward_module
from .errors import ShapeUnknown, StagegenError
from .introspect import function_source
from .program import backward_name


def staged(func=None, *, wrt=None, verify=True, split=False):
    def attach(f):
        try:
            return attach_backward(f, wrt=wrt, verify=verify, split=split)
        except StagegenError as err:
            raise at_the_function(err, f) from None

    if func is not None:
        try:
            return attach_backward(func, wrt=wrt, verify=verify, split=split)
        except StagegenError as err:
            raise at_the_function(err, func) from None
    return attach


def at_the_function(err: StagegenError, func) -> StagegenError:
    """The error to raise from the decorator: located (at the function's first line when it
    had no place of its own), and with stagegen's internal frames dropped, so that the
    traceback ends at the user's ``@staged`` line and the message is the whole story."""
    code = getattr(func, "__code__", None)
    if code is not None and err.line <= 0:
        import linecache

        text = linecache.getline(code.co_filename, code.co_firstlineno)
        col = len(text) - len(text.lstrip()) + 1 if text.strip() else 1
        err = err.located_at(code.co_filename, code.co_firstlineno, col, text)
    return err.with_traceback(None)


def attach_backward(f, *, wrt, verify, split):
    source = function_source(f)
    try:
        text, report, namespace = served_or_generated(source, wrt, verify, split)
    except ShapeUnknown:
        # The code and the docstring leave a number of dimensions open that the code needs:
        # the first call's arguments fix it (and each new pattern of shapes, again).
        f.backward = FirstCall(f, source, wrt=wrt, verify=verify, split=split)
        f.backward_source = None
        return f
    f.backward = namespace[backward_name(source.name)]
    f.backward_source = text
    if verify:
        f.verification = report
    return f


def served_or_generated(source, wrt, verify, split, call_shapes=None):
    """(text, report, namespace) from the cache, or generated (and proven) and cached."""
    wrt_text = wrt if isinstance(wrt, str) or wrt is None else ",".join(wrt)
    entry_key = cache.key(
        __version__,
        cache.code_hash(),
        sys.implementation.cache_tag or sys.version,
        source.fingerprint(),
        f"wrt={wrt_text}",
        f"split={split}",
        f"shapes={sorted(call_shapes.items()) if call_shapes else ''}",
    )
    served = serve(cache.load(entry_key), source, verify)
    if served is None:
        served = generate(source, wrt=wrt, split=split, verify=verify, call_shapes=call_shapes)
        text, report, _ = served
        cache.store(entry_key, text, report.to_dict() if report is not None else None)
    return served


class FirstCall:
    """``f.backward`` of an array function whose shapes only a call fixes: each call is
    served by the backward generated for its pattern of shapes (ranks, axes of size 1, equal
    sizes; the sizes themselves stay symbolic), generated and proven on that pattern's first
    call. ``f.backward_source`` and ``f.verification`` are the last pattern's."""

    def __init__(self, f, source, *, wrt, verify, split):
        import inspect

        self.f, self.source = f, source
        self.options = {"wrt": wrt, "verify": verify, "split": split}
        self.signature = inspect.signature(f)
        self.by_pattern: dict = {}

    def __call__(self, *args, **kwargs):
        pattern, call_shapes = self.pattern(args, kwargs)
        backward = self.by_pattern.get(pattern)
        if backward is None:
            try:
                text, report, namespace = served_or_generated(
                    self.source, call_shapes=call_shapes, **self.options
                )
            except StagegenError as err:
                raise at_the_function(err, self.f) from None
            backward = self.by_pattern[pattern] = namespace[backward_name(self.source.name)]
            self.f.backward_source = text
            if self.options["verify"]:
                self.f.verification = report
        return backward(*args, **kwargs)

    def pattern(self, args, kwargs) -> tuple:
        """The call's pattern (its key) and its array arguments' (shape, kind)."""
        import numpy as np

        params = list(self.signature.parameters)
        values = dict(zip(params, args))
        values.update({k: v for k, v in kwargs.items() if k in params})
        call_shapes = {}
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                kind = (
                    "bool"
                    if value.dtype == bool
                    else "int" if value.dtype.kind in "iu" else "float"
                )
                call_shapes[name] = (tuple(value.shape), kind)
        sizes: dict[int, int] = {}  # equal sizes share an id: the pattern keeps equalities
        key = tuple(
            (name, kind, tuple(1 if n == 1 else sizes.setdefault(n, len(sizes)) for n in shape))
            for name, (shape, kind) in call_shapes.items()
        )
        return key, call_shapes


def serve(entry: cache.Entry | None, source, verify: bool):
    """(text, report, namespace) of a cached entry, or None when it cannot serve this caller:
    no entry, an entry without proof for a caller who asked for one, or one that does not load."""
    if entry is None or (verify and not entry.proven):
        return None
    name = source.name
    report = None
    try:
        if verify:
            from .report import VerificationReport

            report = VerificationReport.from_dict(entry.report)
            if [f.name for f in report.functions] != [name]:
                return None
        namespace = load_backward_module(entry.text, source.filename)
        if not callable(namespace.get(backward_name(name))):
            return None
    except Exception:  # an entry that does not load is a miss: generate it again
        return None
    return entry.text, report, namespace


def _refuse_calls(source) -> None:
    """The decorator reads one function's text: a call to another of the user's functions
    (which the CLI follows, reading the whole module) is refused, located, with that advice."""
    import ast
    import types

    from .errors import Source

    text = Source(source.text, source.filename, source.line_offset, source.col_offset)
    defs = [d for d in ast.parse(source.text).body if isinstance(d, ast.FunctionDef)]
    body = [node for d in defs for stmt in d.body for node in ast.walk(stmt)]
    for node in body:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called = source.namespace.get(node.func.id)
            if isinstance(called, types.FunctionType) and node.func.id != source.name:
                raise text.error(
                    node.func,
                    f"@staged does not follow calls to your own functions (`{node.func.id}`) yet",
                    "generate the module's backwards with `stagegen FILE.py`, which does",
                )


def generate(source, *, wrt, split, verify, call_shapes=None):
    """Generate (and prove) the backward of a live function; errors are raised here, located,
    and never cached."""
    from .api import build_programs
    from .introspect import programs_of_source

    _refuse_calls(source)
    programs = programs_of_source(source, call_shapes)  # refuses code that is not what runs
    result = build_programs(programs, source.filename, [source.name], wrt=wrt, split=split)
    report = None
    if verify:
        from .proof import check_build

        report = check_build(result)  # raises VerificationError on any disagreement
    namespace = load_backward_module(result.text, source.filename)
    return result.text, report, namespace
