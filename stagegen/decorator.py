"""@staged: attach the generated backward to a function when its module is imported.

    @staged
    def f(x, y): ...

    f(3.0, -4.0)            # unchanged
    f.backward(3.0, -4.0)   # (df/dx, df/dy), with df=1.0 as the upstream gradient
    f.backward_source       # the generated module, as the CLI would write it

The function object itself is returned, so calling it costs nothing extra. Errors in the
forward surface at import, located in the function's own file. Generated modules (and proof
reports) are cached on disk (see stagegen.cache), so a warm import neither parses, generates
nor loads black, jinja2 or SymPy.
"""

from __future__ import annotations

from . import __version__, cache
from .api import load_backward_module
from .introspect import function_source


def staged(func=None, *, wrt=None, verify=False, split=False):
    def attach(f):
        source = function_source(f)
        wrt_text = wrt if isinstance(wrt, str) or wrt is None else ",".join(wrt)
        entry = cache.key(
            __version__, source.fingerprint(), f"wrt={wrt_text}", f"split={split}", f"{verify=}"
        )
        hit = cache.load(entry)
        if hit is not None and (hit[1] is not None or not verify):
            text, report = hit
            if verify:
                from .proof import VerificationReport

                f.verification = VerificationReport.from_dict(report)
        else:
            # Generate (and prove); errors are raised here, located, and never cached.
            from .api import build_programs
            from .introspect import programs_of_source

            programs = programs_of_source(source)
            result = build_programs(programs, source.filename, [source.name], wrt=wrt, split=split)
            text, report = result.text, None
            if verify:
                from .proof import check_build

                f.verification = check_build(result)
                report = f.verification.to_dict()
            cache.store(entry, text, report)
        namespace = load_backward_module(text, source.filename)
        f.backward = namespace[f"{source.name}_backward"]
        f.backward_source = text
        return f

    if func is not None:
        return attach(func)
    return attach
