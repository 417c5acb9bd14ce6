"""@staged: attach the generated backward to a function when its module is imported.

    @staged
    def f(x, y): ...

    f(3.0, -4.0)            # unchanged
    f.backward(3.0, -4.0)   # (df/dx, df/dy), with df=1.0 as the upstream gradient
    f.backward_source       # the generated module, as the CLI would write it
    f.verification          # the proof's report (unless verify=False)

The function object itself is returned, so calling it costs nothing extra. The backward is
proven against SymPy unless ``verify=False``; a failed proof raises VerificationError at
decoration time. Errors in the forward surface at import, located in the function's own file.

Generated modules and their proof reports are cached on disk (see stagegen.cache), so a warm
import neither parses, generates, proves nor loads black, jinja2 or SymPy. The cache key
includes the running function's compiled code, and nothing is generated from a file whose
text is not the code that runs (see stagegen.introspect).
"""

from __future__ import annotations

import sys

from . import __version__, cache
from .api import load_backward_module
from .introspect import function_source


def staged(func=None, *, wrt=None, verify=True, split=False):
    def attach(f):
        source = function_source(f)
        wrt_text = wrt if isinstance(wrt, str) or wrt is None else ",".join(wrt)
        entry_key = cache.key(
            __version__,
            cache.code_hash(),
            sys.implementation.cache_tag or sys.version,
            source.fingerprint(),
            f"wrt={wrt_text}",
            f"split={split}",
        )
        served = serve(cache.load(entry_key), source, verify)
        if served is None:
            served = generate(source, wrt=wrt, split=split, verify=verify)
            text, report, _ = served
            cache.store(entry_key, text, report.to_dict() if report is not None else None)
        text, report, namespace = served
        f.backward = namespace[f"{source.name}_backward"]
        f.backward_source = text
        if verify:
            f.verification = report
        return f

    if func is not None:
        return attach(func)
    return attach


def serve(entry: cache.Entry | None, source, verify: bool):
    """(text, report, namespace) of a cached entry, or None when it cannot serve this caller:
    no entry, an entry without proof for a caller who asked for one, or one that does not load."""
    if entry is None or (verify and not entry.proven):
        return None
    name = source.name
    report = None
    try:
        if verify:
            from .proof import VerificationReport

            report = VerificationReport.from_dict(entry.report)
            if [f.name for f in report.functions] != [name]:
                return None
        namespace = load_backward_module(entry.text, source.filename)
        if not callable(namespace.get(f"{name}_backward")):
            return None
    except Exception:  # an entry that does not load is a miss: generate it again
        return None
    return entry.text, report, namespace


def generate(source, *, wrt, split, verify):
    """Generate (and prove) the backward of a live function; errors are raised here, located,
    and never cached."""
    from .api import build_programs
    from .introspect import programs_of_source

    programs = programs_of_source(source)  # refuses a file that is not the running code
    result = build_programs(programs, source.filename, [source.name], wrt=wrt, split=split)
    report = None
    if verify:
        from .proof import check_build

        report = check_build(result)  # raises VerificationError on any disagreement
    namespace = load_backward_module(result.text, source.filename)
    return result.text, report, namespace
