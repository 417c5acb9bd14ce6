"""The forward function as the rest of the pipeline sees it: parameters, a body of numbered
stages (a tree of blocks), output.

Every stage binds a fresh name (re-assignments are versioned: ``y``, ``y_1``, ...), so an
expression means the same thing wherever it is read: that is what makes pruning, reordering
and substitution safe downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .errors import StagegenError
from .expr import Expr, Var


@dataclass
class Param:
    name: str
    is_list: bool = False
    length: int = 0  # for a list: highest constant index read, plus one
    default: str | None = None  # the default's source text, kept in the backward signature
    # Array functions only: the annotated shape (None for a plain number), and whether the
    # parameter is read as indices (integer labels, which have no gradient).
    shape: tuple | None = None
    labels: bool = False
    # Used as a trip count or a loop bound (an integer): never differentiated.
    integer: bool = False
    # An unannotated array parameter: where its shape was read ("the code", "the docstring",
    # "the first call", or "no shape": any shape); "" otherwise.
    shape_source: str = ""


@dataclass
class Stage:
    number: int  # the #(n) of the forward line
    target: str  # its name in the generated code
    user_name: str  # the name the user wrote (differs from target after a re-assignment)
    expr: Expr
    line: int = 0  # where the user wrote it
    col: int = 0
    comment: str = ""  # the user's trailing comment, kept on the forward replay


@dataclass
class Branch:
    """``if test: then else: orelse``. A ``break``/``continue`` ends an arm (an Exit node), and
    the statements after such an ``if`` are its other arm, so every path is a tree path."""

    number: int  # the #(n) of the `if` line
    test: Expr  # a condition on values (Compare, And, Or, Not): it has no gradient
    then: list["Node"]
    orelse: list["Node"]
    line: int = 0
    col: int = 0
    text: str = ""  # the user's `if ...` line (an `elif` reads as `if` here)


@dataclass
class Loop:
    """``for index in range(start, stop, step)`` (``reversed`` when ``backwards``), or
    ``while test``. The loop's own iterations are counted (``steps``) when the backward cannot
    know their number otherwise: a ``while``, or a ``break``."""

    number: int  # the #(n) of the loop's line
    body: list["Node"]
    index: str | None = None  # the loop variable (an integer), None for `while`
    start: Expr | None = None
    stop: Expr | None = None
    step: int = 1
    backwards: bool = False
    test: Expr | None = None  # `while test`
    steps: str | None = None  # the name of the iteration counter, when there is one
    line: int = 0
    col: int = 0
    text: str = ""  # the user's loop line, as written


@dataclass
class Exit:
    """``break`` or ``continue``: the last node of a branch arm inside a loop."""

    kind: str  # "break" | "continue"
    number: int
    line: int = 0
    col: int = 0


# The program's body is a tree of blocks: stages (one forward line each), branches and loops
# holding bodies of their own; `Program.stages` lists the stages of the whole tree in program
# order. Inside a branch or a loop, a name the user binds again keeps its name (the loop
# carries it); straight-line code outside binds fresh versions (y, y_1).
Node = Union[Stage, Branch, Loop, Exit]


def children_of(node: Node) -> list[list[Node]]:
    """The bodies a node holds: none for a stage or an exit."""
    if isinstance(node, Branch):
        return [node.then, node.orelse]
    if isinstance(node, Loop):
        return [node.body]
    return []


def walk_nodes(body: list[Node]):
    """Every node of a block tree, in program order (a compound node before its bodies)."""
    for node in body:
        yield node
        for inner in children_of(node):
            yield from walk_nodes(inner)


def stages_of(body: list[Node]) -> list[Stage]:
    """Every stage of a block tree, in program order."""
    return [node for node in walk_nodes(body) if isinstance(node, Stage)]


def has_control_flow(body: list[Node]) -> bool:
    return any(not isinstance(node, Stage) for node in body)


def backward_name(function: str) -> str:
    """The name of a function's backward: ``f_backward``, and ``affine_backward`` for
    ``affine_forward``, as the course names its pairs."""
    if function.endswith("_forward") and len(function) > len("_forward"):
        return function[: -len("_forward")] + "_backward"
    return function + "_backward"


@dataclass
class HandWritten:
    """A backward the user wrote beside the forward (``g_backward`` beside ``g``): proven, then
    used by callers and carried into the generated module as written."""

    name: str
    text: str  # its `def`, as written
    line: int
    col: int
    def_line: str


@dataclass
class Program:
    name: str
    params: list[Param]
    body: list[Node]  # the block tree
    output: Var  # the returned value
    returned_name: str | None  # the user's name for it; None when an expression is returned
    filename: str = "<string>"
    line: int = 0
    docstring: str = ""
    user_names: set[str] = field(default_factory=set)  # every name the function reads or binds
    def_line: str = ""  # the source text of the `def` line, for errors about the whole function
    # Array functions only: the name NumPy is imported as, and every value's type, keyed by
    # stage target or parameter name: arrays.parse.Type (shape, kind).
    numpy: str | None = None
    types: dict = field(default_factory=dict)
    # A rest's size that a matrix product equates with a named dimension (``x.reshape(N, -1)
    # .dot(w)`` with w of shape (D, M): x's rest holds D elements), rest -> that dimension.
    rest_sizes: dict = field(default_factory=dict)
    # `return a, b`: every returned value and the user's name for it, in order (the first is
    # `output`); empty when one value is returned.
    several: list[tuple[Var, str | None]] = field(default_factory=list)
    returns: int = 1  # how many values it returns, saved values included
    saved: list[int] = field(default_factory=list)  # the positions of returned saved values
    # The module's functions it calls, by name (their backwards are generated beside its own).
    callees: dict[str, "Program"] = field(default_factory=dict)
    # Its `def` as written, without decorators or annotations: a generated module whose
    # backward replays a call to it carries this text (see emit.py).
    text: str = ""
    imports: list[str] = field(default_factory=list)  # the module's math and NumPy imports
    handwritten: HandWritten | None = None

    @property
    def positions(self) -> list[int]:
        """Where each output (``outputs``) is among the returned values."""
        return [k for k in range(self.returns) if k not in self.saved]

    @property
    def outputs(self) -> list[tuple[Var, str | None]]:
        """(value, the user's name for it) for each returned value, in order."""
        return self.several or [(self.output, self.returned_name)]

    def all_callees(self) -> list["Program"]:
        """Every function it calls, directly or through others, each once, callees first."""
        found: dict[str, Program] = {}

        def visit(program: "Program") -> None:
            for callee in program.callees.values():
                if callee.name not in found:
                    visit(callee)
                    found[callee.name] = callee

        visit(self)
        return list(found.values())

    def differentiable_params(self) -> list[str]:
        """The parameters a backward returns gradients for by default: all but integer labels
        and trip counts."""
        return [p.name for p in self.params if not (p.labels or p.integer)]

    def error(self, message: str, hint: str = "", error_class=StagegenError) -> StagegenError:
        """An error about the function as a whole, located at its `def` line."""
        col = len(self.def_line) - len(self.def_line.lstrip()) + 1
        return error_class(
            message,
            hint,
            filename=self.filename,
            line=self.line,
            col=col,
            source_line=self.def_line,
        )

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def stages(self) -> list[Stage]:
        return stages_of(self.body)

    @property
    def stage_of(self) -> dict[str, Stage]:
        return {s.target: s for s in self.stages}
