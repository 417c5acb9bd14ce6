"""@staged: attach the generated backward to a function when its module is imported.

    @staged
    def f(x, y): ...

    f(3.0, -4.0)            # unchanged
    f.backward(3.0, -4.0)   # (df/dx, df/dy), with df=1.0 as the upstream gradient
    f.backward_source       # the generated module, as the CLI would write it

The function object itself is returned, so calling it costs nothing extra. Errors in the
forward surface at import, located in the function's own file.
"""

from __future__ import annotations

from .api import build_programs, load_backward_module
from .introspect import programs_of_function


def staged(func=None, *, wrt=None, verify=False, split=False):
    def attach(f):
        programs = programs_of_function(f)
        program = programs[0]
        result = build_programs(programs, program.filename, [program.name], wrt=wrt, split=split)
        if verify:
            from .proof import check_build

            f.verification = check_build(result)
        namespace = load_backward_module(result.text, program.filename)
        f.backward = namespace[f"{program.name}_backward"]
        f.backward_source = result.text
        return f

    if func is not None:
        return attach(func)
    return attach
