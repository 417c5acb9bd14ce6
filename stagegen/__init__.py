"""stagegen: write the backward pass of a Python function as readable, staged source code.

    >>> import stagegen
    >>> text = stagegen.generate(source, function="f")   # the f_backward module, as text
    >>> stagegen.verify(source, function="f")            # proven against SymPy

Importing stagegen is light: SymPy and black load only when they are needed.
"""

from .errors import StagegenError, VerificationError

__version__ = "0.1.0"
__all__ = [
    "generate",
    "verify",
    "staged",
    "explain",
    "grade",
    "StagegenError",
    "VerificationError",
    "__version__",
]


def generate(source, function=None, *, wrt=None, split=False, filename="<string>"):
    """The text of the backward module for ``source`` (see stagegen.api.generate)."""
    from .api import generate as _generate

    return _generate(source, function, wrt=wrt, split=split, filename=filename)


def verify(
    source_or_function, function=None, *, wrt=None, split=False, points=5, filename="<string>"
):
    """Check the generated backward against SymPy; returns a report, raises VerificationError
    (a wrong hand-written backward: StagegenError, at its first wrong line)."""
    from .errors import HandWrittenWrong
    from .handwritten import located
    from .proof import verify as _verify

    try:
        return _verify(
            source_or_function, function, wrt=wrt, split=split, points=points, filename=filename
        )
    except HandWrittenWrong as exc:
        raise located(exc) from None


def staged(func=None, *, wrt=None, verify=True, split=False):
    """Decorator: attach ``func.backward``, ``func.backward_source`` and, unless
    ``verify=False``, ``func.verification``, the proof's report (see stagegen.decorator)."""
    from .decorator import staged as _staged

    return _staged(func, wrt=wrt, verify=verify, split=split)


def explain(target, function=None, *, split=False, at=None, **values):
    """``explain(func, x=3, y=-4)``: the forward and backward of ``func`` with every value, local
    gradient and gate named; ``str()`` gives the text, notebooks show HTML with the circuit.
    Also ``explain(source_text, "f", x=3, y=-4)``; no values: symbolic (see stagegen.explain)."""
    from .explanation import explain as _explain

    return _explain(target, function, split=split, at=at, **values)


def grade(source, backward="f_backward", forward=None, filename="<string>"):
    """Grade a hand-written backward line by line against its forward: a report with ``.ok``,
    ``.first_error`` (None, or ``.line``, ``.col``, ``.message``), ``.lines`` (a verdict per
    line) and ``text()``, ``markdown()``, ``html()`` (see stagegen.grade)."""
    from .grader import grade as _grade

    return _grade(source, backward, forward, filename=filename)
