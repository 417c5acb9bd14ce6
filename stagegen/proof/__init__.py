"""Proof: the generated backward against references it shares nothing with, beside the pipeline.

One driver (proof.check) for every function, numbers being the 0-d case: the same measure
(proof.common), the same report, checks chosen by the function's kind.

**The verdict: the forward as written, in 50 digits.** The generated ``*_backward`` is run in
floats at random points (for arrays, element by element, on concrete sizes) and compared with
the gradient of the user's own ``def``, taken from the source text and run on 50-digit mpmath
numbers (stagegen.oracle; NumPy object arrays of them for array code), differentiated by
central differences with a step of 1e-20; for numbers, also SymPy's exact derivative of the
path the forward took at the point (stagegen.path_oracle: the forward run on values carrying a
50-digit number, which decides every branch, loop condition, abs, min and max, and a SymPy
expression; a long path is differentiated in pieces composed by the chain rule). Nothing
there reads stagegen's stages or its printed code (proof.numbers, proof.arrays).

**Branches.** The forward's comparisons and tests are its branch sites (stagegen.sites, which
runs an instrumented copy of the ``def``). A point where a decision is too close to its
boundary is skipped (the function is not differentiable there, or a difference quotient
straddles the kink); for numbers, further points are sought (signs flipped, inputs scaled,
wider draws) until every outcome of every site is seen or a budget is spent, and the report
says how many were (``branches: 5 of 6 outcomes seen``).

**Where a bug is: SymPy on stagegen's stages.** For numbers, every gradient statement's local
factor against SymPy's ``diff`` of its stage (proof.local). For arrays, SymPy's derivative of
``sum(out * u)`` element by element, with the stage model's forward checked against the
source's (proof.reference, which reads a number as one element: the explain view's reference
for numbers too), and float64 central differences at other sizes.

A generated gradient must agree with every reference to a relative error of 1e-7 (with a floor
under small values). Modules: ``check`` (the driver), ``common`` (the measure, outcomes, the
user's function, 50-digit code), ``meaning`` (SymPy's meaning of literals and functions),
``sampling`` (points, sizes, labels), ``reference`` (SymPy element by element), ``local`` and
``numbers`` (the checks for numbers), ``arrays`` (the checks for arrays).
"""

from __future__ import annotations

from ..errors import HandWrittenWrong, VerificationError
from ..program import backward_name
from ..report import VerificationReport
from .check import check_function
from .reference import reference_gradient


def check_build(build, points: int = 5) -> VerificationReport:
    """Prove every function of a generated module (see the module docstring). The references
    run the functions from ``build.source``, the text they were read from."""
    from ..api import load_backward_module, working_on

    namespace = load_backward_module(build.text, build.filename)
    reports = []
    with working_on(build.filename):
        for b in build.backwards:
            backward_fn = namespace[backward_name(b.program.name)]
            source = build.source
            if b.program.filename != build.filename:  # a function imported from beside it
                from ..oracle import source_text

                source = source_text(b.program.filename)
            if b.program.handwritten is not None:
                reports.append(check_handwritten(b, backward_fn, points, source))
                continue
            reports.append(check_function(b.program, b, backward_fn, points, source=source))
    return VerificationReport(reports)


def check_handwritten(b, backward_fn, points: int, source):
    """A backward the user wrote, against the forward as written, end to end. Wrong, it is the
    user's bug, not stagegen's: a located error on the hand-written def (exit status 2)."""
    from ..errors import StagegenError

    own = b.program.handwritten
    _check_convention(b.program)
    at_def = dict(filename=b.program.filename, line=own.line, col=own.col, source_line=own.def_line)
    try:
        report = check_function(b.program, b, backward_fn, points, source=source)
    except VerificationError as exc:
        raise HandWrittenWrong(
            f"the hand-written `{own.name}` is wrong: {exc.message}",
            f"fix it, or delete it to have stagegen generate {own.name}",
            program=b.program,
            source=source,
            found=exc.message,
            **at_def,
        ) from None
    except TypeError as exc:
        raise StagegenError(
            f"the hand-written `{own.name}` cannot be called as a backward ({exc})",
            f"take {b.program.name}'s parameters, then one upstream gradient per output",
            **at_def,
        ) from None
    report.name = own.name + " (hand-written)"
    return report


def _check_convention(program) -> None:
    """A hand-written backward takes the forward's parameters, then one upstream gradient per
    output (the convention of the generated ones, so that callers call either alike)."""
    import ast

    from ..errors import StagegenError

    own = program.handwritten
    args = ast.parse(own.text).body[0].args
    positional = [*args.posonlyargs, *args.args]
    want = len(program.params) + len(program.outputs)
    required = len(positional) - len(args.defaults)
    if args.vararg is None and not required <= want <= len(positional):
        upstreams = ", ".join(f"d{name or 'out'}" for _, name in program.outputs)
        params = ", ".join(p.name for p in program.params)
        raise StagegenError(
            f"the hand-written `{own.name}` cannot be called as a backward of `{program.name}` "
            f"(it takes {len(positional)} arguments, a backward is passed {want})",
            f"write `def {own.name}({params}, {upstreams})`, returning the gradients of "
            f"{params} in order",
            filename=program.filename,
            line=own.line,
            col=own.col,
            source_line=own.def_line,
        )


def verify(
    source_or_function, function=None, *, wrt=None, split=False, points=5, filename="<string>"
) -> VerificationReport:
    """Generate the backward of a source text (or of a function object) and prove it.

    Returns a VerificationReport; raises VerificationError on any disagreement and
    StagegenError (located) for input outside the language."""
    from ..api import build, build_programs
    from ..introspect import programs_of_function

    if callable(source_or_function):
        programs = programs_of_function(source_or_function)
        result = build_programs(
            programs, programs[0].filename, [programs[0].name], wrt=wrt, split=split
        )
    else:
        result = build(source_or_function, function, wrt=wrt, split=split, filename=filename)
    return check_build(result, points)


__all__ = ["check_build", "check_function", "reference_gradient", "verify"]
