"""A wrong hand-written backward, located on its first wrong line.

The proof finds that a backward the user wrote (``g_backward`` beside ``g``) disagrees with
``g`` at a point; grading (stagegen.grader) reads it line by line and names the first wrong
one in the gates' terms. The faces that prove (the CLI, ``stagegen.verify``) pass the proof's
error through ``located`` before showing it.
"""

from __future__ import annotations

from .errors import HandWrittenWrong, StagegenError


def located(error: HandWrittenWrong) -> StagegenError:
    """The error at the backward's first wrong line, with grading's words and the proof's
    point; as it was (at the ``def``) where grading cannot read the backward (loops,
    branches, arrays) or finds no line to blame."""
    from .grader import grade

    program, source = error.program, error.source
    if program is None or not source:
        return error
    own = program.handwritten
    try:
        report = grade(source, own.name, program.name, program.filename)
    except StagegenError:
        return error
    issue = report.first_error
    if issue is None:
        return error
    lines = source.split("\n")
    return StagegenError(
        f"the hand-written `{own.name}` is wrong: {issue.message} (the proof: {error.found})",
        error.hint,
        filename=error.filename,
        line=issue.line,
        col=issue.col,
        source_line=lines[issue.line - 1] if 0 < issue.line <= len(lines) else "",
    )
